import click


@click.command("notify-test")
def notify_test() -> None:
    """Send a sample alert to one channel (not yet built)."""
    raise click.ClickException("not built yet")


@click.command()
def outbox() -> None:
    """List pending and dead alerts (not yet built)."""
    raise click.ClickException("not built yet")
