"""Feature Perturbation Augmentation (Brocki & Chung, Pattern Recognition Letters 2023): does training with
perturbed images make the MIF/LIF evaluation of importance estimators more trustworthy?

Steps (paper sections 3-4, appendices A-D):

1. Train one model per training regime (``regimes``): no augmentation, FPA (Algorithm 1; small-image values
   p = 0.5, p1_max = 0.25, p2 = 0.1, s_max = 3; squares where ``fpa_squares`` says, see below) and random erasing (Zhong et al. 2020, the paper's "Rectangle"
   baseline), both setting removed pixels to the removal value (below). Report each model's accuracy on the explained
   images (what the paper's section 4 reports: "evaluated on the same images that are used to obtain the perturbation
   curves") beside its accuracy on the test split.
2. Explain the same ``n_images`` stratified test images on every model with the paper's estimators (``ESTIMATORS``):
   vanilla gradient VG, Integrated Gradients IG (baseline at the reference point, 200 points, right Riemann sum as
   in appendix B),
   SmoothGrad SG (15 samples), squared SmoothGrad SQ-SG and a random map. A prime (VG', SG') multiplies the raw
   scores by the input, measured from the reference point (below); subscript ``sum`` sums the channels (signed estimators: IG_sum, VG'_sum, SG'_sum), ``abs``
   sums their absolute values (unsigned). SQ-SG is non-negative, so SQ-SG_sum is unsigned. Gradients are those of the
   target's logit; the target is the class each model predicts (appendix B: "the predicted class c by the original
   model"), or the true label with ``target = "label"``.
3. MIF and LIF curves: pixels set to the removal value most-important-first and least-important-first (signed maps:
   from the largest positive to the most negative score, so LIF removes counter-evidence first), 0-95% in 5% steps,
   the target's logit divided by the clean logit; the fidelity A = mean AUC(LIF) - mean AUC(MIF) with x in percent
   and its 95% CI (normal approximation ``mean +- 1.96 sd / sqrt(n)``, as in Tables 1 and D.1-D.2). An image whose
   clean logit is <= 0 (only possible with ``target = "label"`` or a model whose logits are all negative) would
   have flipped curves: it is left out of A, the mean curves and the peak.
4. The analogue of Fig. 4 / C.3: for the signed estimators, the mean LIF curve above the mean importance scores of
   the pixels in LIF order (each map scaled by its largest absolute score), to see whether removing negative
   evidence first raises the logit: the peak of the mean LIF curve with the 95% CI of the mean at that fraction.

The report (``xaitrust.report.fpa``) opens with the paper's question and the run's answer; it calls one estimator,
group of estimators or training regime better than another only when their 95% CIs of A are disjoint, and a LIF peak
"above 1" only when its 95% CI lies above 1; otherwise it calls the values indistinguishable.

Choices the paper leaves open, exposed as config keys: ``sg_sigma`` (not given in the paper; 0.15, the middle of
Smilkov et al.'s recommended 10-20% noise level), the batch size, and the model and recipe for Fashion-MNIST (the
paper trains ResNet-18 on CIFAR-10; the ``paper`` profile uses its CIFAR-10 recipe -- SGD, lr 0.01, momentum 0.9,
weight decay 5e-4, 40 epochs, lr / 10 at epoch 30, horizontal flips in every regime -- on the small ``cnn``, and
``model = "resnet18"`` gives the paper's network at days of CPU time).

``removal_value`` is what a removed pixel becomes, in FPA, in random erasing and in the MIF/LIF curves alike. The
paper masks pixels "by setting them to zero" (section 3) in network inputs scaled to [-1, 1] (CIFAR-10, ImageNet) or
z-scored with the training mean and std (Food101, appendix A): mid-grey or the training mean. Images here are in
[0, 1] and every xaitrust model z-scores its input with the training images' per-channel mean and std, so the default
``"mean"`` (that per-channel mean) is the zero of the model's input, as for Food101. A number in [0, 1] sets that
raw value instead: 0.5 is the zero of the paper's [-1, 1] scaling, 0 is black. Black is a poor choice for Fashion-MNIST: about half of its pixels are 0, so removing them changes nothing,
and maps that are 0 on the background (IG with a black baseline, estimators primed with the raw image) get an inflated
A.

One reference point (``reference``). The prime exists because "VG' gives the correct sign in the linear case"
(section 3, appendix B): for a linear score ``w.x + b``, ``w * (x - r)`` says how the score moves when a pixel goes
from ``x`` to ``r``, which is what MIF and LIF do when ``r`` is the removal value; IG is complete with respect to
its baseline, ``sum IG = s(x) - s(x^0)``, so its map adds up to the change that removing every pixel makes only when
``x^0`` is the removed image. In the paper the three coincide: inputs are multiplied in the network's own
coordinates, whose zero is the removal value and, for CIFAR-10's [-1, 1] scaling, also its "black image" baseline
(appendix B: "x^0 is chosen to be a black image"). Here images are in raw [0, 1] units, so by default
(``reference = "removal"``) primed maps are ``attribution * (x - removal value)`` and IG's baseline is the removed
image; ``reference = "black"`` multiplies by the raw image and starts IG from black, the earlier reading.

Where FPA's squares start (``fpa_squares``): ``"selected"`` (default) follows the text, "with a probability of p^2
for each selected pixel, we create a non-informative square", and the authors' code; ``"every-pixel"`` the literal
loop of Algorithm 1, which removes about 2.5 times as many pixels (the report gives both shares, measured on the
training images' shape; ``xaitrust.training.augment.removed_share``).

Equal scores (IG and the primed estimators are exactly 0 on black pixels, about half of Fashion-MNIST) are removed in a
random order drawn from ``seed`` (``ties = "random"``); ``"stable"`` removes them row by row.

Profiles: ``smoke`` (1000 training images, 1 epoch, 8 images, six estimators) takes well under a minute; ``quick`` (all
60,000 training images, 2 epochs, 128 images, IG with 64 points) about ten minutes on 2 CPU cores with one torch
thread; ``paper`` (40 epochs, 10,000 images, IG with 200 points) hours with the ``cnn`` on CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ..data import stratified_sample
from ..explainers.reduce import reduce_attributions
from ..metrics import area_between, mif_lif
from ..metrics.curves import curve_area
from ..metrics.fidelity import FPA_FRACTIONS
from ..perturb.orders import TIES
from ..report.fpa import file_key, write_fpa_report
from ..statistics import normal_interval
from ..training import Task, TrainConfig
from ..training.augment import removed_share
from ..training.config import FPA_SQUARES, OPTIMIZERS, SCHEDULES
from .common import (
    RECIPE_DEFAULTS,
    check_architecture,
    explain_cached,
    load_splits,
    predictions,
    removal_fill,
    removal_value,
    run_shards,
    train_config,
    training_job,
)
from .config import ProtocolSpec
from .results import tidy_rows
from .run_folder import RunFolder


@dataclass(frozen=True)
class Estimator:
    """One of the paper's importance estimators: an explainer, whether its raw scores are multiplied by the input
    (the paper's prime), the channel reduction (``"sum"`` or ``"abs-sum"``) and its kind (signed, unsigned,
    baseline)."""

    explainer: str
    primed: bool
    reduction: str
    kind: str


#: The estimators of Tables 1, D.1 and D.2, in the paper's order.
ESTIMATORS = {
    "random": Estimator("random", False, "sum", "baseline"),
    "IG_sum": Estimator("integrated-gradients", False, "sum", "signed"),
    "IG_abs": Estimator("integrated-gradients", False, "abs-sum", "unsigned"),
    "VG_abs": Estimator("sensitivity", False, "abs-sum", "unsigned"),
    "VG'_sum": Estimator("sensitivity", True, "sum", "signed"),
    "VG'_abs": Estimator("sensitivity", True, "abs-sum", "unsigned"),
    "SG_abs": Estimator("smoothgrad", False, "abs-sum", "unsigned"),
    "SG'_sum": Estimator("smoothgrad", True, "sum", "signed"),
    "SG'_abs": Estimator("smoothgrad", True, "abs-sum", "unsigned"),
    "SQ-SG_sum": Estimator("smoothgrad-squared", False, "sum", "unsigned"),
}

REGIMES = ("none", "fpa", "erasing")
REFERENCES = ("removal", "black")

_COMMON = {
    **RECIPE_DEFAULTS,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "none",
    "milestones": [],
    "regimes": list(REGIMES),
    "flip": False,
    "fpa_p": 0.5,
    "fpa_p1_max": 0.25,
    "fpa_p2": 0.1,
    "fpa_s_max": 3,
    "fpa_squares": "selected",
    "erasing_p": 0.5,
    "removal_value": "mean",
    "ties": "random",
    "estimators": list(ESTIMATORS),
    "target": "predicted",
    "n_images": 128,
    "ig_steps": 200,
    "reference": "removal",
    "sg_samples": 15,
    "sg_sigma": 0.15,
    "explainer_batch_size": 64,
}


def validate(config: dict) -> None:
    """Checks across keys: the removal value, and ``model`` names an architecture (FPA trains its regimes)."""
    removal_value(config)
    check_architecture(config)


SPEC = ProtocolSpec(
    name="fpa",
    description="Train without augmentation, with FPA and with random erasing; MIF/LIF curves and the fidelity A "
    "(95% CI) of signed and unsigned estimators per regime; LIF curve beside the importance scores (Fig. 4).",
    defaults={
        "paper": dict(_COMMON, optimizer="sgd", lr=0.01, weight_decay=5e-4, schedule="step", milestones=[30], epochs=40,
                      flip=True, n_images=10000),
        "quick": dict(_COMMON, epochs=2, ig_steps=64),
        "smoke": dict(_COMMON, train_size=1000, test_size=500, epochs=1, n_images=8, ig_steps=8, sg_samples=4,
                      estimators=["random", "IG_sum", "VG_abs", "VG'_sum", "SG'_abs", "SQ-SG_sum"]),
    },
    choices={
        "regimes": REGIMES,
        "estimators": tuple(ESTIMATORS),
        "target": ("predicted", "label"),
        "ties": TIES,
        "reference": REFERENCES,
        "fpa_squares": FPA_SQUARES,
        "optimizer": OPTIMIZERS,
        "schedule": SCHEDULES,
    },
    validate=validate,
    mixed_types=("removal_value",),
    positive=("milestones", "fpa_s_max", "ig_steps", "sg_samples"),
    non_negative=("momentum", "weight_decay", "sg_sigma"),
    fractions=("fpa_p", "fpa_p1_max", "fpa_p2", "erasing_p"),
)


def augmentation(config: dict, regime: str) -> str:
    """The ``TrainConfig.augmentation`` of ``regime``: ``"none"``, ``"fpa"`` or ``"erasing"``, after ``"flip"`` when
    ``config["flip"]`` (the paper flips images in every regime)."""
    names = (["flip"] if config["flip"] else []) + ([] if regime == "none" else [regime])
    return "+".join(names) or "none"


def reference_point(config: dict, fill: tuple[float, ...]) -> torch.Tensor:
    """The reference point ``(1, C, 1, 1)`` in raw image units: the removal value ``fill`` for ``reference =
    "removal"``, black (0) for ``"black"``; primed maps multiply by ``x - reference`` and IG starts from it."""
    point = torch.tensor(fill, dtype=torch.float32).reshape(1, -1, 1, 1)
    return point if config["reference"] == "removal" else torch.zeros_like(point)


def explainer_params(config: dict, explainer: str, reference: torch.Tensor) -> dict:
    """Parameters of ``explainer`` from the config (paper appendix B); IG's baseline is ``reference``."""
    if explainer == "integrated-gradients":
        return {"steps": config["ig_steps"], "baseline": reference, "rule": "riemann-right"}
    if explainer in ("smoothgrad", "smoothgrad-squared"):
        return {"samples": config["sg_samples"], "sigma": config["sg_sigma"], "seed": config["seed"]}
    if explainer == "random":
        return {"seed": config["seed"]}
    return {}


