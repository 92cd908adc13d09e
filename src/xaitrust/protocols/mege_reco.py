"""MeGe and ReCo (Fel, Vigouroux, Cadène & Serre, "How Good is your Explanation? Algorithmic Stability Measures to
Assess the Quality of Explanations for Deep Neural Networks"): are a method's explanations stable when the explained
image leaves the training set, and do they change when the prediction does?

Steps (paper sections 3-4, Algorithm 1 in appendix A):

1. D is the training split of the dataset (cut to ``train_size``); it is split into ``k`` stratified folds and model
   ``i`` is trained on every fold but fold ``i`` (``xaitrust.training.kfold``, checkpoints in ``models/<family>/``).
   The trainings of every family (this one, the label-shuffled ones of step 4, the 1-Lipschitz one of step 5) go to
   the run's runner together, so the Ray executor runs them side by side across families. With the Ray executor
   the explanations and scores of steps 2-3 run side by side too, one task per family and method, beside the
   distance tests of step 6 (``shards``).
2. ``n_samples`` images of D (stratified by fold and class, so every fold is represented) are explained by all ``k``
   models with every method (section 4.1: Saliency, Gradient x Input, Integrated Gradients, SmoothGrad, Grad-CAM,
   Grad-CAM++, RISE, and the Random control).
3. Per method: S= and S!= (eqs. 3-4) from the distances ``1 - |Spearman|`` between the map of the model that never saw
   the image and each other model's map; MeGe (eq. 5), ReCo (eq. 6) and ReCo_AUC (appendix D); the S=/S!= histograms
   (Fig. 5/10); muFidelity (appendix C: subsets of 15% of the pixels, baseline 0), each image scored on the model that
   did not train on it, so its mean is the mean over the ``k`` models of their held-out scores. ReCo takes TPR and
   TNR as the rates the text names ("the true positive rate", "the maximal balanced accuracy", "independently of the
   accuracy of the predictor"), as the authors' code (Xplique) does; ``reco_as_written`` takes them as eq. 6 prints
   them (shares of each side of the threshold), which the imbalance of S= and S!= drives towards ``|S=| / |S|``
   (``xaitrust.metrics.consistency``). Uncertainty: 95% percentile bootstrap intervals of MeGe and of both ReCo over
   ``bootstrap_samples`` resamples of the explained images, and ReCo's noise floor, the mean and 95% quantile of the
   ReCo of ``floor_draws`` uninformative sets of the same sizes (``bootstrap_intervals``, ``reco_noise_floor``).
4. Sanity check (section 4.2, Fig. 3/9): the same scores for degraded families. Weight noise: ``N(0, noise_std)``
   added to the top ``noise_levels`` share of each fold model's layers (main text: "we gradually randomize 5%, 10%
   and 30% of the predictor layers"); appendix E.2 adds the noise "to each convolution layer, with the intensity of
   the degradation impacting on the number of parameters affected", which is ``noise_unit = "parameters"`` with
   ``noise_layers = "convolutions"``; label shuffling: the k-fold family retrained with ``shuffle_levels``
   of D's labels switched to another class. The paper expects MeGe and ReCo to drop and muFidelity to stay flat
   (section 4.3, Fig. 4).
5. Option ``lipschitz``: a ``lipschitz-cnn`` k-fold family scored beside the base model (section 4.5, Tables 2/3).
   "The predictors were trained using the Deel-Lip library" and "All the predictors, including the 1-Lipschitz, have
   comparable accuracy (78 +- 4%)" (section 3.3: "we ensure a similar accuracy on the test set"). 1-Lipschitz
   networks are trained with losses made for them and learn more slowly, so every ``lipschitz-cnn`` family (also as
   ``model``) trains with ``lipschitz_loss`` (default ``"tau-cross-entropy"``, ``CE(tau * logits, y) / tau``,
   Béthune et al., "Pay attention to your loss"; deel-torchlip's ``TauCrossEntropyLoss``) at ``tau =
   lipschitz_tau`` (10) for ``lipschitz_epoch_factor`` (3) times ``epochs``; the other families train with
   cross-entropy for ``epochs``. Measured on the quick profile's data (fold model 0: 6,400 training images; accuracy
   on the 10,000 test images): ``cnn``, 2 epochs, 0.802; ``lipschitz-cnn`` with cross-entropy, 2 epochs, 0.711
   (0.682 before Deel-Lip's orthogonal initialisation); with the tau loss, 2 epochs, 0.740; 6 epochs, 0.806. Over
   8 epochs (accuracy on 2,000 test images) tau = 5, 10 and 20 end within 0.01 of each other (0.81, 0.81, 0.80),
   tau = 10 first reaches 0.80 (epoch 6), and cross-entropy trails (0.758 at epoch 6).
6. The distance sanity tests of appendix F (F.1 moving point, F.2 noise; ``xaitrust.metrics.distance_sanity``) on
   every candidate distance of section 4.1, ``distance_test_positions`` positions and ``distance_test_repeats`` noise
   draws per sigma (the paper: 100 and 50), in ``distance_tests.csv`` and the report.

Choices where the paper is silent or ambiguous (each one a config key):

* ``target = "label"``: every model explains the true class ``y`` of the image, so two models' maps of one image
  always answer the same question; with ``"predicted"`` the two maps of an S!= pair would explain different classes
  and differ for that reason alone, which inflates ReCo.
* ``output = "logit"``: appendix B explains the logit ``f_c``.
* ``reduction = "abs-sum"``: maps are ``sum_c |a_c|`` (the paper's SA and GI formulas take absolute values; for the
  one-channel Fashion-MNIST this is ``|a|``). muFidelity uses the raw attributions, as appendix B defines them:
  signed for IG and SmoothGrad, ``|ds/dx|`` for Saliency and ``x * |ds/dx|`` for Gradient x Input
  (``explainer_params["gradient-input"] = {"gradient": "absolute"}``; ``"signed"`` gives Shrikumar's ``x * ds/dx``).
* Stochastic methods (SmoothGrad, RISE) use the same seed on every model, so two models' maps differ through the models
  and not through the noise draws; the Random control gets a different seed per model (with one seed all its maps
  would be identical and score MeGe = 1).
* Weight noise goes to the top ``ceil(level * L)`` weight layers (convolutions and dense layers alike,
  ``xaitrust.training.randomize_weights``), each fold model with its own seed.

Run folder: ``results.csv`` holds one row per observation with columns ``metric, method, model, sample, value,
degradation, level``: ``mu_fidelity`` has one row per explained image (``sample`` = its index among the
``n_samples``); ``mege``, ``reco``, ``reco_as_written`` and ``reco_auc`` are scores of a whole set and have one row
with ``sample = -1``. ``reco`` and ``reco_auc`` take TPR and TNR as rates, ``reco_as_written`` as eq. 6 prints them.
``intervals.csv`` holds, per family, method and score (``mege``, ``reco``, ``reco_as_written``), the value, its
bootstrap interval (``ci_low``, ``ci_high``) and, for the ReCo scores, the noise floor (``floor_mean``,
``floor_95``). The scores are NaN only when their set is empty (``separation.csv`` counts S= and S!=): MeGe needs
S=, the ReCo scores both S= and S!=; a ``mu_fidelity`` value is NaN for an image whose attribution sums or score
drops do not vary over the subsets (e.g. an all-zero Grad-CAM map). ``model`` names the family: ``cnn``,
``cnn+noise-0.05``, ``cnn+shuffle-0.1``, ``lipschitz-cnn``. ``report.html`` and ``summary.json`` (the question, its
answer and the main tables) come from ``xaitrust.report.mege_reco``.

Profiles: ``paper`` keeps the paper's parameters (ResNet-18 with 26 base filters and dropout 0.4 for Fashion-MNIST,
appendix E; all 60,000 training images; 10,000 explained images, the paper's muFidelity sample; IG 60 points, SmoothGrad
60 samples with sigma 0.2, RISE 1000 masks; the 1-Lipschitz family). Its 8 families of 5 models are far too slow for a
2-core CPU: it is meant for a machine with a GPU (the number of training epochs, 20, is not in the paper).
``quick`` uses the small ``cnn`` on 8,000 images for 2 epochs, 80 explained images, IG with 30 points, RISE with 500
masks, muFidelity over 32 subsets, no 1-Lipschitz family (``lipschitz-cnn`` recomputes its layers' operator norms in
every forward pass and explains tens of times slower than ``cnn``) and weight noise as appendix E.2 describes it
(``noise_unit = "parameters"``, ``noise_layers = "convolutions"``): shares of layers would make 5% and 10% of the four
weight layers of ``cnn`` the same single layer. ``smoke`` is a one-minute check: k = 3, a tiny
``cnn``, 20 images, one degradation level each.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from ..data import stratified_kfold, stratified_sample
from ..devices import on_device
from ..errors import XaitrustError
from ..explainers import available_explainers
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..metrics import cross_fold_distances, mege, mu_fidelity, reco, reco_auc
from ..metrics.consistency import (
    CrossFoldDistances,
    UndefinedScoreWarning,
    bootstrap_intervals,
    reco_noise_floor,
)
from ..metrics.distance_sanity import distance_sanity_tests
from ..metrics.distances import DISTANCES
from ..models import build_model
from ..models.loading import ModelSource
from ..report.mege_reco import write_mege_reco_report
from ..training import Task, randomize_weights, shuffle_labels
from ..training.config import LOSSES, TrainConfig
from ..training.degrade import NOISE_LAYERS, RANDOMIZATION_UNITS, noise_candidates
from ..training.kfold import KFoldPlan, plan_k_fold, train_k_folds
from .common import (
    check_architecture,
    check_explainer_lists,
    check_explainers,
    config_device,
    explain_cached,
    fresh_model,
    load_split,
    predictions,
    run_shards,
)
from .common import train_config as protocol_recipe
from .config import ProtocolSpec
from .results import summarize, tidy_rows
from .run_folder import RunFolder

MEGE_EXPLAINERS = [
    "saliency", "gradient-input", "integrated-gradients", "smoothgrad", "gradcam", "gradcam++", "rise", "random",
]
LIPSCHITZ_MODEL = "lipschitz-cnn"
#: Temperature of the 1-Lipschitz family's loss and how many times longer than the others it trains (see step 5 of
#: the module docstring for the measurements behind them).
LIPSCHITZ_TAU = 10.0
LIPSCHITZ_EPOCH_FACTOR = 3

_PAPER = {
    "dataset": "fashion-mnist",
    "data_root": "",
    "dataset_options": {},
    "device": "auto",
    "train_size": 0,
    "k": 5,
    "model": "resnet18",
    "model_options": {"base_filters": 26, "dropout": 0.4},
    "optimizer": "adam",
    "lr": 1e-3,
    "batch_size": 128,
    "epochs": 20,
    "seed": 0,
    "n_samples": 10000,
    "explainers": MEGE_EXPLAINERS,
    "explainer_params": {
        "gradient-input": {"gradient": "absolute"},
        "integrated-gradients": {"steps": 60, "rule": "trapezoid", "baseline": "zero"},
        "smoothgrad": {"samples": 60, "sigma": 0.2},
        "rise": {"n_masks": 1000, "interpolation": "bilinear"},
    },
    "explainer_batch_size": 64,
    "target": "label",
    "output": "logit",
    "reduction": "abs-sum",
    "distance": "spearman",
    "mu_fidelity_fraction": 0.15,
    "mu_fidelity_subsets": 200,
    "noise_levels": [0.05, 0.1, 0.3],
    "noise_std": 0.5,
    "noise_unit": "layers",
    "noise_layers": "all",
    "shuffle_levels": [0.05, 0.1, 0.3],
    "lipschitz": True,
    "lipschitz_loss": "tau-cross-entropy",
    "lipschitz_tau": LIPSCHITZ_TAU,
    "lipschitz_epoch_factor": LIPSCHITZ_EPOCH_FACTOR,
    "histogram_bins": 30,
    "bootstrap_samples": 1000,
    "floor_draws": 1000,
    "distance_test_positions": 100,
    "distance_test_repeats": 50,
}


def validate(config: dict) -> None:
    """Checks beyond the declared ranges: ``model`` names an architecture (the folds are trained here), the explainers
    and their parameters (``check_explainer_lists``: listed or not), and ``mu_fidelity_fraction`` leaves some features
    out of each subset."""
    check_architecture(config)
    check_explainer_lists(config)
    if not 0 < config["mu_fidelity_fraction"] < 1:
        raise XaitrustError(f"config key 'mu_fidelity_fraction' must lie in (0, 1): the share of features removed in "
                            f"each muFidelity subset; got {config['mu_fidelity_fraction']!r}")


SPEC = ProtocolSpec(
    name="mege-reco",
    description="MeGe, ReCo, ReCo_AUC and muFidelity of explanations from k-fold cross-trained models, with the "
    "weight-noise and label-shuffling sanity checks and an optional 1-Lipschitz family (paper profile: ResNet-18, "
    "far too slow on a 2-core CPU).",
    defaults={
        "paper": _PAPER,
        "quick": dict(
            _PAPER, train_size=8000, model="cnn", model_options={}, epochs=2, n_samples=80, mu_fidelity_subsets=32,
            lipschitz=False, noise_unit="parameters", noise_layers="convolutions",
            explainer_params={"gradient-input": {"gradient": "absolute"},
                              "integrated-gradients": {"steps": 30, "rule": "trapezoid", "baseline": "zero"},
                              "smoothgrad": {"samples": 60, "sigma": 0.2},
                              "rise": {"n_masks": 500, "interpolation": "bilinear"}},
        ),
        "smoke": dict(
            _PAPER, train_size=1000, k=3, model="cnn", model_options={"channels": [8, 16], "hidden": 32}, lr=5e-3,
            epochs=1, n_samples=20, mu_fidelity_subsets=8, noise_levels=[0.3], shuffle_levels=[0.3], lipschitz=False,
            histogram_bins=10, bootstrap_samples=200, floor_draws=200, distance_test_positions=20,
            distance_test_repeats=5,
            explainer_params={"gradient-input": {"gradient": "absolute"}, "integrated-gradients": {"steps": 8},
                              "smoothgrad": {"samples": 4},
                              "rise": {"n_masks": 50}},
        ),
    },
    choices={
        "explainers": tuple(info.name for info in available_explainers()),
        "target": ("label", "predicted"),
        "output": ("logit", "probability", "log-probability"),
        "reduction": REDUCTIONS,
        "distance": tuple(DISTANCES),
        "noise_unit": RANDOMIZATION_UNITS,
        "noise_layers": tuple(NOISE_LAYERS),
        "lipschitz_loss": LOSSES,
    },
    validate=validate,
    positive=("n_samples", "noise_std", "histogram_bins", "lipschitz_tau", "lipschitz_epoch_factor",
              "bootstrap_samples", "floor_draws", "distance_test_repeats"),
    fractions=("noise_levels", "shuffle_levels"),
    at_least={"k": 2, "distance_test_positions": 2},
)


@dataclasses.dataclass
class Family:
    """k fold models; ``data_folds`` is the fold of every image of D, ``folds`` that of the explained images (model
    ``i`` never trained on fold ``i``)."""

    name: str
    models: list[torch.nn.Module]
    data_folds: torch.Tensor
    folds: torch.Tensor
    degradation: str = "none"
    level: float = 0.0


def family_config(config: dict, model_name: str) -> dict:
    """The run config with the ``loss``, ``tau`` and ``epochs`` the family of ``model_name`` trains with: for
    ``lipschitz-cnn`` ``lipschitz_loss`` at ``lipschitz_tau`` for ``lipschitz_epoch_factor`` times ``epochs``, for the
    others cross-entropy for ``epochs``."""
    if model_name == LIPSCHITZ_MODEL:
        return dict(config, loss=config["lipschitz_loss"], tau=config["lipschitz_tau"],
                    epochs=config["lipschitz_epoch_factor"] * config["epochs"])
    return dict(config, loss="cross-entropy", tau=1.0)


def train_config(config: dict) -> TrainConfig:
    """A family's training recipe: the protocol's (``common.train_config``: optimizer, lr, batch_size, epochs, seed)
    with the family's ``loss`` and ``tau`` (and the 1-Lipschitz family's epochs) from ``family_config``."""
    return protocol_recipe(config, loss=config["loss"], tau=config["tau"])


def family_plan(run: RunFolder, name: str, model_name: str, model_options: dict, data,
                clean_labels=None) -> KFoldPlan:
    """The ``k`` trainings of ``model_name`` on ``data`` (checkpoints in ``models/<name>``, where finished ones are
    reused), with the folds recorded there. Folds are stratified on ``clean_labels`` (default ``data.y``), so a
    label-shuffled family keeps the clean family's folds and every family is compared on the same splits. The recipe
    is ``train_config(family_config(...))``."""
    config = family_config(run.config, model_name)
    factory = partial(on_device, partial(build_model, model_name, data.in_channels, data.num_classes, data.image_size,
                                         **model_options), config_device(config))
    return plan_k_fold(factory, data, config["k"], train_config(config), run.file(f"models/{name}"),
                       seed=config["seed"], stratify_by=clean_labels)


def trained_families(run: RunFolder, base_name: str, data, samples) -> list[Family]:
    """The trained families, in the order of their tables: the clean family ``base_name``, a label-shuffled one per
    ``shuffle_levels`` and, with ``lipschitz``, the 1-Lipschitz one. Their trainings all go to the run's runner in
    one call (``train_k_folds``), so a runner with several workers runs the families side by side."""
    config = run.config
    architecture, options = config["model"], config["model_options"]
    plans = {base_name: family_plan(run, base_name, architecture, options, data)}
    degradations = {base_name: ("none", 0.0)}
    for level in config["shuffle_levels"]:
        name = f"{base_name}+shuffle-{level:g}"
        shuffled = dataclasses.replace(data, y=shuffle_labels(data.y, level, config["seed"], data.num_classes))
        plans[name] = family_plan(run, name, architecture, options, shuffled, clean_labels=data.y)
        degradations[name] = ("shuffle", level)
    if config["lipschitz"]:
        plans[LIPSCHITZ_MODEL] = family_plan(run, LIPSCHITZ_MODEL, LIPSCHITZ_MODEL, {}, data)
        degradations[LIPSCHITZ_MODEL] = ("none", 0.0)
    trained = train_k_folds(list(plans.values()), run.runner)
    return [Family(name, result.models, result.folds, result.folds[samples], *degradations[name])
            for name, result in zip(plans, trained)]


def noisy_family(base: Family, level: float, config: dict) -> Family:
    """``base`` with Gaussian weight noise on a ``level`` share of each model's layers (or weights); seeded per model,
    so it needs no checkpoint."""
    models = [
        randomize_weights(model, level, config["noise_std"], seed=config["seed"] + i, unit=config["noise_unit"],
                          layers=config["noise_layers"])
        for i, model in enumerate(base.models)
    ]
    return Family(f"{base.name}+noise-{level:g}", models, base.data_folds, base.folds, "noise", level)


def warn_identical_noise_levels(model: torch.nn.Module, config: dict) -> None:
    """Warn when ``noise_unit = "layers"`` makes two ``noise_levels`` degrade the same number of layers: their fold
    models are then identical (e.g. 5% and 10% of the 4 weight layers of ``cnn`` both mean the output layer)."""
    if config["noise_unit"] != "layers":
        return
    n_layers = len(noise_candidates(model, config["noise_layers"]))
    counts = {level: math.ceil(level * n_layers) for level in config["noise_levels"]}
    if len(set(counts.values())) < len(counts):
        shown = ", ".join(f"{level:g} -> {count}" for level, count in counts.items())
        warnings.warn(f"noise_levels give the same number of noisy layers of the {n_layers} of {config['model']} "
                      f"({shown}), so those families are identical; use noise_unit = \"parameters\" or other levels",
                      stacklevel=2)


def explainer_params(config: dict, method: str, model_index: int) -> dict:
    """The configured parameters of ``method``; the Random control draws different noise for every model."""
    params = dict(config["explainer_params"].get(method, {}))
    if method == "random":
        params["seed"] = params.get("seed", config["seed"]) + model_index
    return params


def explain_family(run: RunFolder, family: Family, method: str, x, targets, progress: bool = True) -> torch.Tensor:
    """Raw attributions ``(k, N, C, H, W)`` of ``method``: model ``i`` explains the classes ``targets[i]``."""
    config = run.config
    return torch.stack([
        explain_cached(run, f"{family.name}/{method}/model-{i}", method, explainer_params(config, method, i), model,
                       x, targets[i], config["output"], config["explainer_batch_size"], progress)
        for i, model in enumerate(family.models)
    ])


def held_out_fidelity(family: Family, x, attributions, targets, config: dict) -> torch.Tensor:
    """muFidelity ``(N,)`` of every image on the model that did not train on it (appendix C, baseline 0)."""
    values = torch.full((len(x),), float("nan"))
    for i, model in enumerate(family.models):
        members = (family.folds == i).nonzero().flatten()
        if len(members):
            values[members] = mu_fidelity(
                model, x[members], attributions[i, members], targets[i, members], config["mu_fidelity_fraction"],
                config["mu_fidelity_subsets"], baseline=0.0, output=config["output"], seed=config["seed"],
            )
    return values


@dataclasses.dataclass
class FamilyScores:
    """What ``score_family`` returns: tidy ``rows``, S=/S!= per method (``separation[method] = (s_eq, s_neq)``),
    model 0's maps of the first eight images per method (``examples``) and the bootstrap intervals and noise floors
    (``intervals``, see ``score_intervals``)."""

    rows: pd.DataFrame
    separation: dict
    examples: dict
    intervals: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)


@functools.cache
def noise_floor(n_eq: int, n_neq: int, rates: str, draws: int, seed: int) -> tuple[float, float]:
    """Mean and 95% quantile of the ReCo of ``draws`` uninformative sets of ``n_eq`` S= and ``n_neq`` S!= distances
    (NaN when a set is empty). It depends on the sizes only, which the methods of a family often share."""
    if not n_eq or not n_neq:
        return float("nan"), float("nan")
    floor = reco_noise_floor(n_eq, n_neq, rates, draws, seed)
    return float(floor.mean()), float(floor.quantile(0.95))


def score_intervals(sets: CrossFoldDistances, scores: dict, n_images: int, config: dict) -> list[dict]:
    """One record per score (``mege``, ``reco``, ``reco_as_written``): its value, 95% bootstrap interval over the
    ``n_images`` explained images and, for ReCo, the noise floor for the sizes of S= and S!=."""
    finite = torch.isfinite(sets.distance)
    n_eq, n_neq = int((finite & sets.both_correct).sum()), int((finite & ~sets.both_correct).sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedScoreWarning)  # empty sets: the scores already warned
        intervals = bootstrap_intervals(sets, n_images, config["bootstrap_samples"], 0.95, config["seed"])
    floors = {"mege": (float("nan"), float("nan")),
              "reco": noise_floor(n_eq, n_neq, "balanced-accuracy", config["floor_draws"], config["seed"]),
              "reco_as_written": noise_floor(n_eq, n_neq, "as-written", config["floor_draws"], config["seed"])}
    return [{"metric": metric, "value": scores[metric], "ci_low": intervals[metric][0], "ci_high": intervals[metric][1],
             "floor_mean": floors[metric][0], "floor_95": floors[metric][1]} for metric in intervals]


def score_method(run: RunFolder, family: Family, method: str, x, labels, predicted, targets, progress: bool = True):
    """Tidy rows, S=/S!=, the maps ``(k, N, H, W)`` of ``method`` on ``family`` and its intervals (``score_intervals``,
    labelled like the rows). Every piece is cached in the run folder, the intervals last."""
    config = run.config
    attributions = explain_family(run, family, method, x, targets, progress)
    maps = reduce_attributions(attributions.flatten(0, 1), config["reduction"]).unflatten(0, attributions.shape[:2])

    def distances():
        return dataclasses.asdict(cross_fold_distances(maps, predicted, labels, family.folds, config["distance"]))

    pairs = CrossFoldDistances(**run.cached_tensors(f"pairs/{family.name}/{method}", distances))
    sets = {"s_eq": pairs.s_eq, "s_neq": pairs.s_neq}
    fidelity = run.cached_tensors(f"mu_fidelity/{family.name}/{method}", lambda: {
        "mu_fidelity": held_out_fidelity(family, x, attributions, targets, config)})["mu_fidelity"]
    labels_of = {"method": method, "model": family.name, "degradation": family.degradation, "level": family.level}
    scores = {"mege": mege(sets["s_eq"]), "reco": reco(sets["s_eq"], sets["s_neq"]),
              "reco_as_written": reco(sets["s_eq"], sets["s_neq"], rates="as-written"),
              "reco_auc": reco_auc(sets["s_eq"], sets["s_neq"])}
    rows = [tidy_rows(torch.tensor([value]), metric=metric, **labels_of).assign(sample=-1)
            for metric, value in scores.items()]
    rows.append(tidy_rows(fidelity, metric="mu_fidelity", **labels_of))
    intervals = run.cached_json(f"intervals/{family.name}/{method}", lambda: {
        "rows": score_intervals(pairs, scores, len(x), config)})["rows"]
    intervals = pd.DataFrame(intervals).assign(**labels_of)
    return pd.concat(rows, ignore_index=True), (sets["s_eq"], sets["s_neq"]), maps, intervals


def family_predictions(run: RunFolder, family: Family, x, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """The predicted classes ``(k, N)`` of every model of ``family`` for ``x`` (cached) and the classes each model
    explains (``target``: the labels, or its own predictions)."""
    predicted = run.cached_tensors(f"predictions/{family.name}", lambda: {
        "predicted": torch.stack([predictions(model, x).argmax(dim=1) for model in family.models])})["predicted"]
    return predicted, labels.expand_as(predicted) if run.config["target"] == "label" else predicted


def score_family(run: RunFolder, family: Family, x, labels) -> FamilyScores:
    """MeGe, ReCo (both readings), ReCo_AUC (one row each per method), muFidelity (one row per image), and the
    intervals and noise floors of MeGe and ReCo, of ``family``."""
    predicted, targets = family_predictions(run, family, x, labels)
    tables, separation, examples, intervals = [], {}, {}, []
    for method in run.config["explainers"]:
        rows, separation[method], maps, bounds = score_method(run, family, method, x, labels, predicted, targets)
        tables.append(rows)
        examples[method] = maps[0, :8]
        intervals.append(bounds)
    return FamilyScores(pd.concat(tables, ignore_index=True), separation, examples,
                        pd.concat(intervals, ignore_index=True))


def score_shard(run: RunFolder, family: Family, method: str, x, labels) -> None:
    """The explanation and scoring shard of one family and method, as a task of the run's runner: ``score_method``
    without progress bars, which leaves every piece in the run folder for ``score_family`` to read."""
    predicted, targets = family_predictions(run, family, x, labels)
    score_method(run, family, method, x, labels, predicted, targets, progress=False)


def shards(run: RunFolder, families: list[Family], x, labels):
    """The run's ``(task, last piece)`` shards (``run_shards``): one per family and method (``score_shard``), and the
    distance sanity tests."""
    for family in families:
        for method in run.config["explainers"]:
            yield (Task(f"explain and score {family.name}/{method}", score_shard, (run, family, method, x, labels)),
                   f"intervals/{family.name}/{method}.json")
    yield Task("distance sanity tests", distance_test_table, (run,)), "distance_tests.json"


def held_out_accuracy(run: RunFolder, family: Family, data) -> pd.DataFrame:
    """Accuracy of each model of ``family`` on its held-out fold of D, against the true labels."""

    def compute():
        rows = []
        for i, model in enumerate(family.models):
            members = (family.data_folds == i).nonzero().flatten()
            correct = predictions(model, data.x[members]).argmax(dim=1) == data.y[members]
            rows.append({"model": family.name, "fold": i, "held_out_accuracy": correct.float().mean().item()})
        return {"rows": rows}

    return pd.DataFrame(run.cached_json(f"accuracy/{family.name}", compute)["rows"])


def separation_table(scores: dict[str, FamilyScores]) -> pd.DataFrame:
    """Size and mean of S= and S!= (finite distances) per family and method, and how many pairs of each set were left
    out because their distance is undefined (e.g. Spearman with a constant map, such as an all-zero Grad-CAM)."""
    rows = []
    for family, scored in scores.items():
        for method, (s_eq, s_neq) in scored.separation.items():
            finite_eq, finite_neq = s_eq[torch.isfinite(s_eq)], s_neq[torch.isfinite(s_neq)]
            rows.append({"model": family, "method": method, "n_s_eq": len(finite_eq), "n_s_neq": len(finite_neq),
                         "mean_s_eq": finite_eq.double().mean().item(), "mean_s_neq": finite_neq.double().mean().item(),
                         "undefined_s_eq": len(s_eq) - len(finite_eq), "undefined_s_neq": len(s_neq) - len(finite_neq)})
    return pd.DataFrame(rows)


def distance_test_table(run: RunFolder) -> pd.DataFrame:
    """``distance_tests`` of the run's config, cached in the run folder."""
    return pd.DataFrame(run.cached_json("distance_tests", lambda: {
        "rows": distance_tests(run.config).to_dict("records")})["rows"])


