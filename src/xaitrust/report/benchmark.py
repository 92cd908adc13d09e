"""The benchmark's report and ``summary.json``: which explanations of this model can be trusted, verdict first.

The page opens with the question and its answer (the verdict's recommendation, ``xaitrust.report.verdict``), what
calibration changed, then the verdict per method, the scorecard grids (``xaitrust.report.scorecard``: the reference
model's, the calibrated model's folded), the glossary of every metric shown (``xaitrust.report.glossary``), and the
supporting calibration table, figures and all the numbers. ``summary.json`` holds the verdict (per method its sanity
check, outcomes and sentence; the comparisons with their p-values; the recommendation) and the per-method means with
their intervals and ranks, for every model.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w

from ..evaluation import get_metric
from ..protocols.results import pivot_summary
from ..protocols.scoring import CONTROLS, ScoredMethods
from .figures import plot_curves, plot_map_grid
from .glossary import glossary_html
from .html import Headline, Section, write_report
from .scorecard import scorecard_html, scorecard_table
from .summary import write_summary
from .verdict import Verdict, benchmark_verdict, verdict_html

QUESTION = "Which explanations of this model can be trusted?"
#: The model the verdict judges; the others are compared with it.
REFERENCE = "uncalibrated"


def mean_table(summary: pd.DataFrame, metrics) -> pd.DataFrame:
    """Methods x (metric, model) table of means (``scorecard.csv``), metrics in the order of ``metrics`` (registry
    names)."""
    table = pivot_summary(summary, index=("method",), columns=("metric", "model"))
    order = [m for m in metrics if m in table.columns.get_level_values(0)]
    return table.reindex(columns=order, level=0).dropna(how="all")


def deletion_change(summary: pd.DataFrame, model: str, reference: str = REFERENCE) -> str:
    """How many methods ``model`` gives a lower mean deletion area than ``reference``, and how many of them improved by
    more than the random maps did: the random control of Calibrate to Interpret (section 4.4: "the same random
    saliency maps applied to the calibrated and uncalibrated models produce similar curves"), which separates better
    maps from the score's change of scale. Empty when the summary lacks either model."""
    deletion = summary[summary["metric"] == "deletion_area"].pivot_table(index="method", columns="model", values="mean")
    if not {model, reference} <= set(deletion.columns):
        return ""
    change = deletion[model] - deletion[reference]
    methods = change.drop(index=list(CONTROLS), errors="ignore")
    line = (f"The {model} model lowered the mean deletion area (more faithful) for {(methods < 0).sum()} of "
            f"{len(methods)} methods")
    if "random" in change.index:
        beyond = (methods < change["random"]).sum()
        line += (f"; the random maps' area moved by {change['random']:+.4f}, and {beyond} of {len(methods)} methods "
                 "moved lower than that (what a method shares with the random maps is the score's change of scale, "
                 "not better maps)")
    return line + "."


def outcome_changes(reference: Verdict, other: Verdict) -> str:
    """How many of the comparisons with the random maps made on both models have another outcome on ``other``'s model
    than on ``reference``'s, and which."""
    before = reference.comparisons.set_index(["method", "metric"])["outcome"]
    after = other.comparisons.set_index(["method", "metric"])["outcome"]
    both = before.index.intersection(after.index)
    changed = [key for key in both if before[key] != after[key]]
    listed = "".join(f"{', ' if i else ': '}{method} on {metric.replace('_', ' ')} ({before[(method, metric)]} -> "
                     f"{after[(method, metric)]})" for i, (method, metric) in enumerate(changed))
    return (f"On the {other.model} model, {len(changed)} of the {len(both)} comparisons with the random maps have "
            f"another outcome than on the {reference.model} model{listed}.")


def findings(summary: pd.DataFrame, calibration: pd.DataFrame, verdict: Verdict, calibrated: Verdict) -> list[str]:
    """What calibration changed, in sentences computed from the numbers: the held-out calibration errors and
    accuracy, the deletion areas against the random control (``deletion_change``) and the outcomes of the comparisons
    with the random maps (``outcome_changes`` between the ``verdict`` and the ``calibrated`` model's)."""
    before, after = calibration.iloc[0], calibration.iloc[1]
    errors = (
        f"Calibration ({after['model']}) changed the held-out ECE from {before['ece']:.4f} to {after['ece']:.4f} "
        f"and the KL calibration error from {before['kl_calibration_error']:.4f} to {after['kl_calibration_error']:.4f}"
        f" (accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f})."
    )
    deletion = deletion_change(summary, after["model"], before["model"])
    return [line for line in (errors, deletion, outcome_changes(verdict, calibrated)) if line]


def headline(verdict: Verdict) -> Headline:
    """The question and the verdict's recommendation as its answer."""
    return Headline(QUESTION, verdict.recommendation)


VERDICT_TEXT = (
    "Per method: the sanity check (full-model randomisation, Adebayo et al. 2018: the rank correlation between its "
    "maps and its maps of the same network with random weights must stay below {threshold:g} with 95% confidence), "
    "its outcome against the random maps on each faithfulness metric on the same images (paired {test} tests, Holm "
    "correction over all {n} comparisons, family-wise level {alpha:g}; '≈ random': the images do not tell it from the "
    "random maps), and its stability (local Lipschitz estimate, "
    "lower is more stable, with its significance rank). Hover a cell for its numbers. A method is trusted when it "
    "passes the sanity check and beats the random maps on most faithfulness metrics."
)
GRID_TEXT = (
    "{description}. Each cell: the mean over the images and, below it, the significance rank within the column (1 + "
    "the number of methods significantly better on the same images, paired tests with Holm correction; '=3': tied "
    "with another method, the sample does not tell them apart). Colour by rank: green best, red worst, yellow where "
    "no method is told apart; arrows give the better direction. Hover a cell for its mean, 95% interval and n."
)


def report_sections(figures: Path, config: dict, verdict: Verdict, results: pd.DataFrame, summary: pd.DataFrame,
                    calibration: pd.DataFrame, metrics: list, description: str, scored: ScoredMethods, x
                    ) -> list[Section]:
    """The sections of the page after its headline and findings (module docstring): ``metrics`` are the config's
    (``Metric``), ``scored`` and ``x`` what ``score_methods`` returned and explained; figures go to ``figures``."""
    others = [model for model in pd.unique(results["model"]) if model != verdict.model]
    folded = "".join(f"<details><summary>Scorecard of the {model} model</summary>"
                     f"{scorecard_html(results, model, metrics)}</details>" for model in others)
    shown = [m for m in metrics if m.name in set(results["metric"])]
    return [
        Section(f"Verdict ({verdict.model} model, {verdict.n_images} images)", [VERDICT_TEXT.format(
            threshold=verdict.sanity_threshold, test=verdict.test, n=len(verdict.comparisons), alpha=verdict.alpha)],
            blocks=[verdict_html(verdict)]),
        Section("Scorecard", [GRID_TEXT.format(description=description)],
                blocks=[scorecard_html(results, verdict.model, metrics), folded]),
        Section("Glossary", [], blocks=[glossary_html(shown)]),
        Section("Calibration", [(f"Calibrator: {config['calibrator']}, fitted on {config['calibration_size']} "
                                 "held-out test images; accuracy and calibration errors on the other held-out "
                                 "images.")],
                tables={"Held-out calibration": calibration}),
        Section("Random baseline", [], figures={
            "Deletion curves of random superpixel orders (blur)": plot_curves(
                figures / "random-deletion.png", scored.random_curves, "fraction of superpixels removed",
                f"{config['output']} / clean {config['output']}")}),
        Section("Example maps", [], figures={
            f"Maps ({name})": plot_map_grid(figures / f"maps-{name}.png", x[:8], maps, title=f"{name} model")
            for name, maps in scored.examples.items()}),
        Section("All numbers", [("Per metric, method and model: mean, standard deviation, n and the half-width of "
                                 "the 95% interval; per image: results.csv; the verdict and means as JSON: "
                                 "summary.json.")],
                tables={"Summary (mean, std, n, 95% CI half-width)": summary}),
    ]


def write_benchmark_report(out: Path, config: dict, results: pd.DataFrame, summary: pd.DataFrame,
                           calibration: pd.DataFrame, description: str, scored: ScoredMethods, x) -> Path:
    """Write ``summary.json`` and ``report.html`` of a benchmark run into the run folder ``out``: its tidy per-image
    ``results`` and their ``summary``, the held-out ``calibration`` table, ``description`` (the images and model in
    words), and what ``score_methods`` returned (``scored``) for the images ``x``. Returns the report's path."""
    metrics = [get_metric(name) for name in config["metrics"]]
    verdict = benchmark_verdict(results, REFERENCE)
    calibrated = benchmark_verdict(results, calibration["model"].iloc[1])
    means = pd.concat([scorecard_table(results, model, metrics) for model in pd.unique(results["model"])],
                      ignore_index=True)
    top = headline(verdict)
    write_summary(out / "summary.json", top, verdict=verdict, means=means)
    sections = report_sections(out / "figures", config, verdict, results, summary, calibration, metrics, description,
                               scored, x)
    return write_report(out / "report.html", "xaitrust benchmark: which explanations to trust",
                        findings(summary, calibration, verdict, calibrated), sections, tomli_w.dumps(config), headline=top)