def estimator_maps(attributions: torch.Tensor, x: torch.Tensor, estimator: Estimator,
                   reference: torch.Tensor) -> torch.Tensor:
    """Maps ``(N, H, W)`` of ``estimator`` from its explainer's raw attributions ``(N, C, H, W)``: a primed estimator
    multiplies them by ``x - reference`` (``reference_point``) before the channel reduction."""
    return reduce_attributions(attributions * (x - reference) if estimator.primed else attributions,
                               estimator.reduction)


def explainer_curves(run: RunFolder, regime: str, model, x: torch.Tensor, target: torch.Tensor, fill: tuple,
                     explainer: str, progress: bool = True) -> dict:
    """Per estimator of ``explainer`` (in ``config["estimators"]``), the MIF and LIF curves ``(N, 20)`` (removed
    pixels set to ``fill``, one value per channel) and the maps ``(N, H, W)`` on the model of ``regime``; the
    explainer's attributions and the curves are cached in the run folder, the last estimator's curves last."""
    config = run.config
    replacement = torch.tensor(fill, dtype=x.dtype).reshape(1, -1, 1, 1)
    reference = reference_point(config, fill)
    attributions = explain_cached(run, f"{explainer}/{regime}", explainer,
                                  explainer_params(config, explainer, reference), model, x, target, "logit",
                                  config["explainer_batch_size"], progress)
    results = {}
    for name in estimators_of(config, explainer):
        maps = estimator_maps(attributions, x, ESTIMATORS[name], reference)

        def compute(maps=maps):
            curves = mif_lif(model, x, maps, target, FPA_FRACTIONS, replacement=replacement, output="logit",
                             ties=config["ties"], seed=config["seed"])
            return {"mif": curves.mif.curves, "lif": curves.lif.curves}

        results[name] = {**run.cached_tensors(f"curves/{regime}/{file_key(name)}", compute), "maps": maps}
    return results


