"""ReCalX (Decker, Tresp & Buettner, "Why uncertainty calibration matters for reliable perturbation-based
explanations"): calibration under the perturbations explainers use, and what per-level recalibration does to
KernelSHAP and LIME.

Steps (paper sections 4-5): train (or load) a model on a dataset with ground-truth object masks (``shapes`` by
default); fit ReCalX (Algorithm 1: ``n_bins`` equal-width perturbation-level bins, ``samples_per_bin`` random subsets
per image and bin, zero baseline, one temperature per bin by NLL) on a calibration split carved from the test data;
measure the KL calibration error (Popordanoska et al., "Consistent and asymptotically unbiased estimation of proper
calibration errors", 2024) and the binned ECE as a function of the perturbation level on the other, held-out test
images, before and after (paper Fig. 1); explain held-out images with KernelSHAP and LIME on the uncalibrated and the
ReCalX model, which the masked-evaluation engine tells each coalition's perturbation level; and compare the maps by
localisation (share of positive attribution inside the object mask, paper Table 2), ground-truth alignment (Spearman
between map and mask, the analogue of Table 1's human alignment), the pointing game, and deletion curves (zero
replacement, each map scored on the model it explains).

The perturbations ReCalX is fitted on. The paper: "reliable explanations explicitly require models to be
well-calibrated under all subset perturbations pi(., S) used in the explanation process". So by default
(``grouping = "superpixels"``) ReCalX's fit replaces exactly the feature groups the configured surrogate explainers
(KernelSHAP, LIME) switch off: their ``features`` and segmentation options (``n_segments``, ``compactness``,
``sigma``, ``min_segments``, or ``patch_size`` for patches), read from the explainers as ``explainer_params``
configures them (``explainer_segmentation``; the explainers must agree, and ``grouping`` must name their
``features``). ``grouping = "pixels"`` fits on random single pixels instead, the paper's Fig. 1 axis ("share of
replaced pixels with zeros"). Either way the held-out calibration curves are measured under both families - the
explainers' feature groups and single pixels - for both models, so the report shows what the fit does under the
perturbations it was not fitted on. One baseline for all: ``replacement`` is the baseline of ReCalX's fit, of the
calibration curves, of the explainers (unless ``explainer_params`` of a method sets its own) and of the deletion
curves. The level of a perturbed input is the fraction of its pixels replaced, at fit time and when explaining
(``xaitrust.calibration.recalx``): the paper's ``lambda(S) = (d - |S|) / d`` for pixels, its pixel-weighted version
for superpixels.

The calibration error. The paper's ``CE_KL(f) = E[KL(P(Y | f(X)) || f(X))]`` is the canonical error of the whole
predicted distribution; ``kl_modes`` lists the KL errors reported (``kl_calibration_error_<mode>`` columns, one figure
and one finding each): by default the canonical one and the top-label one, because the canonical estimator is biased
at this protocol's sizes (5-9 dimensional kernel regression on a few hundred to a few thousand predictions per level;
measured on synthetic sources in ``xaitrust.calibration.kl``), which the top-label one is much less.

The explainers (``explainer_params``; the paper runs Captum's ``KernelShap`` and ``Lime`` without stating their
settings). Written out in the config: KernelSHAP with 200 coalitions of ``n_segments = 50`` SLIC superpixels; LIME
with 200 coalitions of the same superpixels, ``kernel_width = 1.0`` and ``ridge = 1.0``. Against Captum's defaults:

- KernelSHAP: Captum draws coalition sizes from ``p(k) ∝ (M - 1) / (k (M - k))`` and a uniform subset of each size
  (the Shapley kernel absorbed by the sampling, unit weights), adds the full and empty coalitions with weight 1e6 and
  fits an unregularised linear regression; xaitrust draws the same distribution in complementary pairs and imposes
  the efficiency constraint exactly (``xaitrust.explainers.surrogate.KernelShap``): the same Shapley values, lower
  variance. Captum's default is 25 coalitions.
- LIME: Captum weights a coalition by ``exp(-d^2 / (2 w^2))`` with ``w = 1.0`` and ``d`` the cosine distance between
  the flattened original and perturbed *inputs*; with a zero baseline that is ``d = 1 - sqrt(kept share of the
  image's squared norm)``. xaitrust's ``d = 1 - sqrt(|z| / F)`` uses the kept share of the ``F`` superpixels
  instead - the same when the superpixels carry equal energy - so ``kernel_width = 1.0`` is Captum's width (the
  ``lime`` package's image default, 0.25, is xaitrust's LIME default). Captum fits ``Lasso(alpha=0.01)``
  (scikit-learn, intercept, sample weights); xaitrust's LIME has no Lasso and fits a ridge regression, ``ridge = 1``
  (the ``lime`` package's ``Ridge(alpha=1)``). Coalitions: each group kept with probability 1/2 in both (xaitrust's
  first coalition is the full one, as in ``lime``). Captum's default is 25 coalitions.
- Both: each pixel gets its group's coefficient (Captum with a ``feature_mask``). Without a feature mask Captum
  treats every scalar input as a feature; the paper does not say which it used.

Run folder: ``calibration_by_level.csv``, ``results.csv`` and ``summary.csv``; ``report.html`` and ``summary.json``
(the question, its answer and the before/after tables with their intervals) come from ``xaitrust.report.recalx``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..calibration import Calibrator, ReCalX, calibration_error_by_level
from ..calibration.kl import MODES as KL_MODES
from ..calibration.perturbed import GROUPINGS
from ..errors import XaitrustError
from ..explainers import get_explainer
from ..explainers.reduce import reduce_attributions
from ..explainers.surrogate import SurrogateExplainer
from ..metrics import deletion, gt_alignment, localization, pointing_game
from ..models.loading import ModelSource
from ..perturb.orders import TIES
from ..report.recalx import kl_column, write_recalx_report
from .common import (
    RECIPE_DEFAULTS,
    TRAINED_MODEL_DEFAULTS,
    check_explainer_lists,
    check_model_source,
    explain_cached,
    images_to_explain,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .results import tidy_rows
from .run_folder import RunFolder

_COMMON = {
    **RECIPE_DEFAULTS,
    **TRAINED_MODEL_DEFAULTS,
    "dataset": "shapes",
    "batch_size": 64,
    "epochs": 20,
    "calibration_size": 200,
    "n_bins": 10,
    "samples_per_bin": 10,
    "replacement": "zero",
    "ties": "random",
    "grouping": "superpixels",
    "levels": [(b + 0.5) / 10 for b in range(10)],
    "samples_per_level": 2,
    "kl_modes": ["canonical", "top-label"],
    "explainers": ["kernelshap", "lime"],
    "explainer_params": {
        "kernelshap": {"n_samples": 200, "features": "superpixels", "n_segments": 50},
        "lime": {"n_samples": 200, "features": "superpixels", "n_segments": 50, "kernel_width": 1.0, "ridge": 1.0},
    },
    "output": "probability",
    "reduction": "sum",
    "n_images": 200,
    "deletion_steps": 50,
    "explainer_batch_size": 32,
}


def validate(config: dict) -> None:
    """Checks across keys: the model keys (``check_model_source``), the explainers with their parameters, listed
    or not (``check_explainer_lists``), ``kl_modes`` (each once, at least one) and the feature groups ReCalX is fitted
    on (``fitted_features``)."""
    check_model_source(config)
    check_explainer_lists(config)
    modes = config["kl_modes"]
    if not modes or len(set(modes)) < len(modes):
        raise XaitrustError(f"config key 'kl_modes' must name each KL mode once and at least one; got {modes}")
    fitted_features(config)


def explainer_params(config: dict, method: str) -> dict:
    """``method``'s parameters: the protocol's ``replacement`` unless ``explainer_params`` sets the method's own."""
    return {"replacement": config["replacement"], **config["explainer_params"].get(method, {})}


