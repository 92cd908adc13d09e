"""``xaitrust compare``: two or more run folders side by side, with paired statistics where the images are the
same."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import XaitrustError
from ..statistics import TESTS


@click.command("compare")
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for report.html, differences.csv and summary.json.")
@click.option("--model", default="uncalibrated", show_default=True,
              help="The model of each run to compare (e.g. calibrated).")
@click.option("--labels", default="", help="Comma-separated names of the runs (default: their folder names).")
@click.option("--alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Family-wise error rate of the paired tests (Holm).")
@click.option("--test", type=click.Choice(TESTS), default="t", show_default=True,
              help="Paired test: Student t (with its interval) or Wilcoxon signed-rank.")
def command(runs, out, model, labels, alpha, test) -> None:
    """Put the benchmark or calibrate-to-interpret runs RUNS side by side (the first is the reference).

    Each run gets its verdict and scorecard; where two runs explain the same images (same data settings and seed),
    each method's per-image scores are compared with paired tests, corrected for the number of comparisons.
    """
    from ..report.compare import read_run, write_comparison

    names = [name.strip() for name in labels.split(",")] if labels else [Path(run).name for run in runs]
    if len(names) != len(runs):
        raise XaitrustError(f"--labels names {len(names)} runs; {len(runs)} were given")
    if len(set(names)) < len(names):
        raise XaitrustError(f"two runs have the same name ({', '.join(names)}): name them with --labels")
    if len(runs) < 2:
        raise XaitrustError("compare needs at least two run folders")
    compared = [read_run(run, model, name) for run, name in zip(runs, names)]
    target = Path(out).resolve()
    for run in runs:
        if target == Path(run).resolve() or Path(run).resolve() in target.parents:
            raise XaitrustError(f"--out {out} is inside the run folder {run}: choose a folder of its own")
    report = write_comparison(compared, out, alpha=alpha, test=test)
    click.echo(f"report: {report}")
