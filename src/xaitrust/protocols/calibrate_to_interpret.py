"""Calibrate to Interpret (Scafarto, Posocco & Bonnefoy): what post-hoc calibration does to saliency maps.

Steps (paper section 4): train (or load) a model; fit temperature scaling and Dirichlet calibration on a calibration
split carved from the test data; explain the same held-out images with Sensitivity, Integrated Gradients (black and
white references combined, each reference's map in magnitude), RISE, Meaningful Perturbation and Grad-CAM on the
uncalibrated model and on each calibrated one (targets: each model's own predicted class, ``explained_class = "own"``,
as in the paper, where Dirichlet calibration "can change the predicted class"; ``"reference"`` makes every model
explain the uncalibrated model's class, and ``explained_class_changed`` reports how often they differ); report
calibration error (binned and density ECE, and the reliability diagrams of the paper's Fig. 2) before and after, the
SSIM between calibrated and uncalibrated maps (4.3), deletion curves and areas with blurred replacement normalised by
the clean score (4.4), the Better-Than-Random ratio against random SLIC superpixels, Otsu total variation with the
maps and their Otsu binarisation (4.5, Fig. 5) and the distributions of the local Lipschitz estimate (4.6, Fig. 9);
and the temperature sweep of 4.6: deletion area at fixed temperatures around the fitted one, with its correlation to
the density ECE at those temperatures, separately on the over-confident (factor <= 1) and under-confident
(factor >= 1) side.

Sensitivity map. Appendix A: "The Sensitivity saliency map shows the sensitivity of the output to infinitesimal
changes in each input feature", printed as eq. 3, ``S(x_i) = sum_channels dF(x)_c/dx (x_i)``. A sensitivity to
changes is a magnitude, and the authors' published code sums the gradient's absolute values over the channels
(``torch.sum(image.grad.data.abs(), dim=1)``), so the map is ``sum_k |dF(x)_c/dx_{i,k}|`` over the channels ``k``
of pixel ``i``: the config's ``reduction`` (``"abs-sum"``), with no entry for ``sensitivity`` in ``method_reductions``.
The signed reading of eq. 3 as printed is ``method_reductions = {sensitivity = "sum"}``.

Deletion areas of the calibrated and uncalibrated maps. The paper scores each model's maps on that model, so the
difference mixes two changes: the maps, and the scale of the score the deletion curve follows (the random maps' area
moves too; 4.4: "the same random saliency maps applied to the calibrated and uncalibrated models produce similar
curves"). ``deletion_comparison`` reports that comparison beside the one the question needs: both models' maps scored
on one common model, the uncalibrated one and, conversely, the calibrated one, each with per-image paired differences
(mean and Student-t 95% confidence interval) and the same differences minus the random maps' (the paper's control).

The report (``xaitrust.report.calibrate_to_interpret``) opens with the paper's questions, whether calibration changes
the maps and whether it makes them more faithful, and the run's answer with its intervals.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..calibration import TemperatureScaling, density_ece, ece
from ..errors import XaitrustError
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..metrics import deletion
from ..report.calibrate_to_interpret import (
    OWN_MODEL,
    write_calibrate_to_interpret_report,
)
from ..statistics import mean_interval, paired_test
from .benchmark import C2I_IG, check_scoring, trainings  # noqa: F401 (trainings: the same model as the benchmark's)
from .benchmark import SPEC as BENCHMARK_SPEC
from .common import (
    calibrated_models,
    explain_cached,
    images_to_explain,
    predictions,
    removal_fill,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .run_folder import RunFolder
from .scoring import (
    RANDOM_SUPERPIXELS,
    ScoringSettings,
    explained_classes,
    metric_inputs,
    metric_rows,
    score_methods,
)

C2I_EXPLAINERS = ["sensitivity", "integrated-gradients", "rise", "meaningful-perturbation", "gradcam", "random"]
#: The benchmark's keys this protocol has no use for: its one calibrator (here ``calibrators``), the bootstrap of its
#: calibration section and its meta-evaluation.
BENCHMARK_ONLY = ("calibrator", "calibration_bootstrap", "meta_metrics", "meta_explainers", "meta_perturbations",
                  "meta_images")
#: The benchmark's metrics this protocol leaves out: the sanity check (one more explanation per method on a randomised
#: copy of the model), which the paper does not make.
NOT_IN_PAPER = ("randomisation_similarity",)


def _profile(profile: str, **changes) -> dict:
    base = {key: value for key, value in BENCHMARK_SPEC.defaults[profile].items() if key not in BENCHMARK_ONLY}
    base.update(
        explainers=C2I_EXPLAINERS, lipschitz_explainers=C2I_EXPLAINERS, calibrators=["temperature", "dirichlet"],
        sweep_explainers=["meaningful-perturbation"], sweep_factors=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
        sweep_images=32, method_reductions={},
        metrics=[name for name in base["metrics"] if name not in NOT_IN_PAPER],
    )
    base.update(changes)
    return base


def validate(config: dict) -> None:
    """The scoring protocols' checks (``xaitrust.protocols.benchmark.check_scoring``), and every reduction named in
    ``method_reductions`` is one of ``xaitrust.explainers.reduce.REDUCTIONS``."""
    check_scoring(config)
    unknown = {method: value for method, value in config["method_reductions"].items() if value not in REDUCTIONS}
    if unknown:
        raise XaitrustError(
            "config key 'method_reductions' names unknown reductions ("
            + ", ".join(f"{method} = {value!r}" for method, value in unknown.items())
            + f"); allowed: {', '.join(REDUCTIONS)} (e.g. method_reductions = {{sensitivity = \"sum\"}} for the "
            "signed Sensitivity map of eq. 3)"
        )


SPEC = ProtocolSpec(
    name="calibrate-to-interpret",
    description="Temperature scaling and Dirichlet calibration vs saliency maps: SSIM, deletion, BTR, Otsu-TV, "
    "local Lipschitz, temperature sweep.",
    defaults={
        # Section 4.2: calibration sets of 2500-3000 test images, 2500 explained images from the rest.
        "paper": _profile("paper", calibration_size=2500, n_images=2500, lipschitz_images=150, sweep_images=256,
                          sweep_factors=[0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0],
                          explainer_params={"integrated-gradients": {"steps": 30, **C2I_IG}}),
        "quick": _profile("quick", n_images=64, lipschitz_images=8, sweep_images=24,
                          lipschitz_explainers=["sensitivity", "integrated-gradients", "gradcam", "random"]),
        "smoke": _profile("smoke", sweep_images=4, sweep_factors=[0.5, 1.0, 2.0],
                          lipschitz_explainers=["sensitivity", "gradcam"]),
    },
    choices={**BENCHMARK_SPEC.choices, "calibrators": ("temperature", "dirichlet")},
    validate=validate,
    mixed_types=BENCHMARK_SPEC.mixed_types,
    positive=(*BENCHMARK_SPEC.positive, "sweep_factors", "sweep_images"),
)


def temperature_sweep(run: RunFolder, model, fitted: float, x, target, held_out, settings: ScoringSettings,
                      factors, explainers) -> pd.DataFrame:
    """Mean deletion area of each of the ``explainers`` and held-out calibration error at temperatures
    ``factor * fitted`` for each of the ``factors`` (C2I section 4.6, Fig. 8). ``density_ece`` is the paper's
    continuous ECE estimator; the binned ``ece`` is kept beside it."""
    logits = predictions(model, held_out.x)
    rows = []
    for factor in factors:
        scaler = TemperatureScaling()
        scaler.temperature_ = float(factor * fitted)
        scaled = scaler.wrap(model)
        probabilities = torch.softmax(logits.double() / scaler.temperature_, dim=-1)  # float32 saturates at T << T*
        errors = {"ece": ece(probabilities, held_out.y), "density_ece": density_ece(probabilities, held_out.y)}
        for method in explainers:
            params = settings.explainer_params.get(method, {})
            attributions = explain_cached(
                run, f"sweep/{method}/T{factor:g}", method, params, scaled, x, target, settings.output,
                settings.explainer_batch_size,
            )
            maps = reduce_attributions(attributions, settings.reduction_of(method), inputs=x)
            area = deletion(scaled, x, maps, target, settings.deletion_steps, settings.replacement, settings.output,
                            ties=settings.ties, seed=settings.seed).area
            rows.append({"method": method, "factor": factor, "temperature": scaler.temperature_, **errors,
                         "deletion_area": float(area.mean()), "deletion_area_sd": float(area.std())})
    return pd.DataFrame(rows)


#: The two sides of the sweep: temperatures below the reference make the model over-confident, above it
#: under-confident; C2I 4.6: "The correlation differs whether the mis-calibration is due to an overconfident model or
#: an underconfident model". Both sides include the reference temperature (factor 1).
SWEEP_SIDES = {"over-confident (factor <= 1)": lambda f: f <= 1, "under-confident (factor >= 1)": lambda f: f >= 1}


def sweep_correlations(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per method and side of the sweep, Pearson and Spearman correlation between the density ECE and the mean
    deletion area across temperatures (NaN with fewer than three temperatures), and the factor of the smallest
    area over the whole sweep."""
    rows = []
    for method, part in sweep.groupby("method"):
        best = part.loc[part["deletion_area"].idxmin()]
        for side, selected in SWEEP_SIDES.items():
            points = part[part["factor"].map(selected)]
            ece, area = points["density_ece"], points["deletion_area"]
            enough = len(points) > 2
            rows.append({
                "method": method, "side": side, "temperatures": len(points),
                "pearson": stats.pearsonr(ece, area).statistic if enough else np.nan,
                "spearman": stats.spearmanr(ece, area).statistic if enough else np.nan,
                "temperature_of_min_deletion_area": best["temperature"], "factor_of_min": best["factor"],
            })
    return pd.DataFrame(rows)