def distance_tests(config: dict) -> pd.DataFrame:
    """The two sanity tests of appendix F on every candidate distance (``xaitrust.metrics.distance_sanity``): one row
    per distance with pass/fail, the largest relative drop of each curve below its running maximum, and the curves'
    first and last values (moving point: distance to the first image at no and at the largest displacement; noise: mean
    distance to the clean image at the smallest and the largest sigma)."""
    results = distance_sanity_tests(n_positions=config["distance_test_positions"],
                                    repeats=config["distance_test_repeats"], seed=config["seed"])
    rows = []
    for name, outcome in results.items():
        noise = outcome.noise.mean(dim=1)
        rows.append({"distance": name, "used": name == config["distance"],
                     "moving_point": "pass" if outcome.passes_moving_point else "fail",
                     "moving_point_drop": outcome.moving_point_drop,
                     "moving_point_first": float(outcome.moving_point[0]),
                     "moving_point_last": float(outcome.moving_point[-1]),
                     "noise": "pass" if outcome.passes_noise else "fail", "noise_drop": outcome.noise_drop,
                     "noise_first": float(noise[0]), "noise_last": float(noise[-1])})
    return pd.DataFrame(rows)


def sanity_table(summary: pd.DataFrame, base: str) -> pd.DataFrame:
    """Mean score per metric, method, degradation and level, the clean ``base`` family counted as level 0 of each
    degradation (the paper's Fig. 3/9)."""
    clean = summary[summary["model"] == base]
    parts = []
    for degradation in ("noise", "shuffle"):
        degraded = summary[summary["degradation"] == degradation]
        if len(degraded):
            parts += [clean.assign(degradation=degradation, level=0.0), degraded]
    columns = ["metric", "method", "degradation", "level", "mean"]
    return pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)