def estimators_of(config: dict, explainer: str) -> list[str]:
    """The configured estimators that use ``explainer``, in the config's order."""
    return [name for name in config["estimators"] if ESTIMATORS[name].explainer == explainer]


def curve_shard(run: RunFolder, regime: str, model, x, target, fill: tuple, explainer: str) -> None:
    """The explanation and scoring shard of one regime and explainer, as a task of the run's runner:
    ``explainer_curves`` without progress bars, which leaves its pieces in the run folder for ``regime_curves``."""
    explainer_curves(run, regime, model, x, target, fill, explainer, progress=False)


def curve_shards(run: RunFolder, regime: str, model, x, target, fill: tuple):
    """The ``(task, last piece)`` shards of ``regime``, one per explainer (``run_shards``)."""
    for explainer in dict.fromkeys(ESTIMATORS[name].explainer for name in run.config["estimators"]):
        last = f"curves/{regime}/{file_key(estimators_of(run.config, explainer)[-1])}.safetensors"
        yield Task(f"explain and score {regime}/{explainer}", curve_shard,
                   (run, regime, model, x, target, fill, explainer)), last


def regime_curves(run: RunFolder, regime: str, model, x: torch.Tensor, target: torch.Tensor, fill: tuple) -> dict:
    """Per estimator (in the config's order), the MIF and LIF curves and maps of ``explainer_curves`` and the clean
    logits ``(N,)`` that normalise the curves."""
    config = run.config
    clean = predictions(model, x).gather(1, target[:, None].to(torch.long))[:, 0]
    curves = {}
    for explainer in dict.fromkeys(ESTIMATORS[name].explainer for name in config["estimators"]):
        curves.update(explainer_curves(run, regime, model, x, target, fill, explainer))
    # A clean logit <= 0 flips its image's curves: they are NaN, so mean curves in figures leave them out.
    flipped = (clean <= 0)[:, None]
    return {name: {"mif": curves[name]["mif"].masked_fill(flipped, math.nan),
                   "lif": curves[name]["lif"].masked_fill(flipped, math.nan),
                   "maps": curves[name]["maps"], "clean": clean}
            for name in config["estimators"]}


