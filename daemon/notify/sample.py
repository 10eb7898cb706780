"""The sample alert `notify-test` and `check --probe` send: a realistic event, marked TEST."""

from __future__ import annotations

from datetime import UTC, datetime

from gex_alertd.model import AlertEvent, iso_utc


def sample_alert(channel: str) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(
        id=f"test-{channel}-{int(now.timestamp() * 1000)}",
        rule="notify-test",
        type="flip_cross",
        symbol="SPY",
        expiry=None,
        severity="warning",
        as_of=iso_utc(now),
        fired_at=iso_utc(now),
        summary="TEST: SPY crossed above the gamma flip 512.40 → 513.10 (sample alert)",
        details={"direction": "up", "spot": 513.1, "flip": 512.4, "previous_flip": 511.9,
                 "net_gex": -1.25e9},
    )  # fmt: skip