def explained_samples(data, config: dict) -> torch.Tensor:
    """Indices of the explained images of D: stratified by (fold, class), so every fold and class is represented."""
    folds = stratified_kfold(data.y, config["k"], config["seed"])  # the folds plan_k_fold makes
    size = min(config["n_samples"] or len(data), len(data))
    return stratified_sample(folds * data.num_classes + data.y, size, seed=config["seed"])


def trainings(config: dict) -> int:
    """Models the run trains: k folds of the base family, of each label-shuffled family and, with ``lipschitz``, of
    the 1-Lipschitz family (weight-noise families perturb the trained folds)."""
    return config["k"] * (1 + len(config["shuffle_levels"]) + bool(config["lipschitz"]))


def execute(run: RunFolder) -> Path:
    config = run.config
    if config["lipschitz"] and config["model"] == LIPSCHITZ_MODEL:
        raise XaitrustError(f"lipschitz = true adds a {LIPSCHITZ_MODEL} family beside the model; set model to another "
                            "architecture or lipschitz = false")
    data = load_split(config, "train")
    samples = explained_samples(data, config)
    x, labels = data.x[samples], data.y[samples]
    architecture, options = config["model"], config["model_options"]
    base_name = ModelSource.from_config(config).label  # the family's name in tables and the run folder
    model = fresh_model(architecture, data, options)
    check_explainers(config, model)
    warn_identical_noise_levels(model, config)
    if config["lipschitz"]:
        check_explainers(config, fresh_model(LIPSCHITZ_MODEL, data))
    base, *trained = trained_families(run, base_name, data, samples)
    families = [base, *(noisy_family(base, level, config) for level in config["noise_levels"]), *trained]

    if run.runner.remote:  # on the Ray executor, the shards run side by side first; a family's share its predictions
        for family in families:
            family_predictions(run, family, x, labels)
    run_shards(run, shards(run, families, x, labels))
    scores = {family.name: score_family(run, family, x, labels) for family in families}
    accuracy = pd.concat([held_out_accuracy(run, family, data) for family in families], ignore_index=True)
    results = pd.concat([scored.rows for scored in scores.values()], ignore_index=True)
    run.write_table("results", results)
    summary = summarize(results, by=("metric", "method", "model", "degradation", "level"))
    run.write_table("summary", summary)
    separation = separation_table(scores)
    run.write_table("separation", separation)
    run.write_table("accuracy", accuracy)
    sanity = sanity_table(summary, base.name)
    run.write_table("sanity", sanity)
    intervals = pd.concat([scored.intervals for scored in scores.values()], ignore_index=True)
    run.write_table("intervals", intervals)
    distances = distance_test_table(run)
    run.write_table("distance_tests", distances)
    return write_mege_reco_report(run, summary=summary, accuracy=accuracy, separation=separation, sanity=sanity,
                                  scores=scores, images=x[:8], n_images=len(x), intervals=intervals,
                                  distances=distances)
