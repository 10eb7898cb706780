"""Outcomes on synthetic paths whose answers are known by construction."""

from __future__ import annotations

import itertools
import math
from datetime import datetime

import msgspec
import pytest

from gex_alertd.model import AlertEvent
from gex_alertd.ops.calendar import NEW_YORK
from gex_alertd.outcomes.alerts import is_signal
from gex_alertd.outcomes.horizons import Horizon, parse_horizon, parse_horizons
from gex_alertd.outcomes.measure import (
    TRADING_YEAR_S,
    direction_sign,
    level_of,
    measure,
)
from gex_alertd.outcomes.paths import SpotPath
from tests.support.nyse import nyse_sessions

MIN = 60_000
SESSIONS = nyse_sessions()


def et(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, s, tzinfo=NEW_YORK).timestamp() * 1000)


def minutes_path(start_ms: int, spots: list[float], step_ms: int = MIN) -> SpotPath:
    return SpotPath.of([start_ms + i * step_ms for i in range(len(spots))], spots)


def vol(returns: list[float], seconds: float) -> float:
    return 100 * math.sqrt(sum(r * r for r in returns) * TRADING_YEAR_S / seconds)


def event(type_: str, details: dict) -> AlertEvent:
    return AlertEvent(
        id="al_x", rule="r", type=type_, symbol="SPY", expiry=None, severity="info", as_of="",
        fired_at="", summary="", details=details,
    )  # fmt: skip


H5 = Horizon("5m", 300.0)
H30 = Horizon("30m", 1800.0)
CLOSE = Horizon("close", None)
MONDAY = (2026, 5, 11)


def test_move_excursions_and_vol_on_a_known_path() -> None:
    t0 = et(*MONDAY, 10, 0)
    spots = [100.0, 101.0, 99.0, 102.0, 100.5, 103.0, 104.0, 90.0]
    path = minutes_path(t0 - 5 * MIN, [100.0] * 5 + spots)
    out = measure(path, t0, H5, close_ms=SESSIONS.close_ms(t0))
    assert out.status == "ok" and out.samples == 6 and not out.capped
    assert out.end_ms == t0 + 5 * MIN and out.end_spot == 103.0
    assert out.change_pct == pytest.approx(3.0, abs=1e-12)
    assert out.move_pct == out.change_pct
    assert out.mfe_pct == pytest.approx(3.0, abs=1e-12)
    assert out.mae_pct == pytest.approx(-1.0, abs=1e-12)
    logs = [math.log(b / a) for a, b in itertools.pairwise(spots[:6])]
    assert out.vol_after_pct == pytest.approx(vol(logs, 300), rel=1e-12)
    assert out.vol_before_pct == 0.0  # five flat minutes before the alert
    assert out.max_gap_s == 60.0


def test_direction_sign_mapping_and_signed_moves() -> None:
    assert direction_sign(event("flip_cross", {"direction": "up"})) == 1
    assert direction_sign(event("flip_cross", {"direction": "down"})) == -1
    assert direction_sign(event("net_gex_sign", {"direction": "to_positive"})) == 1
    assert direction_sign(event("net_gex_sign", {"direction": "to_negative"})) == -1
    assert direction_sign(event("threshold", {"direction": "up"})) == 0
    assert direction_sign(event("oi_change", {})) == 0
    t0 = et(*MONDAY, 10, 0)
    path = minutes_path(t0, [100.0, 98.0, 101.0, 99.0, 99.0, 99.0])
    down = measure(path, t0, H5, close_ms=SESSIONS.close_ms(t0), sign=-1)
    assert down.change_pct == pytest.approx(-1.0, abs=1e-12)
    assert down.move_pct == pytest.approx(1.0, abs=1e-12)  # spot fell: good for a cross down
    assert down.mfe_pct == pytest.approx(2.0, abs=1e-12)
    assert down.mae_pct == pytest.approx(-1.0, abs=1e-12)


