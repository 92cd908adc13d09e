"""ROAR and KAR (RemOve And Retrain, Keep And Retrain; Hooker et al. 2019), as reconstructed in Loreth's thesis
(papers/003, sections 4.4 and 5): does an explanation method find the pixels a model needs to learn the task?

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
the run's runner as one stream of jobs, so the Ray executor runs them side by side) and record its accuracy on the
modified test set.

A method is informative under ROAR when accuracy falls faster than under the random ranking, and under KAR when it
stays higher. The findings count, per method, the fractions at which its mean accuracy is on that side of random's
and those at which its whole seed range is (min-max over the seeds, not overlapping random's); a method is said to
beat the random ranking consistently only when the latter holds at every fraction (and never with one seed).
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
import tomli_w
import torch

from ..data import ImageDataset
from ..errors import XaitrustError
from ..explainers import available_explainers
from ..explainers.reduce import reduce_attributions
from ..models.loading import ModelSource
from ..perturb import RankedMasks, masked_images
from ..perturb.orders import counts_from_fractions, ranks_from_maps
from ..report.figures import plot_curves, plot_map_grid
from ..report.html import Section, write_report
from ..training import TrainingJob, TrainResult
from .common import (
    DATA_DEFAULTS,
    check_architecture,
    check_explainers,
    explain_cached,
    fresh_model,
    load_splits,
    predictions,
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


def pixel_ranks(run: RunFolder, method: str, model, data: ImageDataset, config: dict) -> torch.Tensor:
    """Ranks ``(N, 1, H, W)`` of ``data``'s pixels, most important first (``"random"``: a random order per image,
    drawn from the seed and the image's pixels; a method's random tie breaks from the tie-break seed and its map, so
    an image's ranking does not depend on the rest of the data set)."""
    seed = config["seed"] + SPLIT_SEEDS[data.split]
    if method == "random":  # the "random" order ignores the map's values
        return ranks_from_maps(torch.zeros(len(data), *data.image_size), "random", seed=seed, seed_from=data.x)
    target = data.y if config["target"] == "label" else predictions(model, data.x).argmax(dim=1)
    attributions = explain_cached(
        run, f"{data.split}/{method}", method, config["explainer_params"].get(method, {}), model, data.x, target,
        config["output"], config["explainer_batch_size"],
    )
    maps = reduce_attributions(attributions, config["reduction"])
    return ranks_from_maps(maps, "most-important-first", seed=seed + TIE_BREAK_SEED, ties=config["ties"])


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


def accuracy_curves(results: pd.DataFrame, mode: str) -> dict[str, tuple]:
    """``{method: (fractions (S,), accuracies (seeds, S))}`` of one mode, for ``plot_curves``."""
    curves = {}
    for method, part in results[results["mode"] == mode].groupby("method", sort=False):
        table = part.pivot_table(index="seed", columns="fraction", values="value")
        curves[method] = (torch.tensor(table.columns.to_numpy()), torch.tensor(table.to_numpy()))
    return curves


def _mean_over_fractions(summary: pd.DataFrame, mode: str) -> pd.Series:
    part = summary[(summary["mode"] == mode) & (summary["fraction"] > 0)]
    return part.groupby("method")["mean"].mean().sort_values()


def _fractions_beating_random(summary: pd.DataFrame, mode: str, method: str) -> tuple[int, int, int]:
    """How many fractions a method's mean accuracy is on the informative side of random's (below under ROAR, above
    under KAR), how many of them with seed ranges that do not overlap, and how many fractions there are."""
    part = summary[(summary["mode"] == mode) & (summary["fraction"] > 0)].set_index(["method", "fraction"])
    own, random = part.loc[method], part.loc["random"]
    if mode == "roar":
        better, clear = own["mean"] < random["mean"], own["max"] < random["min"]
    else:
        better, clear = own["mean"] > random["mean"], own["min"] > random["max"]
    return int(better.sum()), int(clear.sum()), len(own)


