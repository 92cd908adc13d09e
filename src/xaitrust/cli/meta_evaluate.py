"""``xaitrust meta-evaluate``: which metrics to believe on a trained model (MetaQuantus; Hedström et al., TMLR 2023).

A thin wrapper of ``xaitrust.evaluation.meta.meta_evaluate``: the model and data come in as for ``xaitrust evaluate``
(``cli/_inputs.py``); without ``--model`` it is the default model of ``make demo`` and ``xaitrust demo``, the ``cnn``
trained on Fashion-MNIST (Adam, lr 1e-3, batch 128, 3 epochs: the benchmark's quick recipe), trained on first use
and cached. Writes into ``--out``: ``meta_values.csv`` (every metric value, clean and perturbed),
``meta_evaluation.csv`` (the scores of every perturbation), ``meta_summary.csv`` (per metric and test, with the
verdict), ``meta_evaluation.html`` (the question and its answer, the tables and one sentence per metric,
``xaitrust.report.meta_evaluation``), ``summary.json`` (the answer and the summary tables) and ``settings.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import XaitrustError
from ..evaluation import available_metrics, get_metric
from ..evaluation.meta import (
    DEFAULT_META_EXPLAINERS,
    DEFAULT_META_METRICS,
    DEFAULT_PERTURBATIONS,
    INPUT_NOISE,
    THRESHOLDS,
    WEIGHT_NOISE,
    meta_evaluate,
    verdicts,
)
from ..report.meta_evaluation import write_meta_evaluation_report
from ..training.pretrained import PROFILES
from ._inputs import (
    apply_runtime,
    data_options,
    load_model_and_data,
    model_options,
    runtime_options,
)
from .evaluate import _names, load_model_and_images

#: The default model: the architecture and data set of ``make demo`` and ``xaitrust demo``.
DEFAULT_DATASET, DEFAULT_ARCHITECTURE = "fashion-mnist", "cnn"


def optional_model(command):
    """``model_options`` with ``--model`` optional: without it, the default model."""
    command = model_options(command)
    for parameter in command.__click_params__:
        if parameter.name == "model":
            parameter.required = False
            parameter.help += (" Default: the cnn of `make demo` on Fashion-MNIST (trained on first use with "
                               "--profile, then cached).")
    return command


@click.command("meta-evaluate")
@optional_model
@data_options
@click.option("--explainers", default=",".join(DEFAULT_META_EXPLAINERS), show_default=True,
              help="Comma-separated explainer names or path/to/file.py:Name, at least two (the metrics' ranking of "
                   "them is compared).")
@click.option("--metrics", default=",".join(DEFAULT_META_METRICS), show_default=True,
              help=f"Comma-separated metric names ({', '.join(m.name for m in available_metrics())}) or "
                   "path/to/file.py:Name of your own.")
@click.option("--perturbations", "k", default=DEFAULT_PERTURBATIONS, show_default=True, type=click.IntRange(min=1),
              help="Perturbations K of each kind (minor, disruptive) in each test (inputs, model).")
@click.option("--images", "n_images", default=32, show_default=True, type=click.IntRange(min=1),
              help="Test images (seeded random choice).")
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the choice of images, the perturbations and the metrics.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the tables and the page.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=None,
              help="Without --model: the training recipe of the default model (default: default; quick: a small "
                   "subset, for a fast look).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Without --model: where the default model is cached (default $XAITRUST_CACHE or "
                   "~/.cache/xaitrust).")
@runtime_options
def command(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
            dataset_options_text, explainers, metrics, k, n_images, seed, out, profile, cache_dir, device, threads):
    """How far to believe each metric on MODEL: meta-evaluate it with MetaQuantus's input and model perturbation
    tests (K minor and K disruptive perturbations each) on N test images.

    A metric to believe keeps its scores and its ranking of the explainers under minor perturbations that leave the
    model's prediction alone (noise resilience, NR) and makes them worse under disruptive ones that change it
    (adversary reactivity, AR). Prints one verdict per metric and writes the tables and an HTML page into OUT.
    """
    from ..io import library_versions

    metric_names, explainer_names = _names(metrics, "--metrics"), _names(explainers, "--explainers")
    chosen = [get_metric(name) for name in metric_names]
    if len(explainer_names) < 2:
        raise XaitrustError("--explainers needs at least two explainers: the meta-evaluation compares how each "
                            "metric ranks them")
    device = apply_runtime(device, threads)
    given = {"--weights": weights, "--model-options": model_options_text, "--input-mean": input_mean,
             "--input-std": input_std}  # what describes a given model, meaningless without --model
    if model is None:
        if any(given.values()):
            named = [option for option, value in given.items() if value]
            raise XaitrustError(f"{', '.join(named)} {'describes' if len(named) == 1 else 'describe'} the model of "
                                "--model: give --model too (or drop them to use the default model)")
        model = default_model(profile or "default", cache_dir, device)
    elif profile or cache_dir:
        raise XaitrustError("--profile and --cache-dir choose how the default model is trained and kept; with --model "
                            "your model is used as it is: drop them")
    loaded = load_model_and_images(
        load_model_and_data(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
                            dataset_options_text, device, explainer_names),
        n_images, seed, any("masks" in metric.needs for metric in chosen),
    )
    result = meta_evaluate(loaded.model, loaded.x, explainer_names, metric_names, k, seed, masks=loaded.masks,
                           indices=loaded.indices)
    judged = verdicts(result.summary)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    result.values.to_csv(folder / "meta_values.csv", index=False)
    result.scores.to_csv(folder / "meta_evaluation.csv", index=False)
    result.summary.merge(judged[["metric", "verdict"]], on="metric").to_csv(folder / "meta_summary.csv", index=False)
    settings = dict(loaded.source, explainers=explainer_names, metrics=metric_names, perturbations=k,
                    n_images=len(loaded.x), seed=seed, input_noise=list(INPUT_NOISE), weight_noise=list(WEIGHT_NOISE),
                    thresholds=THRESHOLDS, versions=library_versions())
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    page = write_meta_evaluation_report(folder, result, judged, settings)
    for sentence in judged["sentence"]:
        click.echo(sentence)
    click.echo(f"tables: {folder}\npage: {page}")


def default_model(profile: str, cache_dir, device) -> str:
    """The checkpoint folder of the default model, trained with ``profile`` the first time and cached."""
    from ..training.pretrained import get_trained_model

    result = get_trained_model(DEFAULT_DATASET, DEFAULT_ARCHITECTURE, cache_dir=cache_dir, profile=profile,
                               device=device)
    click.echo(f"{'reusing' if result.reused else 'trained'} the default model ({DEFAULT_ARCHITECTURE} on "
               f"{DEFAULT_DATASET}, profile {profile}) in {result.checkpoint_dir}")
    return str(result.checkpoint_dir)