def test_horizon_past_the_close_ends_at_the_close_and_ignores_the_post_market() -> None:
    close = et(*MONDAY, 16, 0)
    t0 = close - 10 * MIN
    # every minute to 16:20, the post-market (after 16:00) jumps to 150
    spots = [100.0 + i * 0.1 for i in range(11)] + [150.0] * 20
    path = minutes_path(t0, spots)
    out = measure(path, t0, H30, close_ms=SESSIONS.close_ms(t0))
    assert out.capped and out.end_ms == close and out.status == "ok"
    assert out.end_spot == pytest.approx(101.0)
    assert out.mfe_pct == pytest.approx(1.0, rel=1e-9)
    to_close = measure(path, t0, CLOSE, close_ms=SESSIONS.close_ms(t0))
    assert to_close.end_ms == close and to_close.end_spot == out.end_spot and not to_close.capped


def test_early_close_from_the_calendar() -> None:
    # 2026-11-27, the day after Thanksgiving: NYSE closes at 13:00 ET
    close = et(2026, 11, 27, 13, 0)
    t0 = close - 20 * MIN
    assert SESSIONS.close_ms(t0) == close
    path = minutes_path(t0, [100.0] * 21 + [200.0] * 60)
    out = measure(path, t0, H30, close_ms=SESSIONS.close_ms(t0))
    assert out.capped and out.end_ms == close and out.move_pct == 0.0


def test_alert_on_the_last_snapshot_of_the_day() -> None:
    close = et(*MONDAY, 16, 0)
    t0 = close - 30_000  # 15:59:30, nothing more stored until the next morning
    next_open = et(2026, 5, 12, 9, 30)
    path = SpotPath.of([t0 - MIN, t0, next_open, next_open + MIN], [99.0, 100.0, 120.0, 121.0])
    five = measure(path, t0, H5, close_ms=SESSIONS.close_ms(t0))
    assert five.status == "ok" and five.capped and five.end_ms == close
    assert five.samples == 1 and five.move_pct == 0.0 and five.max_gap_s == 30.0
    assert five.mfe_pct == 0.0 and five.mae_pct == 0.0 and five.vol_after_pct == 0.0
    to_close = measure(path, t0, CLOSE, close_ms=SESSIONS.close_ms(t0))
    assert to_close.status == "ok" and to_close.end_spot == 100.0


def test_gap_in_the_snapshots_is_reported_and_carries_the_last_price() -> None:
    t0 = et(*MONDAY, 10, 0)
    # a snapshot a minute for 5 minutes, then nothing for 20 minutes, then every minute again
    times = [t0 + i * MIN for i in range(6)] + [t0 + (25 + i) * MIN for i in range(10)]
    spots = [100.0, 100.5, 101.0, 100.8, 100.9, 101.2] + [95.0] * 10
    path = SpotPath.of(times, spots)
    h15 = Horizon("15m", 900.0)
    out = measure(path, t0, h15, close_ms=SESSIONS.close_ms(t0), max_gap_s=599)
    assert out.status == "gap" and out.max_gap_s == 600.0  # 10:05 to the end at 10:15
    assert out.end_spot == 101.2 and out.samples == 6
    # a hole of exactly the limit is not longer than it
    assert measure(path, t0, h15, close_ms=SESSIONS.close_ms(t0), max_gap_s=600).status == "ok"
    longer = measure(path, t0, H30, close_ms=SESSIONS.close_ms(t0), max_gap_s=600)
    assert longer.status == "gap" and longer.max_gap_s == 20 * 60.0
    assert longer.end_spot == 95.0  # the data resumed at 10:25 and the end (10:30) sees it
    tolerant = measure(path, t0, H30, close_ms=SESSIONS.close_ms(t0), max_gap_s=1800)
    assert tolerant.status == "ok" and tolerant.change_pct == pytest.approx(-5.0)


