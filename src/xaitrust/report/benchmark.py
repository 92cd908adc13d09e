"""The benchmark's report and ``summary.json``: which explanations of this model can be trusted, verdict first.

The page opens with the question and its answer (the verdict's recommendation, ``xaitrust.report.verdict``), what
calibration changed and which metrics to believe, then the verdict per method, the scorecard grids
(``xaitrust.report.scorecard``: the reference model's, the calibrated model's folded), the glossary of every metric
shown (``xaitrust.report.glossary``), the meta-evaluation of the faithfulness metrics on the reference model
(``meta_evaluation_table``, after MetaQuantus), the image gallery of the reference model (``xaitrust.report.gallery``),
calibration at a glance (``xaitrust.report.calibration_glance``), the random baseline and all the numbers.
``summary.json`` holds the verdict (per method its sanity check, outcomes and sentence; the comparisons with their
p-values; the recommendation), the per-method means with their intervals and ranks, for every model, and the
meta-evaluation table.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..evaluation import get_metric
from ..evaluation.meta import INPUT_NOISE, THRESHOLDS, WEIGHT_NOISE, summarise, verdicts
from ..protocols.common import CalibratedModels
from ..protocols.results import pivot_summary
from ..protocols.scoring import CONTROLS, ScoredMethods
from .calibration_glance import calibration_section
from .figures import plot_curves
from .gallery import gallery_section
from .glossary import glossary_html
from .html import Headline, Section, table_html, write_report
from .meta_evaluation import consistency_sentences, consistency_table, verdict_sentence
from .scorecard import scorecard_html, scorecard_table
from .summary import write_summary
from .text import MISSING, interval_text
from .verdict import Verdict, benchmark_verdict, verdict_html

QUESTION = "Which explanations of this model can be trusted?"
#: The model the verdict judges; the others are compared with it.
REFERENCE = "uncalibrated"
#: Images the gallery shows.
GALLERY_IMAGES = 8


@dataclass
class BenchmarkResults:
    """What the benchmark's report is written from: the run's ``config``; the tidy per-image ``results`` (``sample``
    the dataset index, ``xaitrust.protocols.common.with_sample_columns``) and their ``summary``; the ``calibrated``
    models with their held-out probabilities and calibration table; what ``score_methods`` returned (``scored``) for
    the explained images ``x`` ``(N, C, H, W)``; ``samples``, one row per image of ``x`` (dataset index, label, the
    reference model's prediction and confidence, ``xaitrust.protocols.common.image_samples``) and the data's
    ``class_names``; the images and model in words (``description``); and the meta-evaluation table
    (``meta_evaluation_table``; None when the run has none) with the number of images it took."""

    config: dict
    results: pd.DataFrame
    summary: pd.DataFrame
    calibrated: CalibratedModels
    scored: ScoredMethods
    x: torch.Tensor
    samples: pd.DataFrame
    class_names: list[str]
    description: str
    meta_evaluation: pd.DataFrame | None
    meta_images: int


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


def findings(summary: pd.DataFrame, calibration: pd.DataFrame, verdict: Verdict, calibrated: Verdict,
             meta_evaluation: pd.DataFrame | None) -> list[str]:
    """What calibration changed, in sentences computed from the numbers: the held-out calibration errors and
    accuracy, the deletion areas against the random control (``deletion_change``) and the outcomes of the comparisons
    with the random maps (``outcome_changes`` between the ``verdict`` and the ``calibrated`` model's); then which of
    the meta-evaluated metrics to believe on the reference model (``meta_evaluation_table``, when given)."""
    before, after = calibration.iloc[0], calibration.iloc[1]
    errors = (
        f"Calibration ({after['model']}) changed the held-out ECE from {before['ece']:.4f} to {after['ece']:.4f} "
        f"and the KL calibration error from {before['kl_calibration_error']:.4f} to {after['kl_calibration_error']:.4f}"
        f" (accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f})."
    )
    deletion = deletion_change(summary, after["model"], before["model"])
    meta = (f"Meta-evaluation on the {verdict.model} model: {verdict_sentence(meta_evaluation)}"
            if meta_evaluation is not None else "")
    return [line for line in (errors, deletion, outcome_changes(verdict, calibrated), meta) if line]


def meta_evaluation_table(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per meta-evaluated metric from the ``scores`` of ``xaitrust.evaluation.meta.meta_evaluate``: its four
    criteria, each the mean of the input and the model perturbation tests (``summarise``; noise resilience
    ``IAC_NR``, ``IEC_NR``, adversary reactivity ``IAC_AR``, ``IEC_AR``); its meta-consistency ``MC``, the mean of
    its per-perturbation values, with their 95% Student-t interval (``low``, ``high``) over the ``perturbations`` and
    its significance ``rank`` (``xaitrust.report.meta_evaluation.consistency_table``); and its ``verdict`` and
    ``sentence`` (``xaitrust.evaluation.meta.verdicts``: believe it when every criterion reaches its threshold in both
    tests)."""
    summary = summarise(scores)
    criteria = summary.loc[summary["test"] == "both", ["metric", "IAC_NR", "IEC_NR", "IAC_AR", "IEC_AR"]]
    judged = verdicts(summary)[["metric", "verdict", "sentence"]]
    return criteria.merge(consistency_table(scores), on="metric").merge(judged, on="metric")


#: The meta-evaluation table's columns as the page shows them: the property each criterion measures, then its name.
META_COLUMNS = {
    "IAC_NR": ("noise resilience", "IAC_NR"), "IEC_NR": ("noise resilience", "IEC_NR"),
    "IAC_AR": ("adversary reactivity", "IAC_AR"), "IEC_AR": ("adversary reactivity", "IEC_AR"),
}


def meta_evaluation_view(table: pd.DataFrame) -> pd.DataFrame:
    """``meta_evaluation_table`` as the page shows it: metrics x (property, criterion) to two decimals, MC with its
    interval, its rank and the verdict."""
    def number(value: float, digits: int) -> str:
        return MISSING if math.isnan(value) else f"{value:.{digits}f}"

    view = pd.DataFrame({column: table[key].map(lambda v: number(v, 2)) for key, column in META_COLUMNS.items()})
    view[("meta-consistency", "MC [95% interval]")] = [interval_text(r.MC, r.low, r.high, 2)
                                                       for r in table.itertuples()]
    view[("meta-consistency", "rank")] = table["rank"].map(lambda v: number(v, 0))
    view[("", "verdict")] = table["verdict"].to_numpy()
    view.index = table["metric"].to_numpy()
    view.columns = pd.MultiIndex.from_tuples(view.columns)
    return view


META_TEXT = (
    "How far to believe each faithfulness metric on the {model} model, after MetaQuantus (Hedström, Bommer, "
    "Wickstrøm, Samek, Lapuschkin & Höhne, TMLR 2023): each metric, measured as the scorecard measures it, scores "
    "the maps of {explainers} on {n} of the explained images (a stratified seeded choice) before and after {k} "
    "minor and {k} disruptive perturbations of the inputs (uniform noise of ±{minor_input:g} and ±{major_input:g}, "
    "clipped to [0, 1]) and of the model (weights times N(1, {minor_weight:g}²) and N(1, {major_weight:g}²)); the "
    "explained class stays the clean model's prediction. Noise resilience: minor "
    "perturbations, which leave the prediction alone, should leave the metric's scores in place (IAC_NR, the mean "
    "p-value of Wilcoxon's signed-rank test of each explainer's scores before and after) and its ranking of the "
    "explainers (IEC_NR, the share of the ranking kept). Adversary reactivity: disruptive perturbations, which change "
    "the prediction, should change its scores (IAC_AR, one minus that p-value) and make them worse (IEC_AR, the share "
    "of scores made worse). Each criterion is in [0, 1], higher is better, the mean of the input and the model test; "
    "MC, the meta-consistency, is the mean of the four, with its 95% t interval over the perturbations and its rank "
    "(1 + the number of metrics with a significantly higher MC, paired over the perturbations, Holm-corrected). A "
    "metric that ignores the problem or answers at random has an MC of about 0.5. Believe a metric when every "
    "criterion reaches its threshold in both tests ({thresholds}); the verdicts hold for this model, these explainers "
    "and these images. All numbers: meta_evaluation.csv."
)


def meta_evaluation_section(table: pd.DataFrame, config: dict, n_images: int) -> Section:
    """The meta-evaluation section: which metrics to believe and how their MCs compare (``verdict_sentence``,
    ``consistency_sentences``), the table (``meta_evaluation_view``), each metric's verdict sentence, and how to read
    them (``META_TEXT``, folded)."""
    thresholds = ", ".join(f"{criterion} ≥ {threshold:g}" for criterion, threshold in THRESHOLDS.items())
    text = META_TEXT.format(
        model=REFERENCE, explainers=", ".join(config["meta_explainers"]), n=n_images, k=config["meta_perturbations"],
        minor_input=INPUT_NOISE[0], major_input=INPUT_NOISE[1], minor_weight=WEIGHT_NOISE[0],
        major_weight=WEIGHT_NOISE[1], thresholds=thresholds)
    sentences = "".join(f"<li>{html.escape(sentence)}</li>" for sentence in table["sentence"])
    return Section("Which metrics to believe (meta-evaluation)", [verdict_sentence(table),
                                                                  *consistency_sentences(table)], blocks=[
        table_html(f"Meta-evaluation on the {REFERENCE} model", meta_evaluation_view(table)),
        f"<ul>{sentences}</ul>",
        f"<details><summary>How to read this</summary><p>{html.escape(text)}</p></details>",
    ])


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


def gallery(figures: Path, run: BenchmarkResults) -> Section:
    """The image gallery of the reference model (``gallery_section``): the first ``GALLERY_IMAGES`` explained images
    with every method's map and curves. The calibrated model's maps are left out: how far they differ from these is
    the scorecard's SSIM to the uncalibrated maps."""
    section = gallery_section(figures, run.x, run.samples, run.class_names, run.scored.maps[REFERENCE],
                              run.scored.curves[REFERENCE], GALLERY_IMAGES, model=REFERENCE)
    if "ssim_to_uncalibrated" in set(run.results["metric"]):
        section.paragraphs.append(
            "The calibrated model's maps of these images are not drawn: how far they differ from these is the "
            "scorecard's ssim_to_uncalibrated (1: the same map).")
    return section


def calibration(figures: Path, run: BenchmarkResults) -> Section:
    """Calibration at a glance (``calibration_section``) of the held-out images, with ``calibration_bootstrap``
    resamples from the run's seed, after a sentence on the calibrator."""
    config = run.config
    calibrated = run.calibrated
    section = calibration_section(figures, calibrated.probabilities, calibrated.labels, calibrated.table, run.results,
                                  seed=config["seed"], n_bootstrap=config["calibration_bootstrap"])
    section.paragraphs.insert(0, (
        f"Calibrator: {config['calibrator']}, fitted on {config['calibration_size']} held-out test images; the "
        f"errors below are measured on the other {len(calibrated.labels)} held-out images (calibration.csv)."))
    return section


def report_sections(figures: Path, run: BenchmarkResults, verdict: Verdict, metrics: list) -> list[Section]:
    """The sections of the page after its headline and findings (module docstring): ``metrics`` are the config's
    (``Metric``); figures go to ``figures``."""
    config, results = run.config, run.results
    others = [model for model in pd.unique(results["model"]) if model != verdict.model]
    folded = "".join(f"<details><summary>Scorecard of the {model} model</summary>"
                     f"{scorecard_html(results, model, metrics)}</details>" for model in others)
    shown = [m for m in metrics if m.name in set(results["metric"])]
    meta = ([] if run.meta_evaluation is None
            else [meta_evaluation_section(run.meta_evaluation, config, run.meta_images)])
    return [
        Section(f"Verdict ({verdict.model} model, {verdict.n_images} images)", [VERDICT_TEXT.format(
            threshold=verdict.sanity_threshold, test=verdict.test, n=len(verdict.comparisons), alpha=verdict.alpha)],
            blocks=[verdict_html(verdict)]),
        Section("Scorecard", [GRID_TEXT.format(description=run.description)],
                blocks=[scorecard_html(results, verdict.model, metrics), folded]),
        Section("Glossary", [], blocks=[glossary_html(shown)]),
        *meta,
        gallery(figures, run),
        calibration(figures, run),
        Section("Random baseline", [], figures={
            "Deletion curves of random superpixel orders (blur)": plot_curves(
                figures / "random-deletion.png", run.scored.random_curves, "fraction of superpixels removed",
                f"{config['output']} / clean {config['output']}")}),
        Section("All numbers", [("Per metric, method and model: mean, standard deviation, n and the half-width of "
                                 "the 95% interval; per image: results.csv; the verdict, the means"
                                 f"{'' if run.meta_evaluation is None else ', the meta-evaluation'} as JSON: "
                                 "summary.json.")],
                tables={"Summary (mean, std, n, 95% CI half-width)": run.summary}),
    ]


def write_benchmark_report(out: Path, run: BenchmarkResults) -> Path:
    """Write ``summary.json`` and ``report.html`` of a benchmark ``run`` into the run folder ``out``. Returns the
    report's path."""
    metrics = [get_metric(name) for name in run.config["metrics"]]
    table = run.calibrated.table
    verdict = benchmark_verdict(run.results, REFERENCE)
    calibrated = benchmark_verdict(run.results, table["model"].iloc[1])
    means = pd.concat([scorecard_table(run.results, model, metrics) for model in pd.unique(run.results["model"])],
                      ignore_index=True)
    top = headline(verdict)
    meta = {} if run.meta_evaluation is None else {"meta_evaluation": run.meta_evaluation}
    write_summary(out / "summary.json", top, verdict=verdict, means=means, **meta)
    sections = report_sections(out / "figures", run, verdict, metrics)
    return write_report(out / "report.html", "xaitrust benchmark: which explanations to trust",
                        findings(run.summary, table, verdict, calibrated, run.meta_evaluation), sections,
                        tomli_w.dumps(run.config), headline=top)
