import click


@click.command()
def simulate() -> None:
    """Serve the embedded Flow GEX API on a port (not yet built)."""
    raise click.ClickException("not built yet")
