"""``xaitrust calibrate``: fit a calibrator to a saved model and report calibration before and after."""

from __future__ import annotations

import click

from ..calibration.checkpoint_run import calibrate_checkpoint

MEASURES = ("accuracy", "ece", "density_ece", "kl_calibration_error", "nll")


@click.command("calibrate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True), help="Checkpoint folder of a trained model.")
@click.option("--method", type=click.Choice(["temperature", "dirichlet", "recalx"]), default="temperature", show_default=True)
@click.option("--calibration-size", type=int, default=2000, show_default=True, help="Test samples used to fit.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="Use only a stratified subset of this many test samples.")
@click.option("--data-root", type=click.Path(), default=None, help="Where the dataset files are (if not found).")
def command(checkpoint, method, calibration_size, seed, limit, data_root) -> None:
    """Fit a calibrator on a calibration split of the test data and evaluate it on the rest."""
    result = calibrate_checkpoint(checkpoint, method, calibration_size, seed, root=data_root, limit=limit)
    click.echo(
        f"{method}: fitted on {result['calibration_size']} samples, evaluated on {result['held_out_size']} held-out samples"
    )
    click.echo(f"{'measure':<22}{'before':>10}{'after':>10}")
    for measure in MEASURES:
        click.echo(f"{measure:<22}{result['before'][measure]:>10.4f}{result['after'][measure]:>10.4f}")
    for name, value in result["learned"].items():
        click.echo(f"{name} = {value}")
    if "by_level" in result:
        worst = {label: max(r["kl_calibration_error"] for r in rows) for label, rows in result["by_level"].items()}
        click.echo("max KL calibration error over perturbation levels: " + ", ".join(f"{k} {v:.4f}" for k, v in worst.items()))
    for name, path in result["files"].items():
        click.echo(f"{name}: {path}")
