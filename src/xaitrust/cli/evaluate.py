"""``xaitrust evaluate``: explain test images of a trained model with several methods and score the maps.

Each metric is looked up by name in ``METRICS``: the module and function that compute it are imported only when the
metric is asked for, so a metric whose module is not installed is reported as unavailable instead of breaking the
command. Every metric adapter returns per-sample values ``(B,)`` under one or more metric names.

Targets are the model's predicted classes by default (Calibrate to Interpret and FPA explain the predicted class).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import click
import pandas as pd
import torch

from ..errors import XaitrustError


@dataclass(frozen=True)
class EvaluationBatch:
    """What a metric adapter sees: model, images, targets, one method's raw attributions and reduced maps."""

    model: torch.nn.Module
    x: torch.Tensor
    target: torch.Tensor
    attributions: torch.Tensor
    maps: torch.Tensor
    explainer: object
    reduction: str
    seed: int
    batch_size: int | None
    steps: int
    ties: str


def _curve_options(batch) -> dict:
    """How every curve metric orders equal map values, from which seed, in chunks of which size."""
    return {"ties": batch.ties, "seed": batch.seed, "batch_size": batch.batch_size}


def _deletion(function, batch):
    return {"deletion": function(batch.model, batch.x, batch.maps, batch.target, steps=batch.steps,
                                 **_curve_options(batch)).area}


def _insertion(function, batch):
    return {"insertion": function(batch.model, batch.x, batch.maps, batch.target, steps=batch.steps,
                                  **_curve_options(batch)).area}


def _mif_lif(function, batch):
    from ..metrics.fidelity import area_between

    curves = function(batch.model, batch.x, batch.maps, batch.target, **_curve_options(batch))
    return {"mif-lif": area_between(curves.mif, curves.lif).per_sample}


def _btr(function, batch):
    result = function(batch.model, batch.x, batch.maps, batch.target, steps=batch.steps, **_curve_options(batch))
    return {"btr": result.better.float(), "deletion-random": result.random.area}


def _mu_fidelity(function, batch):
    return {"mu-fidelity": function(batch.model, batch.x, batch.attributions, batch.target, seed=batch.seed, batch_size=batch.batch_size)}


def _completeness(function, batch):
    result = function(batch.model, batch.x, batch.maps, batch.target, **_curve_options(batch))
    return {"completeness": result.alpha, "soundness": result.beta}


def _otsu_tv(function, batch):
    return {"otsu-tv": function(batch.maps)}


def _local_lipschitz(function, batch):
    # As the protocols (Calibrate to Interpret 4.6): maps after the chosen reduction, each min-max normalised.
    return {"local-lipschitz": function(batch.explainer, batch.model, batch.x, batch.target, seed=batch.seed,
                                        reduction=batch.reduction, normalize=True)}


# metric name -> (module, function, adapter)
METRICS = {
    "deletion": ("xaitrust.metrics.faithfulness", "deletion", _deletion),
    "insertion": ("xaitrust.metrics.faithfulness", "insertion", _insertion),
    "mif-lif": ("xaitrust.metrics.fidelity", "mif_lif", _mif_lif),
    "btr": ("xaitrust.metrics.faithfulness", "better_than_random", _btr),
    "mu-fidelity": ("xaitrust.metrics.mu_fidelity", "mu_fidelity", _mu_fidelity),
    "completeness": ("xaitrust.metrics.completeness", "completeness_soundness", _completeness),
    "otsu-tv": ("xaitrust.metrics.coherence", "otsu_tv", _otsu_tv),
    "local-lipschitz": ("xaitrust.metrics.stability", "local_lipschitz", _local_lipschitz),
}


def resolve_metric(name: str):
    """The computing function of metric ``name`` and its adapter; a clear error if unknown or not installed."""
    if name not in METRICS:
        raise XaitrustError(f"unknown metric {name!r}; available: {', '.join(METRICS)}")
    module_name, function_name, adapter = METRICS[name]
    try:
        function = getattr(import_module(module_name), function_name)
    except (ModuleNotFoundError, AttributeError):
        raise XaitrustError(f"metric {name!r} is not available in this installation ({module_name}.{function_name})") from None
    return function, adapter


