"""The index page in Debian's chromium: every watched target listed with its newest values,
sortable by clicking a column, no console error; a screenshot is saved. And the symbol
page's settled overlay: drawn when the day's settled profile is stored, absent otherwise."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import redis.asyncio as aioredis

from gex_alertd.model import decode_flow_gex
from tests.support.browser import open_browser, screenshot_path
from tests.support.wait import eventually
from tests.web.conftest import Page, body, put, store_settled

FLIPS = {"SPY": 495.0, "QQQ": 430.0}


async def _rows(page: object) -> list[list[str]]:
    return await page.eval_on_selector_all(  # type: ignore[attr-defined]  # a playwright Page
        "#symbols tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )


async def test_the_index_lists_and_sorts(redis: aioredis.Redis, page: Page, tmp_path: Path) -> None:
    for i in range(3):
        await put(redis, i, "SPY", spot=500.0 + i, flip=495.0)
        await put(redis, i, "QQQ", spot=440.0 - i, flip=450.0)
    async with open_browser(tmp_path / "profile") as browser:
        tab = await browser.context.new_page()
        browser.watch(tab)
        await tab.goto(page.url + "/")
        await eventually(lambda: _count(tab, 3), "three rows (SPY, QQQ and the SPX expiry entry)")
        rows = await _rows(tab)
        assert [r[0] for r in rows] == ["QQQ", "SPX", "SPY"]  # by symbol first
        await tab.click("th[data-key=flip_distance_pct]")
        rows = await _rows(tab)
        # QQQ is below its flip (negative distance), SPY above; SPX has no data: last
        assert [r[0] for r in rows] == ["QQQ", "SPY", "SPX"]
        await tab.click("th[data-key=flip_distance_pct]")
        assert [r[0] for r in await _rows(tab)] == ["SPY", "QQQ", "SPX"]
        await tab.click("th[data-key=symbol]")
        assert [r[0] for r in await _rows(tab)] == ["QQQ", "SPX", "SPY"]
        health = {r[0]: r[7] for r in await _rows(tab)}
        assert health["SPX"] == "stale"  # nothing stored for it
        await tab.screenshot(path=str(screenshot_path("index.png")), full_page=True)
        assert browser.errors == []


async def _count(tab: object, n: int) -> bool:
    return len(await _rows(tab)) == n


PROFILE = "window.gexPage.prof.getOption().series.map(s => s.id)"
LINES = """Object.fromEntries(window.gexPage.heat.getOption().series
    .filter(s => s.id.startsWith('line-')).map(s => [s.id, s.data]))"""
MARKS = """window.gexPage.prof.getOption().series.find(s => s.id === 'net')
    .markLine.data.map(m => m.label.formatter)"""


async def test_the_settled_overlay_only_when_stored(
    redis: aioredis.Redis, page: Page, tmp_path: Path
) -> None:
    for i in range(3):
        await put(redis, i)
    async with open_browser(tmp_path / "profile") as browser:
        tab = await browser.context.new_page()
        browser.watch(tab)
        await tab.goto(page.url + "/view?symbol=SPY")
        await tab.wait_for_function("window.gexPage && window.gexPage.grid.columns === 3")
        assert await tab.evaluate(PROFILE) == ["call", "put", "net"]
        # spot, the flip and both walls drawn over time: one point a snapshot, at its value
        lines = await tab.evaluate(LINES)
        assert set(lines) == {"line-spot", "line-flip", "line-call_wall", "line-put_wall"}
        assert [p[2] for p in lines["line-spot"]] == pytest.approx([500.0, 500.1, 500.2])
        assert [p[2] for p in lines["line-flip"]] == [495.0] * 3
        assert all(len(v) == 3 and None not in [p[2] for p in v] for v in lines.values())
        # and marked on the current profile
        marks = await tab.evaluate(MARKS)
        assert {m.split(" ")[0] for m in marks} >= {"spot", "gamma", "call", "put"}
        assert await tab.inner_text("#net") not in ("", "–")
        settled = decode_flow_gex(msgspec.json.encode(body(0, spot=499.0)))
        await store_settled(redis, settled)
        await tab.reload()
        await tab.wait_for_function("window.gexPage && window.gexPage.grid.columns === 3")
        assert await tab.evaluate(PROFILE) == ["call", "put", "net", "settled", "diff"]
        diff = await tab.evaluate(
            "window.gexPage.prof.getOption().series.find(s => s.id === 'diff').data"
        )
        assert any(v not in (None, 0) for v in diff)
        assert browser.errors == []
