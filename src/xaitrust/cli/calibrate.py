"""``xaitrust calibrate``: fit a calibrator to a trained model and report calibration before and after."""

from __future__ import annotations

import click

from ..calibration.checkpoint_run import calibrate_model
from ..errors import XaitrustError
from ._inputs import apply_runtime, data_options, load_model_and_data, model_options, runtime_options

MEASURES = ("accuracy", "ece", "density_ece", "kl_calibration_error", "nll")


@click.command("calibrate")
@model_options
@data_options
@click.option("--method", type=click.Choice(["temperature", "dirichlet", "recalx"]), default="temperature", show_default=True)
@click.option("--calibration-size", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Test samples used to fit.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Use only a stratified subset of this many test samples.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Folder for the calibrator, summary and plots (default: the checkpoint folder of --model).")
@runtime_options
def command(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
            dataset_options_text, method, calibration_size, seed, limit, out, device, threads) -> None:
    """Fit a calibrator on a calibration split of the test data and evaluate it on the rest."""
    device = apply_runtime(device, threads)
    loaded = load_model_and_data(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset,
                                 data_root, dataset_options_text, device)
    if out is None:
        if loaded.source.kind != "checkpoint":
            raise XaitrustError("pass --out FOLDER for the calibrator (only a checkpoint folder takes it by default)")
        out = model
    result = calibrate_model(loaded.model, loaded.test, out, method, calibration_size, seed, limit)
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
