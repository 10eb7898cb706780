"""The layout: `daemon/` and `rules/` at the top, one import package `gex_alertd` in the wheel,
and a rule engine that stands alone (nothing but the model and itself)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "rules"

# what importing the rule engine may load: the package root, the snapshot model (with the
# import-free helper its messages quote with), itself
ALLOWED_OWN = {"gex_alertd", "gex_alertd.model", "gex_alertd.quoted"}
HEAVY = ("redis", "aiohttp", "apscheduler", "structlog", "yaml", "zstandard", "click", "rich")


def test_rules_import_only_the_model_and_themselves():
    bad = []
    for path in sorted(RULES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                own = name == "gex_alertd" or name.startswith("gex_alertd.")
                if own and name not in ALLOWED_OWN and not name.startswith("gex_alertd.rules"):
                    bad.append(f"{path.name}:{node.lineno} imports {name}")
    assert not bad, bad


def test_the_rule_engine_loads_without_the_daemon():
    code = (
        "import sys\n"
        "from gex_alertd.rules import engine, registry\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    own = {m for m in out if m.startswith("gex_alertd")}
    assert own - ALLOWED_OWN == {m for m in own if m.startswith("gex_alertd.rules")}, own
    assert "gex_alertd.rules.threshold" in own
    assert not [m for m in out if m.split(".")[0] in HEAVY]


# what a checkout holds that the wheel is built from (the package and its data files)
CHECKOUT_FILES = ("pyproject.toml", "README.md", "config.example.yaml")
CHECKOUT_DIRS = ("daemon", "rules", "rules.d", "systemd", "docs")
INSTALL_PREFIX = "/opt/gex-alertd"  # the virtualenv docs/operations.md installs into


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # build from a copy of what a checkout holds, so the build leaves nothing in the work tree
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in CHECKOUT_FILES:
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for name in CHECKOUT_DIRS:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(src)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    (built,) = dist.glob("gex_alertd-*.whl")
    return built


def test_unit_docs_and_example_config_install_under_share(wheel: Path, tmp_path: Path) -> None:
    """The unit, its drop-ins, the example config and rules, the schemas and the docs the
    unit's Documentation= names land under <prefix>/share/ when the wheel is installed."""
    # a virtualenv of its own, as /opt/gex-alertd is (pip's --prefix would uninstall the
    # package from the running environment first)
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(prefix / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    share = prefix / "share" / "gex-alertd"
    shipped = {
        "gex-alertd.service": ROOT / "systemd" / "gex-alertd.service",
        "config.example.yaml": ROOT / "config.example.yaml",
        "config.schema.json": ROOT / "docs" / "config.schema.json",
        "gex-alertd.service.d/notify-reload.conf": ROOT / "systemd" / "gex-alertd.service.d"
        / "notify-reload.conf",
        "gex-alertd.service.d/example.conf": ROOT / "systemd" / "gex-alertd.service.d"
        / "example.conf",
    }  # fmt: skip
    for rel, original in shipped.items():
        assert (share / rel).read_bytes() == original.read_bytes(), rel
    rule_files = sorted(p.name for p in (ROOT / "rules.d").glob("*.yaml"))
    assert sorted(p.name for p in (share / "rules.d").glob("*.yaml")) == rule_files
    unit = (share / "gex-alertd.service").read_text()
    docs = [ln.split("=", 1)[1] for ln in unit.splitlines() if ln.startswith("Documentation=")]
    assert docs
    for uri in docs:
        assert uri.startswith(f"file:{INSTALL_PREFIX}/"), uri
        installed = prefix / uri.removeprefix(f"file:{INSTALL_PREFIX}/")
        assert installed.is_file(), f"{uri} is not installed by the wheel"


def test_wheel_holds_only_gex_alertd_and_runs_installed(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    meta = {t for t in tops if t.endswith((".dist-info", ".data"))}
    assert tops - meta == {"gex_alertd"}, tops
    data_dirs = {n.split("/")[1] for n in names if n.split("/")[0].endswith(".data")}
    assert data_dirs <= {"data"}, data_dirs  # data files only (share/...), no scripts or headers
    for data in (
        "gex_alertd/commit.lua",
        "gex_alertd/sources/simulator/scenarios/demo.yaml",
        "gex_alertd/rules/engine.py",
        "gex_alertd/rules/duration.py",
        "gex_alertd/notify/webhook.py",
        "gex_alertd/web/static/index.html",
        "gex_alertd/web/static/symbol.js",
        "gex_alertd/web/static/vendor/echarts/echarts.min.js",
        "gex_alertd/web/static/vendor/echarts/LICENSE",
        "gex_alertd/web/static/vendor/echarts/NOTICE",
    ):
        assert data in names, data

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        check=True, timeout=300, capture_output=True,
    )  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = (
        "import gex_alertd, gex_alertd.rules\n"
        "from gex_alertd.commit import LUA\n"
        "from gex_alertd.web.routes import _load_static\n"
        "assert 'vendor/echarts/echarts.min.js' in _load_static()\n"
        "from gex_alertd.sources.simulator.scenario import load_scenario\n"
        "assert load_scenario('demo').events\n"
        "print(gex_alertd.__file__); print(gex_alertd.rules.__file__)\n"
        "assert 'redis.call' in LUA\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    pkg, rules = out.stdout.split()
    assert Path(pkg).parent == site / "gex_alertd"
    assert Path(rules).parent == site / "gex_alertd" / "rules"
    for argv in (
        [sys.executable, "-m", "gex_alertd", "--help"],
        [sys.executable, str(site / "bin" / "gex-alertd"), "--help"],
    ):
        ran = subprocess.run(
            argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert ran.returncode == 0, ran.stderr
        assert "replay" in ran.stdout and "simulate" in ran.stdout
