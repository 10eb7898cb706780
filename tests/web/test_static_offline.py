"""The page works with no internet: every script, style and link our static files name is
served by us (no CDN, no font or map service), and ECharts ships with its licence files."""

from __future__ import annotations

import re

from gex_alertd.web.routes import STATIC, _load_static

REMOTE = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}""")
REF = re.compile(r"""(?:src|href)\s*=\s*["']([^"']*)["']""")


def test_no_remote_reference_in_our_static_files() -> None:
    ours = [p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts]
    assert {p.suffix for p in ours} >= {".html", ".js", ".css"}
    served = _load_static()
    for path in ours:
        text = path.read_text()
        assert not REMOTE.search(text), f"{path.name}: {REMOTE.search(text)}"
        for ref in REF.findall(text):
            page = ref.split("?", 1)[0] in ("/", "/view")  # the two pages' routes
            local = ref.startswith("data:") or page or ref.removeprefix("/static/") in served
            assert local, f"{path.name} names {ref!r}, which this server does not serve"


def test_echarts_ships_with_its_licence() -> None:
    vendor = STATIC / "vendor" / "echarts"
    assert {"echarts.min.js", "LICENSE", "NOTICE"} <= {p.name for p in vendor.iterdir()}
    assert "Apache License" in (vendor / "LICENSE").read_text()
