from __future__ import annotations

import io

from gex_alertd.notify.base import Ok
from gex_alertd.notify.console import ConsoleChannel, ConsoleNotifier
from tests.notify.support import alert


async def test_one_plain_line_per_alert_when_not_a_tty() -> None:
    buf = io.StringIO()
    n = ConsoleNotifier("tty", ConsoleChannel(), stream=buf)
    assert isinstance(await n.send([alert(1), alert(2, "QQQ")]), Ok)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert "SPY" in lines[0] and "QQQ" in lines[1]
    assert "\x1b[" not in buf.getvalue()


async def test_colour_always() -> None:
    buf = io.StringIO()
    n = ConsoleNotifier("tty", ConsoleChannel(color="always"), stream=buf)
    await n.send([alert(1, severity="critical")])
    assert "\x1b[1;31m" in buf.getvalue()
