"""The report of the ReCalX protocol (``xaitrust.protocols.recalx``; Decker, Tresp & Buettner, "Why uncertainty
calibration matters for reliable perturbation-based explanations"): the question and its answer, the findings, the
tables and figures, and ``summary.json``.

The answer compares the uncalibrated and the ReCalX model on the same held-out data:

- **Calibration** (paper Fig. 1): per calibration measure (each KL mode, binned ECE) and perturbation family, the
  mean over the perturbation levels of each model's error with its Student-t interval over the levels
  (``xaitrust.statistics.mean_interval``), and the paired change ``d_l = e_recalx(l) - e_uncalibrated(l)`` over the
  levels ``l`` (``paired_test``): ReCalX lowers the error at these levels when the interval of ``mean(d)`` lies below 0.
  The levels are the pairs, so the interval says how consistently the error moves across the levels; it does not
  hold the sampling error of each level's estimate on the held-out images.
- **Explanations** (paper Tables 1-2): per score (localisation, ground-truth alignment, pointing game, deletion area)
  and method, the paired change ``d_i = s_recalx(i) - s_uncalibrated(i)`` over the explained images ``i``
  (``paired_test``, Student t), Holm-corrected over all the run's comparisons (``holm``): a change is *better* or
  *worse* with ReCalX where the adjusted p is below 0.05, in the score's better direction
  (``Metric.higher_is_better``) or against it, and *not resolved* otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..calibration.plots import plot_error_by_level_panels
from ..evaluation import get_metric
from ..protocols.common import model_description
from ..protocols.results import pivot_summary
from ..protocols.run_folder import RunFolder
from ..statistics import holm, mean_interval, paired_test
from .figures import plot_curves, plot_map_grid
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

QUESTION = ("Does recalibrating the model for each perturbation level make its perturbation-based explanations "
            "(KernelSHAP, LIME) more reliable?")
#: The models compared, as the tables name them.
BEFORE, AFTER = "uncalibrated", "recalx"
#: Family-wise error rate of the explanation comparisons.
ALPHA = 0.05
#: Outcomes of an explanation comparison.
BETTER, WORSE, UNRESOLVED = "better with ReCalX", "worse with ReCalX", "not resolved"
#: The explanation scores the answer reads, in its order, with what they measure (paper Tables 2 and 1); deletion
#: area stands in when the data has no object masks.
ANSWERED = {
    "localization": "Localisation (share of positive attribution inside the object mask)",
    "gt_alignment": "Ground-truth alignment (Spearman between map and object mask)",
}
FALLBACK = {"deletion_area": "Deletion area (lower is better)"}

#: Measured bias of the canonical estimate, quoted in the report (xaitrust.calibration.kl has the table).
CANONICAL_BIAS_NOTE = ("on synthetic 6-class sources it reads +0.23 for a calibrated model and +0.33 for an "
                       "over-confident one of true error 0.10 with 1000 predictions, where the top-label estimate "
                       "reads +0.01 and +0.15 (its truth 0 and 0.10)")


def kl_column(mode: str) -> str:
    """The column of the KL calibration error in ``mode``: ``kl_calibration_error_canonical``, ..._top_label, ..."""
    return f"kl_calibration_error_{mode.replace('-', '_')}"


def headline_mode(kl_modes) -> str:
    """The KL mode the answer reads: the top-label one when measured (the canonical estimate is biased at these
    sizes), else the first."""
    return "top-label" if "top-label" in kl_modes else kl_modes[0]


def describe_features(grouping: str, options: dict) -> str:
    """A perturbation family in words, e.g. "SLIC superpixels (n_segments=50, ...)"."""
    if grouping == "pixels":
        return "single pixels"
    settings = ", ".join(f"{name}={'default' if value is None else value}" for name, value in options.items())
    return f"{'SLIC superpixels' if grouping == 'superpixels' else 'square patches'} ({settings})"


def calibration_changes(levels: pd.DataFrame, kl_modes) -> pd.DataFrame:
    """Per perturbation family and measure (each KL mode, then binned ECE): the number of levels, each model's mean
    error over the levels with its 95% t interval, the paired change ReCalX minus uncalibrated over the levels
    (``difference``, ``low``, ``high``, ``p_value``), both maxima and the levels where ReCalX is lower."""
    rows = []
    for grouping, part in levels.groupby("grouping", sort=False):
        for measure in [kl_column(mode) for mode in kl_modes] + ["ece"]:
            errors = part.pivot_table(index="perturbation_level", columns="model", values=measure)
            before, after = errors[BEFORE], errors[AFTER]
            each = {name: mean_interval(values) for name, values in ((BEFORE, before), (AFTER, after))}
            change = paired_test(after, before)
            rows.append({"grouping": grouping, "measure": measure, "levels": len(errors),
                         **{f"{name}{suffix}": getattr(each[name], field) for name in (BEFORE, AFTER)
                            for suffix, field in (("", "mean"), ("_low", "low"), ("_high", "high"))},
                         "difference": change.difference, "low": change.low, "high": change.high,
                         "p_value": change.p_value, f"max_{BEFORE}": before.max(), f"max_{AFTER}": after.max(),
                         "lower_at": int((after < before).sum())})
    return pd.DataFrame(rows)


def explanation_changes(results: pd.DataFrame) -> pd.DataFrame:
    """Per score and method: the number of paired images, both means, the paired change ReCalX minus uncalibrated
    with its 95% t interval and p-value, the Holm-adjusted p-value over all rows and the outcome (module
    docstring)."""
    rows = []
    for (metric, method), part in results.groupby(["metric", "method"], sort=False):
        values = part.pivot(index="sample", columns="model", values="value")
        change = paired_test(values[AFTER], values[BEFORE])
        rows.append({"metric": metric, "method": method, "n": change.n, BEFORE: values[BEFORE].mean(),
                     AFTER: values[AFTER].mean(), "difference": change.difference, "low": change.low,
                     "high": change.high, "p_value": change.p_value if change.n >= 2 else math.nan})
    columns = ["metric", "method", "n", BEFORE, AFTER, "difference", "low", "high", "p_value", "p_holm", "outcome"]
    table = pd.DataFrame(rows, columns=columns)
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["outcome"] = [
        UNRESOLVED if not p < ALPHA else BETTER if (difference > 0) == get_metric(metric).higher_is_better else WORSE
        for metric, difference, p in zip(table["metric"], table["difference"], table["p_holm"])
    ]
    return table


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def calibration_display(table: pd.DataFrame, kl_modes) -> pd.DataFrame:
    """``calibration_changes`` as text, one cell per interval."""
    names = {kl_column(mode): f"KL ({mode})" for mode in kl_modes} | {"ece": "binned ECE"}
    return pd.DataFrame({
        "grouping": table["grouping"], "measure": table["measure"].map(names), "levels": table["levels"],
        **{f"{name} [95% CI]": [interval_text(row[name], row[f"{name}_low"], row[f"{name}_high"], 4)
                                for _, row in table.iterrows()] for name in (BEFORE, AFTER)},
        "change [95% CI]": [interval_text(row["difference"], row["low"], row["high"], 4, signed=True)
                            for _, row in table.iterrows()],
        "p": table["p_value"],
        "maximum": [f"{row[f'max_{BEFORE}']:.4f} -> {row[f'max_{AFTER}']:.4f}" for _, row in table.iterrows()],
        "lower at": [f"{row['lower_at']} of {row['levels']}" for _, row in table.iterrows()],
    })


def explanation_display(table: pd.DataFrame) -> pd.DataFrame:
    """``explanation_changes`` with the change and its interval in one cell."""
    change = [interval_text(row["difference"], row["low"], row["high"], 3, signed=True) for _, row in table.iterrows()]
    return table[["metric", "method", "n", BEFORE, AFTER]].assign(**{
        "change [95% CI]": change, "p": table["p_value"], "Holm p": table["p_holm"], "outcome": table["outcome"]})


def calibration_sentence(row, mode: str, grouping: str) -> str:
    """The answer's calibration sentence from a row of ``calibration_changes``."""
    def model(name):
        return interval_text(row[name], row[f"{name}_low"], row[f"{name}_high"], 4)

    if not (math.isfinite(row["low"]) and math.isfinite(row["high"])):
        verdict = f"with {_count(row['levels'], 'level')} it has no interval, so it is not resolved"
    elif row["high"] < 0:
        verdict = "lower with ReCalX at these levels"
    elif row["low"] > 0:
        verdict = "higher with ReCalX at these levels"
    else:
        verdict = "not resolved across these levels"
    return (f"Calibration ({mode} KL calibration error of held-out images with random {grouping} replaced, as in "
            f"ReCalX's fit; mean over {row['levels']} perturbation levels, t interval over the levels): "
            f"{model(BEFORE)} uncalibrated -> {model(AFTER)} with ReCalX; paired change "
            f"{interval_text(row['difference'], row['low'], row['high'], 4, signed=True)}: {verdict} (maximum over the "
            f"levels {row[f'max_{BEFORE}']:.4f} -> {row[f'max_{AFTER}']:.4f}).")


