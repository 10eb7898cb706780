import click


@click.command()
def replay() -> None:
    """Run rules over stored history (not yet built)."""
    raise click.ClickException("not built yet")