def _names(text: str, option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise XaitrustError(f"{option} needs at least one name (comma-separated)")
    return names


@click.command("evaluate")
@click.option("--checkpoint", required=True, type=click.Path(exists=True), help="Trained model (checkpoint folder).")
@click.option("--explainers", default="saliency,integrated-gradients", show_default=True, help="Comma-separated explainer names.")
@click.option("--metrics", default="deletion,insertion,mif-lif,btr,mu-fidelity", show_default=True,
              help=f"Comma-separated metric names: {', '.join(METRICS)}.")
@click.option("--n-images", default=64, show_default=True, type=click.IntRange(min=1), help="Test images (seeded random choice).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Tidy CSV of per-sample values.")
@click.option("--dataset", default=None, help="Dataset name (default: the checkpoint's).")
@click.option("--data-root", default=None, type=click.Path(file_okay=False), help="Folder of the dataset files.")
@click.option("--reduction", default="abs-sum", show_default=True, help="Channel reduction of attributions to maps.")
@click.option("--target", "target_kind", type=click.Choice(["predicted", "label"]), default="predicted", show_default=True)
@click.option("--steps", default=100, show_default=True, type=click.IntRange(min=1), help="Deletion/insertion/BTR steps.")
@click.option("--ties", type=click.Choice(["random", "stable"]), default="random", show_default=True,
              help="Order of equal map values in the curves: at random from the seed, or row by row.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=None, type=click.IntRange(min=1), help="Masked images per forward pass (default: automatic).")
def command(checkpoint, explainers, metrics, n_images, out, dataset, data_root, reduction, target_kind, steps, ties, seed,
            batch_size):
    """Explain N test images of the model in CHECKPOINT with each explainer and score the maps with each metric.

    Writes one CSV row per sample x method x metric (columns metric, method, model, sample, value) and prints the
    mean +- standard deviation of every method x metric.
    """
    from ..explainers import get_explainer
    from ..explainers.reduce import reduce_attributions
    from ..protocols.results import tidy_rows
    from ..io import library_versions
    from ._checkpoint import checkpoint_images

    metric_names = _names(metrics, "--metrics")
    resolved = {name: resolve_metric(name) for name in metric_names}
    methods = {name: get_explainer(name) for name in _names(explainers, "--explainers")}
    chosen = checkpoint_images(checkpoint, dataset, data_root, n_images, seed)
    model, x, indices, dataset = chosen.model, chosen.x, chosen.indices, chosen.dataset
    target = chosen.predicted if target_kind == "predicted" else chosen.labels
    model_name = Path(checkpoint).name
    tables = []
    for method, explainer in methods.items():
        attributions = explainer(model, x, target)
        batch = EvaluationBatch(model, x, target, attributions, reduce_attributions(attributions, reduction, x), explainer,
                                reduction, seed, batch_size, steps, ties)
        for name, (function, adapter) in resolved.items():
            click.echo(f"{method}: {name}", err=True)
            for metric, values in adapter(function, batch).items():
                table = tidy_rows(values, metric=metric, method=method, model=model_name)
                table["sample"] = indices.numpy()
                tables.append(table)
    results = pd.concat(tables, ignore_index=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results.to_csv(out, index=False)
    config = dict(checkpoint=str(checkpoint), dataset=dataset, explainers=list(methods), metrics=metric_names,
                  n_images=len(indices), reduction=reduction, target=target_kind, steps=steps, ties=ties, seed=seed,
                  batch_size=batch_size, versions=library_versions())
    out.with_suffix(".json").write_text(json.dumps(config, indent=2))
    click.echo(summary_table(results))
    click.echo(f"results: {out}")


def summary_table(results: pd.DataFrame) -> str:
    """``mean +- sd`` of every method (rows) x metric (columns) as text."""
    grouped = results.groupby(["method", "metric"], sort=False)["value"].agg(["mean", "std"])
    cells = grouped.apply(lambda row: f"{row['mean']:.4g} ± {row['std']:.2g}", axis=1).unstack("metric")
    return cells.to_string()
