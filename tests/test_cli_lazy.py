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


def test_run_does_not_import_the_other_commands_modules() -> None:
    probe = (
        "import sys\n"
        "from gex_alertd.cli import main\n"
        "try:\n"
        "    main(['run', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
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
