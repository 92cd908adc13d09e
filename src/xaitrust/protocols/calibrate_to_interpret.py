"""Calibrate to Interpret (Scafarto, Posocco & Bonnefoy): what post-hoc calibration does to saliency maps.

Steps (paper section 4): train (or load) a model; fit temperature scaling and Dirichlet calibration on a calibration
split carved from the test data; explain the same held-out images with Sensitivity, Integrated Gradients (black and
white references combined, each reference's map in magnitude), RISE, Meaningful Perturbation and Grad-CAM on the
uncalibrated model and on each calibrated one (targets: each model's own predicted class, ``explained_class = "own"``,
as in the paper, where Dirichlet calibration "can change the predicted class"; ``"reference"`` makes every model
explain the uncalibrated model's class, and ``explained_class_changed`` reports how often they differ); report
calibration error
(binned and density ECE) before and after, the SSIM between calibrated and uncalibrated maps (4.3), deletion curves
and areas with blurred replacement normalised by the clean score (4.4), the Better-Than-Random ratio against random
SLIC superpixels, Otsu total variation (4.5) and local Lipschitz stability (4.6); and the temperature sweep of 4.6:
deletion area at fixed temperatures around the fitted one, with its correlation to the density ECE at those
temperatures, separately on the over-confident (factor <= 1) and under-confident (factor >= 1) side.

Findings compare each calibrator's change of deletion area with the change it causes for the random maps (the
paper's own control): an improvement no larger than random's is a change of the score's scale, not better maps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
import torch
from scipy import stats

from ..calibration import TemperatureScaling, density_ece, ece
from ..explainers.reduce import reduce_attributions
from ..metrics import deletion
from ..report.figures import plot_curves, plot_histograms, plot_map_grid
from ..report.html import Section, write_report
from ..sources import file_label
from .benchmark import C2I_IG, deletion_change, trainings  # noqa: F401 (the same model as the benchmark trains)
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
from .scoring import HIGHER_IS_BETTER, method_reduction, score_methods

C2I_EXPLAINERS = ["sensitivity", "integrated-gradients", "rise", "meaningful-perturbation", "gradcam", "random"]


def _profile(profile: str, **changes) -> dict:
    base = dict(BENCHMARK_SPEC.defaults[profile])
    base.update(
        explainers=C2I_EXPLAINERS, lipschitz_explainers=C2I_EXPLAINERS, calibrators=["temperature", "dirichlet"],
        sweep_explainers=["meaningful-perturbation"], sweep_factors=[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0],
        sweep_images=32,
    )
    base.pop("calibrator")
    base.update(changes)
    return base


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
    validate=BENCHMARK_SPEC.validate,
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


def findings(calibration: pd.DataFrame, summary: pd.DataFrame, correlations: pd.DataFrame, reference: str) -> list[str]:
    """Plain sentences from the numbers; ``reference`` names the sweep's centre (the fitted temperature or T = 1)."""
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
        deletion_line = deletion_change(summary, model)
        if deletion_line:
            lines.append(deletion_line)
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

    sweep_x, sweep_target = x[: config["sweep_images"]], target[: config["sweep_images"]]
    fitted = calibrators["temperature"].temperature_ if "temperature" in calibrators else 1.0
    sweep = run.cached_table("temperature_sweep", lambda: temperature_sweep(
        run, model, fitted, sweep_x, sweep_target, held_out, config))
    reference = "the fitted temperature" if "temperature" in calibrators else "T = 1 (no temperature calibrator)"
    run.write_table("temperature_sweep", sweep)
    correlations = sweep_correlations(sweep)

    figures = run.path / "figures"
    ssim = results[results["metric"] == "ssim_to_uncalibrated"]
    sections = [
        Section("Calibration", [f"{dataset_label(config)} data, {model_description(config, prepared.trained)}. "
                                f"Calibrators fitted on {len(calibration)} held-out test images; scored on the other "
                                f"{len(held_out)}."], tables={"Held-out calibration": calibration_results}),
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
        Section("Temperature sweep (C2I 4.6)", [], tables={"Sweep": sweep, "Correlation with ECE": correlations},
                figures={"Deletion area vs temperature": plot_curves(
                    figures / "sweep.png",
                    {m: (torch.tensor(part["factor"].to_numpy()), torch.tensor(part["deletion_area"].to_numpy())[None])
                     for m, part in sweep.groupby("method")}, f"temperature / {reference}", "mean deletion area")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", x[:8], maps, title=name)
            for name, maps in scored.examples.items()}),
    ]
    return write_report(run.path / "report.html", "Calibrate to Interpret", findings(calibration_results, summary,
                        correlations, reference), sections, tomli_w.dumps(config))
