"""structlog setup: JSON for journald, console on a TTY, per-task context, no secret anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from gex_alertd import redaction
from gex_alertd.ops import logging as ops_logging

SECRET = "sk-live-7f3a9c0e41d2b8"
QUOTED_SECRET = 'pa"ss\\word-9911'  # JSON escaping would hide it from a text match on the line


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_context() -> Iterator[None]:
    redaction.register(SECRET)
    redaction.register(QUOTED_SECRET)
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in out.getvalue().splitlines() if ln.strip()]


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    ops_logging.configure("auto", "info", out)
    structlog.get_logger("t").info("polled", symbol="SPY", n=3)
    (rec,) = lines(out)
    assert rec["event"] == "polled" and rec["symbol"] == "SPY" and rec["n"] == 3
    assert rec["level"] == "info" and "timestamp" in rec


def test_console_on_a_tty() -> None:
    out = Tty()
    ops_logging.configure("auto", "info", out)
    structlog.get_logger("t").warning("polled", symbol="QQQ")
    text = out.getvalue()
    assert "polled" in text and "QQQ" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_level_filters() -> None:
    out = io.StringIO()
    ops_logging.configure("json", "warning", out)
    structlog.get_logger("t").info("quiet")
    logging.getLogger("redis.test").info("quiet too")
    structlog.get_logger("t").warning("loud")
    assert [r["event"] for r in lines(out)] == ["loud"]
    with pytest.raises(ValueError, match="log level"):
        ops_logging.configure("json", "verbose", out)


async def test_context_bound_per_task() -> None:
    out = io.StringIO()
    ops_logging.configure("json", "info", out)
    log = structlog.get_logger("t")

    async def poll(symbol: str, gate: asyncio.Event) -> None:
        structlog.contextvars.bind_contextvars(symbol=symbol)
        await gate.wait()  # both tasks are bound before either logs
        log.info("polled")

    gate = asyncio.Event()
    tasks = [asyncio.create_task(poll(s, gate)) for s in ("SPY", "QQQ")]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert sorted(str(r["symbol"]) for r in lines(out)) == ["QQQ", "SPY"]


def test_stdlib_logging_goes_through_the_same_pipeline() -> None:
    out = io.StringIO()
    ops_logging.configure("json", "info", out)
    structlog.contextvars.bind_contextvars(channel="desk")
    logging.getLogger("aiohttp.client").warning("retrying %s", "upstream")
    (rec,) = lines(out)
    assert rec["event"] == "retrying upstream"
    assert rec["logger"] == "aiohttp.client" and rec["level"] == "warning"
    assert rec["channel"] == "desk"


def test_reconfigure_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    ops_logging.configure("json", "info", first)
    ops_logging.configure("json", "info", second)
    logging.getLogger("x").warning("once")
    assert first.getvalue() == "" and len(lines(second)) == 1


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_no_secret_in_any_rendered_line(fmt: ops_logging.Format) -> None:
    out = io.StringIO()
    ops_logging.configure(fmt, "debug", out)
    log = structlog.get_logger("t")
    log.info(f"event text {SECRET}", url=f"https://hooks.example/{SECRET}", nested={"k": [SECRET]})
    log.info("quoted", password=QUOTED_SECRET)
    log.info("object", err=ValueError(f"bad key {SECRET}"))
    try:
        raise RuntimeError(f"upstream refused key {SECRET}")
    except RuntimeError:
        log.exception("poll failed")
        logging.getLogger("aiohttp.client").exception("lib failed with %s", SECRET)
    logging.getLogger("redis").error("auth %s", f"redis://user:{QUOTED_SECRET}@host:6379")
    text = out.getvalue()
    assert "upstream refused key ***" in text  # the traceback is there, scrubbed
    assert SECRET not in text
    assert QUOTED_SECRET not in text
    assert json.dumps(QUOTED_SECRET)[1:-1] not in text
    assert "pa" + '\\"' + "ss" not in text


def test_journal_priority_prefix_only_on_the_journal_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "journal").open("w+") as journal, (tmp_path / "file").open("w+") as other:
        st = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        ops_logging.configure("auto", "debug", journal)
        structlog.get_logger("t").warning("careful", symbol="SPY")
        logging.getLogger("redis").error("down")
        structlog.get_logger("t").debug("detail")
        ops_logging.configure("auto", "info", other)  # not the journal: plain JSON lines
        structlog.get_logger("t").warning("careful")
        journal.seek(0)
        other.seek(0)
        got = journal.read().splitlines()
        plain = other.read().splitlines()
    assert [ln[:3] for ln in got] == ["<4>", "<3>", "<7>"]
    assert json.loads(got[0][3:])["event"] == "careful"
    assert json.loads(plain[0])["event"] == "careful"


class Refusing(io.StringIO):
    """A stream whose reader went away (EPIPE), until `refuse` is cleared."""

    refuse = True

    def write(self, s: str) -> int:
        if self.refuse:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(s)


def test_a_stream_that_refuses_lines_loses_them_without_raising_and_health_says_so() -> None:
    # raised, the error came out of every log call in the daemon (SIGTERM's own log line)
    saved = ops_logging._output
    out = Refusing()
    try:
        ops_logging.configure("json", "info", out)
        structlog.get_logger().info("lost")
        logging.getLogger("somelib").warning("lost too")
        problem = ops_logging.output_problem()
        assert problem is not None and "log output refused (Broken pipe)" in problem
        assert "2 log lines lost" in problem
        out.refuse = False  # e.g. a full disk with room again
        structlog.get_logger().info("kept")
        assert ops_logging.output_problem() is None
        assert [e["event"] for e in lines(out)] == ["kept"]
    finally:
        ops_logging._output = saved


# stdout as Debian 12's Python 3.11.2 leaves it after EPIPE: the refused bytes stay buffered and
# every later flush, the interpreter's last one at exit among them, tries them again
_KEEPS_REFUSED_BYTES = """
import os, sys
import structlog
from gex_alertd.ops import logging as ops_logging

class KeepsRefusedBytes:
    closed = False
    def __init__(self, fd): self.fd, self.pending = fd, b""
    def write(self, s): self.pending += s.encode(); return len(s)
    def flush(self):
        if self.pending:
            os.write(self.fd, self.pending)
            self.pending = b""
    def fileno(self): return self.fd
    def isatty(self): return False

sys.stdout = KeepsRefusedBytes(1)
ops_logging.configure("json", "info")
structlog.get_logger().info("nobody reads this")
"""


def test_a_stdout_nobody_reads_leaves_the_exit_status_alone() -> None:
    # the daemon's exit 0 after SIGTERM came out as 120 ("Exception ignored ... BrokenPipeError")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before the first line
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _KEEPS_REFUSED_BYTES],
            stdout=write_end, stderr=subprocess.PIPE, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert (proc.returncode, proc.stderr.decode()) == (0, "")
