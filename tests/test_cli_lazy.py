"""The CLI imports a command's module only when that command is used (issue 12: what `run`
imports stays in the daemon's RSS for its whole life)."""

from __future__ import annotations

import subprocess
import sys

import click

from gex_alertd.cli import COMMANDS, main


def test_every_listed_command_resolves_to_itself() -> None:
    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        cmd = main.get_command(ctx, name)
        assert isinstance(cmd, click.Command) and cmd.name == name
    assert main.get_command(ctx, "nope") is None


# a fresh interpreter that loads `gex-alertd run` as the CLI does (its --help stops before the
# daemon starts), then runs `then`; its stdout
_AFTER_RUN_HELP = (
    "import sys\n"
    "from gex_alertd.cli import main\n"
    "try:\n"
    "    main(['run', '--help'])\n"
    "except SystemExit:\n"
    "    pass\n"
)


def _after_run_help(then: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", _AFTER_RUN_HELP + then],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


def test_run_does_not_import_the_other_commands_modules() -> None:
    out = _after_run_help("print(' '.join(sorted(sys.modules)))\n").split()
    assert "gex_alertd.commands" in out
    for other in (
        "gex_alertd.replay",
        "gex_alertd.sources.simulator.command",
        "gex_alertd.sources.simulator.server",
        "gex_alertd.outcomes.command",
        "gex_alertd.web.command",
        "gex_alertd.schema",
        "gex_alertd.notify.commands",
        "gex_alertd.notify.silence_command",
        "gex_alertd.ops.reload_command",
    ):
        assert other not in out, other


def test_run_loads_the_daemon_without_rich_and_other_commands_still_have_it() -> None:
    # rich (and pygments through it) is ~3 MB of a daemon's RSS: structlog would import it for
    # console tracebacks, the outcome duty for report tables it never renders
    probe = (
        "import io\n"
        "import gex_alertd.app, gex_alertd.outcomes.live, gex_alertd.notify.dispatch\n"
        "from gex_alertd.ops.logging import configure\n"
        "daemon = [m for m in sys.modules if m.split('.')[0] in ('rich', 'pygments')]\n"
        "out = io.StringIO()\n"
        "configure('console', 'info', out)\n"
        "import structlog\n"
        "try:\n"
        "    1 / 0\n"
        "except ZeroDivisionError:\n"
        "    structlog.get_logger().exception('boom')\n"
        "from gex_alertd.outcomes import report\n"
        "from rich.table import Table\n"
        "print(repr(daemon), 'ZeroDivisionError' in out.getvalue(), 'boom' in out.getvalue())\n"
    )
    out = _after_run_help(probe).splitlines()
    assert out[-1].split() == ["[]", "True", "True"]  # after run's --help text
