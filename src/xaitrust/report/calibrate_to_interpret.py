"""The report of the Calibrate to Interpret protocol (``xaitrust.protocols.calibrate_to_interpret``; Scafarto, Posocco
& Bonnefoy, "Calibrate to Interpret"): the question and its answer, the findings, the tables and figures, and
``summary.json``.

The answer takes each calibrator's maps twice. Changed: the mean SSIM of its maps to the uncalibrated model's maps
(section 4.3) with the Student-t 95% interval of the mean over the images (``mean +- t_{0.975, n-1} s / sqrt(n)``,
the summary's ``ci95``); a method's maps count as changed when that interval lies below 1. More faithful: the paired
per-image difference of deletion areas, calibrated maps minus uncalibrated maps (section 4.4; negative: more
faithful), with the Student-t 95% interval of its mean (``deletion_comparison``), scored on the uncalibrated model
(only the maps differ) and, as the paper does, each map on its own model beyond the random maps' change; a method
counts as lower or higher only when its interval excludes 0, and when none does the answer says the run does not
resolve the question.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..calibration.plots import reliability_diagram
from ..explainers.reduce import normalize_maps
from ..metrics.binarize import otsu_masks
from ..protocols.common import (
    CalibratedModels,
    TrainedWithSplits,
    dataset_label,
    model_description,
)
from ..protocols.results import pivot_summary
from ..protocols.run_folder import RunFolder
from ..protocols.scoring import CONTROLS, HIGHER_IS_BETTER
from ..sources import file_label
from .figures import (
    plot_box_panels,
    plot_curves,
    plot_histograms,
    plot_intervals,
    plot_map_grid,
)
from .html import Headline, Section, write_report
from .summary import write_summary

QUESTION = ("Does post-hoc calibration change the saliency maps of a classifier, and does it make them more "
            "faithful?")

#: The ``scored_on`` label of the paper's comparison, each model's maps on that model.
OWN_MODEL = "own model (paper)"


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


def _difference(value: float, half_width: float) -> str:
    """``value [value - half_width, value + half_width]``, signed, to four decimals ("no interval" without one)."""
    if pd.isna(half_width):
        return f"{value:+.4f} (no interval)"
    return f"{value:+.4f} [{value - half_width:+.4f}, {value + half_width:+.4f}]"


def comparison_findings(comparison: pd.DataFrame) -> list[str]:
    """One sentence per calibrator and scoring of ``deletion_comparison``: each method's paired difference with its
    95% interval, the random maps' own, and how many methods moved below the random maps' change beyond the
    interval of ``minus_random``."""
    lines = []
    for (calibrated, scored_on), part in comparison.groupby(["calibrator", "scored_on"], sort=False):
        where = ("each model's maps on that model" if scored_on == OWN_MODEL
                 else f"both models' maps on the {scored_on} model")
        methods = part[~part["method"].isin(CONTROLS)]
        listed = "; ".join(f"{row.method} {_difference(row.difference, row.ci95)}" for row in methods.itertuples())
        changed = part["class_changed"].max()
        if scored_on != OWN_MODEL and changed:
            where += (f", each scored for the class the {scored_on} model explains (the two models explain different "
                      f"classes on {changed} of {part['n'].max()} images)")
        line = (f"Deletion area, {calibrated} maps minus uncalibrated maps, {where} (mean over images, 95% CI; "
                f"negative: the {calibrated} maps are more faithful): {listed}.")
        controls = part[part["method"].isin(CONTROLS)]
        if len(controls):
            line += " Random: " + "; ".join(f"{row.method} {_difference(row.difference, row.ci95)}"
                                            for row in controls.itertuples()) + "."
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


def _change_answer(calibration_row: pd.Series, base: pd.Series, summary: pd.DataFrame) -> str:
    """How one calibrator changed the density ECE and, where the run measures SSIM, its maps: the least and the most
    similar method with their 95% intervals, and how many methods' intervals lie below 1."""
    model = calibration_row["model"]
    line = f"{model}: density ECE {base['density_ece']:.4f} -> {calibration_row['density_ece']:.4f} on held-out images"
    ssim = summary[(summary["metric"] == "ssim_to_uncalibrated") & (summary["model"] == model)
                   & ~summary["method"].isin(CONTROLS)].dropna(subset=["mean"]).set_index("method")
    if not len(ssim):
        return line + "."

    def shown(method: str) -> str:
        mean, half = ssim.loc[method, "mean"], ssim.loc[method, "ci95"]
        return f"{mean:.3f}" + ("" if pd.isna(half) else f" [{mean - half:.3f}, {mean + half:.3f}]") + f" ({method})"

    changed = int((ssim["mean"] + ssim["ci95"] < 1).sum())
    return (f"{line}; mean SSIM of its maps to the uncalibrated ones from {shown(ssim['mean'].idxmin())} to "
            f"{shown(ssim['mean'].idxmax())}, below 1 by the 95% CI for {changed} of {len(ssim)} methods.")


