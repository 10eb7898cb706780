"""The `gex-alertd` command line (contract: design.md "CLI")."""

from __future__ import annotations

from typing import Any

import click

from gex_alertd import __version__

# sysexits.h: a command used wrongly. Click says 2 for that, but 2 is a bad config here (the
# unit's RestartPreventExitStatus=2 relies on it), so usage errors get their own status.
EX_USAGE = 64


class _Commands(click.Group):
    """The command group, with usage errors (unknown option, bad parameter, missing argument,
    at any depth) exiting EX_USAGE instead of click's 2."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as exc:
            exc.exit_code = EX_USAGE  # type: ignore[misc]  # a ClassVar in the stubs; main() reads the instance
            raise

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
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


def _register() -> None:
    # Each command lives next to the code it drives; this is the one place that lists them.
    from gex_alertd.commands import check, run, tail
    from gex_alertd.notify.commands import notify_test, outbox
    from gex_alertd.notify.silence_command import silence
    from gex_alertd.ops.reload_command import reload
    from gex_alertd.outcomes.command import outcomes
    from gex_alertd.replay import replay
    from gex_alertd.schema import schema
    from gex_alertd.sources.simulator.command import simulate
    from gex_alertd.web.command import web

    commands = (
        run, check, simulate, replay, tail, notify_test, outbox, silence, schema, reload, outcomes,
        web,
    )  # fmt: skip
    for cmd in commands:
        main.add_command(cmd)


_register()