def test_halted_symbol() -> None:
    t0 = et(*MONDAY, 11, 0)
    # (a) the provider keeps serving the halted price: a flat path, an exact zero
    flat = minutes_path(t0 - 10 * MIN, [100.0] * 10 + [100.0] * 31)
    a = measure(flat, t0, H30, close_ms=SESSIONS.close_ms(t0))
    assert a.status == "ok" and a.move_pct == 0.0 and a.vol_after_pct == 0.0
    assert a.vol_before_pct == 0.0 and a.mfe_pct == 0.0 and a.mae_pct == 0.0
    # (b) no new as_of while halted (every poll a repeat, none stored) until 12:00
    resumed = et(*MONDAY, 12, 0)
    sparse = SpotPath.of([t0 - MIN, t0, resumed, resumed + MIN], [99.0, 100.0, 90.0, 91.0])
    b = measure(sparse, t0, H30, close_ms=SESSIONS.close_ms(t0))
    assert b.status == "gap" and b.end_spot == 100.0 and b.max_gap_s == 1800.0
    c = measure(sparse, t0, Horizon("90m", 5400.0), close_ms=SESSIONS.close_ms(t0))
    assert c.status == "gap" and c.end_spot == 91.0 and c.mae_pct == pytest.approx(-10.0)


def test_held_and_broke_as_the_wall_statistics_define_it() -> None:
    t0 = et(*MONDAY, 10, 0)
    ev = event("flip_cross", {"direction": "up", "flip": 100.0, "spot": 101.0})
    assert level_of(ev) == 100.0
    held = minutes_path(t0, [101.0, 100.5, 100.01, 102.0, 101.0, 100.2])
    broke = minutes_path(t0, [101.0, 100.5, 100.0, 102.0, 101.0, 100.2])  # touched: broke
    close = SESSIONS.close_ms(t0)
    assert measure(held, t0, H5, close_ms=close, sign=1, level=100.0).held is True
    assert measure(broke, t0, H5, close_ms=close, sign=1, level=100.0).held is False
    # a call wall above spot holds while every price stays below it
    wall = minutes_path(t0, [99.0, 99.5, 99.9, 99.0, 98.0, 99.99])
    assert measure(wall, t0, H5, close_ms=close, level=100.0).held is True
    assert level_of(event("wall_shift", {"wall": "call", "from": 605.0, "to": 610.0})) == 610.0
    prox = {"level": "put_wall", "level_value": 590.0, "zone": "entered"}
    assert level_of(event("level_proximity", prox)) == 590.0
    assert level_of(event("flip_guard", {"flip": None, "reason": "unavailable"})) is None
    assert level_of(event("oi_change", {"strikes": []})) is None


def test_no_data_and_no_session() -> None:
    t0 = et(*MONDAY, 10, 0)
    path = minutes_path(t0 + MIN, [100.0, 101.0])
    assert measure(path, t0, H5, close_ms=SESSIONS.close_ms(t0)).status == "no_data"
    saturday = et(2026, 5, 9, 12, 0)
    assert SESSIONS.close_ms(saturday) is None
    sat_path = minutes_path(saturday, [100.0] * 10)
    assert measure(sat_path, saturday, CLOSE, close_ms=None).status == "no_session"
    five = measure(sat_path, saturday, H5, close_ms=None)
    assert five.status == "ok" and not five.capped and five.end_ms == saturday + 5 * MIN
    after = et(*MONDAY, 16, 30)  # post-market: the day's close is behind it
    post = measure(minutes_path(after, [1.0] * 3), after, CLOSE, close_ms=SESSIONS.close_ms(after))
    assert post.status == "no_session"


def test_pre_alert_window_never_spans_the_night() -> None:
    open_ = et(2026, 5, 12, 9, 30)
    prev_close = et(*MONDAY, 16, 0)
    t0 = open_ + 10 * MIN
    spots = [100.0 * math.exp(0.001 * (i % 2)) for i in range(41)]
    path = SpotPath.of([prev_close - MIN, prev_close] + [open_ + i * MIN for i in range(41)],
                       [50.0, 50.0, *spots])  # fmt: skip
    out = measure(path, t0, H30, close_ms=SESSIONS.close_ms(t0))
    # the 30 minutes before 09:40 reach into the night: only 09:30-09:40 counts, over 10 minutes
    assert out.vol_before_pct == pytest.approx(vol([0.001] * 10, 600), rel=1e-9)


