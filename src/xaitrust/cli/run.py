"""``xaitrust run PROTOCOL``: run one paper protocol (or the benchmark scorecard) into a run folder."""

from __future__ import annotations

import click

from ..protocols import PROFILES, PROTOCOL_MODULES, run_protocol
from .train import set_threads, threads_option


@click.command("run")
@click.argument("protocol", type=click.Choice(list(PROTOCOL_MODULES)))
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file overriding profile defaults.")
@click.option("--profile", type=click.Choice(PROFILES), default=None, help="Parameter set (default: quick).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (default: runs/PROTOCOL-PROFILE).")
@threads_option
def command(protocol: str, config_file: str | None, profile: str | None, out: str | None, threads: int | None) -> None:
    """Run PROTOCOL and write config.toml, results.csv, figures and report.html into the run folder.

    Rerunning with the same folder resumes an interrupted run. On a machine shared with other jobs, --threads 1 is
    often several times faster than torch's default.
    """
    set_threads(threads)
    report = run_protocol(protocol, profile=profile, config_file=config_file, out=out)
    click.echo(f"report: {report}")
