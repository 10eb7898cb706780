import click


@click.command()
def run() -> None:
    """Run the daemon in the foreground."""


@click.command()
def check() -> None:
    """Validate the config."""


@click.command()
def tail() -> None:
    """Print live snapshots."""