def fidelity_rows(curves: dict, regime: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy per-sample rows (``mif_lif_area``, ``mif_area``, ``lif_area``, x in percent) and one summary row per
    estimator: A with its 95% CI, the mean areas, and the peak of the mean LIF curve with the 95% CI of the mean
    normalised LIF value across images at the peak's fraction (normal approximation, ``normal_interval``, as for A;
    the fraction is picked on the same images, so the interval is a little optimistic). Images whose clean logit is <= 0 (possible with ``target = "label"``) have
    flipped curves: their areas are NaN and every summary leaves them out (``n`` counts the others)."""
    fractions = torch.tensor(FPA_FRACTIONS, dtype=torch.float64)
    rows, summary = [], []
    for name, part in curves.items():
        between = area_between(part["mif"], part["lif"], fractions, percent=True, ci=0.95, clean_score=part["clean"])
        defined = ~between.per_sample.isnan()
        mif_area, lif_area = (curve_area(part[order].double(), fractions, scale=100).masked_fill(~defined, math.nan)
                              for order in ("mif", "lif"))
        labels = {"method": name, "model": regime}
        rows += [tidy_rows(between.per_sample, metric="mif_lif_area", **labels),
                 tidy_rows(mif_area, metric="mif_area", **labels), tidy_rows(lif_area, metric="lif_area", **labels)]
        lif = part["lif"][defined]
        lif_mean = lif.double().mean(dim=0)
        peak = int(lif_mean.argmax())
        at_peak = normal_interval(lif[:, peak].double().numpy())
        summary.append({
            "model": regime, "method": name, "kind": ESTIMATORS[name].kind, "n": between.n,
            "A": between.value, "ci_low": between.ci_low, "ci_high": between.ci_high,
            "mif_area": float(mif_area[defined].mean()), "lif_area": float(lif_area[defined].mean()),
            "lif_peak": float(lif_mean[peak]), "lif_peak_ci_low": at_peak.low, "lif_peak_ci_high": at_peak.high,
            "lif_peak_percent": 100 * FPA_FRACTIONS[peak],
        })
    return pd.concat(rows, ignore_index=True), pd.DataFrame(summary)


def accuracy_rows(regime: str, test_accuracy: float, correct: torch.Tensor) -> pd.DataFrame:
    """``accuracy`` on the test split (one row, ``sample = -1``) and ``correct`` (0/1) per explained image."""
    split = tidy_rows(torch.tensor([test_accuracy]), metric="accuracy", model=regime).assign(sample=-1)
    return pd.concat([split, tidy_rows(correct.float(), metric="correct", model=regime)], ignore_index=True)


def regime_recipe(config: dict, regime: str, fill: tuple[float, ...]) -> TrainConfig:
    """The training recipe of ``regime``: the config's optimiser, schedule and augmentation parameters, FPA and
    random erasing setting removed pixels to ``fill`` (one raw value per channel, see ``removal_fill``)."""
    recipe = {key: config[key] for key in ("momentum", "weight_decay", "schedule", "fpa_p", "fpa_p1_max", "fpa_p2",
                                           "fpa_s_max", "fpa_squares", "erasing_p")}
    return train_config(config, augmentation=augmentation(config, regime), milestones=tuple(config["milestones"]),
                        fpa_value=fill, erasing_value=fill, **recipe)


def estimator_table(config: dict, fill: tuple[float, ...]) -> pd.DataFrame:
    """The chosen estimators: explainer, prime, reduction, kind and the explainer's parameters."""
    reference = reference_point(config, fill)
    point = ", ".join(f"{v:.3f}" for v in reference.flatten())

    def shown(params: dict) -> str:
        return str({key: f"({point})" if isinstance(value, torch.Tensor) else value for key, value in params.items()})

    return pd.DataFrame([
        {"estimator": name, "explainer": e.explainer, "times input": f"x - ({point})" if e.primed else "no",
         "reduction": e.reduction, "kind": e.kind, "parameters": shown(explainer_params(config, e.explainer, reference))}
        for name, e in ESTIMATORS.items() if name in config["estimators"]
    ])


