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
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
import torch
from scipy import stats

from ..calibration import TemperatureScaling, density_ece, ece
from ..calibration.plots import reliability_diagram
from ..errors import XaitrustError
from ..explainers.reduce import REDUCTIONS, normalize_maps, reduce_attributions
from ..statistics import ci95_half_width
from ..metrics import deletion
from ..metrics.binarize import otsu_masks
from ..report.figures import (
    plot_box_panels,
    plot_curves,
    plot_histograms,
    plot_intervals,
    plot_map_grid,
)
from ..report.html import Section, write_report
from ..sources import file_label
from .benchmark import C2I_IG, trainings  # noqa: F401 (the same model as the benchmark trains)
from .benchmark import SPEC as BENCHMARK_SPEC
from .common import (
    calibrated_models,
    dataset_label,
    explain_cached,
    images_to_explain,
    model_description,
    predictions,
    removal_fill,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .results import pivot_summary
from .run_folder import RunFolder
from .scoring import (
    HIGHER_IS_BETTER,
    RANDOM_SUPERPIXELS,
    explained_classes,
    method_reduction,
    metric_inputs,
    metric_rows,
    score_methods,
)

C2I_EXPLAINERS = ["sensitivity", "integrated-gradients", "rise", "meaningful-perturbation", "gradcam", "random"]


def _profile(profile: str, **changes) -> dict:
    base = dict(BENCHMARK_SPEC.defaults[profile])
    base.update(
        explainers=C2I_EXPLAINERS, lipschitz_explainers=C2I_EXPLAINERS, calibrators=["temperature", "dirichlet"],
        sweep_explainers=["meaningful-perturbation"], sweep_factors=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
        sweep_images=32, method_reductions={},
    )
    base.pop("calibrator")
    base.update(changes)
    return base


def validate(config: dict) -> None:
    """The benchmark's checks (``xaitrust.protocols.benchmark.validate``), and every reduction named in
    ``method_reductions`` is one of ``xaitrust.explainers.reduce.REDUCTIONS``."""
    BENCHMARK_SPEC.validate(config)
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


def temperature_sweep(run: RunFolder, model, fitted: float, x, target, held_out, config: dict) -> pd.DataFrame:
    """Mean deletion area of each sweep method and held-out calibration error at temperatures ``factor * fitted``
    (C2I section 4.6, Fig. 8). ``density_ece`` is the paper's continuous ECE estimator; the binned ``ece`` is kept
    beside it."""
    logits = predictions(model, held_out.x)
    rows = []
    for factor in config["sweep_factors"]:
        scaler = TemperatureScaling()
        scaler.temperature_ = float(factor * fitted)
        scaled = scaler.wrap(model)
        probabilities = torch.softmax(logits.double() / scaler.temperature_, dim=-1)  # float32 saturates at T << T*
        errors = {"ece": ece(probabilities, held_out.y), "density_ece": density_ece(probabilities, held_out.y)}
        for method in config["sweep_explainers"]:
            params = config["explainer_params"].get(method, {})
            attributions = explain_cached(
                run, f"sweep/{method}/T{factor:g}", method, params, scaled, x, target, config["output"],
                config["explainer_batch_size"],
            )
            maps = reduce_attributions(attributions, method_reduction(config, method), inputs=x)
            area = deletion(scaled, x, maps, target, config["deletion_steps"], config["replacement"], config["output"],
                            ties=config["ties"], seed=config["seed"]).area
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
            enough = len(points) > 2
            rows.append({
                "method": method, "side": side, "temperatures": len(points),
                "pearson": stats.pearsonr(points["density_ece"], points["deletion_area"]).statistic if enough else np.nan,
                "spearman": stats.spearmanr(points["density_ece"], points["deletion_area"]).statistic if enough else np.nan,
                "temperature_of_min_deletion_area": best["temperature"], "factor_of_min": best["factor"],
            })
    return pd.DataFrame(rows)


#: The control of ``deletion_comparison``: the random maps (the ``random`` explainer), scored exactly like every
#: method, in the role C2I 4.4 gives its random baseline ("we use a random interpretation baseline as reference for the
#: comparison"; there random orders of SLIC superpixels, the scorecard's ``RANDOM_SUPERPIXELS``).
CONTROL = "random"
#: The ``scored_on`` label of the paper's comparison, each model's maps on that model.
OWN_MODEL = "own model (paper)"


def cross_model_deletion(run: RunFolder, models: dict, maps: dict, x: torch.Tensor, targets: dict,
                         config: dict) -> pd.DataFrame:
    """Deletion areas of one model's maps scored on another (the registry's ``deletion_area``, as in the scorecard):
    for each calibrated model and each method, its maps on the uncalibrated model and the uncalibrated model's maps on
    it, each for the class the scored model explains (``targets``). Tidy rows whose ``model`` is the model the maps
    explain and ``scored_on`` the model scored; cached per pair in the run folder."""
    reference = next(iter(models))
    params = {"deletion_area": {"steps": config["deletion_steps"], "replacement": config["replacement"]}}
    tables = []
    for calibrated in list(models)[1:]:
        for maps_of, scored_on in ((calibrated, reference), (reference, calibrated)):
            for method in config["explainers"]:
                inputs = metric_inputs(models[scored_on], x, targets[scored_on], config, maps=maps[maps_of][method])
                table = run.cached_table(f"cross/{method}/{maps_of}-on-{scored_on}",
                                         partial(metric_rows, ("deletion_area",), inputs, params, method, maps_of))
                tables.append(table.assign(scored_on=scored_on))
    return pd.concat(tables, ignore_index=True)


def mean_ci(values) -> tuple[float, float, int]:
    """Mean of the finite ``values``, the half-width of its Student-t 95% confidence interval (``ci95_half_width``,
    NaN below two values) and their count."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return np.nan, np.nan, 0
    return float(values.mean()), ci95_half_width(values.std(ddof=1) if n > 1 else np.nan, n), n


def deletion_comparison(results: pd.DataFrame, cross: pd.DataFrame, models: dict, targets: dict,
                        methods: list[str]) -> pd.DataFrame:
    """Deletion area of each calibrated model's maps against the uncalibrated model's maps, per method of ``methods``
    (in that order), three ways (``scored_on``): each map on its own model (``OWN_MODEL``, the paper's comparison,
    C2I 4.4), and both maps on one common model, the uncalibrated one or the calibrated one (``cross_model_deletion``),
    which keeps the score's scale fixed so that only the maps differ.

    ``results`` holds the scorecard's per-image ``deletion_area`` rows (``sample`` the image's position, as in
    ``cross``). Per image ``i``, ``d_i = area(calibrated maps) - area(uncalibrated maps)`` (negative: the calibrated
    model's maps are more faithful); ``difference`` is the mean of ``d_i`` and ``ci95`` the half-width of its Student-t
    95% interval over the images where both areas are finite (``n``); ``uncalibrated_maps`` and ``calibrated_maps``
    are the two mean areas over those images, and ``class_changed`` counts those where the two models explain
    different classes (``targets``, each model's explained class): there a map scored on the other model is scored for
    a class it does not explain (``explained_class = "reference"`` gives every model the same class).
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
                change = calibrated_maps - uncalibrated_maps
                difference, ci95, n = mean_ci(change)
                beyond, beyond_ci95, _ = mean_ci(change - control)
                paired = np.isfinite(change)
                rows.append({
                    "calibrator": calibrated, "scored_on": scored_on, "method": method, "n": n,
                    "class_changed": int(changed[paired].sum()),
                    "uncalibrated_maps": mean_ci(uncalibrated_maps[paired])[0],
                    "calibrated_maps": mean_ci(calibrated_maps[paired])[0],
                    "difference": difference, "ci95": ci95, "minus_random": beyond, "minus_random_ci95": beyond_ci95,
                })
    return pd.DataFrame(rows)


def scoring_label(scored_on: str) -> str:
    """How the report names a ``scored_on`` of ``deletion_comparison``."""
    return scored_on if scored_on == OWN_MODEL else f"both on {scored_on}"


def comparison_tables(comparison: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The report's view of ``deletion_comparison``, one table per calibrator: methods x (scoring, ``difference`` and
    its ``ci95``), with ``minus_random`` and its interval for the paper's comparison (on a common model the random
    maps do not move, so there it equals ``difference``); the title counts the images whose explained classes
    differ."""
    tables = {}
    for calibrated, part in comparison.groupby("calibrator", sort=False):
        columns = {}
        for scored_on, rows in part.groupby("scored_on", sort=False):
            rows = rows.set_index("method")
            label = scoring_label(scored_on)
            columns[(label, "difference")], columns[(label, "ci95")] = rows["difference"], rows["ci95"]
            if scored_on == OWN_MODEL:
                columns[(label, "minus random")] = rows["minus_random"]
                columns[(label, "minus random ci95")] = rows["minus_random_ci95"]
        changed, n = part["class_changed"].max(), part["n"].max()
        title = f"{calibrated} maps minus uncalibrated maps" + (
            f" (the two models explain different classes on {changed} of {n} images)" if changed else "")
        tables[title] = pd.DataFrame(columns).reindex(part["method"].unique()).rename_axis("method")
    return tables


def comparison_findings(comparison: pd.DataFrame) -> list[str]:
    """One sentence per calibrator and scoring of ``deletion_comparison``: each method's paired difference with its
    95% interval, the random maps' own, and how many methods moved below the random maps' change beyond the
    interval of ``minus_random``."""
    lines = []
    for (calibrated, scored_on), part in comparison.groupby(["calibrator", "scored_on"], sort=False):
        where = ("each model's maps on that model" if scored_on == OWN_MODEL
                 else f"both models' maps on the {scored_on} model")
        methods = part[~part["method"].isin([CONTROL, RANDOM_SUPERPIXELS])]
        listed = "; ".join(f"{row.method} {row.difference:+.4f} [{row.difference - row.ci95:+.4f}, "
                           f"{row.difference + row.ci95:+.4f}]" for row in methods.itertuples())
        changed = part["class_changed"].max()
        if scored_on != OWN_MODEL and changed:
            where += (f", each scored for the class the {scored_on} model explains (the two models explain different "
                      f"classes on {changed} of {part['n'].max()} images)")
        line = (f"Deletion area, {calibrated} maps minus uncalibrated maps, {where} (mean over images, 95% CI; "
                f"negative: the {calibrated} maps are more faithful): {listed}.")
        controls = part[part["method"].isin([CONTROL, RANDOM_SUPERPIXELS])]
        if len(controls):
            line += " Random: " + "; ".join(f"{row.method} {row.difference:+.4f} [{row.difference - row.ci95:+.4f}, "
                                            f"{row.difference + row.ci95:+.4f}]" for row in controls.itertuples()) + "."
        if methods["minus_random"].notna().any():
            below = (methods["minus_random"] + methods["minus_random_ci95"] < 0).sum()
            above = (methods["minus_random"] - methods["minus_random_ci95"] > 0).sum()
            line += (f" Beyond the random maps' change (95% CI of the paired difference): lower for {below} and "
                     f"higher for {above} of {len(methods)} methods.")
        lines.append(line)
    return lines


def findings(calibration: pd.DataFrame, summary: pd.DataFrame, comparison: pd.DataFrame, correlations: pd.DataFrame,
             reference: str) -> list[str]:
    """Plain sentences from the numbers: per calibrator, its calibration error, the paired deletion-area differences
    of ``deletion_comparison`` (``comparison_findings``) and the SSIM of its maps; then the temperature sweep, whose
    centre ``reference`` names (the fitted temperature or T = 1)."""
    lines = []
    base = calibration.iloc[0]
    means = summary.pivot_table(index=["metric", "method"], columns="model", values="mean")
    metrics = set(means.index.get_level_values(0))
    for _, row in calibration.iloc[1:].iterrows():
        model = row["model"]
        line = (f"{model}: ECE {base['ece']:.4f} -> {row['ece']:.4f}, density ECE {base['density_ece']:.4f} -> "
                f"{row['density_ece']:.4f}, accuracy {base['accuracy']:.4f} -> {row['accuracy']:.4f}")
        if "explained_class_changed" in metrics and model in means.columns:
            changed = means.loc["explained_class_changed", model].dropna()
            if len(changed):
                line += f"; it changed the predicted class of {100 * changed.iloc[0]:.1f}% of the explained images"
        lines.append(line + ".")
        lines.extend(comparison_findings(comparison[comparison["calibrator"] == model]))
        if "ssim_to_uncalibrated" in metrics and model in means.columns:
            ssim = means.loc["ssim_to_uncalibrated", model].drop(index="random", errors="ignore").dropna()
            if len(ssim):
                lines.append(f"Maps changed most under {model} for {ssim.idxmin()} (mean SSIM {ssim.min():.3f}) and "
                             f"least for {ssim.idxmax()} ({ssim.max():.3f}).")
    for method, part in correlations.groupby("method", sort=False):
        sides = "; ".join(f"{row['side']}: Pearson {row['pearson']:.3f}, Spearman {row['spearman']:.3f}"
                          for _, row in part.iterrows())
        lines.append(f"Temperature sweep ({method}): deletion area is smallest at {part['factor_of_min'].iloc[0]:g} x "
                     f"{reference}; correlation of density ECE with deletion area, {sides}.")
    return lines


def reliability_figures(folder: Path, models: dict, held_out) -> dict[str, Path]:
    """The reliability diagram of each model on the held-out images (C2I Fig. 2: "Confidence reliability plots ...
    when uncalibrated ..., calibrated using Temperature Scaling ... and calibrated with Dirichlet calibration")."""
    return {f"Reliability diagram ({name})": reliability_diagram(
        torch.softmax(predictions(model, held_out.x).double(), dim=-1), held_out.y,
        folder / f"reliability-{name}.png", title=name) for name, model in models.items()}


def otsu_figures(folder: Path, x: torch.Tensor, maps: dict, methods: list[str], n: int = 8) -> dict[str, Path]:
    """Per method, the maps of the first ``n`` images on every model, each followed by its Otsu binarisation (C2I
    Fig. 5: "Saliency maps, Otsu-binarized masks ... for the calibrated model and the uncalibrated one"): the
    foreground of the min-max normalised map above its Otsu threshold, the mask whose total variation is Otsu-TV
    (``xaitrust.metrics.coherence.otsu_tv``)."""
    figures = {}
    for method in methods:
        rows = {}
        for model_name, by_method in maps.items():
            shown = by_method[method][:n]
            rows[model_name] = shown
            rows[f"{model_name}\nOtsu"] = otsu_masks(normalize_maps(shown)).float()
        figures[f"Maps and their Otsu binarisation ({method})"] = plot_map_grid(
            folder / f"otsu-{file_label(method)}.png", x[:n], rows, title=method)
    return figures


def execute(run: RunFolder) -> Path:
    config = run.config
    prepared = train_and_split(run, config)
    model, calibration, held_out = prepared.model, prepared.calibration, prepared.held_out
    calibrators, models, calibration_results = calibrated_models(
        run, prepared, {name: name for name in config["calibrators"]}
    )

    chosen, x, target = images_to_explain(model, held_out, config)
    masks = None if held_out.masks is None else held_out.masks[chosen]
    scored = score_methods(run, models, x, target, config, removal_fill(config, model.input_mean), masks)
    results = with_sample_columns(scored.results, models, x, held_out, chosen)
    summary = write_results(run, results)

    targets = explained_classes(models, x, target, config)
    cross = cross_model_deletion(run, models, scored.maps, x, targets, config)
    run.write_table("deletion_cross", cross)
    comparison = deletion_comparison(scored.results, cross, models, targets, [*config["explainers"], RANDOM_SUPERPIXELS])
    run.write_table("deletion_comparison", comparison)

    sweep_x, sweep_target = x[: config["sweep_images"]], target[: config["sweep_images"]]
    fitted = calibrators["temperature"].temperature_ if "temperature" in calibrators else 1.0
    sweep = run.cached_table("temperature_sweep", lambda: temperature_sweep(
        run, model, fitted, sweep_x, sweep_target, held_out, config))
    reference = "the fitted temperature" if "temperature" in calibrators else "T = 1 (no temperature calibrator)"
    run.write_table("temperature_sweep", sweep)
    correlations = sweep_correlations(sweep)

    figures = run.path / "figures"
    ssim = results[results["metric"] == "ssim_to_uncalibrated"]
    lipschitz = results[results["metric"] == "local_lipschitz"]
    sections = [
        Section("Calibration", [(f"{dataset_label(config)} data, {model_description(config, prepared.trained)}. "
                                 f"Calibrators fitted on {len(calibration)} held-out test images; scored on the other "
                                 f"{len(held_out)}. Reliability diagrams: top-label confidence in 15 equal-width bins.")],
                tables={"Held-out calibration": calibration_results},
                figures=reliability_figures(figures, models, held_out)),
        Section("Summary", [", ".join(f"{m} ({'higher' if h else 'lower'} is better)" for m, h in HIGHER_IS_BETTER.items())],
                tables={"Mean per method": pivot_summary(summary, ("method",), ("metric", "model"))}),
        Section("SSIM between calibrated and uncalibrated maps (C2I 4.3)", [], figures={
            f"SSIM ({model_name})": plot_histograms(
                figures / f"ssim-{model_name}.png",
                {m: part["value"].to_numpy() for m, part in ssim[ssim["model"] == model_name].groupby("method")},
                "SSIM to the uncalibrated map")
            for model_name in ssim["model"].unique()}),
        Section("Deletion curves (C2I 4.4)", ["Blurred replacement (11x11, sigma 10), normalised by the clean score."],
                figures={f"Deletion ({method})": plot_curves(
                    figures / f"deletion-{file_label(method)}.png",
                    {model_name: scored.deletion_curves[(method, model_name)] for model_name in models},
                    "fraction of pixels removed", "normalised score") for method in config["explainers"]}),
        Section("Deletion area: calibrated against uncalibrated maps", [(
            "Per image, the deletion area of a calibrated model's maps minus that of the uncalibrated model's maps "
            "(negative: the calibrated maps are more faithful); mean over the images with the half-width of its "
            f"Student-t 95% confidence interval (ci95). '{OWN_MODEL}': each map scored on the model it explains, as "
            "the paper does, which also changes the scale of the score; 'both on' a model: both maps scored on that "
            "one model, for the class it explains, so only the maps differ (where the two models explain different "
            "classes, one of the maps is scored for a class it does not explain). minus random: the same paired "
            "difference minus the random maps' change on the same image. All columns, with the mean areas: "
            "deletion_comparison.csv.")],
                tables=comparison_tables(comparison),
                figures={f"Deletion area, {name} maps minus uncalibrated maps": plot_intervals(
                    figures / f"deletion-difference-{name}.png",
                    {scoring_label(scored_on): {row.method: (row.difference, row.ci95) for row in rows.itertuples()}
                     for scored_on, rows in part.groupby("scored_on", sort=False)},
                    "deletion area difference (mean, 95% CI)", name)
                    for name, part in comparison.groupby("calibrator", sort=False)}),
        Section("Maps and Otsu binarisation (C2I 4.5)", [(
            "Each map min-max scaled; below it, its foreground above the Otsu threshold, whose total variation is "
            "Otsu-TV.")], figures=otsu_figures(figures, x, scored.maps, config["explainers"])),
        Section("Local Lipschitz estimate (C2I 4.6)", [(
            "Per image, the largest ratio of the change of the min-max normalised map to the change of the input over "
            f"{config['lipschitz_neighbours']} neighbours in the L2 ball of radius {config['lipschitz_radius']} "
            "(lower is more stable). Boxes: quartiles and median; triangles: means.")], figures={"Local Lipschitz estimate per method and model": plot_box_panels(
                figures / "lipschitz.png",
                {method: {name: rows["value"].to_numpy() for name, rows in part.groupby("model", sort=False)}
                 for method, part in lipschitz.groupby("method", sort=False)}, "local Lipschitz estimate")}
                if len(lipschitz) else {}),
        Section("Temperature sweep (C2I 4.6)", [], tables={"Sweep": sweep, "Correlation with ECE": correlations},
                figures={"Deletion area vs temperature": plot_curves(
                    figures / "sweep.png",
                    {m: (torch.tensor(part["factor"].to_numpy()), torch.tensor(part["deletion_area"].to_numpy())[None])
                     for m, part in sweep.groupby("method")}, f"temperature / {reference}", "mean deletion area")}),
    ]
    return write_report(run.path / "report.html", "Calibrate to Interpret", findings(
        calibration_results, summary, comparison, correlations, reference), sections, tomli_w.dumps(config))
