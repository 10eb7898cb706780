"""The `gex-alertd` command line (contract: design.md "CLI")."""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

import click

from gex_alertd import __version__, cli_signals, closed_stdout

# sysexits.h: a command used wrongly. Click says 2 for that, but 2 is a bad config here (the
# unit's RestartPreventExitStatus=2 relies on it), so usage errors get their own status.
EX_USAGE = 64


# Each command lives next to the code it drives; this is the one place that lists them. A
# command's module is imported when that command runs (or help lists it): `run` never loads the
# replay, report, simulator server or web command code (their imports are RSS for the daemon's
# whole life: issue 12).
COMMANDS = {
    "run": "gex_alertd.commands:run",
    "check": "gex_alertd.commands:check",
    "simulate": "gex_alertd.sources.simulator.command:simulate",
    "replay": "gex_alertd.replay:replay",
    "tail": "gex_alertd.commands:tail",
    "notify-test": "gex_alertd.notify.commands:notify_test",
    "outbox": "gex_alertd.notify.commands:outbox",
    "silence": "gex_alertd.notify.silence_command:silence",
    "schema": "gex_alertd.schema:schema",
    "reload": "gex_alertd.ops.reload_command:reload",
    "outcomes": "gex_alertd.outcomes.command:outcomes",
    "web": "gex_alertd.web.command:web",
    "migrate": "gex_alertd.migrate_command:migrate_command",
}
# Their stdout is a log (ops/logging.py drops and counts the lines it refuses), not output for a
# reader that may stop reading: closed_stdout's guard stays off them.
SERVERS = frozenset({"run", "web", "simulate"})


def _structlog_without_rich() -> None:
    """Import structlog with rich hidden from it, then unhidden. structlog imports rich (and
    through it pygments) when it is installed, for pretty console tracebacks; the daemon logs
    JSON (or plain console lines) and never needs them, yet they would be ~3 MB of its RSS for
    its whole life (issue 12). A command that renders tables still imports rich itself."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


class _Commands(click.Group):
    """The command group, with usage errors (unknown option, bad parameter, missing argument,
    at any depth) exiting EX_USAGE instead of click's 2, and its commands imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The process's entry (the console script, `python -m gex_alertd`; a test's CliRunner
        calls `main` and keeps its own stdout and signals): a closed stdout (`| head`) ends every
        command the same quiet way (closed_stdout.py), and SIGINT/SIGTERM stop it where it is
        (cli_signals.py), whatever the command's own handlers are."""
        closed_stdout.guard()
        cli_signals.install()
        try:
            try:
                return super().main(*args, **kwargs)
            finally:
                closed_stdout.flush()
        except closed_stdout.OutputClosed:
            closed_stdout.stop_quietly()

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args[:1] == ["run"]:  # about to run (not listed by help): before its ~0.5 s of imports
            from gex_alertd.ops import early_sighup

            early_sighup.install()
        if args[:1] and args[0] in SERVERS:
            closed_stdout.release()
            cli_signals.release()
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None or cmd_name in self.commands:
            return super().get_command(ctx, cmd_name)
        module, attr = where.split(":")
        if cmd_name == "run":
            _structlog_without_rich()
        cmd: click.Command = getattr(import_module(module), attr)
        self.add_command(cmd, cmd_name)
        return cmd

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            exc.exit_code = EX_USAGE  # type: ignore[misc]  # a ClassVar in the stubs; main() reads the instance
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except cli_signals.Stopped as exc:  # before click makes it "Aborted!" and exit 1
            cli_signals.exit_stopped(exc)
        except click.UsageError as exc:
            exc.exit_code = EX_USAGE  # type: ignore[misc]  # a ClassVar in the stubs; main() reads the instance
            raise


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="gex-alertd")
def main() -> None:
    """Streaming alerts on live dealer gamma exposure (Flow GEX)."""
