"""The page of ``xaitrust meta-evaluate`` (``xaitrust.evaluation.meta``, after MetaQuantus; Hedström, Bommer,
Wickstrøm, Samek, Lapuschkin & Höhne, "The Meta-Evaluation Problem in Explainable AI: Identifying Reliable Estimators
with MetaQuantus", TMLR 2023): the question and its answer, the verdict per metric, the tables, and
``summary.json``.

The answer gives the verdicts (``verdicts``: believe a metric when every criterion reaches its threshold in both
tests) and each metric's meta-consistency MC with its 95% Student-t interval over the ``K`` perturbations of each
kind (``by_perturbation``, ``xaitrust.statistics.mean_interval``). The metrics are scored on the same perturbed
problems, so their per-perturbation MC are paired: the highest MC is called ahead of another metric only when the
paired t-test over the perturbations, Holm-corrected over all pairs of metrics, finds it higher
(``xaitrust.statistics.significance_ranks``: metrics sharing rank 1 cannot be told apart). A metric that ignores the
problem (constant) scores MC = 0.5, one that answers at random about 0.5: a metric is told apart from them when its
MC interval lies above ``UNINFORMATIVE``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..evaluation.meta import (
    CRITERIA,
    INPUT_NOISE,
    KINDS,
    TESTS,
    THRESHOLDS,
    WEIGHT_NOISE,
    by_perturbation,
)
from ..statistics import mean_interval, significance_ranks
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

QUESTION = ("Which of these metrics can be believed on this model: do they keep their verdict under minor "
            "perturbations that leave the prediction alone (noise resilience) and react to disruptive ones that "
            "change it (adversary reactivity)?")
#: The MC of a metric that ignores the problem (constant) and, about, of one that answers at random.
UNINFORMATIVE = 0.5
#: At most this many metrics are named in one sentence of the answer; the others are counted.
NAMED = 3


def consistency_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Per metric: MC, the mean of its per-perturbation values (``by_perturbation``), with its 95% t interval
    (``low``, ``high``) over the ``perturbations`` where it is defined, and its significance ``rank`` (one plus the
    number of metrics with a significantly higher MC, paired over the perturbations, Holm-corrected)."""
    table = by_perturbation(scores)
    values = {metric: part["MC"].to_numpy() for metric, part in table.groupby("metric", sort=False)}
    ranks = significance_ranks(values, higher_is_better=True)
    rows = []
    for metric, mc in values.items():
        interval = mean_interval(mc)
        rows.append({"metric": metric, "MC": interval.mean, "low": interval.low, "high": interval.high,
                     "perturbations": interval.n, "rank": float(ranks.get(metric, math.nan))})
    return pd.DataFrame(rows, columns=["metric", "MC", "low", "high", "perturbations", "rank"])


def _with_interval(row) -> str:
    """``metric MC [low, high]`` of a row of ``consistency_table``, to two decimals."""
    return f"{row.metric} {interval_text(row.MC, row.low, row.high, 2)}"


def _listed(rows: pd.DataFrame) -> str:
    named = ", ".join(_with_interval(row) for row in rows.head(NAMED).itertuples())
    return named + (f" and {len(rows) - NAMED} more" if len(rows) > NAMED else "")


def _names(names: list[str]) -> str:
    return ", ".join(names)


def verdict_sentence(judged: pd.DataFrame) -> str:
    """Which metrics to believe and which to be careful with."""
    believe = judged.loc[judged["verdict"] == "believe", "metric"].tolist()
    careful = judged.loc[judged["verdict"] != "believe", "metric"].tolist()
    if not believe:
        return (f"No metric reaches every threshold in both tests: be careful with all {len(careful)} "
                f"({_names(careful)}); the reasons are below.")
    sentence = (f"Believe {_names(believe)} on this model: every criterion reaches its threshold under minor and "
                "disruptive perturbations of both the inputs and the model.")
    return sentence + (f" Be careful with {_names(careful)} (the reasons are below)." if careful else "")


def consistency_sentences(table: pd.DataFrame) -> list[str]:
    """The highest MC, whether the perturbations tell it apart from the others, and which metrics the run tells
    apart from an uninformative one (module docstring)."""
    defined = table.dropna(subset=["MC"]).sort_values("MC", ascending=False, kind="stable")
    if defined.empty:
        unmeasured = ("No metric's MC could be measured: a criterion had no image left to compare (e.g. no "
                      "prediction changed under a disruptive perturbation); use more images.")
        return [unmeasured]
    top = defined.iloc[0]
    if not math.isfinite(top.low):
        unresolved = (f"Highest meta-consistency: {top.metric}, MC {top.MC:.2f}, from {int(top.perturbations)} "
                      "perturbation of each kind, which gives no interval: rerun with 3 or more perturbations "
                      "(--perturbations, or meta_perturbations in a benchmark config) to compare the metrics.")
        return [unresolved]
    what = (f"Highest meta-consistency: {_with_interval(top)} (95% t interval over the {int(top.perturbations)} "
            "perturbations of each kind)")
    tied = defined[(defined["rank"] == 1) & (defined["metric"] != top.metric)]
    if len(defined) == 1:
        what += ", the only metric measured."
    elif tied.empty:
        what += ", higher than every other metric (paired t-tests over the perturbations, Holm-corrected)."
    else:
        what += f"; the perturbations cannot tell it apart from {_listed(tied)} (paired t-tests, Holm-corrected)."
    lines = [what]
    informative = defined[defined["low"] > UNINFORMATIVE]
    if informative.empty:
        lines.append(f"No metric's MC interval lies above {UNINFORMATIVE:g}, the MC of a metric that ignores the "
                     "problem or answers at random: this run cannot tell any of them from an uninformative metric.")
    else:
        have = "metric has" if len(defined) == 1 else "metrics have" if len(informative) > 1 else "metrics has"
        lines.append(f"{len(informative)} of {len(defined)} {have} an MC interval above {UNINFORMATIVE:g}, the MC of a "
                     f"metric that ignores the problem or answers at random: {_names(list(informative['metric']))}.")
    return lines


