"""``xaitrust evaluate``: explain test images of a trained model with several methods and score the maps.

A thin wrapper of ``xaitrust.evaluation.evaluate``: metrics and explainers are named as in the library (registry names
or ``path/to/file.py:Name``). Targets are the model's predicted classes by default (Calibrate to Interpret and FPA
explain the predicted class). Writes the tidy table to ``OUT.csv`` and the settings with library versions to
``OUT.json`` beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click
import pandas as pd
import torch

from ..errors import XaitrustError
from ..evaluation import available_metrics, evaluate, get_metric
from ..evaluation.evaluate import DEFAULT_EXPLAINERS, DEFAULT_METRICS
from ..explainers.reduce import REDUCTIONS
from ..outputs import OUTPUTS
from ..perturb.orders import TIES
from ._inputs import (
    ModelAndData,
    apply_runtime,
    chosen_images,
    data_options,
    load_model_and_data,
    model_options,
    parse_table,
    runtime_options,
)

#: The metrics ``--steps`` sets the number of steps of.
STEPPED_METRICS = ("deletion_area", "insertion_area", "better_than_random")


@dataclass(frozen=True)
class ModelAndImages:
    """What the command evaluates: the model, the chosen test images with their dataset indices, labels and (when
    asked for) ground-truth masks, and where they came from, for the settings file."""

    model: torch.nn.Module
    x: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    source: dict


def load_model_and_images(loaded: ModelAndData, n_images: int, seed: int, with_masks: bool) -> ModelAndImages:
    """``n_images`` test images (seeded choice) of the loaded model's data, with their ground-truth masks if
    ``with_masks``."""
    test = loaded.test
    chosen = chosen_images(test, n_images, seed)
    masks = None
    if with_masks:
        if test.masks is None:
            raise XaitrustError(f"dataset {test.name!r} has no ground-truth masks for the localisation metrics "
                                "(the synthetic 'shapes' dataset has; an .npz may hold them as 'masks'); drop them "
                                "from --metrics")
        masks = test.masks[chosen]
    return ModelAndImages(loaded.model, test.x[chosen], test.index[chosen], test.y[chosen], masks,
                          {"model": loaded.label, "model_source": loaded.source.model, "dataset": test.name,
                           "data": test.info.get("load")})


def _names(text: str, option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise XaitrustError(f"{option} needs at least one name (comma-separated)")
    return names


def _output_files(out: str) -> tuple[Path, Path]:
    """``OUT`` (a ``.csv`` path) and the ``.json`` beside it."""
    out = Path(out)
    if out.suffix.lower() != ".csv":
        raise XaitrustError(f"--out must name a .csv file (the settings go beside it as .json); got {str(out)!r}")
    return out, out.with_suffix(".json")


@click.command("evaluate")
@model_options
@data_options
@click.option("--explainers", default=",".join(DEFAULT_EXPLAINERS), show_default=True,
              help="Comma-separated explainer names (xaitrust.explainers.available_explainers) or path/to/file.py:Name "
                   "of your own.")
@click.option("--metrics", default=",".join(DEFAULT_METRICS), show_default=True,
              help=f"Comma-separated metric names ({', '.join(m.name for m in available_metrics())}) or "
                   "path/to/file.py:Name of your own.")
@click.option("--n-images", default=64, show_default=True, type=click.IntRange(min=1),
              help="Test images (seeded random choice).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Tidy CSV of per-sample values (a .csv path); the settings are written beside it as .json.")
@click.option("--reduction", type=click.Choice(REDUCTIONS), default="abs-sum", show_default=True,
              help="Channel reduction of attributions to maps.")
@click.option("--target", "target_kind", type=click.Choice(["predicted", "label"]), default="predicted",
              show_default=True, help="Explain the model's predicted class or the true label.")
@click.option("--output", type=click.Choice(OUTPUTS), default="probability", show_default=True,
              help="Score explained, and measured by the metrics that measure the explained score.")
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1),
              help=f"Steps of {', '.join(STEPPED_METRICS)}.")
@click.option("--ties", type=click.Choice(TIES), default="random", show_default=True,
              help="Order of equal map values in the curves: at random from the seed, or row by row.")
@click.option("--metric-params", "metric_params_text", default="",
              help="Parameters of the metrics as a TOML table per metric, e.g. "
                   "\"data_randomisation = {randomised_model = 'runs/permuted'}\" (they override --steps).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=None, type=click.IntRange(min=1),
              help="Masked images per forward pass (default: automatic).")
@runtime_options
def command(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
            dataset_options_text, explainers, metrics, n_images, out, reduction, target_kind, output, steps, ties,
            metric_params_text, seed, batch_size, device, threads):
    """Explain N test images of MODEL with each explainer and score the maps with each metric.

    Writes one CSV row per sample x method x metric (columns sample: the dataset index, label, prediction,
    confidence, target, method, metric, value, model) and prints the mean +- standard deviation of every
    method x metric.
    """
    from ..io import library_versions

    csv_path, json_path = _output_files(out)
    metric_names = _names(metrics, "--metrics")
    explainer_names = _names(explainers, "--explainers")
    chosen = {name: get_metric(name) for name in metric_names}
    comparing = [name for name, metric in chosen.items() if "reference_maps" in metric.needs]
    if comparing:
        raise XaitrustError(f"--metrics: {', '.join(comparing)} compare two models' maps and this command explains "
                            "one model (see `xaitrust run calibrate-to-interpret`, or "
                            "xaitrust.evaluate(reference_maps=...))")
    with_masks = any("masks" in metric.needs for metric in chosen.values())
    metric_params = {name: {"steps": steps} for name in STEPPED_METRICS if name in metric_names}
    for name, params in parse_table(metric_params_text, "--metric-params").items():
        if not isinstance(params, dict):
            raise XaitrustError(f"--metric-params: {name} must be a table of parameters, e.g. {name} = {{steps = 50}}")
        metric_params[name] = {**metric_params.get(name, {}), **params}
    device = apply_runtime(device, threads)
    loaded = load_model_and_images(
        load_model_and_data(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
                            dataset_options_text, device, explainer_names),
        n_images, seed, with_masks,
    )
    results = evaluate(
        loaded.model, loaded.x, None if target_kind == "predicted" else loaded.labels, explainer_names, metric_names,
        output, loaded.masks, seed, reduction=reduction, indices=loaded.indices, labels=loaded.labels,
        metric_params=metric_params, batch_size=batch_size, ties=ties,
    )
    results["model"] = loaded.source["model"]
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(csv_path, index=False)
    settings = dict(loaded.source, explainers=explainer_names, metrics=metric_names, n_images=len(loaded.x),
                    reduction=reduction, target=target_kind, output=output, steps=steps, ties=ties, seed=seed,
                    batch_size=batch_size, versions=library_versions())
    json_path.write_text(json.dumps(settings, indent=2))
    click.echo(summary_table(results))
    click.echo(f"results: {csv_path}\nsettings: {json_path}")


def summary_table(results: pd.DataFrame) -> str:
    """``mean +- sd`` of every method (rows) x metric (columns) as text."""
    grouped = results.groupby(["method", "metric"], sort=False)["value"].agg(["mean", "std"])
    cells = grouped.apply(lambda row: f"{row['mean']:.4g} ± {row['std']:.2g}", axis=1).unstack("metric")
    return cells.to_string()