#: The control of ``deletion_comparison``: the random maps (the ``random`` explainer), scored exactly like every
#: method, in the role C2I 4.4 gives its random baseline ("we use a random interpretation baseline as reference for the
#: comparison"; there random orders of SLIC superpixels, the scorecard's ``RANDOM_SUPERPIXELS``).
CONTROL = "random"


def cross_model_deletion(run: RunFolder, models: dict, maps: dict, x: torch.Tensor, targets: dict,
                         settings: ScoringSettings) -> pd.DataFrame:
    """Deletion areas of one model's maps scored on another (the registry's ``deletion_area``, as in the scorecard):
    for each calibrated model and each method, its maps on the uncalibrated model and the uncalibrated model's maps on
    it, each for the class the scored model explains (``targets``). Tidy rows whose ``model`` is the model the maps
    explain and ``scored_on`` the model scored; cached per pair in the run folder."""
    reference = next(iter(models))
    params = {"deletion_area": {"steps": settings.deletion_steps, "replacement": settings.replacement}}
    tables = []
    for calibrated in list(models)[1:]:
        for maps_of, scored_on in ((calibrated, reference), (reference, calibrated)):
            for method in settings.explainers:
                inputs = metric_inputs(models[scored_on], x, targets[scored_on], settings, maps=maps[maps_of][method])
                table = run.cached_table(f"cross/{method}/{maps_of}-on-{scored_on}",
                                         partial(metric_rows, ("deletion_area",), inputs, params, method, maps_of))
                tables.append(table.assign(scored_on=scored_on))
    return pd.concat(tables, ignore_index=True)


