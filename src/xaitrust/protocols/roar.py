"""ROAR and KAR (RemOve And Retrain, Keep And Retrain; Hooker et al. 2019), as reconstructed in Loreth's thesis
"Evaluation of image recognition interpretation methods" (sections 4.4 and 5): does an explanation method find the
pixels a model needs to learn the task?

Steps: train a model on the unmodified data once per seed (its test accuracy is every curve's 0% point; the model
of the first seed is the one explained); explain every training and test image with each chosen method and rank its
pixels by absolute attribution (``reduction``: ``"abs-sum"`` sums ``|a_c|`` over the channels, so an RGB pixel is
ranked as one unit; the thesis: "the pixels with the highest absolute values are considered the most important");
``"random"`` is the random baseline, a uniformly random ranking per image. For every method, mode and fraction ``f``
of ``fractions`` (thesis: 10, 30, 50, 70, 90%) replace ``round(f * H * W)`` pixels of every training and test image
by the per-channel mean of the unmodified training data: under ROAR the ``f`` most important pixels, under KAR the
``f`` least important ones (so KAR keeps only the top ``1 - f``: Hooker et al.'s convention, under which 0% is the
unmodified data for both modes). Then train a fresh model from scratch on the modified training set with each of
``seeds`` seeds (each checkpointed in ``models/<method>/<mode>-<fraction>/seed<seed>``; all these retrainings go to
the run's runner as one stream of jobs, so the Ray executor runs them side by side, as it does the explanations of
each method and split) and record its accuracy on the modified test set.

A method is informative under ROAR when accuracy falls faster than under the random ranking, and under KAR when it
stays higher. The report (``xaitrust.report.roar``) counts, per method, the fractions at which its mean accuracy is
on that side of random's and those at which its whole seed range is (min-max over the seeds, not overlapping
random's); a method is said to beat the random ranking consistently only when the latter holds at every fraction (and
never with one seed).
Hooker et al. (cited by the thesis) find Gradients, Integrated Gradients and Guided Backprop no better than random
and SmoothGrad-Squared and VarGrad far better; the thesis' own MNIST run finds Integrated Gradients better than
random, its Food-101 run no better.

Choices where the thesis is silent or ambiguous, each a config key: ``replacement`` ("mean" as its text says; "zero"
as its Figure 5.1's "blacked out"); ``target`` of the explanations (the explained model's predicted class by default,
so that the masks of test images carry no label; or the label); ``output`` explained (logit by default); ``ties``
between equal attributions (broken at random by default, so flat regions do not leave a row-major pattern the
retrained model could learn); ``explainer_params`` (the thesis gives none; the registry's defaults in the paper
profile).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pandas as pd
import torch

from ..data import ImageDataset
from ..errors import XaitrustError
from ..explainers import available_explainers
from ..explainers.reduce import reduce_attributions
from ..models.loading import ModelSource
from ..perturb import RankedMasks, masked_images
from ..perturb.orders import counts_from_fractions, ranks_from_maps
from ..report.roar import write_roar_report
from ..training import Task, TrainingJob, TrainResult
from .common import (
    DATA_DEFAULTS,
    check_architecture,
    check_explainers,
    explain_cached,
    fresh_model,
    load_splits,
    predictions,
    run_shards,
    train_config,
    training_job,
)
from .config import ProtocolSpec
from .results import summarize, tidy_rows
from .run_folder import RunFolder

MODES = ("roar", "kar")
#: The methods Hooker et al. compare (the thesis' section 4.4 and 4.8), in registry names, and the random ranking.
HOOKER_METHODS = ["saliency", "integrated-gradients", "guided-backprop", "smoothgrad", "smoothgrad-squared", "vargrad",
                  "random"]
#: Offsets added to ``seed`` for the random rankings of each split, so train and test differ.
SPLIT_SEEDS = {"train": 0, "test": 1}
#: Further offset for the random tie breaks of a method's ranking: drawn apart from the random ranking's permutations,
#: so that the tied pixels of a map (e.g. the zeros of IG on a black background) are not removed in the very order of
#: the random baseline it is compared with.
TIE_BREAK_SEED = 100

_PAPER = {
    **DATA_DEFAULTS,
    "model": "mnist-cnn",
    "model_options": {},
    "optimizer": "sgd",
    "lr": 1e-3,
    "batch_size": 64,
    "epochs": 10,
    "seed": 0,
    "seeds": 5,
    "methods": HOOKER_METHODS,
    "explainer_params": {},
    "modes": list(MODES),
    "fractions": [0.1, 0.3, 0.5, 0.7, 0.9],
    "replacement": "mean",
    "reduction": "abs-sum",
    "target": "predicted",
    "output": "logit",
    "ties": "random",
    "explainer_batch_size": 128,
}

def check_config(config: dict) -> None:
    """Raise ``XaitrustError`` naming the key when ``model``, ``fractions``, ``seeds`` or ``methods`` cannot be run."""
    check_architecture(config)
    fractions = config["fractions"]
    if not fractions or not all(isinstance(f, (int, float)) and 0 < f < 1 for f in fractions):
        raise XaitrustError(f"config key 'fractions' must list fractions strictly between 0 and 1; got {fractions}")
    if any(b <= a for a, b in itertools.pairwise(fractions)):
        raise XaitrustError(f"config key 'fractions' must increase strictly; got {fractions}")
    if config["seeds"] < 1:
        raise XaitrustError(f"config key 'seeds' (retrainings per setting) must be at least 1; got {config['seeds']}")
    if not config["methods"] or not config["modes"]:
        raise XaitrustError("config keys 'methods' and 'modes' must each name at least one entry")


SPEC = ProtocolSpec(
    name="roar",
    description="ROAR and KAR: accuracy after retraining on images whose most (least) important pixels are replaced, "
    "per method and fraction, against a random ranking.",
    defaults={
        # The thesis' MNIST setup (section 5.1.1: 2-conv/3-linear CNN, SGD lr 1e-3 momentum 0.9, batch 64, 10 epochs,
        # 5 seeds) on Fashion-MNIST, the 28x28 grey-scale data set these machines have. 7 rankings x 2 modes x 5
        # fractions x 5 seeds = 350 retrainings (+5 unmodified) on 60000 images: one to two days on 2 CPU cores.
        "paper": _PAPER,
        # 62 trainings of 2 epochs on 6000 images: under 10 minutes on 2 CPU cores. Adam instead of the thesis' SGD
        # to get a usable model from 2 epochs.
        "quick": dict(
            _PAPER, train_size=6000, test_size=1000, optimizer="adam", epochs=2, seeds=2,
            methods=["integrated-gradients", "smoothgrad-squared", "random"],
            explainer_params={"integrated-gradients": {"steps": 16}, "smoothgrad-squared": {"samples": 10}},
        ),
        "smoke": dict(
            _PAPER, train_size=600, test_size=200, optimizer="adam", epochs=1, seeds=1, methods=["saliency", "random"],
            fractions=[0.1, 0.5, 0.9],
        ),
    },
    choices={
        "methods": tuple(info.name for info in available_explainers()),
        "modes": MODES,
        "replacement": ("mean", "zero"),
        "reduction": ("abs-sum", "max-abs"),
        "target": ("predicted", "label"),
        "output": ("logit", "probability", "log-probability"),
        "ties": ("random", "stable"),
    },
    validate=check_config,
)


def pixel_ranks(run: RunFolder, method: str, model, data: ImageDataset, config: dict,
                progress: bool = True) -> torch.Tensor:
    """Ranks ``(N, 1, H, W)`` of ``data``'s pixels, most important first (``"random"``: a random order per image,
    drawn from the seed and the image's pixels; a method's random tie breaks from the tie-break seed and its map, so
    an image's ranking does not depend on the rest of the data set). The attributions are cached in the run folder."""
    seed = config["seed"] + SPLIT_SEEDS[data.split]
    if method == "random":  # the "random" order ignores the map's values
        return ranks_from_maps(torch.zeros(len(data), *data.image_size), "random", seed=seed, seed_from=data.x)
    target = data.y if config["target"] == "label" else predictions(model, data.x).argmax(dim=1)
    attributions = explain_cached(
        run, f"{data.split}/{method}", method, config["explainer_params"].get(method, {}), model, data.x, target,
        config["output"], config["explainer_batch_size"], progress,
    )
    maps = reduce_attributions(attributions, config["reduction"])
    return ranks_from_maps(maps, "most-important-first", seed=seed + TIE_BREAK_SEED, ties=config["ties"])


