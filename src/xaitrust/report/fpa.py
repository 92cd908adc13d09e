"""The report of the FPA protocol (``xaitrust.protocols.fpa``; Brocki & Chung, "Feature Perturbation Augmentation for
Reliable Evaluation of Importance Estimators in Neural Networks", Pattern Recognition Letters 2023): the question and
its answer, the findings beside the paper's claims, the tables and figures, and ``summary.json``.

Every verdict compares the 95% intervals of the fidelity ``A = mean AUC(LIF) - mean AUC(MIF)`` (normal approximation
``A +- z_{0.975} sd / sqrt(n)``, the paper's "A +- CI"): an estimator, a group of estimators or a training regime is
called better than another only when their intervals are disjoint, and a LIF peak is called above 1 only when its
interval lies above 1. Otherwise the values are called indistinguishable, and the headline says that the run does not
resolve the question.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..explainers.reduce import normalize_maps
from ..metrics.fidelity import FPA_FRACTIONS
from ..protocols.common import describe_fill
from ..protocols.run_folder import RunFolder
from ..statistics import overlaps_leader
from .figures import plot_curves
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

QUESTION = ("Does training with feature perturbation augmentation make perturbation-based evaluation of attribution "
            "methods more reliable, and which estimators are most faithful?")

#: How the headline names each training regime.
REGIME_NAMES = {"none": "no augmentation", "fpa": "FPA", "erasing": "random erasing"}

#: What the paper reports for each regime against no augmentation (Table D.2 and Fig. 3).
PAPER_CHANGE = {
    "fpa": "paper, CIFAR-10 ResNet-18: FPA raised A for every estimator, the signed ones by 39-46 points, the MIF "
           "curves falling more slowly and the LIF curves rising first",
    "erasing": "paper, Fig. 3: Rectangle's curves look like those without augmentation",
}


def file_key(name: str) -> str:
    """``name`` usable in a file name (the prime becomes ``prime``)."""
    return name.replace("'", "prime")


def area_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Estimators x regimes, each cell ``A [ci_low, ci_high]`` (the layout of the paper's tables, transposed)."""
    cells = summary.assign(cell=[interval_text(a, lo, hi, 1) for a, lo, hi in
                                 zip(summary["A"], summary["ci_low"], summary["ci_high"])])
    return cells.pivot(index="method", columns="model", values="cell").reindex(
        index=list(dict.fromkeys(summary["method"])), columns=list(dict.fromkeys(summary["model"])))


def _interval(row: pd.Series) -> str:
    """``A [ci_low, ci_high]`` of a summary row, to one decimal."""
    return interval_text(row["A"], row["ci_low"], row["ci_high"], 1)


def _cell(row: pd.Series) -> str:
    return f"{row['method']} (A = {_interval(row)})"


def _top(rows: pd.DataFrame) -> pd.Series:
    return rows.loc[rows["A"].idxmax()]


def overlapping(rows: pd.DataFrame, largest: bool = True) -> list[str]:
    """The methods of ``rows`` whose 95% CI of A overlaps that of the method with the largest A (the smallest when not
    ``largest``), missing CIs counting as overlapping (``xaitrust.statistics.overlaps_leader``)."""
    return list(rows.loc[overlaps_leader(rows["A"], rows["ci_low"], rows["ci_high"], largest), "method"])


def group_order(first: pd.DataFrame, second: pd.DataFrame) -> str:
    """``">"`` when the best A of ``first`` has a 95% CI wholly above the CI of every estimator of ``second``, ``"<"``
    when the reverse holds, else ``"~"`` (indistinguishable: overlapping or missing CIs)."""
    if _top(first)["ci_low"] > second["ci_high"].max():
        return ">"
    if _top(second)["ci_low"] > first["ci_high"].max():
        return "<"
    return "~"


def _ranked(label: str, rows: pd.DataFrame, largest: bool = True) -> str:
    """``label``, then the estimator of ``rows`` with the largest A (the smallest when not ``largest``) with its A and
    95% CI, and the other estimators whose CIs overlap it."""
    row = _top(rows) if largest else rows.loc[rows["A"].idxmin()]
    tied = overlapping(rows, largest)
    apart = f"indistinguishable from {', '.join(tied)} (overlapping 95% CIs)" if tied else "no other 95% CI overlaps it"
    return f"{label} {_cell(row)}, {apart}."


def peak_text(row: pd.Series) -> str:
    """The LIF peak of one signed estimator: above 1 only when its 95% CI lies above 1."""
    verdict = ("above 1: removing negative-evidence pixels raised the logit" if row["lif_peak_ci_low"] > 1
               else "not distinguishable from 1")
    peak = interval_text(row["lif_peak"], row["lif_peak_ci_low"], row["lif_peak_ci_high"], 2)
    return f"{row['method']} {peak} times the clean logit at {row['lif_peak_percent']:.0f}% removed ({verdict})"