def deletion_comparison(results: pd.DataFrame, cross: pd.DataFrame, models: dict, targets: dict,
                        methods: list[str]) -> pd.DataFrame:
    """Deletion area of each calibrated model's maps against the uncalibrated model's maps, per method of ``methods``
    (in that order), three ways (``scored_on``): each map on its own model (``OWN_MODEL``, the paper's comparison,
    C2I 4.4), and both maps on one common model, the uncalibrated one or the calibrated one (``cross_model_deletion``),
    which keeps the score's scale fixed so that only the maps differ.

    ``results`` holds the scorecard's per-image ``deletion_area`` rows (``sample`` the image's position, as in
    ``cross``). Per image ``i``, ``d_i = area(calibrated maps) - area(uncalibrated maps)`` (negative: the calibrated
    model's maps are more faithful); ``difference`` is the mean of ``d_i`` and ``ci95`` the half-width of its Student-t
    95% interval over the images where both areas are finite (``n``; the paired test ``paired_test``);
    ``uncalibrated_maps`` and ``calibrated_maps`` are the two mean areas over those images, and ``class_changed``
    counts those where the two models explain different classes (``targets``, each model's explained class): there a
    map scored on the other model is scored for a class it does not explain (``explained_class = "reference"`` gives
    every model the same class).
    ``minus_random`` is the same for ``d_i - d_i(random)``, the change beyond the random maps' change on the same
    image (``CONTROL``; NaN when the run has no random maps): on a common model the random maps (seeded per image,
    never reading the model) are the same on both sides, so their change is 0. The random superpixel baseline
    (``RANDOM_SUPERPIXELS``) has no maps of a model and appears in the paper's comparison only."""
    reference = next(iter(models))
    own = results[results["metric"] == "deletion_area"].assign(scored_on=lambda t: t["model"])
    table = pd.concat([own, cross]).set_index(["method", "model", "scored_on", "sample"])["value"]
    areas = {key: part.droplevel([0, 1, 2]).sort_index().to_numpy() for key, part in table.groupby(level=[0, 1, 2])}
    rows = []
    for calibrated in list(models)[1:]:
        changed = (targets[calibrated] != targets[reference]).cpu().numpy()
        pairings = {
            OWN_MODEL: ((calibrated, calibrated), (reference, reference)),
            reference: ((calibrated, reference), (reference, reference)),
            calibrated: ((calibrated, calibrated), (reference, calibrated)),
        }
        for scored_on, (after, before) in pairings.items():
            changes = {method: (areas[(method, *after)], areas[(method, *before)]) for method in methods
                       if (method, *after) in areas and (method, *before) in areas}
            control = np.subtract(*changes[CONTROL]) if CONTROL in changes else np.nan
            for method, (calibrated_maps, uncalibrated_maps) in changes.items():
                compared = paired_test(calibrated_maps, uncalibrated_maps)
                change = calibrated_maps - uncalibrated_maps
                beyond = paired_test(change, np.broadcast_to(control, change.shape))
                paired = np.isfinite(change)
                rows.append({
                    "calibrator": calibrated, "scored_on": scored_on, "method": method, "n": compared.n,
                    "class_changed": int(changed[paired].sum()),
                    "uncalibrated_maps": mean_interval(uncalibrated_maps[paired]).mean,
                    "calibrated_maps": mean_interval(calibrated_maps[paired]).mean,
                    "difference": compared.difference, "ci95": compared.half_width,
                    "minus_random": beyond.difference, "minus_random_ci95": beyond.half_width,
                })
    return pd.DataFrame(rows)