def segmentation_of(explainer: SurrogateExplainer) -> tuple[str, dict]:
    """``(features, options)``: the feature groups a surrogate explainer switches on and off - ``"superpixels"``
    with its ``n_segments``, ``compactness``, ``sigma`` and ``min_segments``, or ``"patches"`` with its
    ``patch_size`` - as ``xaitrust.calibration.perturbed.feature_segments`` takes them."""
    if explainer.features == "patches":
        return "patches", {"patch_size": explainer.patch_size}
    return "superpixels", {name: getattr(explainer, name) for name in ("n_segments", "compactness", "sigma",
                                                                        "min_segments")}


def surrogate_segmentations(config: dict) -> dict[str, tuple[str, dict]]:
    """Method -> ``segmentation_of`` for each configured surrogate explainer (KernelSHAP, LIME), as configured."""
    explainers = {method: get_explainer(method, **explainer_params(config, method)) for method in config["explainers"]}
    return {method: segmentation_of(e) for method, e in explainers.items() if isinstance(e, SurrogateExplainer)}


def explainer_segmentation(config: dict) -> tuple[str, dict]:
    """The feature groups of the configured surrogate explainers (the surrogate explainers' defaults when none is
    listed). They must all switch the same groups, or no single ReCalX fit matches them all."""
    found = surrogate_segmentations(config)
    if not found:
        return segmentation_of(get_explainer("kernelshap"))
    first, *others = found.values()
    if any(other != first for other in others):
        settings = "; ".join(f"{method}: {features} {options}" for method, (features, options) in found.items())
        raise XaitrustError(
            f"the explainers switch different feature groups ({settings}), so one ReCalX fit cannot match them all: "
            "give them the same features and segmentation options in explainer_params, or set grouping = \"pixels\""
        )
    return first


