"""The ``xaitrust`` command: thin wrappers that parse, validate and call the library.

Each sub-command lives in its own module of this package and is added to the group here. A user mistake
(``XaitrustError``) is printed as one readable line with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import click

from ..errors import XaitrustError


class FriendlyGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except XaitrustError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="xaitrust")
def cli() -> None:
    """How far can the saliency explanations of an image classifier be trusted?"""


def _add_commands() -> None:
    from importlib import import_module

    for module_name in ("datasets", "train", "demo", "explain", "calibrate", "evaluate", "meta_evaluate", "run", "compare"):
        try:
            module = import_module(f"{__name__}.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{module_name}":
                raise
            continue
        cli.add_command(module.command)


_add_commands()


def main() -> None:
    cli()