def explain_shard(run: RunFolder, method: str, model, data: ImageDataset) -> None:
    """The explanation shard of one method and split, as a task of the run's runner: ``pixel_ranks`` without progress
    bars, which leaves the attributions in the run folder for the pipeline's own ``pixel_ranks``."""
    pixel_ranks(run, method, model, data, run.config, progress=False)


def explain_shards(run: RunFolder, model, splits: tuple[ImageDataset, ...]) -> None:
    """On the Ray executor, every method's explanations of every split run side by side as its tasks before the
    retrainings that need them (``run_shards``)."""
    run_shards(run, ((Task(f"explain {data.split}/{method}", explain_shard, (run, method, model, data)),
                      f"attributions/{data.split}/{method}.safetensors")
                     for method in run.config["methods"] if method != "random" for data in splits))


def modified_images(x, ranks, fraction: float, mode: str, replacement: str, mean: torch.Tensor) -> torch.Tensor:
    """``x`` with ``round(fraction * H * W)`` pixels per image replaced: the top-ranked ones under ROAR, the
    bottom-ranked ones under KAR (which keeps only the top ``H * W - round(fraction * H * W)``)."""
    n_pixels = ranks[0].numel()
    replaced = int(counts_from_fractions(torch.tensor([fraction]), n_pixels)[0])
    masks = (RankedMasks(ranks, torch.tensor([replaced]), mode="delete") if mode == "roar"
             else RankedMasks(ranks, torch.tensor([n_pixels - replaced]), mode="insert"))
    return masked_images(x, masks, replacement=replacement, mean=mean)[:, 0]