def explanation_sentence(rows: pd.DataFrame, label: str) -> str:
    """The answer's sentence on one explanation score from its rows of ``explanation_changes``."""
    parts = [f"{row.method} {getattr(row, BEFORE):.3f} -> {getattr(row, AFTER):.3f}, change "
             f"{interval_text(row.difference, row.low, row.high, 3, signed=True)}, {row.outcome}"
             + (f" (Holm-adjusted p = {row.p_holm:.2g})" if math.isfinite(row.p_holm) else "")
             for row in rows.itertuples()]
    return f"{label}, paired over {_count(int(rows['n'].max()), 'image')}: {'; '.join(parts)}."


def headline(calibration: pd.DataFrame, explanations: pd.DataFrame, kl_modes, fitted: str) -> Headline:
    """The question and its answer from ``calibration_changes`` and ``explanation_changes``: the calibration change
    under the fitted perturbation family ``fitted`` (``headline_mode``), the change of localisation and ground-truth
    alignment per method (deletion area without masks) and how many comparisons the run resolves."""
    mode = headline_mode(kl_modes)
    row = calibration[(calibration["grouping"] == fitted) & (calibration["measure"] == kl_column(mode))].iloc[0]
    answer = [calibration_sentence(row, mode, fitted)]
    read = {metric: label for metric, label in ANSWERED.items() if metric in set(explanations["metric"])} or FALLBACK
    for metric, label in read.items():
        rows = explanations[explanations["metric"] == metric]
        if len(rows):
            answer.append(explanation_sentence(rows, label))
    counts = explanations["outcome"].value_counts()
    images = int(explanations["n"].max()) if len(explanations) else 0
    if counts.get(BETTER, 0) + counts.get(WORSE, 0) == 0:
        answer.append(f"With {_count(images, 'explained image')} none of the "
                      f"{_count(len(explanations), 'paired comparison')} of the explanations (every score and method, "
                      "Holm-corrected) is resolved: this run cannot say whether ReCalX makes them more reliable; more "
                      "explained images (n_images) narrow the intervals.")
    else:
        answer.append(f"Over all {len(explanations)} paired comparisons of the explanations ({images} images, "
                      f"Holm-corrected): {BETTER} in {counts.get(BETTER, 0)}, {WORSE} in {counts.get(WORSE, 0)}, "
                      f"{UNRESOLVED} in {len(explanations) - counts.get(BETTER, 0) - counts.get(WORSE, 0)}.")
    return Headline(QUESTION, answer)