def headline(judged: pd.DataFrame, consistency: pd.DataFrame) -> Headline:
    """The question and its answer from the ``verdicts`` and the ``consistency_table``."""
    return Headline(QUESTION, [verdict_sentence(judged), *consistency_sentences(consistency)])


def write_meta_evaluation_report(folder: Path, result, judged: pd.DataFrame, settings: dict) -> Path:
    """``meta_evaluation.html`` and ``summary.json`` in ``folder`` from a ``MetaEvaluation`` ``result``, its
    ``verdicts`` and the run's ``settings``: the headline, the verdicts, the summary table with MC's interval and
    rank, the per-test table, the share of predictions each kind of perturbation changed, and how to read them."""
    summary = result.summary.set_index(["metric", "test"])
    consistency = consistency_table(result.scores)
    overall = (summary.xs("both", level="test").join(judged.set_index("metric")["verdict"])
               .join(consistency.set_index("metric")[["low", "high", "rank"]].add_prefix("MC ")))
    per_test = summary.drop(index="both", level="test").unstack("test").swaplevel(axis=1)
    per_test = per_test.reindex(index=overall.index, columns=pd.MultiIndex.from_product([TESTS, [*CRITERIA, "MC"]]))
    per_test = per_test.rename_axis(index=None, columns=["test", None])  # new axes: overall keeps its index name
    first = result.values.drop_duplicates(["test", "kind", "perturbation", "sample"])
    changed = (first["prediction"] != first["perturbed_prediction"]).groupby([first["test"], first["kind"]]).mean()
    change_line = "; ".join(f"{test} {kind}: {changed[test, kind]:.0%}" for test in TESTS for kind in KINDS)
    thresholds = ", ".join(f"{criterion} ≥ {threshold:g}" for criterion, threshold in THRESHOLDS.items())
    setup = (f"{settings['n_images']} test images of {settings['dataset']}, model {settings['model']}, explainers "
             f"{', '.join(settings['explainers'])}, {settings['perturbations']} perturbations of each kind per test. "
             "Scores in [0, 1], higher is better; each is the mean of the input and the model perturbation tests, MC "
             "the mean of the four. MC low / high: its 95% t interval over the perturbations; MC rank: one plus the "
             "number of metrics with a significantly higher MC (paired over the perturbations, Holm-corrected).")
    properties = (
        "MetaQuantus (Hedström et al., TMLR 2023) asks two things of a metric. Noise resilience (NR): minor "
        f"perturbations that leave the prediction alone (input noise ±{INPUT_NOISE[0]:g}, weights times "
        f"N(1, {WEIGHT_NOISE[0]:g}²)) should not change its verdict. Adversary reactivity (AR): disruptive "
        f"perturbations that change the prediction (input noise ±{INPUT_NOISE[1]:g}, clipped to [0, 1]; weights "
        f"times N(1, {WEIGHT_NOISE[1]:g}²)) should make its scores worse. NR is measured on the images whose "
        "prediction a perturbation kept, AR on those whose prediction it changed.")
    scores = (
        "IAC (intra-consistency) compares each explainer's scores before and after a perturbation with Wilcoxon's "
        "signed-rank test: IAC_NR is its p-value (high: no systematic shift), IAC_AR one minus it (high: a "
        "significant change). IEC (inter-consistency): IEC_NR is the share of the explainers' ranking that a minor "
        "perturbation leaves in place, IEC_AR the share of (explainer, image) pairs whose score a disruptive "
        "perturbation makes worse. A metric that ignores the problem (constant) or answers at random scores about 0.5 "
        "in MC.")
    verdict = (
        f"Verdict: believe a metric when every criterion reaches its threshold in both tests ({thresholds}); "
        "otherwise be careful, for the reasons given above. The thresholds ask for clearly better than an "
        "uninformative metric: AR scores of 0.5 are chance, IEC_NR of 1 / (number of explainers) is chance, and "
        "IAC_NR below 0.05 is a significant shift. The verdict holds for this model, these explainers and these "
        "images; the input test keeps the explanations of the clean images, so metrics of the maps alone "
        "(sparseness, complexity) cannot react to it.")
    sections = [
        Section("Meta-consistency per metric", [setup],
                tables={"Scores and verdict (mean of the two tests)": overall.reset_index(),
                        "Per test (IPT: inputs perturbed, MPT: model perturbed)": per_test}),
        Section("How to read this", [
            properties, scores, verdict,
            f"Share of images whose prediction the perturbations changed: {change_line}.",
        ]),
    ]
    answer = headline(judged, consistency)
    write_summary(folder / "summary.json", answer, summary=result.summary, meta_consistency=consistency,
                  verdicts=judged)
    return write_report(folder / "meta_evaluation.html", "xaitrust meta-evaluation: which metrics to believe",
                        list(judged["sentence"]), sections, json.dumps(settings, indent=2), headline=answer)