def removal_shares(config: dict, image_shape: tuple[int, ...]) -> pd.DataFrame:
    """The mean share of pixels FPA removes from a perturbed mini-batch of images of ``image_shape`` ``(C, H, W)``
    under both square placements (``removed_share``), and which one the run trains with."""
    return pd.DataFrame([
        {"squares": squares, "used": squares == config["fpa_squares"],
         "removed share": removed_share((16, *image_shape), config["fpa_p1_max"], config["fpa_p2"],
                                        config["fpa_s_max"], squares, seed=config["seed"])}
        for squares in FPA_SQUARES
    ])


def trainings(config: dict) -> int:
    """Models the run trains: one per regime."""
    return len(config["regimes"])


def execute(run: RunFolder) -> Path:
    config = run.config
    train, test = load_splits(config)
    chosen = stratified_sample(test.y, min(config["n_images"], len(test)), seed=config["seed"])
    x, labels = test.x[chosen], test.y[chosen]
    fill = removal_fill(config, train.mean)
    tables, summaries, accuracy, curves = [], [], [], {}
    jobs = [training_job(run, regime, config["model"], train, test, regime_recipe(config, regime, fill),
                         config["model_options"]) for regime in config["regimes"]]
    models = dict(zip(config["regimes"], run.runner.run(jobs)))  # the regimes' trainings side by side
    predicted = {regime: predictions(trained.model, x).argmax(dim=1) for regime, trained in models.items()}
    targets = {regime: predicted[regime] if config["target"] == "predicted" else labels for regime in models}
    run_shards(run, (shard for regime, trained in models.items()  # explained and scored side by side
                     for shard in curve_shards(run, regime, trained.model, x, targets[regime], fill)))
    for regime, trained in models.items():
        curves[regime] = regime_curves(run, regime, trained.model, x, targets[regime], fill)
        rows, summary = fidelity_rows(curves[regime], regime)
        correct = predicted[regime] == labels
        tables += [accuracy_rows(regime, trained.metrics["test_accuracy"], correct), rows]
        summaries.append(summary)
        accuracy.append({"model": regime, "augmentation": augmentation(config, regime),
                         "test_accuracy": trained.metrics["test_accuracy"], "test_images": len(test),
                         "explained_accuracy": float(correct.float().mean()), "explained_images": len(x)})
    summary, accuracy = pd.concat(summaries, ignore_index=True), pd.DataFrame(accuracy)
    run.write_table("results", pd.concat(tables, ignore_index=True))
    run.write_table("summary", summary)
    run.write_table("accuracy", accuracy)

    return write_fpa_report(run, accuracy=accuracy, summary=summary, curves=curves, fill=fill,
                            training_images=len(train), estimators=estimator_table(config, fill),
                            shares=removal_shares(config, x.shape[1:]))
