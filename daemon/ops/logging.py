"""structlog setup: JSON lines for journald, a readable console on a TTY, secrets scrubbed.

Both structlog's own loggers and the standard library's (aiohttp, apscheduler, redis) end in the
same tail of processors, so every line has the same shape and passes the same redaction. The
redaction runs twice: on every value before rendering (JSON escaping could otherwise hide a
secret from a text match) and on the rendered line (tracebacks, reprs, console formatting).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import IO, Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gex_alertd.closed_stdout import to_devnull
from gex_alertd.redaction import redact

Format = Literal["auto", "json", "console"]
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip
# per-event noise at INFO from libraries (apscheduler logs every job run)
_CHATTY = ("apscheduler", "aiohttp.access")
# keys the renderer needs as objects (console renderer formats exc_info itself)
_PASSTHROUGH = frozenset({"exc_info", "_record", "_from_structlog", "stack_info"})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    # objects (exceptions, URLs, structs) are rendered through str so their text gets scrubbed
    return redact(str(value))


def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Scrub every value of the event (recursively) before it is rendered."""
    return {k: (v if k in _PASSTHROUGH else _scrub(v)) for k, v in event_dict.items()}


def redact_rendered(_: WrappedLogger, __: str, rendered: Any) -> Any:
    """Last step, after the renderer: the final text, tracebacks included."""
    if isinstance(rendered, str):
        return redact(rendered)
    if isinstance(rendered, bytes):
        return redact(rendered.decode("utf-8", "replace")).encode()
    return rendered


def _renderer(fmt: Format, stream: IO[str]) -> tuple[list[Processor], Processor]:
    """(processors before rendering, renderer) for the chosen format."""
    isatty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and isatty):
        return [], structlog.dev.ConsoleRenderer(colors=isatty)
    # JSON: tracebacks become a string field, so journald keeps one entry per event
    return [structlog.processors.format_exc_info], structlog.processors.JSONRenderer()


_JOURNAL_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3,
                     "exception": 3, "critical": 2}  # fmt: skip


def _is_journal(stream: IO[str]) -> bool:
    """True when the stream is systemd's journal connection ($JOURNAL_STREAM is its dev:inode)."""
    expected = os.environ.get("JOURNAL_STREAM")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class _JournalPriority:
    """Prefix each line with `<N>` so journald records its priority (`journalctl -p warning`);
    journald strips the prefix, so the stored message is still the bare JSON object."""

    def __init__(self, renderer: Processor) -> None:
        self._renderer = renderer

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> Any:
        level = str(event_dict.get("level", name)).lower()
        rendered = self._renderer(logger, name, event_dict)
        # both renderers _renderer picks produce text (JSONRenderer with the json module's dumps)
        assert isinstance(rendered, str)
        return f"<{_JOURNAL_PRIORITY.get(level, 6)}>{rendered}"


class _Output:
    """The log's stream as structlog's PrintLogger and the stdlib handler write to it: a line
    the stream cannot take (its reader went away: a pipe nobody reads any more, journald gone,
    EPIPE; a full disk) is dropped and counted, not raised into the code that logged it.
    Raised, it came out of every log call: SIGTERM's own log line kept the daemon from
    stopping, the simulator answered 500 to every poll. /healthz says so (`output_problem`)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.dropped = 0  # lines the stream refused
        self.failing: str | None = None  # why the last line was refused; None once one goes
        self._line_failed = False  # a write of this line failed (a flush after it may not)

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            self._line_failed = True
            self.failing = exc.strerror or type(exc).__name__
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            self._line_failed = True
            self.failing = exc.strerror or type(exc).__name__
        if self._line_failed:
            self.dropped += 1
        else:
            self.failing = None
        self._line_failed = False

    def settle(self) -> None:
        """At exit: make the interpreter's last flush of the stream harmless. After EPIPE a
        stream can keep the bytes it could not write (Debian 12's Python 3.11.2 does; 3.11.7
        drops them), so that flush fails again: "Exception ignored ... BrokenPipeError" and
        exit status 120 instead of the daemon's own. Those lines are lost either way: the
        stream's descriptor is pointed at /dev/null, where they go."""
        try:
            self.stream.flush()
            return
        except ValueError:  # closed: nothing left to flush
            return
        except OSError:
            pass
        try:
            fd = self.stream.fileno()
        except (OSError, ValueError):  # no descriptor (a StringIO): nothing to redirect
            return
        to_devnull(fd)
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


_output: _Output | None = None  # the configured one


def _settle_at_exit() -> None:
    if _output is not None:
        _output.settle()


# runs before the interpreter's own flush of sys.stdout (and before logging's shutdown)
atexit.register(_settle_at_exit)


def output_problem() -> str | None:
    """Why log lines are being lost now (for /healthz), or None."""
    out = _output
    if out is None or out.failing is None:
        return None
    return f"log output refused ({out.failing}): {out.dropped} log lines lost so far"


class _OurHandler(logging.StreamHandler):
    """Marks the handler we installed so a second configure() replaces it instead of adding one."""


def configure(fmt: Format = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    out = sys.stdout if stream is None else stream
    lvl = _LEVELS.get(level.lower())
    if lvl is None:
        raise ValueError(f"log level: expected one of {', '.join(_LEVELS)}, got {level!r}")
    pre_render, renderer = _renderer(fmt, out)
    if _is_journal(out):
        renderer = _JournalPriority(renderer)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Processor] = [*pre_render, redact_event, renderer, redact_rendered]
    global _output
    output = _output = _Output(out)

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(output),  # type: ignore[arg-type]  # a file enough for print()
        # False so a later configure() (tests, a reload changing the format) takes effect on
        # module-level loggers that were already used
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
    )
    handler = _OurHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(lvl, logging.WARNING))
    logging.captureWarnings(True)
