"""``xaitrust datasets``: list the datasets, what they are and where they were found (or how to get them)."""

from __future__ import annotations

import click

from ..data import available_datasets


@click.command("datasets")
def command() -> None:
    """List the datasets xaitrust can load and whether each is available here."""
    for info in available_datasets():
        status = "available" if info.available else "missing"
        click.echo(f"{info.name:<14} {status:<10} {info.description}")
        click.echo(f"{'':<25} {info.location}")