def _faithfulness_answer(comparison: pd.DataFrame, calibrated: str, reference: str) -> str:
    """Whether one calibrator's maps have lower deletion areas than the uncalibrated maps on the ``reference``
    (uncalibrated) model, and beyond the random maps' change each on its own model; the largest resolved difference
    with its interval, or "not resolved" when every interval includes 0."""
    rows = comparison[(comparison["calibrator"] == calibrated) & ~comparison["method"].isin(CONTROLS)]
    common, own = rows[rows["scored_on"] == reference], rows[rows["scored_on"] == OWN_MODEL]
    if not len(common):
        return (f"The run explains no method besides the random controls: whether the {calibrated} maps are more "
                "faithful is not measured.")
    lower, higher = common["difference"] + common["ci95"] < 0, common["difference"] - common["ci95"] > 0
    resolved = common[lower | higher]
    shown = resolved if len(resolved) else common
    largest = shown.loc[shown["difference"].abs().idxmax()]
    n, changed = int(common["n"].max()), int(common["class_changed"].max())
    classes = f", {changed} of them with another class explained by the two models" if changed else ""
    line = (f"Scored on the {reference} model, the {calibrated} maps' deletion area is lower (more faithful) for "
            f"{int(lower.sum())} and higher for {int(higher.sum())} of {len(common)} methods (95% CI of the paired "
            f"difference over {n} images{classes}; largest: {largest['method']} "
            f"{_difference(largest['difference'], largest['ci95'])})")
    if own["minus_random"].notna().any():
        below = int((own["minus_random"] + own["minus_random_ci95"] < 0).sum())
        above = int((own["minus_random"] - own["minus_random_ci95"] > 0).sum())
        line += (f"; each on its own model, beyond the random maps' change (the paper's comparison): lower for {below} "
                 f"and higher for {above}")
    if not len(resolved):
        line += "; not resolved: every 95% CI on the common model includes 0"
    return line + "."


def headline(calibration: pd.DataFrame, summary: pd.DataFrame, comparison: pd.DataFrame) -> Headline:
    """The paper's question and its answer: per calibrator (rows of ``calibration`` after the uncalibrated model's)
    how it changed the calibration error and the maps (``_change_answer``) and whether its maps are more faithful
    (``_faithfulness_answer``), with the 95% intervals of the tables."""
    base, answer = calibration.iloc[0], []
    for _, row in calibration.iloc[1:].iterrows():
        answer.append(_change_answer(row, base, summary))
        if (comparison["calibrator"] == row["model"]).any():
            answer.append(_faithfulness_answer(comparison, row["model"], base["model"]))
    return Headline(QUESTION, answer or ["The run has no calibrated model: the question is not measured."])