def fitted_features(config: dict) -> tuple[str, dict]:
    """``(grouping, segmentation options)`` of ReCalX's fit: the explainers' feature groups
    (``explainer_segmentation``), which ``grouping`` must name, or single pixels for ``grouping = "pixels"``."""
    features, options = explainer_segmentation(config)
    if config["grouping"] == "pixels":
        return "pixels", {}
    if config["grouping"] != features:
        raise XaitrustError(
            f"config key 'grouping' is {config['grouping']!r} but the explainers switch {features} on and off: set "
            f"grouping = {features!r} to fit ReCalX on their feature groups (or \"pixels\" for single pixels), or "
            f"give the explainers features = {config['grouping']!r} in explainer_params"
        )
    return features, options


def evaluated_features(config: dict) -> dict[str, dict]:
    """Grouping -> segmentation options of the held-out calibration curves: the fitted family first, then the other
    of the explainers' feature groups and single pixels."""
    fitted, options = fitted_features(config)
    explainers = explainer_segmentation(config)
    other = explainers if fitted == "pixels" else ("pixels", {})
    return dict([(fitted, options), other])


SPEC = ProtocolSpec(
    name="recalx",
    description="Calibration error vs perturbation level before/after ReCalX; KernelSHAP and LIME localisation.",
    defaults={
        "paper": dict(_COMMON),
        "quick": dict(_COMMON, epochs=15, samples_per_bin=5, n_images=64, samples_per_level=1),
        "smoke": dict(_COMMON, train_size=600, test_size=300, epochs=1, calibration_size=100, samples_per_bin=2,
                      levels=[0.1, 0.5, 0.9], samples_per_level=1, n_images=6, deletion_steps=10,
                      explainer_params={
                          "kernelshap": {"n_samples": 40, "features": "superpixels", "n_segments": 50},
                          "lime": {"n_samples": 40, "features": "superpixels", "n_segments": 50, "kernel_width": 1.0,
                                   "ridge": 1.0},
                      }),
    },
    choices={
        "explainers": ("kernelshap", "lime", "rise", "occlusion"),
        "replacement": ("zero", "mean", "blur"),
        "grouping": GROUPINGS,
        "kl_modes": KL_MODES,
        "ties": TIES,
        "output": ("logit", "probability", "log-probability"),
        "reduction": ("sum", "abs-sum"),
    },
    validate=validate,
    positive=("n_bins", "samples_per_bin", "samples_per_level"),
    fractions=("levels",),
)


def fit_recalx(run: RunFolder, model, calibration, config: dict) -> ReCalX:
    """ReCalX fitted on the calibration split, or loaded from ``calibrators/recalx`` in the run folder."""
    path = run.path / "calibrators" / "recalx"
    if path.with_suffix(".json").exists():
        return Calibrator.load(path)
    grouping, options = fitted_features(config)
    recalx = ReCalX(config["n_bins"], config["samples_per_bin"], config["replacement"], grouping, **options,
                    seed=config["seed"]).fit(model, calibration.x, calibration.y)
    recalx.save(path)
    return recalx


