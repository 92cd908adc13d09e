"""Calibrate to Interpret (Scafarto, Posocco & Bonnefoy): what post-hoc calibration does to saliency maps.

Steps (paper section 4): train (or load) a model; fit temperature scaling and Dirichlet calibration on a calibration
split carved from the test data; explain the same held-out images with Sensitivity, Integrated Gradients (black and
white references combined), RISE, Meaningful Perturbation and Grad-CAM on the uncalibrated model and on each
calibrated one (targets: the uncalibrated model's predicted class for every model); report calibration error
(binned and density ECE) before and after, the SSIM between calibrated and uncalibrated maps (4.3), deletion curves
and areas with blurred replacement normalised by the clean score (4.4), the Better-Than-Random ratio against random
SLIC superpixels, Otsu total variation (4.5) and local Lipschitz stability (4.6); and the temperature sweep of 4.6:
deletion area at fixed temperatures around the fitted one, with its correlation to the ECE at those temperatures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
import torch
from scipy import stats

from ..calibration import TemperatureScaling, ece
from ..explainers.reduce import reduce_attributions
from ..metrics import deletion
from ..report.figures import plot_curves, plot_histograms, plot_map_grid
from ..report.html import Section, write_report
from .benchmark import SPEC as BENCHMARK_SPEC
from .common import (
    calibrated_models,
    explain_cached,
    images_to_explain,
    predictions,
    train_and_split,
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
        "paper": _profile("paper", n_images=2500, lipschitz_images=150, sweep_images=256,
                          sweep_factors=[0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0],
                          explainer_params={"integrated-gradients": {"steps": 30, "baseline": "black+white"}}),
        "quick": _profile("quick", n_images=64, lipschitz_images=8, sweep_images=24,
                          lipschitz_explainers=["sensitivity", "integrated-gradients", "gradcam", "random"]),
        "smoke": _profile("smoke", sweep_images=4, sweep_factors=[0.5, 1.0, 2.0],
                          lipschitz_explainers=["sensitivity", "gradcam"]),
    },
    choices={**BENCHMARK_SPEC.choices, "calibrators": ("temperature", "dirichlet"),
             "sweep_explainers": BENCHMARK_SPEC.choices["explainers"]},
)


def temperature_sweep(run: RunFolder, model, fitted: float, x, target, held_out, config: dict) -> pd.DataFrame:
    """Mean deletion area of each sweep method and held-out ECE at temperatures ``factor * fitted`` (C2I Fig. 8)."""
    logits = predictions(model, held_out.x)
    rows = []
    for factor in config["sweep_factors"]:
        scaler = TemperatureScaling()
        scaler.temperature_ = float(factor * fitted)
        scaled = scaler.wrap(model)
        calibration_error = ece(torch.softmax(logits / scaler.temperature_, dim=-1), held_out.y)
        for method in config["sweep_explainers"]:
            params = config["explainer_params"].get(method, {})
            attributions = explain_cached(
                run, f"sweep/{method}/T{factor:g}", method, params, scaled, x, target, config["output"],
                config["explainer_batch_size"],
            )
            maps = reduce_attributions(attributions, method_reduction(config, method), inputs=x)
            area = deletion(scaled, x, maps, target, config["deletion_steps"], config["replacement"], config["output"]).area
            rows.append({"method": method, "factor": factor, "temperature": scaler.temperature_, "ece": calibration_error,
                         "deletion_area": float(area.mean()), "deletion_area_sd": float(area.std())})
    return pd.DataFrame(rows)


def sweep_correlations(sweep: pd.DataFrame) -> pd.DataFrame:
    """Pearson and Spearman correlation between ECE and mean deletion area across the sweep's temperatures."""
    rows = []
    for method, part in sweep.groupby("method"):
        pearson = stats.pearsonr(part["ece"], part["deletion_area"]).statistic if len(part) > 2 else np.nan
        spearman = stats.spearmanr(part["ece"], part["deletion_area"]).statistic if len(part) > 2 else np.nan
        best = part.loc[part["deletion_area"].idxmin()]
        rows.append({"method": method, "pearson": pearson, "spearman": spearman,
                     "temperature_of_min_deletion_area": best["temperature"], "factor_of_min": best["factor"]})
    return pd.DataFrame(rows)


