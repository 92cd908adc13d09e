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
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..calibration import Calibrator, ReCalX, calibration_error_by_level
from ..calibration.kl import MODES as KL_MODES
from ..calibration.perturbed import GROUPINGS
from ..calibration.plots import plot_error_by_level_panels
from ..errors import XaitrustError
from ..explainers import get_explainer
from ..explainers.reduce import reduce_attributions
from ..explainers.surrogate import SurrogateExplainer
from ..metrics import deletion, gt_alignment, localization, pointing_game
from ..models.loading import ModelSource
from ..perturb.orders import TIES
from ..report.figures import plot_curves, plot_map_grid
from ..report.html import Section, write_report
from .common import (
    RECIPE_DEFAULTS,
    TRAINED_MODEL_DEFAULTS,
    check_explainer_lists,
    check_model_source,
    explain_cached,
    images_to_explain,
    model_description,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .results import pivot_summary, tidy_rows
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


#: Measured bias of the canonical estimate, quoted in the report (xaitrust.calibration.kl has the table).
CANONICAL_BIAS_NOTE = ("on synthetic 6-class sources it reads +0.23 for a calibrated model and +0.33 for an "
                       "over-confident one of true error 0.10 with 1000 predictions, where the top-label estimate "
                       "reads +0.01 and +0.15 (its truth 0 and 0.10)")


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


def kl_column(mode: str) -> str:
    """The column of the KL calibration error in ``mode``: ``kl_calibration_error_canonical``, ..._top_label, ..."""
    return f"kl_calibration_error_{mode.replace('-', '_')}"


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


def findings(levels: pd.DataFrame, summary: pd.DataFrame, config: dict) -> list[str]:
    lines = []
    fitted = fitted_features(config)[0]
    for grouping, part in levels.groupby("grouping", sort=False):
        how = "the family ReCalX was fitted on" if grouping == fitted else "not the family ReCalX was fitted on"
        for mode in config["kl_modes"]:
            kl = part.pivot_table(index="perturbation_level", columns="model", values=kl_column(mode))
            before, after = kl["uncalibrated"], kl["recalx"]
            lines.append(
                f"KL calibration error ({mode}) with random {grouping} replaced ({how}), maximum over perturbation levels: "
                f"{before.max():.4f} uncalibrated -> {after.max():.4f} with ReCalX; lower at "
                f"{int((after < before).sum())} of {len(kl)} levels (held-out images)."
            )
            if grouping == fitted:
                lines.append(f"Uncalibrated error ({mode}) {'grows' if before.iloc[-1] > before.iloc[0] else 'does not grow'} "
                             f"from the lowest to the highest perturbation level ({before.iloc[0]:.4f} -> "
                             f"{before.iloc[-1]:.4f}); the paper reports it grows.")
    means = summary.pivot_table(index=["metric", "method"], columns="model", values="mean")
    for metric in ("localization", "gt_alignment", "pointing_game", "deletion_area"):
        if metric in means.index.get_level_values(0):
            for method, row in means.loc[metric].iterrows():
                lines.append(f"{method} {metric}: {row['uncalibrated']:.4f} uncalibrated -> {row['recalx']:.4f} ReCalX.")
    return lines


def describe_features(grouping: str, options: dict) -> str:
    """A perturbation family in words, e.g. "SLIC superpixels (n_segments=50, ...)"."""
    if grouping == "pixels":
        return "single pixels"
    settings = ", ".join(f"{name}={'default' if value is None else value}" for name, value in options.items())
    return f"{'SLIC superpixels' if grouping == 'superpixels' else 'square patches'} ({settings})"


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
    if masks is None:
        note = f"{config['dataset']} has no ground-truth masks: localisation scores are not computed."
    else:
        note = "Localisation against the objects' ground-truth masks."

    figures = run.path / "figures"
    fitted = fitted_features(config)
    families = evaluated_features(config)
    panels = {
        grouping: {name: rows.to_dict("records") for name, rows in part.groupby("model", sort=False)}
        for grouping, part in levels.groupby("grouping", sort=False)
    }
    level_figures = {f"KL calibration error ({mode}) by level": plot_error_by_level_panels(
        panels, figures / f"kl-{mode}-by-level.png", kl_column(mode)) for mode in config["kl_modes"]}
    level_figures["Binned ECE by level"] = plot_error_by_level_panels(panels, figures / "ece-by-level.png", "ece")
    surrogates = ", ".join(surrogate_segmentations(config)) or "none configured; KernelSHAP's and LIME's defaults"
    sections = [
        Section("Calibration under perturbation (ReCalX Fig. 1)",
                [(f"{model_description(config, prepared.trained)}. ReCalX fitted on {len(calibration)} images with "
                  f"{config['replacement']} replacement of {describe_features(*fitted)}; the surrogate explainers "
                  f"({surrogates}) switch {describe_features(*explainer_segmentation(config))}. Calibration measured "
                  f"on {len(held_out)} other images under "
                  f"{' and under '.join(describe_features(g, o) for g, o in families.items())}, for both models. "
                  "Perturbation level: the fraction of features replaced (perturbation_level; pixel_level is the mean "
                  "fraction of pixels replaced, the level ReCalX bins by)."),
                 ("KL calibration error: the risk estimator of Popordanoska et al. (2024), Dirichlet kernel, bandwidth "
                  "by leave-one-out likelihood; 'canonical' scores the whole predicted distribution (the paper's "
                  "CE_KL), 'top-label' the confidence of the predicted class. The canonical estimate is biased at "
                  f"these sizes ({CANONICAL_BIAS_NOTE}; xaitrust.calibration.kl), by an amount that depends on how "
                  "sharp the predictions are, so it also shifts between the two models: read the top-label estimate "
                  "against 0.")],
                tables={"By level": levels, "Temperature per bin": temperatures,
                        "Explainer settings": explainer_settings(config)},
                figures=level_figures),
        Section("Explanations (ReCalX Tables 1-2)", [note],
                tables={"Mean per method": pivot_summary(summary, ("method",), ("metric", "model"))},
                figures={"Deletion curves": plot_curves(figures / "deletion.png", curves, "fraction of pixels removed",
                                                        f"normalised {config['output']}")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", x[:8], maps, title=name)
            for name, maps in examples.items()}),
    ]
    return write_report(run.path / "report.html", "ReCalX", findings(levels, summary, config), sections,
                        tomli_w.dumps(config))