def seed_values(config: dict) -> list[int]:
    """The training seeds ``seed``, ``seed + 1``, ... (``seeds`` of them); the first one's model is explained."""
    return [config["seed"] + i for i in range(config["seeds"])]


def retraining_jobs(run: RunFolder, name: str, train: ImageDataset, test: ImageDataset,
                    config: dict) -> list[TrainingJob]:
    """One fresh model per seed to train on ``train`` (checkpoints in ``models/<name>/seed<seed>``), in seed order."""
    return [
        training_job(run, f"{name}/seed{seed}", config["model"], train, test, train_config(config, seed=seed),
                     config["model_options"])
        for seed in seed_values(config)
    ]


def accuracy_rows(results: list[TrainResult], split: str, config: dict, **labels) -> pd.DataFrame:
    """Tidy rows (metric "accuracy", one per seed) of the trained models' accuracy on their ``split`` data."""
    accuracies = torch.tensor([result.metrics[f"{split}_accuracy"] for result in results], dtype=torch.float64)
    return tidy_rows(accuracies, metric="accuracy", model=ModelSource.from_config(config).label,
                     **labels).assign(seed=seed_values(config))


def modified_jobs(run, method, mode, fraction, ranks, train, test, config) -> list[TrainingJob]:
    """The retrainings of one setting: every seed on the ``mode``-modified data at ``fraction``."""
    modified = {
        split: dataclasses.replace(
            data, x=modified_images(data.x, ranks[split], fraction, mode, config["replacement"], train.mean),
            name=f"{data.name}-{method}-{mode}-{fraction:g}",
        )
        for split, data in (("train", train), ("test", test))
    }
    return retraining_jobs(run, setting_name(method, mode, fraction), modified["train"], modified["test"], config)


