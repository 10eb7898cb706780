"""The smallest config a CLI command runs with against a test Redis."""

from __future__ import annotations

from pathlib import Path


def cli_config(tmp_path: Path, redis_url: str, rule: str = "r") -> Path:
    """SPY watched, one console channel `tty`, one flip_cross rule named `rule` sending to it,
    no ops server: written to tmp_path/c.yaml."""
    path = tmp_path / "c.yaml"
    path.write_text(
        f"redis: {{url: '{redis_url}'}}\n"
        "watch: {symbols: [SPY]}\n"
        "channels: {tty: {type: console}}\n"
        f"rules: [{{name: {rule}, type: flip_cross, symbols: [SPY], channels: [tty]}}]\n"
        "ops: {listen: null}\n"
    )
    return path