def findings(summary: pd.DataFrame, config: dict) -> list[str]:
    """Plain sentences computed from the summary: base accuracy, fastest ROAR degradation, best KAR, vs random."""
    base = summary[summary["fraction"] == 0].iloc[0]
    if config["seeds"] == 1:
        lines = [(f"Unmodified data: test accuracy {base['mean']:.3f}. One seed per setting: no spread is measured, "
                 "differences may be noise.")]
    else:
        lines = [(f"Unmodified data: test accuracy {base['mean']:.3f} (std {base['std']:.3f}, range {base['min']:.3f}"
                 f"-{base['max']:.3f} over {int(base['n'])} seeds).")]
    methods = [m for m in config["methods"] if m != "random"]
    for mode in config["modes"]:
        means = _mean_over_fractions(summary, mode)
        lowest, highest = f"{means.index[0]} ({means.iloc[0]:.3f})", f"{means.index[-1]} ({means.iloc[-1]:.3f})"
        if mode == "roar":
            lines.append(f"ROAR (informative pixels removed): accuracy averaged over the fractions falls most for "
                         f"{lowest} and least for {highest}.")
        else:
            lines.append(f"KAR (only informative pixels kept): accuracy averaged over the fractions stays highest for "
                         f"{highest} and lowest for {lowest}.")
        if "random" not in config["methods"] or not methods:
            continue
        side = "below" if mode == "roar" else "above"
        counts = {method: _fractions_beating_random(summary, mode, method) for method in methods}
        for method, (better, clear, total) in counts.items():
            spread = ("one seed, no spread measured" if config["seeds"] == 1
                      else f"at {clear} of {total} with non-overlapping seed ranges")
            lines.append(f"{mode.upper()}: {method} is {side} the random ranking at {better} of {total} fractions by "
                         f"the mean accuracy ({spread}).")
        claim = (" (Hooker et al. under ROAR: Gradients, IG and Guided Backprop no better than random, SG-Squared "
                 "and VarGrad far better)") if mode == "roar" else ""
        if config["seeds"] == 1:
            lines.append(f"{mode.upper()}: with one seed per setting no method can be shown to beat the random "
                         f"ranking consistently{claim}.")
        else:
            consistent = [method for method, (_, clear, total) in counts.items() if clear == total]
            lines.append(f"{mode.upper()}: {len(consistent)} of {len(methods)} methods beat the random ranking "
                         f"consistently, i.e. {side} it with non-overlapping seed ranges at every fraction"
                         f"{': ' + ', '.join(consistent) if consistent else ''}{claim}.")
    if "roar" in config["modes"] and "random" in config["methods"]:
        top = summary[(summary["mode"] == "roar") & (summary["method"] == "random")].sort_values("fraction").iloc[-1]
        lines.append(f"With {top['fraction']:.0%} of the pixels replaced at random, retraining reaches "
                     f"{top['mean']:.3f} (unmodified: {base['mean']:.3f}).")
    return lines


def example_grid(path: Path, x: torch.Tensor, ranks: dict, mode: str, config: dict, mean: torch.Tensor) -> Path:
    """One test image under ``mode`` at every fraction (columns), one row per method (channel mean shown)."""
    fractions = config["fractions"]
    images = x.expand(len(fractions), *x.shape[1:])
    maps = {
        method: torch.cat([modified_images(x, r, f, mode, config["replacement"], mean) for f in fractions]).mean(dim=1)
        for method, r in ranks.items()
    }
    columns = ", ".join(f"{f:.0%}" for f in fractions)
    return plot_map_grid(path, images, maps, title=f"{mode.upper()} at {columns}")


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
    retrained, examples = retrained_accuracies(run, unmodified[0].model, train, test, config)
    results = pd.concat(tables + retrained, ignore_index=True)
    run.write_table("results", results)
    summary = spread_summary(results)
    run.write_table("summary", summary)

    figures = run.path / "figures"
    label = {"roar": "ROAR: most important pixels replaced", "kar": "KAR: least important pixels replaced"}
    curve_figures = {
        f"{label[mode]} (band: 95% CI of the mean over seeds)": plot_curves(
            figures / f"{mode}.png", accuracy_curves(results, mode), "fraction of pixels replaced",
            "test accuracy after retraining", title=mode.upper())
        for mode in config["modes"]
    }
    example_figures = {
        f"{mode.upper()} examples": example_grid(figures / f"examples-{mode}.png", test.x[:1], examples, mode, config,
                                                 train.mean)
        for mode in config["modes"]
    }
    means = summary.pivot_table(index="method", columns=["mode", "fraction"], values="mean", sort=False)
    setup = (f"{config['model']} retrained from scratch on {len(train)} {config['dataset']} images per setting, "
             f"{config['seeds']} seed(s), accuracy on {len(test)} modified test images. Pixels ranked by "
             f"{config['reduction']} of the attributions ({config['output']} of the {config['target']} class), "
             f"replaced by the {config['replacement']} of the training data; fraction 0 is the unmodified data.")
    sections = [
        Section("Accuracy after retraining", [setup], tables={"Mean accuracy": means}, figures=curve_figures),
        Section("Spread over seeds", [("std (ddof=1), min and max of the test accuracy over the seeds of each "
                                       "setting; ci95: half-width of the 95% Student-t confidence interval of the "
                                       "mean (none with one seed).")],
                tables={"Summary": summary.drop(columns=["metric", "model"])}),
        Section("Modified images", [("The first test image as the retrained models see it, at each fraction "
                                    "(each picture min-max scaled).")], figures=example_figures),
    ]
    return write_report(run.path / "report.html", "ROAR and KAR", findings(summary, config), sections,
                        tomli_w.dumps(config))