def _aligned(summary: pd.DataFrame, regime: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The summary rows of no augmentation and of ``regime``, both indexed by method in the summary's order."""
    areas = summary.set_index(["method", "model"])
    methods = list(dict.fromkeys(areas.index.get_level_values(0)))
    return areas.xs("none", level="model").loc[methods], areas.xs(regime, level="model").loc[methods]


def regime_changes(summary: pd.DataFrame, regime: str) -> pd.DataFrame:
    """Per method, ``regime`` against no augmentation: its kind, both A with their 95% CIs, whether A ``rose`` (point
    estimates; estimators only, never the random baseline), rose with the regime's CI wholly above that of no
    augmentation (``rose_apart``) or fell with its CI wholly below (``fell_apart``)."""
    base, other = _aligned(summary, regime)
    estimator = other["kind"] != "baseline"
    rose = estimator & (other["A"] > base["A"])
    return pd.DataFrame({
        "kind": other["kind"], "A_none": base["A"], "ci_low_none": base["ci_low"], "ci_high_none": base["ci_high"],
        "A": other["A"], "ci_low": other["ci_low"], "ci_high": other["ci_high"], "rose": rose,
        "rose_apart": rose & (other["ci_low"] > base["ci_high"]),
        "fell_apart": estimator & (other["ci_high"] < base["ci_low"]),
    }).rename_axis("method")


def _compare_regimes(summary: pd.DataFrame, regime: str) -> str:
    """How ``regime`` changed A, and the areas under MIF and LIF, relative to no augmentation."""
    changes = regime_changes(summary, regime)
    estimators = changes["kind"] != "baseline"
    clear, lowered = changes["rose_apart"], changes["fell_apart"]
    base, other = _aligned(summary, regime)
    change = other[["A", "mif_area", "lif_area"]] - base[["A", "mif_area", "lif_area"]]
    by_kind = change.groupby(other["kind"]).mean()
    kinds = "; ".join(f"{kind}: A {row['A']:+.1f}, MIF area {row['mif_area']:+.1f}, LIF area {row['lif_area']:+.1f}"
                      for kind, row in by_kind.iterrows())
    return (f"{regime} vs no augmentation: A rose for {int(changes['rose'].sum())} of {int(estimators.sum())} "
            f"estimators, {int(clear.sum())} with disjoint 95% CIs ({', '.join(clear.index[clear]) or 'none'}), and "
            f"fell with disjoint CIs for {int(lowered.sum())} ({', '.join(lowered.index[lowered]) or 'none'}). Mean "
            f"changes ({kinds}); a larger MIF area under the random baseline means a model more robust to removed "
            f"pixels ({PAPER_CHANGE.get(regime, 'not in the paper')}).")


def findings(accuracy: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    """Plain sentences computed from the numbers, set beside the paper's claims. An estimator or a group of estimators
    is called better than another only when their 95% CIs of A are disjoint (``overlapping``, ``group_order``); a LIF
    peak is called above 1 only when its 95% CI lies above 1 (``peak_text``)."""
    explained = ", ".join(f"{row['model']} {row['explained_accuracy']:.4f}" for _, row in accuracy.iterrows())
    tested = ", ".join(f"{row['model']} {row['test_accuracy']:.4f}" for _, row in accuracy.iterrows())
    lines = [(f"Accuracy on the {accuracy['explained_images'].iloc[0]} explained images: {explained} (paper, "
              "CIFAR-10, on the images of its perturbation curves: 93.0% none, 92.7% FPA, 93.1% Rectangle); on the "
              f"test split ({accuracy['test_images'].iloc[0]} images): {tested}.")]
    regimes = list(dict.fromkeys(summary["model"]))
    for regime in regimes:
        rows = summary[summary["model"] == regime]
        signed, unsigned = rows[rows["kind"] == "signed"], rows[rows["kind"] == "unsigned"]
        line = f"{regime}: " + _ranked("largest A", rows)
        if len(signed) and len(unsigned):
            verdict = {">": "the signed estimators lead (disjoint 95% CIs)",
                       "<": "the unsigned estimators lead (disjoint 95% CIs)",
                       "~": "signed and unsigned estimators are indistinguishable (overlapping 95% CIs)"}
            line += (f" Best signed: {_cell(_top(signed))}; best unsigned: {_cell(_top(unsigned))}; so "
                     f"{verdict[group_order(signed, unsigned)]} (paper: with FPA the signed ones lead on all three "
                     "data sets).")
        if len(unsigned) > 1:
            line += " " + _ranked("Worst unsigned:", unsigned, largest=False)
            line += " The paper finds SQ-SG_sum best and VG_abs worst."
        for _, random in rows[rows["kind"] == "baseline"].iterrows():
            line += f" Random: A = {_interval(random)}."
        lines.append(line)
    lines += [_compare_regimes(summary, regime) for regime in regimes if regime != "none" and "none" in regimes]
    for regime in regimes:
        signed = summary[(summary["model"] == regime) & (summary["kind"] == "signed")]
        if len(signed):
            lines.append(f"{regime}: the mean LIF curve of the signed estimators peaks at "
                         + "; ".join(peak_text(row) for _, row in signed.iterrows())
                         + " (95% CI of the mean at the peak; paper: the LIF curves rise first only with FPA).")
    return lines


def _change_answer(summary: pd.DataFrame, regime: str) -> str:
    """How ``regime`` changed A against no augmentation (``regime_changes``), with the intervals of its largest change
    among those whose 95% CIs are apart; "not resolved" when no estimator's are."""
    changes = regime_changes(summary, regime)
    estimators = changes[changes["kind"] != "baseline"]
    apart = estimators[estimators["rose_apart"] | estimators["fell_apart"]]
    shown = apart if len(apart) else estimators
    name = (shown["A"] - shown["A_none"]).abs().idxmax()
    row = shown.loc[name]
    largest = f"{name} {interval_text(row['A_none'], row['ci_low_none'], row['ci_high_none'], 1)} -> {_interval(row)}"
    counts = (f"Against no augmentation, {REGIME_NAMES.get(regime, regime)} raised A for "
              f"{int(estimators['rose'].sum())} of {len(estimators)} estimators")
    if not len(apart):
        n = int(summary.loc[summary["model"] == regime, "n"].min())
        return (f"{counts}; no change is resolved, every 95% CI overlapping that of no augmentation (over {n} images; "
                f"largest change: {largest}).")
    return (f"{counts}, {int(estimators['rose_apart'].sum())} with disjoint 95% CIs, and lowered it with disjoint "
            f"CIs for {int(estimators['fell_apart'].sum())} (largest change: {largest}).")


def _leader_answer(summary: pd.DataFrame, regime: str) -> str:
    """Which estimators have the largest A under ``regime``: signed against unsigned when both are there
    (``group_order``), else the top estimator and those it cannot be told apart from."""
    rows = summary[(summary["model"] == regime) & (summary["kind"] != "baseline")]
    where, n = f"Under {REGIME_NAMES.get(regime, regime)}", int(rows["n"].min())
    signed, unsigned = rows[rows["kind"] == "signed"], rows[rows["kind"] == "unsigned"]
    if len(signed) and len(unsigned):
        best = {"signed": _top(signed), "unsigned": _top(unsigned)}
        order = group_order(signed, unsigned)
        if order == "~":
            return (f"{where} signed and unsigned estimators are not resolved: best signed {_cell(best['signed'])}, "
                    f"best unsigned {_cell(best['unsigned'])}, 95% CIs overlapping over {n} images.")
        leader, other = ("signed", "unsigned") if order == ">" else ("unsigned", "signed")
        return (f"{where} the {leader} estimators lead: best {leader} {_cell(best[leader])}, whose 95% CI lies above "
                f"that of every {other} one (best {other} {_cell(best[other])}).")
    top = _top(rows)
    tied = overlapping(rows)
    return (f"{where} {_cell(top)} has the largest A; "
            + (f"not resolved against {', '.join(tied)} (95% CIs overlapping over {n} images)." if tied
               else "no other estimator's 95% CI overlaps it."))


def headline(summary: pd.DataFrame) -> Headline:
    """The paper's question and its answer from ``summary``: how FPA (and random erasing) changed A against no
    augmentation (``regime_changes``), and which estimators lead under FPA (under the first regime when the run has
    no FPA model), each with its 95% intervals and saying what the run does not resolve."""
    regimes = list(dict.fromkeys(summary["model"]))
    if (summary["kind"] == "baseline").all():
        return Headline(QUESTION, ["The run scores only the random baseline, so the question is not measured."])
    if "none" not in regimes:
        answer = ["The run has no model trained without augmentation, so whether FPA changes A is not measured."]
    else:
        answer = [_change_answer(summary, regime) for regime in regimes if regime != "none"]
        if "fpa" not in regimes:
            answer.append("The run has no FPA model, so whether FPA changes A is not measured.")
    answer.append(_leader_answer(summary, "fpa" if "fpa" in regimes else regimes[0]))
    return Headline(QUESTION, answer)


def curve_figures(folder: Path, curves: dict, config: dict) -> dict:
    """Per estimator, the mean MIF and LIF curves of every regime in one figure."""
    percent = torch.tensor(FPA_FRACTIONS) * 100
    return {
        f"MIF / LIF ({name})": plot_curves(
            folder / f"mif-lif-{file_key(name)}.png",
            {f"{regime} {order.upper()}": (percent, curves[regime][name][order])
             for regime in config["regimes"] for order in ("mif", "lif")},
            "% of pixels removed", "logit / clean logit", name)
        for name in config["estimators"]
    }


def counter_evidence_figures(folder: Path, curves: dict, config: dict, signed: set[str]) -> dict:
    """Fig. 4 analogue per ``signed`` estimator: the mean LIF curve of each regime, then the mean importance score
    (each map scaled by its largest absolute score) of the pixels in LIF order."""
    percent = torch.tensor(FPA_FRACTIONS) * 100
    figures = {}
    for name in config["estimators"]:
        if name not in signed:
            continue
        figures[f"LIF curves ({name})"] = plot_curves(
            folder / f"lif-{file_key(name)}.png",
            {regime: (percent, curves[regime][name]["lif"]) for regime in config["regimes"]},
            "% of pixels removed (LIF order)", "logit / clean logit", f"{name}: LIF")
        scores = {regime: torch.sort(normalize_maps(curves[regime][name]["maps"], "max-abs").flatten(1)).values
                  for regime in config["regimes"]}
        figures[f"Importance scores in LIF order ({name})"] = plot_curves(
            folder / f"lif-scores-{file_key(name)}.png",
            {regime: (torch.arange(v.shape[1]) * 100 / v.shape[1], v) for regime, v in scores.items()},
            "% of pixels removed (LIF order)", "importance / max |importance|", f"{name}: scores in LIF order")
    return figures


def write_fpa_report(run: RunFolder, *, accuracy: pd.DataFrame, summary: pd.DataFrame, curves: dict,
                     fill: tuple[float, ...], training_images: int, estimators: pd.DataFrame,
                     shares: pd.DataFrame) -> Path:
    """Write ``report.html`` and ``summary.json`` of an FPA run: ``accuracy`` and ``summary`` as the protocol writes
    them (``accuracy.csv``, ``summary.csv``), ``curves[regime][estimator]`` the MIF/LIF curves and maps
    (``xaitrust.protocols.fpa.regime_curves``), ``fill`` the removal value, ``training_images`` the size of the
    training set, ``estimators`` and ``shares`` the tables of the chosen estimators and of the share of pixels FPA
    removes. Returns the report's path."""
    config = run.config
    figures = run.path / "figures"
    target = "predicted class" if config["target"] == "predicted" else "true label"
    explained = int(accuracy["explained_images"].iloc[0])
    signed = set(summary.loc[summary["kind"] == "signed", "method"])
    squares = ("pixels it removed (the text's reading)" if config["fpa_squares"] == "selected"
               else "every pixel (Algorithm 1's literal loop)")
    models = (f"{config['model']} on {config['dataset']} ({training_images} training images, {config['epochs']} "
              f"epochs), one model per training regime; FPA and random erasing set removed pixels to "
              f"{describe_fill(config, fill)}. Accuracy on the {explained} explained images (the paper's measure) and "
              f"on the test split. FPA's squares start at {squares}; the share of pixels removed from a perturbed "
              "mini-batch under both readings is measured below.")
    fidelity = (f"A = mean AUC(LIF) - mean AUC(MIF), x in percent of pixels removed (0-95%), logits of the {target} "
                f"divided by the clean logit, removed pixels set to {describe_fill(config, fill)}; 95% CI by the "
                "normal approximation. Larger is better.")
    counter = ("For each signed estimator: the mean LIF curve, then the importance scores of the pixels in the order "
               "LIF removes them (most negative first). Where the scores are negative the removed pixels are "
               "counter-evidence: a faithful model and estimator make the LIF curve rise there.")
    sections = [
        Section("Models", [models], tables={"Accuracy": accuracy, "FPA: share of pixels removed": shares}),
        Section("Fidelity A", [fidelity], tables={"A [95% CI] (estimators x training regime)": area_table(summary),
                                                  "Summary": summary, "Estimators": estimators}),
        Section("MIF and LIF curves", ["Mean curves over the explained images with 95% bands."],
                figures=curve_figures(figures, curves, config)),
        Section("Counter-evidence (paper Fig. 4)", [counter],
                figures=counter_evidence_figures(figures, curves, config, signed)),
    ]
    answer = headline(summary)
    regimes = list(dict.fromkeys(summary["model"]))
    changes = {regime: regime_changes(summary, regime) for regime in regimes if regime != "none" and "none" in regimes}
    write_summary(run.path / "summary.json", answer, summary=summary, accuracy=accuracy, regime_changes=changes)
    return write_report(run.path / "report.html", "Feature Perturbation Augmentation", findings(accuracy, summary),
                        sections, tomli_w.dumps(config), headline=answer)
