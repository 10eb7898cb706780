"""The shipped unit passes `systemd-analyze verify` and scores <= 2.0 on `security --offline`.

`verify` insists that ExecStart's binary exists, so the unit is checked from a copy whose
ExecStart points at this checkout's `gex-alertd` console script (the installed path
/opt/gex-alertd/bin/gex-alertd does not exist on a build machine). Nothing else is changed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "gex-alertd.service"
DROPIN = ROOT / "systemd" / "gex-alertd.service.d" / "example.conf"
NOTIFY_RELOAD = ROOT / "systemd" / "gex-alertd.service.d" / "notify-reload.conf"
# Type=notify-reload and ReloadSignal= came with systemd 253
NOTIFY_RELOAD_SINCE = 253
INSTALLED_EXEC = "/opt/gex-alertd/bin/gex-alertd"
INSTALL_HINT = (
    "systemd-analyze not found: install it with `apt-get install -y systemd` (or `make test`)"
)
MAX_EXPOSURE = 2.0


def _analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    out = subprocess.run([binary, "--help"], capture_output=True, text=True, check=False).stdout
    if "--offline" not in out:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        pytest.fail(
            f"systemd-analyze lacks --offline (needs systemd >= 250): {version.splitlines()[0]}"
        )
    return binary


def _console_script() -> str:
    script = Path(sys.executable).with_name("gex-alertd")
    assert script.exists(), f"{script} missing: install the package (pip install -e .)"
    return str(script)


def _stage(tmp_path: Path, *dropins: Path) -> Path:
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_EXEC} " in text, "ExecStart moved: update INSTALLED_EXEC here"
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_EXEC, _console_script()))
    if dropins:
        d = tmp_path / f"{UNIT.name}.d"
        d.mkdir()
        for dropin in dropins:
            shutil.copy(dropin, d / dropin.name)
    return unit


def _systemd_version(binary: str) -> int:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    m = re.match(r"systemd (\d+)", out)
    assert m, out
    return int(m.group(1))


DROPINS = {"unit": (), "unit+dropin": (DROPIN,), "unit+notify-reload": (NOTIFY_RELOAD,)}


@pytest.mark.parametrize("with_dropin", [False, True], ids=["unit", "unit+dropin"])
def test_verify_accepts_unit(tmp_path: Path, with_dropin: bool) -> None:
    binary = _analyze()
    unit = _stage(tmp_path, *((DROPIN,) if with_dropin else ()))
    res = subprocess.run(
        [binary, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    # Unknown keys are only warnings (exit 0), so any message about our files is a failure too.
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if str(tmp_path) in ln]
    assert res.returncode == 0, res.stdout + res.stderr
    assert ours == [], "\n".join(ours)


def test_verify_accepts_the_notify_reload_dropin(tmp_path: Path) -> None:
    """On systemd >= 253 the drop-in verifies clean; an older systemd names exactly the two
    settings it does not know yet (so everything else in the drop-in parsed)."""
    binary = _analyze()
    unit = _stage(tmp_path, NOTIFY_RELOAD)
    res = subprocess.run(
        [binary, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if str(tmp_path) in ln]
    assert res.returncode == 0, res.stdout + res.stderr
    if _systemd_version(binary) >= NOTIFY_RELOAD_SINCE:
        assert ours == [], "\n".join(ours)
    else:
        assert len(ours) == 2, "\n".join(ours)
        assert "Failed to parse service type, ignoring: notify-reload" in ours[0]
        assert "Unknown key 'ReloadSignal'" in ours[1]


def test_notify_reload_dropin_replaces_the_reload_helper() -> None:
    lines = [ln for ln in NOTIFY_RELOAD.read_text().splitlines() if ln and ln[0] not in "#;"]
    assert lines == ["[Service]", "Type=notify-reload", "ReloadSignal=SIGHUP", "ExecReload="]


@pytest.mark.parametrize("dropins", list(DROPINS.values()), ids=list(DROPINS))
def test_security_exposure_at_most_2(tmp_path: Path, dropins: tuple[Path, ...]) -> None:
    binary = _analyze()
    unit = _stage(tmp_path, *dropins)
    res = subprocess.run(
        [binary, "security", "--offline=yes", "--no-pager", f"--threshold={int(MAX_EXPOSURE * 10)}",
         str(unit)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", res.stdout)
    assert m, f"no exposure score in output:\n{res.stdout}\n{res.stderr}"
    exposure = float(m.group(1))
    assert exposure <= MAX_EXPOSURE, res.stdout
    assert res.returncode == 0, res.stdout + res.stderr


def test_unit_declares_what_operations_relies_on() -> None:
    """The settings the daemon's behaviour depends on, so an edit cannot drop one silently."""
    text = UNIT.read_text()
    settings = dict(
        ln.split("=", 1) for ln in text.splitlines() if "=" in ln and not ln.startswith("#")
    )
    assert settings["Type"] == "notify"
    assert int(settings["WatchdogSec"]) > 0
    assert settings["Restart"] == "on-failure"
    assert "StartLimitBurst" in settings and "StartLimitIntervalSec" in settings
    assert "redis" in settings["After"] and "redis" in settings["Wants"]
    assert "--config /etc/gex-alertd/config.yaml" in settings["ExecStart"]
    # waits for the reload (ops/reload_status.py), in the runtime directory it writes to
    assert settings["ExecReload"] == f"{INSTALLED_EXEC} reload --wait --pid $MAINPID"
    assert settings["RuntimeDirectory"] == "gex-alertd"
    docs = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("Documentation=")]
    # what the wheel installs into the /opt/gex-alertd venv (tests/test_packaging.py finds them)
    assert docs == [
        "file:/opt/gex-alertd/share/doc/gex-alertd/operations.md",
        "file:/opt/gex-alertd/share/doc/gex-alertd/README.md",
    ]
    assert settings["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert settings["CapabilityBoundingSet"] == ""
    for key in ("DynamicUser", "ProtectHome", "PrivateTmp", "PrivateDevices", "NoNewPrivileges",
                "MemoryDenyWriteExecute", "LockPersonality", "RestrictNamespaces"):  # fmt: skip
        assert settings[key] == "yes", key
    assert settings["ProtectSystem"] == "strict"
    assert settings["SystemCallArchitectures"] == "native"
    assert "LoadCredential" in settings
    assert "SystemCallFilter=@system-service" in text.splitlines()
