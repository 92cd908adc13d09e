"""ReCalX (Decker, Tresp & Buettner): calibration under the perturbations explainers use, and what per-level
recalibration does to KernelSHAP and LIME.

Steps (paper sections 4-5): train (or load) a model on a dataset with ground-truth object masks (``shapes`` by
default); fit ReCalX (Algorithm 1: ``n_bins`` equal-width perturbation-level bins, ``samples_per_bin`` random subsets
per image and bin, zero baseline, one temperature per bin by NLL) on a calibration split carved from the test data;
measure the KL calibration error (Popordanoska et al. 2024) and the binned ECE as a function of the perturbation level
on the other, held-out test images, before and after (paper Fig. 1); explain held-out images with KernelSHAP and LIME
(zero baseline) on the uncalibrated and the ReCalX model, which the masked-evaluation engine tells each coalition's
perturbation level; and compare the maps by localisation (share of positive attribution inside the object mask,
paper Table 2), ground-truth alignment (Spearman between map and mask, the analogue of Table 1's human alignment),
the pointing game, and deletion curves (zero replacement, each map scored on the model it explains).

One perturbation for all: ``replacement`` is the baseline of ReCalX's fit, of the held-out calibration curves, of the
explainers (unless ``explainer_params`` of a method sets its own) and of the deletion curves. ``grouping`` says which
features ReCalX's fit and the calibration curves replace: ``"pixels"`` by default, as the paper's Fig. 1 ("share of
replaced pixels with zeros"); KernelSHAP and LIME replace superpixels, so their coalitions are contiguous regions at
the same level; ``grouping = "superpixels"`` fits ReCalX on the explainers' kind of perturbation instead (the paper
leaves open which features its Captum explainers used).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..calibration import Calibrator, ReCalX, calibration_error_by_level
from ..calibration.plots import plot_error_by_level
from ..explainers.reduce import reduce_attributions
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
    "grouping": "pixels",
    "levels": [(b + 0.5) / 10 for b in range(10)],
    "samples_per_level": 2,
    "explainers": ["kernelshap", "lime"],
    "explainer_params": {"kernelshap": {"n_samples": 200}, "lime": {"n_samples": 200}},
    "output": "probability",
    "reduction": "sum",
    "n_images": 200,
    "deletion_steps": 50,
    "explainer_batch_size": 32,
}


def validate(config: dict) -> None:
    """Checks across keys: the model keys (``check_model_source``) and the explainers with their parameters, listed
    or not (``check_explainer_lists``)."""
    check_model_source(config)
    check_explainer_lists(config)


SPEC = ProtocolSpec(
    name="recalx",
    description="Calibration error vs perturbation level before/after ReCalX; KernelSHAP and LIME localisation.",
    defaults={
        "paper": dict(_COMMON),
        "quick": dict(_COMMON, epochs=15, samples_per_bin=5, n_images=64, samples_per_level=1),
        "smoke": dict(_COMMON, train_size=600, test_size=300, epochs=1, calibration_size=100, samples_per_bin=2,
                      levels=[0.1, 0.5, 0.9], samples_per_level=1, n_images=6, deletion_steps=10,
                      explainer_params={"kernelshap": {"n_samples": 40}, "lime": {"n_samples": 40}}),
    },
    choices={
        "explainers": ("kernelshap", "lime", "rise", "occlusion"),
        "replacement": ("zero", "mean", "blur"),
        "grouping": ("pixels", "patches", "superpixels"),
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
    recalx = ReCalX(config["n_bins"], config["samples_per_bin"], config["replacement"], config["grouping"],
                    seed=config["seed"]).fit(model, calibration.x, calibration.y)
    recalx.save(path)
    return recalx


def error_by_level(models: dict, held_out, config: dict) -> pd.DataFrame:
    """Calibration measures at each perturbation level, per model, on the held-out images (same perturbations)."""
    rows = []
    for name, model in models.items():
        for row in calibration_error_by_level(
            model, held_out.x, held_out.y, config["levels"], samples_per_level=config["samples_per_level"],
            # ReCalX's fit draws from seed and seed + 1: held-out perturbations use fresh draws.
            replacement=config["replacement"], grouping=config["grouping"], seed=config["seed"] + 2,
        ):
            rows.append({"model": name, **row})
    return pd.DataFrame(rows)


def explainer_params(config: dict, method: str) -> dict:
    """``method``'s parameters: the protocol's ``replacement`` unless ``explainer_params`` sets the method's own."""
    return {"replacement": config["replacement"], **config["explainer_params"].get(method, {})}


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


def findings(levels: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    lines = []
    kl = levels.pivot_table(index="perturbation_level", columns="model", values="kl_calibration_error")
    before, after = kl["uncalibrated"], kl["recalx"]
    lines.append(
        f"KL calibration error, maximum over perturbation levels: {before.max():.4f} uncalibrated -> {after.max():.4f} "
        f"with ReCalX; lower at {int((after < before).sum())} of {len(kl)} levels (held-out images)."
    )
    rising = before.iloc[-1] > before.iloc[0]
    lines.append(f"Uncalibrated error {'grows' if rising else 'does not grow'} from the lowest to the highest "
                 f"perturbation level ({before.iloc[0]:.4f} -> {before.iloc[-1]:.4f}); the paper reports it grows.")
    means = summary.pivot_table(index=["metric", "method"], columns="model", values="mean")
    for metric in ("localization", "gt_alignment", "pointing_game", "deletion_area"):
        if metric in means.index.get_level_values(0):
            for method, row in means.loc[metric].iterrows():
                lines.append(f"{method} {metric}: {row['uncalibrated']:.4f} uncalibrated -> {row['recalx']:.4f} ReCalX.")
    return lines


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
    level_rows = {name: part.to_dict("records") for name, part in levels.groupby("model", sort=False)}
    sections = [
        Section("Calibration under perturbation (ReCalX Fig. 1)",
                [f"{model_description(config, prepared.trained)}. "
                 f"ReCalX fitted on {len(calibration)} images, scored on {len(held_out)} others; "
                 f"{config['replacement']} replacement of {config['grouping']}."],
                tables={"By level": levels, "Temperature per bin": temperatures},
                figures={
                    "KL calibration error by level": plot_error_by_level(level_rows, figures / "kl-by-level.png"),
                    "Binned ECE by level": plot_error_by_level(level_rows, figures / "ece-by-level.png", "ece"),
                }),
        Section("Explanations (ReCalX Tables 1-2)", [note],
                tables={"Mean per method": pivot_summary(summary, ("method",), ("metric", "model"))},
                figures={"Deletion curves": plot_curves(figures / "deletion.png", curves, "fraction of pixels removed",
                                                        f"normalised {config['output']}")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", x[:8], maps, title=name)
            for name, maps in examples.items()}),
    ]
    return write_report(run.path / "report.html", "ReCalX", findings(levels, summary), sections, tomli_w.dumps(config))