def error_by_level(models: dict, held_out, config: dict) -> pd.DataFrame:
    """Calibration measures at each perturbation level, per perturbation family (``evaluated_features``) and model,
    on the held-out images (the same perturbations for both models), with one KL column per ``kl_modes`` entry."""
    first, *others = config["kl_modes"]
    rows = []
    for grouping, options in evaluated_features(config).items():
        for name, model in models.items():
            for row in calibration_error_by_level(
                model, held_out.x, held_out.y, config["levels"], samples_per_level=config["samples_per_level"],
                # ReCalX's fit draws from seed and seed + 1: held-out perturbations use fresh draws.
                replacement=config["replacement"], grouping=grouping, segmentation=options, kl_mode=first,
                also_kl_modes=others, seed=config["seed"] + 2,
            ):
                renamed = {kl_column(first) if key == "kl_calibration_error" else key: value for key, value in row.items()}
                rows.append({"grouping": grouping, "model": name, **renamed})
    return pd.DataFrame(rows)


def explanation_rows(run, models, x, target, masks, config) -> tuple[pd.DataFrame, dict, dict]:
    """Localisation, ground-truth alignment, pointing game and deletion area of each method's maps on each model."""
    tables, examples, curves = [], {}, {}
    for model_name, model in models.items():
        for method in config["explainers"]:
            attributions = explain_cached(run, f"{method}/{model_name}", method, explainer_params(config, method),
                                          model, x, target, config["output"], config["explainer_batch_size"])
            maps = reduce_attributions(attributions, config["reduction"], inputs=x)
            examples.setdefault(model_name, {})[method] = maps[:8]
            deleted = deletion(model, x, maps, target, config["deletion_steps"], config["replacement"], config["output"],
                               ties=config["ties"], seed=config["seed"])
            curves[f"{method} ({model_name})"] = (deleted.fractions, deleted.curves)
            labels = {"method": method, "model": model_name}
            tables.append(tidy_rows(deleted.area, metric="deletion_area", **labels))
            if masks is not None:
                tables += [
                    tidy_rows(localization(maps, masks), metric="localization", **labels),
                    tidy_rows(gt_alignment(maps, masks), metric="gt_alignment", **labels),
                    tidy_rows(pointing_game(maps, masks).float(), metric="pointing_game", **labels),
                ]
    return pd.concat(tables, ignore_index=True), examples, curves


def explainer_settings(config: dict) -> pd.DataFrame:
    """Every parameter of each configured explainer as built (``explainer_params`` over the class defaults)."""
    rows = []
    for method in config["explainers"]:
        explainer = get_explainer(method, **explainer_params(config, method))
        rows += [{"method": method, "parameter": name, "value": str(value)} for name, value in vars(explainer).items()]
    return pd.DataFrame(rows)


def trainings(config: dict) -> int:
    """Models the run trains: none for a given trained model, else the one model."""
    return 0 if ModelSource.from_config(config).is_trained else 1


def execute(run: RunFolder) -> Path:
    config = run.config
    prepared = train_and_split(run, config)
    model, calibration, held_out = prepared.model, prepared.calibration, prepared.held_out
    recalx = fit_recalx(run, model, calibration, config)
    models = {"uncalibrated": model, "recalx": recalx.wrap(model)}
    levels = run.cached_table("calibration_by_level", lambda: error_by_level(models, held_out, config))
    run.write_table("calibration_by_level", levels)

    chosen, x, target = images_to_explain(model, held_out, config)
    masks = None if held_out.masks is None else held_out.masks[chosen]
    results, examples, curves = explanation_rows(run, models, x, target, masks, config)
    results = with_sample_columns(results, models, x, held_out, chosen)
    summary = write_results(run, results)
    temperatures = pd.DataFrame({"bin": range(config["n_bins"]),
                                 "temperature": torch.as_tensor(recalx.temperatures_).tolist()})
    return write_recalx_report(
        run, trained=prepared.trained, calibration_size=len(calibration), held_out_size=len(held_out),
        fitted=fitted_features(config), explained=explainer_segmentation(config),
        surrogates=list(surrogate_segmentations(config)), families=evaluated_features(config), levels=levels,
        temperatures=temperatures, settings=explainer_settings(config), results=results, summary=summary,
        curves=curves, examples=examples, images=x[:8], has_masks=masks is not None,
    )
