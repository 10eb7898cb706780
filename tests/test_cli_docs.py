"""The README's command line is the real one: every command and option it names exists in
`gex-alertd` (click), every command is in its Commands table, and every option of every
command is told somewhere in the README (a newcomer finds it without reading --help)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from gex_alertd.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
_CTX = click.Context(main)


def command(name: str) -> click.Command:
    cmd = main.get_command(_CTX, name)
    assert cmd is not None, f"README names `gex-alertd {name}`, which does not exist"
    return cmd


def options(cmd: click.Command) -> set[str]:
    """Every option spelling of the command and of its subcommands (`outbox retry --all`)."""
    out: set[str] = set()
    for p in cmd.params:
        if isinstance(p, click.Option):
            out.update(p.opts, p.secondary_opts)
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            out |= options(sub)
    return out


def _table() -> list[str]:
    section = README.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    return [
        m.group(1).replace("\\|", "|")
        for line in section.splitlines()
        if (m := re.match(r"\| `(gex-alertd [^`]*)`", line))
    ]


def usages() -> list[str]:
    """Every command line the README shows: the Commands table, inline code, bash blocks."""
    spans = [s.replace("\\|", "|") for s in re.findall(r"`(gex-alertd [^`]*)`", README)]
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        spans += [ln.split("#")[0] for ln in block.splitlines() if ln.startswith("gex-alertd ")]
    return spans


USAGES = usages()


def test_the_usages_are_found() -> None:
    assert len(_table()) >= 13 and len(USAGES) > len(_table())


@pytest.mark.parametrize("usage", USAGES)
def test_every_option_the_readme_names_exists(usage: str) -> None:
    name = usage.split()[1]
    cmd = command(name)
    named = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))
    unknown = sorted(named - options(cmd) - {"--help", "-h"})
    assert unknown == [], f"`{usage}`: no such option of `gex-alertd {name}`"
    if isinstance(cmd, click.Group):
        # the alternatives in brackets name subcommands: `[add | list | expire ID]`
        subs = set(re.findall(r"[\[|]\s*([a-z][a-z-]*)\b(?!-)", usage))
        assert subs <= set(cmd.commands), (usage, sorted(cmd.commands))


def test_every_command_is_in_the_table() -> None:
    tabled = {row.split()[1] for row in _table()}
    assert tabled == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_told_in_the_readme(name: str) -> None:
    untold = sorted(
        o
        for o in options(command(name))
        if o.startswith("--") and o != "--help" and not re.search(rf"(?<![\w-]){o}\b", README)
    )
    assert untold == [], f"options of `gex-alertd {name}` the README does not mention"