def findings(levels: pd.DataFrame, summary: pd.DataFrame, kl_modes, fitted: str) -> list[str]:
    """Per perturbation family and KL mode the maximum error over the levels before and after ReCalX and the levels
    where it is lower; whether the uncalibrated error grows with the level under the ``fitted`` family (the paper
    reports it does); each explanation score's means before and after."""
    lines = []
    for grouping, part in levels.groupby("grouping", sort=False):
        how = "the family ReCalX was fitted on" if grouping == fitted else "not the family ReCalX was fitted on"
        for mode in kl_modes:
            kl = part.pivot_table(index="perturbation_level", columns="model", values=kl_column(mode))
            before, after = kl[BEFORE], kl[AFTER]
            lines.append(
                f"KL calibration error ({mode}) with random {grouping} replaced ({how}), maximum over perturbation "
                f"levels: {before.max():.4f} uncalibrated -> {after.max():.4f} with ReCalX; lower at "
                f"{int((after < before).sum())} of {len(kl)} levels (held-out images)."
            )
            if grouping == fitted:
                grows = "grows" if before.iloc[-1] > before.iloc[0] else "does not grow"
                lines.append(f"Uncalibrated error ({mode}) {grows} from the lowest to the highest perturbation level "
                             f"({before.iloc[0]:.4f} -> {before.iloc[-1]:.4f}); the paper reports it grows.")
    means = summary.pivot_table(index=["metric", "method"], columns="model", values="mean")
    for metric in ("localization", "gt_alignment", "pointing_game", "deletion_area"):
        if metric in means.index.get_level_values(0):
            for method, row in means.loc[metric].iterrows():
                lines.append(f"{method} {metric}: {row[BEFORE]:.4f} uncalibrated -> {row[AFTER]:.4f} ReCalX.")
    return lines