def execute(run: RunFolder) -> Path:
    config = run.config
    prepared = train_and_split(run, config)
    model, held_out = prepared.model, prepared.held_out
    calibrated = calibrated_models(run, prepared, {name: name for name in config["calibrators"]})
    calibrators, models = calibrated.calibrators, calibrated.models

    chosen, x, target = images_to_explain(model, held_out, config)
    masks = None if held_out.masks is None else held_out.masks[chosen]
    settings = ScoringSettings.from_config(config)  # after the preflight, which may drop explainers
    scored = score_methods(run, models, x, target, settings, removal_fill(config, model.input_mean), masks)
    results = with_sample_columns(scored.results, models, x, held_out, chosen)
    summary = write_results(run, results)

    targets = explained_classes(models, x, target, settings)
    cross = cross_model_deletion(run, models, scored.maps, x, targets, settings)
    run.write_table("deletion_cross", cross)
    comparison = deletion_comparison(scored.results, cross, models, targets,
                                     [*settings.explainers, RANDOM_SUPERPIXELS])
    run.write_table("deletion_comparison", comparison)

    sweep_x, sweep_target = x[: config["sweep_images"]], target[: config["sweep_images"]]
    fitted = calibrators["temperature"].temperature_ if "temperature" in calibrators else 1.0
    sweep = run.cached_table("temperature_sweep", lambda: temperature_sweep(
        run, model, fitted, sweep_x, sweep_target, held_out, settings, config["sweep_factors"],
        config["sweep_explainers"]))
    run.write_table("temperature_sweep", sweep)
    correlations = sweep_correlations(sweep)

    return write_calibrate_to_interpret_report(
        run, prepared=prepared, calibrated=calibrated, results=results, summary=summary, scored=scored, x=x,
        comparison=comparison, sweep=sweep, correlations=correlations)
