"""The verdict on a benchmark's explanations: which methods to trust on this model and data. Pure functions of the
tidy per-image results (columns ``metric``, ``method``, ``model``, ``sample``, ``value``; ``sample`` identifies the
image, so two methods' values of one image are paired).

For the reference model and each method:

- **Sanity** (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, "Sanity checks for saliency maps", NeurIPS;
  full-model randomisation): ``randomisation_similarity``, the Spearman rank correlation between a method's maps and
  its maps of the model with every weight layer re-initialised. The method passes when the upper bound of the 95%
  Student-t interval of its mean similarity lies below ``sanity_threshold`` (default 0.5), fails otherwise, and is
  "not measured" without two finite values. The threshold is a convention, not the paper's: at a rank correlation of
  0.5 the two maps share a quarter of their rank variance (rho^2 = 0.25), so a method whose similarity may reach it
  shows mostly what does not depend on the learned weights (the input, the architecture); the random control scores
  1, a method explaining the learned weights near 0. The upper bound, not the mean, must be below it: a pass is a
  claim the sample supports.
- **Faithfulness**: for each metric of ``FAITHFULNESS``, the paired test (``xaitrust.statistics.paired_test``) of
  the method's per-image scores against the random control's on the same images, ``d_i = method_i - random_i``.
  The p-values of all (method x metric) comparisons of the verdict are adjusted together (Holm 1979, "A simple
  sequentially rejective multiple test procedure"), so that the chance of any false "better" or "worse" stays
  below ``alpha``. Outcome: "better" where the adjusted p < ``alpha`` and the mean difference points to the metric's
  better direction (``Metric.higher_is_better``), "worse" where it points the other way, "indistinguishable"
  otherwise ("not measured" with fewer than two pairs).
- **Stability**: the mean local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018; lower is more stable) with its
  95% t interval, and its significance rank among the methods (``xaitrust.statistics.significance_ranks``: one plus
  the number of methods significantly more stable on the same images, Holm over all pairs).

A method is **trusted** when it passes the sanity check and is better than the random maps on more than half of the
faithfulness metrics measured for it. The recommendation names the trusted methods, those failing the sanity check,
those no better than random on any faithfulness metric, and how much the sample resolves.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import pandas as pd

from ..errors import XaitrustError
from ..evaluation import get_metric
from ..protocols.scoring import CONTROLS
from ..statistics import Interval, holm, mean_interval, paired_test, significance_ranks
from .text import interval_text

#: The faithfulness metrics the verdict tests against the random control, in the order of its table.
FAITHFULNESS = ("deletion_area", "insertion_area", "better_than_random", "mif_lif_area", "mu_fidelity")
#: The sanity check's metric (full-model randomisation).
SANITY = "randomisation_similarity"
#: The stability metric.
STABILITY = "local_lipschitz"
#: The control the faithfulness comparisons test against: maps of noise, independent of the model.
CONTROL = "random"
#: The columns the verdict reads.
COLUMNS = ("metric", "method", "model", "sample", "value")
#: Outcomes of a comparison with the control and of the sanity check.
BETTER, WORSE, TIED, UNMEASURED = "better", "worse", "indistinguishable", "not measured"
PASSES, FAILS = "passes", "fails"


def check_results(results: pd.DataFrame) -> None:
    """Fail with what to fix unless ``results`` is a tidy table with ``COLUMNS`` and one value per (metric, method,
    model, sample)."""
    if not isinstance(results, pd.DataFrame):
        raise XaitrustError(f"results must be a pandas DataFrame (results.csv); got {type(results).__name__}")
    missing = [column for column in COLUMNS if column not in results.columns]
    if missing:
        raise XaitrustError(f"results lack the columns {', '.join(missing)}: give the tidy per-image table "
                            f"(results.csv, columns {', '.join(COLUMNS)})")
    repeated = results.duplicated(["metric", "method", "model", "sample"])
    if repeated.any():
        first = results[repeated].iloc[0]
        raise XaitrustError(
            f"results hold several values of metric {first['metric']!r}, method {first['method']!r}, model "
            f"{first['model']!r} and sample {first['sample']!r}: give one value per image (e.g. one seed's rows)")


def per_image(results: pd.DataFrame, model: str, metric: str) -> pd.DataFrame:
    """Values of ``metric`` on ``model``: one row per image (``sample``, sorted), one column per method in the order
    of the results, NaN where a method has no value for the image; empty without such rows."""
    rows = results[(results["model"] == model) & (results["metric"] == metric)]
    table = rows.pivot(index="sample", columns="method", values="value")
    return table.reindex(columns=list(pd.unique(rows["method"]))).astype(float)


def method_ranks(table: pd.DataFrame, higher_is_better: bool, *, alpha: float = 0.05, test: str = "t"
                 ) -> dict[str, int]:
    """Significance ranks (``xaitrust.statistics.significance_ranks``) of the methods of a ``per_image`` table."""
    scores = {method: table[method].to_numpy() for method in table.columns}
    return significance_ranks(scores, higher_is_better, alpha=alpha, test=test)


def rank_label(rank: int | None, ranks: dict[str, int]) -> str:
    """``"3"``, ``"=3"`` when another method shares the rank (the sample does not tell them apart), ``"–"`` for none."""
    if rank is None:
        return "–"
    return f"{'=' if sum(r == rank for r in ranks.values()) > 1 else ''}{rank}"


@dataclass(frozen=True)
class MethodVerdict:
    """The verdict on one method: its sanity check (``sanity``: "passes", "fails" or "not measured", from the mean
    randomisation ``similarity`` with its 95% interval), the outcome of each faithfulness comparison with the
    random control (``outcomes[metric]``), its stability (mean local Lipschitz estimate with its interval, and its
    significance rank), whether it is ``trusted``, and one ``sentence`` saying all this. ``control`` marks the random
    control itself, shown for reference and never trusted."""

    method: str
    control: bool
    sanity: str
    similarity: Interval
    outcomes: dict
    stability: Interval
    stability_rank: int | None
    trusted: bool
    sentence: str

    @property
    def better(self) -> list[str]:
        """The faithfulness metrics on which the method beats the random maps."""
        return [metric for metric, outcome in self.outcomes.items() if outcome == BETTER]

    @property
    def measured(self) -> list[str]:
        """The faithfulness metrics compared with the random maps."""
        return [metric for metric, outcome in self.outcomes.items() if outcome != UNMEASURED]


@dataclass(frozen=True)
class Verdict:
    """The verdict on ``model``'s explanations: ``methods`` (trusted first, the control last), the faithfulness
    ``comparisons`` with the control (method, metric, difference, low, high, n, p_value, p_adjusted, outcome), the
    ``recommendation`` sentences, the number of explained images ``n_images`` and the settings."""

    model: str
    methods: list
    comparisons: pd.DataFrame
    recommendation: list
    n_images: int
    alpha: float
    test: str
    sanity_threshold: float


def sanity_outcome(similarity: Interval, threshold: float) -> str:
    """"passes" when the interval's upper bound is below ``threshold``, "fails" when it is not, "not measured"
    without an interval (fewer than two finite values)."""
    if not math.isfinite(similarity.high):
        return UNMEASURED
    return PASSES if similarity.high < threshold else FAILS


def faithfulness_comparisons(results: pd.DataFrame, model: str, methods, *, alpha: float = 0.05, test: str = "t"
                             ) -> pd.DataFrame:
    """Each method of ``methods`` against the ``CONTROL`` on every ``FAITHFULNESS`` metric of ``model`` present in
    ``results`` (module docstring): paired test, Holm adjustment over all the comparisons, direction-aware outcome.
    A comparison with fewer than two pairs has no p-value and stays out of the family."""
    rows = []
    tables = {metric: per_image(results, model, metric) for metric in FAITHFULNESS}
    for method in methods:
        for metric, table in tables.items():
            if CONTROL not in table or method not in table:
                continue
            result = paired_test(table[method], table[CONTROL], test=test)
            rows.append({"method": method, "metric": metric, "difference": result.difference, "low": result.low,
                         "high": result.high, "n": result.n,
                         "p_value": result.p_value if result.n >= 2 else math.nan})
    columns = ["method", "metric", "difference", "low", "high", "n", "p_value", "p_adjusted", "outcome"]
    comparisons = pd.DataFrame(rows, columns=columns)
    comparisons["p_adjusted"] = holm(comparisons["p_value"].to_numpy())
    comparisons["outcome"] = [
        UNMEASURED if not math.isfinite(p) else TIED if not p < alpha
        else BETTER if (difference > 0) == get_metric(metric).higher_is_better else WORSE
        for metric, difference, p in zip(comparisons["metric"], comparisons["difference"], comparisons["p_adjusted"])
    ]
    return comparisons


def _interval_text(interval: Interval, digits: int = 2, significant: bool = False) -> str:
    """``mean [low, high]`` of ``interval`` (``xaitrust.report.text.interval_text``), "not measured" without values."""
    if not interval.n:
        return "not measured"
    return interval_text(interval.mean, interval.low, interval.high, digits, significant=significant)


def _names(metrics) -> str:
    return ", ".join(metric.replace("_", " ") for metric in metrics)


def method_sentence(method: str, control: bool, sanity: str, similarity: Interval, outcomes: dict,
                    stability: Interval, stability_label: str, trusted: bool, threshold: float) -> str:
    """One plain sentence on a method from its numbers (see ``MethodVerdict``)."""
    check = {
        PASSES: f"passes the sanity check (its maps of the randomised model have a rank correlation of "
                f"{_interval_text(similarity)} with its maps, below {threshold:g})",
        FAILS: f"fails the sanity check (rank correlation {_interval_text(similarity)} with its maps of the randomised "
               f"model, not below {threshold:g}: " + (
                   "its maps change little when the model's weights are random)" if similarity.mean >= threshold
                   else f"the images do not bound it below {threshold:g})"),
        UNMEASURED: "has no sanity check",
    }[sanity]
    stable = ("stability not measured" if not stability.n else
              f"local Lipschitz {_interval_text(stability, 3, significant=True)}, stability rank {stability_label}")
    if control:
        return (f"{method} is the control (maps of noise, independent of the model, which must fail): it {check}; "
                f"{stable}.")
    measured = [m for m, outcome in outcomes.items() if outcome != UNMEASURED]
    by_outcome = {outcome: [m for m in measured if outcomes[m] == outcome] for outcome in (BETTER, WORSE, TIED)}
    if measured:
        faithful = f"beats the random maps on {len(by_outcome[BETTER])} of {len(measured)} faithfulness metrics"
        if by_outcome[BETTER]:
            faithful += f" ({_names(by_outcome[BETTER])})"
        if by_outcome[WORSE]:
            faithful += f", is worse on {_names(by_outcome[WORSE])}"
    else:
        faithful = "has no faithfulness comparison with the random maps"
    advice = "Trust it on this model and data." if trusted else "Do not rely on it here."
    return f"{method} {check}; {faithful}; {stable}. {advice}"


def _rank_groups(ranks: dict[str, int]) -> str:
    groups: dict[int, list[str]] = {}
    for method, rank in sorted(ranks.items(), key=lambda item: item[1]):
        groups.setdefault(rank, []).append(method)
    return "; ".join(f"{'=' if len(names) > 1 else ''}{rank}: {', '.join(names)}" for rank, names in groups.items())


def recommendation(methods: list[MethodVerdict], comparisons: pd.DataFrame, n_images: int, stability_ranks: dict,
                   stability_images: int, *, alpha: float, threshold: float) -> list[str]:
    """The short recommendation (module docstring), with its numbers."""
    explained = [v for v in methods if not v.control]
    trusted = [v for v in explained if v.trusted]
    lines = []
    if trusted:
        lines.append(
            "Trust on this model and data: " + ", ".join(f"{v.method} (better than random on {len(v.better)} of "
                                                         f"{len(v.measured)})" for v in trusted)
            + f"; they pass the sanity check (randomisation similarity below {threshold:g}) and beat the random maps "
            "on most faithfulness metrics.")
    else:
        lines.append("No method both passes the sanity check and beats the random maps on most faithfulness metrics: "
                     "none of these explanations can be trusted on this model and data.")
    failing = [v for v in explained if v.sanity == FAILS]
    if failing:
        lines.append(f"Fail the sanity check (rank correlation with their maps of the randomised model not bounded "
                     f"below {threshold:g}): " + ", ".join(
                         v.method + (f" ({v.similarity.mean:.2f}: its maps barely change)"
                                     if v.similarity.mean >= threshold
                                     else f" ({_interval_text(v.similarity)}: too uncertain)") for v in failing) + ".")
    unchecked = [v.method for v in explained if v.sanity == UNMEASURED]
    if unchecked:
        lines.append(f"Not checked for sanity (no {SANITY} values): {', '.join(unchecked)}.")
    no_better = [v for v in explained if v.measured and not v.better]
    if no_better:
        lines.append("No better than the random maps on any faithfulness metric: " + ", ".join(
            v.method + (f" (worse on {_names(m for m, o in v.outcomes.items() if o == WORSE)})"
                        if WORSE in v.outcomes.values() else "") for v in no_better) + ".")
    tested = comparisons[comparisons["outcome"] != UNMEASURED]
    if len(tested):
        resolved = int(tested["outcome"].isin([BETTER, WORSE]).sum())
        lines.append(f"How sure: {n_images} images; {resolved} of the {len(tested)} comparisons with the random maps "
                     f"are resolved (Holm-adjusted p < {alpha:g} over all {len(tested)}); the other differences are "
                     f"within what {n_images} images can tell apart.")
    else:
        lines.append(f"How sure: {n_images} images, but the results hold no {CONTROL!r} control to compare the "
                     "methods with: their faithfulness is not tested.")
    if stability_ranks:
        lines.append(f"Stability ranks (local Lipschitz, {stability_images} images; '=' marks methods the sample does "
                     f"not tell apart): {_rank_groups(stability_ranks)}.")
    return lines


def benchmark_verdict(results: pd.DataFrame, model: str = "uncalibrated", *, alpha: float = 0.05, test: str = "t",
                      sanity_threshold: float = 0.5) -> Verdict:
    """The verdict on ``model``'s explanations in ``results`` (module docstring): per method its sanity check
    against ``sanity_threshold``, its faithfulness comparisons with the random control at family-wise level
    ``alpha`` (paired ``test``: "t" or "wilcoxon"), its stability and a sentence; then the recommendation."""
    check_results(results)
    if not 0 < alpha < 1:
        raise XaitrustError(f"alpha must lie in (0, 1), e.g. 0.05; got {alpha!r}")
    if not 0 < sanity_threshold <= 1:
        raise XaitrustError(f"sanity_threshold is a rank correlation in (0, 1], e.g. 0.5; got {sanity_threshold!r}")
    rows = results[results["model"] == model]
    if rows.empty:
        raise XaitrustError(f"the results hold no rows of model {model!r}; their models: "
                            f"{', '.join(map(str, pd.unique(results['model'])))}")
    judged = rows[rows["metric"].isin([SANITY, STABILITY, *FAITHFULNESS])]
    methods = [m for m in pd.unique(judged["method"]) if m not in CONTROLS]
    comparisons = faithfulness_comparisons(results, model, methods, alpha=alpha, test=test)
    similarity, stability = per_image(results, model, SANITY), per_image(results, model, STABILITY)
    stability_ranks = method_ranks(stability, higher_is_better=False, alpha=alpha, test=test)
    verdicts = []
    for method in [*methods, *([CONTROL] if CONTROL in set(judged["method"]) else [])]:
        control = method == CONTROL
        interval = mean_interval(similarity.get(method, []))
        sanity = sanity_outcome(interval, sanity_threshold)
        mine = comparisons[comparisons["method"] == method]
        outcomes = dict(zip(mine["metric"], mine["outcome"]))
        measured = [outcome for outcome in outcomes.values() if outcome != UNMEASURED]
        trusted = not control and sanity == PASSES and 2 * measured.count(BETTER) > len(measured)
        lipschitz = mean_interval(stability.get(method, []))
        rank = stability_ranks.get(method)
        sentence = method_sentence(method, control, sanity, interval, outcomes, lipschitz,
                                   rank_label(rank, stability_ranks), trusted, sanity_threshold)
        verdicts.append(MethodVerdict(method, control, sanity, interval, outcomes, lipschitz, rank, trusted, sentence))
    verdicts.sort(key=lambda v: (v.control, not v.trusted, -len(v.better)))  # stable: ties keep the results' order
    n_images = int(rows.loc[rows["metric"].isin(FAITHFULNESS), "sample"].nunique()) or int(rows["sample"].nunique())
    lines = recommendation(verdicts, comparisons, n_images, stability_ranks, len(stability.dropna(how="all")),
                           alpha=alpha, threshold=sanity_threshold)
    return Verdict(model, verdicts, comparisons, lines, n_images, alpha, test, sanity_threshold)


#: CSS classes of ``xaitrust.report.html`` for each outcome.
OUTCOME_CLASS = {BETTER: "good", PASSES: "good", WORSE: "bad", FAILS: "bad", TIED: "neutral", UNMEASURED: "muted"}
#: How a cell of the verdict's table writes an outcome against the random maps.
OUTCOME_TEXT = {BETTER: "better", WORSE: "worse", TIED: "≈ random", UNMEASURED: "–"}
#: The style of a cell whose text may wrap (names, intervals).
WRAP = "white-space:normal"
#: Column widths of the verdict's table in percent: method, verdict, sanity, each faithfulness metric (stability
#: takes the rest).
WIDTHS = (12, 8, 16, 10)


def _cell(text: str, outcome: str, title: str) -> str:
    return (f"<td class='{OUTCOME_CLASS[outcome]}' style='text-align:center' title='{html.escape(title)}'>"
            f"{html.escape(text)}</td>")


def verdict_html(verdict: Verdict) -> str:
    """The verdict as a page block: one row per method (trusted first, the control last) with its overall advice,
    sanity check, outcome against the random maps on each faithfulness metric ("≈ random": indistinguishable) and
    stability (hover a cell for its numbers), then the sentences."""
    metrics = [m for m in FAITHFULNESS if m in set(verdict.comparisons["metric"])]
    tests = verdict.comparisons.set_index(["method", "metric"])
    ranks = {v.method: v.stability_rank for v in verdict.methods if v.stability_rank is not None}
    method_width, advice_width, sanity_width, metric_width = WIDTHS
    widths = (method_width, advice_width, sanity_width, *(metric_width for _ in metrics))
    columns = "".join(f"<col style='width:{width}%'>" for width in widths)
    head = "".join(f"<th>{html.escape(text)}</th>" for text in (
        "method", "verdict", f"sanity: randomisation similarity (passes below {verdict.sanity_threshold:g})",
        *(f"{m.replace('_', ' ')} vs random" for m in metrics), "stability: local Lipschitz (rank)"))
    body = []
    for v in verdict.methods:
        advice, outcome = ("control", UNMEASURED) if v.control else ("trust", PASSES) if v.trusted else (
            "do not rely", FAILS)
        name = f"{html.escape(v.method)} <small>(control)</small>" if v.control else html.escape(v.method)
        muted = " class='muted'" if v.control else ""
        cells = [f"<td{muted} style='{WRAP}'>{name}</td>",
                 _cell(advice, outcome, v.sentence),
                 _cell(f"{v.sanity}: {_interval_text(v.similarity)}", v.sanity,
                       f"mean rank correlation [95% CI] with the maps of the randomised model: "
                       f"{_interval_text(v.similarity)}, n = {v.similarity.n}")]
        for metric in metrics:
            if (v.method, metric) not in tests.index:
                cells.append(_cell(OUTCOME_TEXT[UNMEASURED], UNMEASURED, "not compared"))
                continue
            row = tests.loc[(v.method, metric)]
            cells.append(_cell(OUTCOME_TEXT[row["outcome"]], row["outcome"], (
                f"{v.method} minus random [95% CI]: "
                f"{interval_text(row['difference'], row['low'], row['high'], 3, signed=True, significant=True)}, "
                f"n = {row['n']}, p = {row['p_value']:.2g}, Holm-adjusted p = {row['p_adjusted']:.2g}")))
        lipschitz = (f"{_interval_text(v.stability, 3, significant=True)} ({rank_label(v.stability_rank, ranks)})"
                     if v.stability.n else "–")
        cells.append(f"<td style='{WRAP}' title='n = {v.stability.n}'>{html.escape(lipschitz)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    sentences = "".join(f"<li>{html.escape(v.sentence)}</li>" for v in verdict.methods)
    return (f"<div class='table'><table style='width:100%; table-layout:fixed; font-size:0.78em'>"
            f"<colgroup>{columns}</colgroup><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            f"<details><summary>Each method in one sentence ({len(verdict.methods)})</summary>"
            f"<ul class='findings'>{sentences}</ul></details>")