def write_recalx_report(run: RunFolder, *, trained, calibration_size: int, held_out_size: int,
                        fitted: tuple[str, dict], explained: tuple[str, dict], surrogates: list[str],
                        families: dict[str, dict], levels: pd.DataFrame, temperatures: pd.DataFrame,
                        settings: pd.DataFrame, results: pd.DataFrame, summary: pd.DataFrame, curves: dict,
                        examples: dict, images: torch.Tensor, has_masks: bool) -> Path:
    """Figures, ``report.html`` and ``summary.json`` of a ReCalX run.

    ``trained``: the model's training result (``model_description``); ``fitted``, ``explained``: the feature groups
    ``(grouping, options)`` of ReCalX's fit and of the surrogate explainers, whose names are ``surrogates``;
    ``families``: grouping -> options of the held-out calibration curves; ``levels``: their table; ``temperatures``:
    ReCalX's temperature per bin; ``settings``: every explainer parameter; ``results`` and ``summary``: the tidy
    explanation scores and their means; ``curves``: the deletion curves by label; ``examples[model][method]``: maps
    of ``images``; ``has_masks``: whether the data has the object masks localisation needs.
    """
    config, figures = run.config, run.path / "figures"
    kl_modes = config["kl_modes"]
    panels = {
        grouping: {name: rows.to_dict("records") for name, rows in part.groupby("model", sort=False)}
        for grouping, part in levels.groupby("grouping", sort=False)
    }
    level_figures = {f"KL calibration error ({mode}) by level": plot_error_by_level_panels(
        panels, figures / f"kl-{mode}-by-level.png", kl_column(mode)) for mode in kl_modes}
    level_figures["Binned ECE by level"] = plot_error_by_level_panels(panels, figures / "ece-by-level.png", "ece")
    if has_masks:
        note = "Localisation against the objects' ground-truth masks."
    else:
        note = f"{config['dataset']} has no ground-truth masks: localisation scores are not computed."
    calibration, explanations = calibration_changes(levels, kl_modes), explanation_changes(results)
    surrogate_names = ", ".join(surrogates) or "none configured; KernelSHAP's and LIME's defaults"
    sections = [
        Section("Calibration under perturbation (ReCalX Fig. 1)",
                [(f"{model_description(config, trained)}. ReCalX fitted on {calibration_size} images with "
                  f"{config['replacement']} replacement of {describe_features(*fitted)}; the surrogate explainers "
                  f"({surrogate_names}) switch {describe_features(*explained)}. Calibration measured "
                  f"on {held_out_size} other images under "
                  f"{' and under '.join(describe_features(g, o) for g, o in families.items())}, for both models. "
                  "Perturbation level: the fraction of features replaced (perturbation_level; pixel_level is the mean "
                  "fraction of pixels replaced, the level ReCalX bins by)."),
                 ("KL calibration error: the risk estimator of Popordanoska et al. (2024), Dirichlet kernel, bandwidth "
                  "by leave-one-out likelihood; 'canonical' scores the whole predicted distribution (the paper's "
                  "CE_KL), 'top-label' the confidence of the predicted class. The canonical estimate is biased at "
                  f"these sizes ({CANONICAL_BIAS_NOTE}; xaitrust.calibration.kl), by an amount that depends on how "
                  "sharp the predictions are, so it also shifts between the two models: read the top-label estimate "
                  "against 0."),
                 ("Before and after: the mean error over the perturbation levels with its 95% t interval over the "
                  "levels, and the paired change ReCalX minus uncalibrated, level by level (negative: lower with "
                  "ReCalX).")],
                tables={"Before and after, over the levels": calibration_display(calibration, kl_modes),
                        "By level": levels,
                        "Temperature per bin": temperatures, "Explainer settings": settings},
                figures=level_figures),
        Section("Explanations (ReCalX Tables 1-2)",
                [note, ("Paired change per score and method: ReCalX minus uncalibrated on the same images, with its "
                        f"95% t interval; outcome at Holm-adjusted p < {ALPHA:g} over all the comparisons.")],
                tables={"Mean per method": pivot_summary(summary, ("method",), ("metric", "model")),
                        "Paired change per score and method": explanation_display(explanations)},
                figures={"Deletion curves": plot_curves(figures / "deletion.png", curves, "fraction of pixels removed",
                                                        f"normalised {config['output']}")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", images, maps, title=name)
            for name, maps in examples.items()}),
    ]
    answer = headline(calibration, explanations, kl_modes, fitted[0])
    write_summary(run.path / "summary.json", answer, calibration_changes=calibration,
                  explanation_changes=explanations, summary=summary, calibration_by_level=levels,
                  temperatures=temperatures)
    return write_report(run.path / "report.html", "ReCalX", findings(levels, summary, kl_modes, fitted[0]), sections,
                        tomli_w.dumps(config), headline=answer)