def findings(calibration: pd.DataFrame, summary: pd.DataFrame, correlations: pd.DataFrame) -> list[str]:
    lines = []
    base = calibration.iloc[0]
    for _, row in calibration.iloc[1:].iterrows():
        lines.append(f"{row['model']}: ECE {base['ece']:.4f} -> {row['ece']:.4f}, density ECE "
                     f"{base['density_ece']:.4f} -> {row['density_ece']:.4f}, accuracy {base['accuracy']:.4f} -> "
                     f"{row['accuracy']:.4f}.")
    means = summary.pivot_table(index=["metric", "method"], columns="model", values="mean")
    for model in calibration["model"].iloc[1:]:
        if ("deletion_area" in means.index.get_level_values(0)) and model in means.columns:
            area = means.loc["deletion_area"]
            lowered = sorted(area.index[area[model] < area["uncalibrated"]])
            lines.append(f"{model} lowered the mean deletion area (more faithful) for {len(lowered)} of {len(area)} "
                         f"methods: {', '.join(lowered) or 'none'}.")
        if ("ssim_to_uncalibrated" in means.index.get_level_values(0)) and model in means.columns:
            ssim = means.loc["ssim_to_uncalibrated", model].dropna()
            if len(ssim):
                lines.append(f"Maps changed most under {model} for {ssim.idxmin()} (mean SSIM {ssim.min():.3f}) and "
                             f"least for {ssim.idxmax()} ({ssim.max():.3f}).")
    for _, row in correlations.iterrows():
        lines.append(f"Temperature sweep ({row['method']}): deletion area is smallest at {row['factor_of_min']:g} x the "
                     f"fitted temperature; correlation with ECE: Pearson {row['pearson']:.3f}, Spearman "
                     f"{row['spearman']:.3f}.")
    return lines


def execute(run: RunFolder) -> Path:
    config = run.config
    prepared = train_and_split(run, config)
    model, calibration, held_out = prepared.model, prepared.calibration, prepared.held_out
    calibrators, models, calibration_results = calibrated_models(
        run, prepared, {name: name for name in config["calibrators"]}
    )

    chosen, x, target = images_to_explain(model, held_out, config)
    scored = score_methods(run, models, x, target, config)
    results = scored.results
    summary = write_results(run, results)

    sweep_x, sweep_target = x[: config["sweep_images"]], target[: config["sweep_images"]]
    fitted = calibrators["temperature"].temperature_ if "temperature" in calibrators else 1.0
    sweep = run.cached_table("temperature_sweep", lambda: temperature_sweep(
        run, model, fitted, sweep_x, sweep_target, held_out, config))
    run.write_table("temperature_sweep", sweep)
    correlations = sweep_correlations(sweep)

    figures = run.path / "figures"
    ssim = results[results["metric"] == "ssim_to_uncalibrated"]
    sections = [
        Section("Calibration", [f"Fitted on {len(calibration)} held-out test images; scored on the other "
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
                    figures / f"deletion-{method}.png",
                    {model_name: scored.deletion_curves[(method, model_name)] for model_name in models},
                    "fraction of pixels removed", "normalised score") for method in config["explainers"]}),
        Section("Temperature sweep (C2I 4.6)", [], tables={"Sweep": sweep, "Correlation with ECE": correlations},
                figures={"Deletion area vs temperature": plot_curves(
                    figures / "sweep.png",
                    {m: (torch.tensor(part["factor"].to_numpy()), torch.tensor(part["deletion_area"].to_numpy())[None])
                     for m, part in sweep.groupby("method")}, "temperature / fitted temperature", "mean deletion area")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", x[:8], maps, title=name)
            for name, maps in scored.examples.items()}),
    ]
    return write_report(run.path / "report.html", "Calibrate to Interpret", findings(calibration_results, summary,
                        correlations), sections, tomli_w.dumps(config))