def mean_tables(summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Methods x metrics tables of means, one per model (in the summary's order), narrow enough for the page."""
    return {f"Mean per method ({model})": pivot_summary(part, ("method",), ("metric",))
            for model, part in summary.groupby("model", sort=False)}


def reliability_figures(folder: Path, probabilities: dict[str, torch.Tensor], labels: torch.Tensor
                        ) -> dict[str, Path]:
    """The reliability diagram of each model's held-out ``probabilities[model]`` ``(N, K)`` against ``labels`` (C2I
    Fig. 2: "Confidence reliability plots ... when uncalibrated ..., calibrated using Temperature Scaling ... and
    calibrated with Dirichlet calibration")."""
    return {f"Reliability diagram ({name})": reliability_diagram(probs, labels, folder / f"reliability-{name}.png",
                                                                 title=name)
            for name, probs in probabilities.items()}


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


def write_calibrate_to_interpret_report(
    run: RunFolder, *, prepared: TrainedWithSplits, calibrated: CalibratedModels, results: pd.DataFrame,
    summary: pd.DataFrame, scored, x: torch.Tensor, comparison: pd.DataFrame, sweep: pd.DataFrame,
    correlations: pd.DataFrame,
) -> Path:
    """Write ``report.html`` and ``summary.json`` of a Calibrate to Interpret run: ``prepared`` the model and its
    splits, ``calibrated`` the uncalibrated and calibrated models with their held-out probabilities and calibration
    table, ``results`` and ``summary`` the scorecard's tables, ``scored`` its maps and deletion curves
    (``xaitrust.protocols.scoring.score_methods``) of the explained images ``x``, ``comparison`` the paired deletion
    areas (``deletion_comparison``), ``sweep`` and ``correlations`` the temperature sweep. Returns the report's
    path."""
    config = run.config
    figures = run.path / "figures"
    calibration = calibrated.table
    reference = ("the fitted temperature" if "temperature" in config["calibrators"]
                 else "T = 1 (no temperature calibrator)")
    ssim = results[results["metric"] == "ssim_to_uncalibrated"]
    lipschitz = results[results["metric"] == "local_lipschitz"]
    setup = (f"{dataset_label(config)} data, {model_description(config, prepared.trained)}. Calibrators fitted on "
             f"{len(prepared.calibration)} held-out test images; scored on the other {len(prepared.held_out)}. "
             "Reliability diagrams: top-label confidence in 15 equal-width bins.")
    directions = ", ".join(f"{m} ({'higher' if h else 'lower'} is better)" for m, h in HIGHER_IS_BETTER.items()
                           if m in set(summary["metric"]))
    paired = ("Per image, the deletion area of a calibrated model's maps minus that of the uncalibrated model's maps "
              "(negative: the calibrated maps are more faithful); mean over the images with the half-width of its "
              f"Student-t 95% confidence interval (ci95). '{OWN_MODEL}': each map scored on the model it explains, as "
              "the paper does, which also changes the scale of the score; 'both on' a model: both maps scored on that "
              "one model, for the class it explains, so only the maps differ (where the two models explain different "
              "classes, one of the maps is scored for a class it does not explain). minus random: the same paired "
              "difference minus the random maps' change on the same image. All columns, with the mean areas: "
              "deletion_comparison.csv.")
    stability = ("Per image, the largest ratio of the change of the min-max normalised map to the change of the input "
                 f"over {config['lipschitz_neighbours']} neighbours in the L2 ball of radius "
                 f"{config['lipschitz_radius']} (lower is more stable). Boxes: quartiles and median; triangles: means.")
    sections = [
        Section("Calibration", [setup], tables={"Held-out calibration": calibration},
                figures=reliability_figures(figures, calibrated.probabilities, calibrated.labels)),
        Section("Summary", [directions],
                tables=mean_tables(summary)),
        Section("SSIM between calibrated and uncalibrated maps (C2I 4.3)", [], figures={
            f"SSIM ({model_name})": plot_histograms(
                figures / f"ssim-{model_name}.png",
                {m: part["value"].to_numpy() for m, part in ssim[ssim["model"] == model_name].groupby("method")},
                "SSIM to the uncalibrated map")
            for model_name in ssim["model"].unique()}),
        Section("Deletion curves (C2I 4.4)", ["Blurred replacement (11x11, sigma 10), normalised by the clean score."],
                figures={f"Deletion ({method})": plot_curves(
                    figures / f"deletion-{file_label(method)}.png",
                    {model_name: (curves[method]["fractions"], curves[method]["deletion"])
                     for model_name, curves in scored.curves.items()},
                    "fraction of pixels removed", "normalised score") for method in config["explainers"]}),
        Section("Deletion area: calibrated against uncalibrated maps", [paired],
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
        Section("Local Lipschitz estimate (C2I 4.6)", [stability], figures={
            "Local Lipschitz estimate per method and model": plot_box_panels(
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
    answer = headline(calibration, summary, comparison)
    write_summary(run.path / "summary.json", answer, calibration=calibration, summary=summary,
                  deletion_comparison=comparison, sweep_correlations=correlations)
    return write_report(run.path / "report.html", "Calibrate to Interpret",
                        findings(calibration, summary, comparison, correlations, reference), sections,
                        tomli_w.dumps(config), headline=answer)