def test_horizon_parsing() -> None:
    assert parse_horizon("close") == Horizon("close", None)
    assert parse_horizon("1h") == Horizon("60m", 3600.0)
    assert parse_horizon("90s") == Horizon("90s", 90.0)
    assert [h.label for h in parse_horizons("5m, 30m,close,5m")] == ["5m", "30m", "close"]
    for bad in ("0m", "soon", ""):
        with pytest.raises(ValueError):
            parse_horizons(bad)


@pytest.mark.parametrize(
    ("type_", "status", "signal"),
    [
        ("flip_cross", "firing", True),
        ("wall_shift", "firing", True),
        ("flip_cross", "resolved", False),
        ("flip_guard", "firing", False),  # judges the data, not the market
        ("stale_data", "firing", False),
        ("source_failing", "firing", False),
        ("heartbeat", "firing", False),
        ("outcome", "firing", False),
    ],
)
def test_which_alerts_are_signals(type_: str, status: str, signal: bool) -> None:
    ev = msgspec.structs.replace(event(type_, {}), status=status)
    assert is_signal(ev) is signal


def test_a_window_not_ended_at_the_time_of_measuring_is_open() -> None:
    t0 = et(*MONDAY, 10, 0)
    path = minutes_path(t0, [100.0, 101.0, 102.0, 103.0])  # to 10:03
    close = SESSIONS.close_ms(t0)
    running = measure(path, t0, H5, close_ms=close, now_ms=t0 + 4 * MIN)
    assert running.status == "open" and not running.counted
    assert running.end_ms == t0 + 5 * MIN and running.move_pct is None
    # at its end it has ended: the figures can no longer change
    ended = measure(path, t0, H5, close_ms=close, now_ms=t0 + 5 * MIN)
    assert ended.status == "ok" and ended.change_pct == pytest.approx(3.0)
    assert measure(path, t0, H5, close_ms=close) == ended  # no time given: measured as ended
    assert measure(path, t0, CLOSE, close_ms=close, now_ms=t0 + 5 * MIN).status == "open"


def test_a_window_is_open_until_the_stream_passes_its_end_or_it_settled() -> None:
    """The live duty's test (outcomes/live.py): a window has ended once its stream holds a
    snapshot at or after its end, or `outcomes.settle` after the end by the clock. Until then
    a snapshot of an earlier as_of can still be stored (the provider's as_of lags the clock by
    its cache; a poll takes its time), and it would change the figures: the report made a
    minute after the end and the duty's outcome a little later differed."""
    t0 = et(*MONDAY, 10, 0)
    close = SESSIONS.close_ms(t0)
    settle = 15 * MIN
    early = minutes_path(t0, [100.0, 101.0, 102.0, 103.0])  # to 10:03, the stream's top
    after_end = t0 + 6 * MIN
    got = measure(early, t0, H5, close_ms=close, now_ms=after_end, settle_ms=settle)
    assert got.status == "open" and not got.counted
    # 10:04 stored late, then 10:05: the stream reached the end, and the figures moved
    late = minutes_path(t0, [100.0, 101.0, 102.0, 103.0, 99.0, 99.5])
    ended = measure(late, t0, H5, close_ms=close, now_ms=after_end, settle_ms=settle)
    assert ended.status == "ok" and ended.end_spot == 99.5
    assert ended == measure(late, t0, H5, close_ms=close)  # the duty's figures
    # a stream that never gets there: settled by the clock, measured (a gap at its end)
    settled = measure(early, t0, H5, close_ms=close, now_ms=t0 + 20 * MIN, settle_ms=settle)
    assert settled.status == "ok" and settled.end_spot == 103.0