def setting_name(method: str, mode: str, fraction: float) -> str:
    """The folder of one setting's models (under ``models/``) and accuracy table (under ``cache/accuracy/``)."""
    return f"{method}/{mode}-{fraction:g}"


def retrained_accuracies(run: RunFolder, model, train: ImageDataset, test: ImageDataset, config: dict):
    """Accuracy rows of every method x mode x fraction (one table per setting, in that order) and the first test
    image's ranks per method (for the example figures).

    Every setting not finished in an earlier run contributes its seeds' trainings to one stream of jobs that goes to
    the run's runner at once, so a parallel runner keeps all its workers busy across settings. The stream is built as
    the runner draws from it: a method's pixel ranks, and a setting's modified images, are made only when their jobs
    are next, so at most a few settings' data are held at a time."""
    settings = [(method, mode, fraction) for method in config["methods"] for mode in config["modes"]
                for fraction in config["fractions"]]
    finished = {setting: run.finished_table(f"accuracy/{setting_name(*setting)}") for setting in settings}
    examples = {}

    def jobs():
        for method in config["methods"]:
            ranks = {"train": pixel_ranks(run, method, model, train, config),
                     "test": pixel_ranks(run, method, model, test, config)}
            examples[method] = ranks["test"][:1]
            for mode in config["modes"]:
                for fraction in config["fractions"]:
                    if finished[(method, mode, fraction)] is None:
                        yield from modified_jobs(run, method, mode, fraction, ranks, train, test, config)

    results = iter(run.runner.run(jobs()))
    tables = []
    for method, mode, fraction in settings:
        table = finished[(method, mode, fraction)]
        if table is None:
            seeds = [next(results) for _ in seed_values(config)]
            table = run.store_table(f"accuracy/{setting_name(method, mode, fraction)}", accuracy_rows(
                seeds, test.split, config, method=method, mode=mode, fraction=fraction))
        tables.append(table)
    return tables, examples


def spread_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, 95% CI half-width, min and max of the accuracy over seeds per method x mode x fraction."""
    by = ["metric", "method", "model", "mode", "fraction"]
    summary = summarize(results, by=by)
    extremes = results.groupby(by, sort=False)["value"].agg(min="min", max="max").reset_index()
    return summary.merge(extremes, on=by)


def examples_of(x: torch.Tensor, ranks: dict, config: dict, mean: torch.Tensor) -> dict:
    """``x`` ``(1, C, H, W)`` as each mode and method modify it at every fraction: ``{mode: {method: (fractions, C,
    H, W)}}`` from its ``ranks[method]``, for the report's example figures."""
    return {mode: {method: torch.cat([modified_images(x, r, f, mode, config["replacement"], mean)
                                      for f in config["fractions"]])
                   for method, r in ranks.items()}
            for mode in config["modes"]}


def trainings(config: dict) -> int:
    """Models the run trains: every seed on the unmodified images and on each method x mode x fraction."""
    return config["seeds"] * (1 + len(config["methods"]) * len(config["modes"]) * len(config["fractions"]))


def execute(run: RunFolder) -> Path:
    config = run.config
    train, test = load_splits(config)
    check_explainers(config, fresh_model(config["model"], train, config["model_options"]))
    unmodified = run.runner.run(retraining_jobs(run, "unmodified", train, test, config))
    tables = [accuracy_rows(unmodified, test.split, config, method=method, mode=mode, fraction=0.0)
              for method in config["methods"] for mode in config["modes"]]
    explain_shards(run, unmodified[0].model, (train, test))
    retrained, first_ranks = retrained_accuracies(run, unmodified[0].model, train, test, config)
    results = pd.concat(tables + retrained, ignore_index=True)
    run.write_table("results", results)
    summary = spread_summary(results)
    run.write_table("summary", summary)

    return write_roar_report(run, results=results, summary=summary, image=test.x[:1],
                             examples=examples_of(test.x[:1], first_ranks, config, train.mean),
                             training_images=len(train), test_images=len(test))
