"""The report of the MeGe/ReCo protocol (``xaitrust.protocols.mege_reco``; Fel, Vigouroux, Cadène & Serre, "How Good
is your Explanation? Algorithmic Stability Measures to Assess the Quality of Explanations for Deep Neural Networks"):
the question and its answer, the findings, the tables and figures, and ``summary.json``.

The answer reads the clean base family's MeGe ``(1 + mean(S=))^-1`` (eq. 5) and ReCo
``max_gamma TPR(gamma) + TNR(gamma) - 1`` (eq. 6) of every method with their 95% percentile bootstrap intervals over the
explained images (``xaitrust.metrics.consistency.bootstrap_intervals``), the random control apart:

- a method *leads* a score when its interval lies entirely above the interval of every other method; when the
  highest method's interval overlaps another's (or has no interval; ``xaitrust.statistics.overlaps_leader``) the run
  does not resolve which one is best, and the answer names the methods it cannot separate;
- a ReCo *clears the noise floor* when it is above the 95% quantile of the ReCo of uninformative distances for the
  same sizes of S= and S!= (``reco_noise_floor``); below it, the run cannot tell the method's consistency from chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w
import torch

from ..metrics.distances import DISTANCES
from ..models.loading import ModelSource
from ..protocols.run_folder import RunFolder
from ..statistics import overlaps_leader
from .figures import plot_curves, plot_histograms, plot_map_grid
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

QUESTION = ("Which explanation methods generalise across models trained on different folds (MeGe) and stay "
            "consistent with the models' agreement (ReCo)?")
#: The random control: shown beside the methods, never ranked among them.
CONTROL = "random"
#: At most this many methods are named in one sentence of the answer; the others are counted.
NAMED = 3


def _with_interval(row) -> str:
    """``value [ci_low, ci_high]`` of a row of the intervals table, to three decimals."""
    return interval_text(row.value, row.ci_low, row.ci_high, 3)


def _listed(rows: pd.DataFrame) -> str:
    """The first ``NAMED`` methods with their values and intervals, and how many more."""
    named = ", ".join(f"{row.method} {_with_interval(row)}" for row in rows.head(NAMED).itertuples())
    return named + (f" and {len(rows) - NAMED} more" if len(rows) > NAMED else "")


def ranking_sentence(rows: pd.DataFrame, score: str, what: str, base: str) -> tuple[str, bool]:
    """``(sentence, resolved)``: which method of ``rows`` (method, value, ci_low, ci_high of one score on ``base``,
    the control apart, values finite) scores highest and whether its interval separates it from the others."""
    rows = rows.sort_values("value", ascending=False, kind="stable")
    top = rows.iloc[0]
    if len(rows) == 1:
        return f"{score} ({what}): {top.method}, the only method scored on {base}, has {_with_interval(top)}.", True
    tied = rows[overlaps_leader(rows["value"], rows["ci_low"], rows["ci_high"])]
    if tied.empty:
        runner_up = rows.iloc[1]
        return (f"{score} ({what}): {top.method} leads on {base} with {_with_interval(top)}, its 95% bootstrap "
                f"interval above every other method's (next: {runner_up.method} {_with_interval(runner_up)})."), True
    return (f"{score} ({what}): {top.method} scores highest on {base}, {_with_interval(top)}, but its 95% bootstrap "
            f"interval overlaps those of {_listed(tied)}: this run does not resolve which of them is best."), False


def _floors(rows: pd.DataFrame) -> str:
    low, high = rows["floor_95"].min(), rows["floor_95"].max()
    return f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}-{high:.3f}"


def headline(intervals: pd.DataFrame, base: str, n_images: int) -> Headline:
    """The question and its answer from the ``intervals`` table (model, method, metric, value, ci_low, ci_high,
    floor_95) of the clean ``base`` family, for ``n_images`` explained images (module docstring)."""
    own = intervals[(intervals["model"] == base) & (intervals["method"] != CONTROL)]
    answer, resolved = [], []
    for metric, score, what in (("mege", "MeGe", "generalisation across folds"),
                                ("reco", "ReCo", "consistency with the models' agreement")):
        rows = own[own["metric"] == metric].dropna(subset=["value"])
        if rows.empty:
            empty = ("S= is empty: no explained image is classified correctly by two fold models" if metric == "mege"
                     else "S= or S!= is empty: no explained image is classified correctly by two fold models, or none "
                     "by exactly one")
            answer.append(f"{score} is undefined on {base} for every method: {empty}.")
            resolved.append(False)
            continue
        sentence, separated = ranking_sentence(rows, score, what, base)
        floored = rows.dropna(subset=["floor_95"])
        if metric == "reco" and not floored.empty:
            above = floored[floored["value"] > floored["floor_95"]].sort_values("value", ascending=False,
                                                                                kind="stable")
            if above.empty:
                sentence += (f" No method's ReCo clears the 95% noise floor of uninformative distances "
                             f"({_floors(floored)} for these sizes of S= and S!=): this run cannot tell their "
                             "consistency from chance.")
                separated = False
            else:
                sentence += (f" {len(above)} of {len(rows)} methods clear the 95% noise floor of uninformative "
                             f"distances ({_floors(floored)}): {', '.join(above['method'])}.")
        answer.append(sentence)
        resolved.append(separated)
    if not any(resolved):
        answer.append(f"With {n_images} explained images neither ranking is resolved: more explained images "
                      "(n_samples) narrow the intervals.")
    return Headline(QUESTION, answer)


def sanity_findings(sanity: pd.DataFrame) -> list[str]:
    """For each degradation and metric: how many methods score lower at the strongest level than when clean, how far
    the mean over methods moves, and how far the random control moves. The control matters for ``reco``: eq. 6 as
    printed (``reco_as_written``) compares shares of S= and S!=, whose sizes follow the accuracy, so it can drop for
    maps that carry no information at all; ``reco`` (rates) cannot."""
    lines = []
    for (degradation, metric), part in sanity.groupby(["degradation", "metric"], sort=False):
        means = part.pivot_table(index="method", columns="level", values="mean", dropna=False)
        strongest_level = means.columns.max()
        clean, strongest = means[means.columns.min()], means[strongest_level]
        control = (clean.get(CONTROL, np.nan), strongest.get(CONTROL, np.nan))
        clean, strongest = clean.drop(index=CONTROL, errors="ignore"), strongest.drop(index=CONTROL, errors="ignore")
        finite = clean.notna() & strongest.notna()
        what = f"{metric} under {'weight noise' if degradation == 'noise' else 'label shuffling'} ({strongest_level:g})"
        if not finite.any():
            lines.append(f"{what}: undefined for every method (S= or S!= is empty, see the S=/S!= sizes).")
            continue
        dropped = int((strongest[finite] < clean[finite]).sum())
        line = (f"{what}: lower than clean for {dropped} of {int(finite.sum())} methods; mean over methods "
                f"{clean[finite].mean():.3f} -> {strongest[finite].mean():.3f}")
        if np.isfinite(control).all():
            beyond = int((strongest[finite] - clean[finite] < control[1] - control[0]).sum())
            line += (f"; the random control moved {control[0]:.3f} -> {control[1]:.3f}, and {beyond} of "
                     f"{int(finite.sum())} methods fell relative to it (a change below the control's)")
        lines.append(line + ".")
    return lines


def floor_findings(intervals: pd.DataFrame, base: str) -> list[str]:
    """Per ReCo reading on ``base``: which methods (the random control apart) score above the 95% noise floor."""
    lines = []
    for metric, what in (("reco", "ReCo"), ("reco_as_written", "ReCo as written")):
        part = intervals[(intervals["model"] == base) & (intervals["metric"] == metric)
                         & (intervals["method"] != CONTROL)].dropna(subset=["value", "floor_95"])
        if not len(part):
            continue
        above = part[part["value"] > part["floor_95"]]["method"].tolist()
        lines.append(f"{what} on {base}: {len(above)} of {len(part)} methods above the 95% noise floor of "
                     f"uninformative distances ({_floors(part)} for these sizes of S= and S!=)"
                     f"{': ' + ', '.join(above) if above else ''}.")
    return lines


def family_findings(summary: pd.DataFrame, base: str, family: str) -> list[str]:
    """How many methods score higher on the clean ``family`` (the 1-Lipschitz one) than on ``base``, per MeGe and
    ReCo reading, against the move of the random control."""
    pairs = summary[summary["model"].isin([base, family])]
    table = pairs.pivot_table(index=["metric", "method"], columns="model", values="mean", dropna=False)
    lines = []
    for metric in ("mege", "reco", "reco_as_written"):
        scores = table.loc[metric]
        gain = (scores[family] - scores[base]).drop(index=CONTROL, errors="ignore").dropna()
        if not len(gain):
            lines.append(f"{metric} of {family} against {base}: undefined for every method.")
            continue
        line = f"{family} has a higher {metric} than {base} for {int((gain > 0).sum())} of {len(gain)} methods"
        control = scores[family].get(CONTROL, np.nan) - scores[base].get(CONTROL, np.nan)
        if np.isfinite(control):
            line += f"; the random control moved by {control:+.3f}, and {int((gain > control).sum())} gained more"
        lines.append(line + ".")
    return lines


def findings(summary: pd.DataFrame, accuracy: pd.DataFrame, sanity: pd.DataFrame, base: str,
             intervals: pd.DataFrame | None = None) -> list[str]:
    """Plain sentences computed from the numbers: accuracy per family, the highest and lowest score of each metric on
    ``base`` against the random control, the noise floors, the sanity check and every other clean family (the
    1-Lipschitz one) against ``base``."""
    lines = []
    for family, part in accuracy.groupby("model", sort=False):
        values = part["held_out_accuracy"]
        lines.append(f"{family}: held-out accuracy {values.mean():.3f} (folds {values.min():.3f}-{values.max():.3f}).")
    means = summary[summary["model"] == base].pivot_table(index="method", columns="metric", values="mean", dropna=False)
    methods = means.drop(index=CONTROL, errors="ignore")
    for metric in ("mege", "reco", "reco_as_written", "mu_fidelity"):
        column = methods[metric].dropna()
        if not len(column):
            lines.append(f"{metric} on {base}: undefined for every method (S= or S!= is empty, see the S=/S!= sizes).")
            continue
        line = f"Highest {metric} on {base}: {column.idxmax()} ({column.max():.3f}); lowest: {column.idxmin()} " \
               f"({column.min():.3f})"
        random = means.loc[CONTROL, metric] if CONTROL in means.index else np.nan
        if np.isfinite(random):
            line += f"; random {random:.3f}, beaten by {int((column > random).sum())} of {len(column)}"
        lines.append(line + ".")
    if intervals is not None and len(intervals):
        lines += floor_findings(intervals, base)
    lines += sanity_findings(sanity)
    clean = summary[summary["degradation"] == "none"]["model"]
    for family in dict.fromkeys(clean):
        if family != base:
            lines += family_findings(summary, base, family)
    return lines


def interval_table(intervals: pd.DataFrame) -> pd.DataFrame:
    """The clean families' MeGe and ReCo with their 95% bootstrap intervals and ReCo's noise floor, as text."""
    clean = intervals[intervals["degradation"] == "none"]
    names = {"mege": "MeGe", "reco": "ReCo", "reco_as_written": "ReCo as written (eq. 6)"}
    rows = {}
    for row in clean.itertuples():
        cells = rows.setdefault((row.model, row.method), {})
        cells[f"{names[row.metric]} [95% CI]"] = _with_interval(row)
        if row.metric != "mege":
            cells[f"{names[row.metric]}: noise floor, mean / 95%"] = f"{row.floor_mean:.3f} / {row.floor_95:.3f}"
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["model", "method"]
    return table


def distance_test_table(distances: pd.DataFrame) -> pd.DataFrame:
    """``distance_tests`` as text, one column per test: pass/fail, the largest drop and the curve's first and last
    values."""
    def cell(row, test):
        return (f"{row[test]} (drop {100 * row[f'{test}_drop']:.1f}%; {row[f'{test}_first']:.3g} -> "
                f"{row[f'{test}_last']:.3g})")

    return pd.DataFrame({"used here": distances["used"].map({True: "yes", False: ""}).to_numpy(),
                         "F.1 moving point": [cell(row, "moving_point") for _, row in distances.iterrows()],
                         "F.2 noise": [cell(row, "noise") for _, row in distances.iterrows()]},
                        index=pd.Index(distances["distance"], name="distance"))


def sanity_figures(figures: Path, sanity: pd.DataFrame) -> dict[str, Path]:
    """One figure per (metric, degradation): score against degradation level, one line per method."""
    paths = {}
    for (metric, degradation), part in sanity.groupby(["metric", "degradation"], sort=False):
        curves = {method: (torch.tensor(rows["level"].to_numpy()), torch.tensor(rows["mean"].to_numpy())[None])
                  for method, rows in part.sort_values("level").groupby("method", sort=False)}
        what = "share of layers with weight noise" if degradation == "noise" else "share of shuffled labels"
        paths[f"{metric} vs {what}"] = plot_curves(figures / f"sanity-{metric}-{degradation}.png", curves, what, metric)
    return paths


def write_mege_reco_report(run: RunFolder, *, summary: pd.DataFrame, accuracy: pd.DataFrame,
                           separation: pd.DataFrame, sanity: pd.DataFrame, scores: dict, images: torch.Tensor,
                           n_images: int, intervals: pd.DataFrame, distances: pd.DataFrame) -> Path:
    """Figures, ``report.html`` and ``summary.json`` of a MeGe/ReCo run: the headline, the clean families' scores
    side by side with their intervals and noise floors, S=/S!= histograms, the sanity check, the distance tests and
    example maps. ``scores[family]`` holds the family's ``separation[method] = (S=, S!=)`` and ``examples[method]``
    (model 0's maps of ``images``)."""
    config, figures = run.config, run.path / "figures"
    base = ModelSource.from_config(config).label
    clean = summary[summary["degradation"] == "none"]
    side_by_side = clean.pivot_table(index="method", columns=["metric", "model"], values="mean", sort=False)
    distance = DISTANCES[config["distance"]].description
    histograms = {
        f"S= and S!= ({family}, {method})": plot_histograms(
            figures / f"separation-{family}-{method}.png",
            {"S= (both correct)": s_eq.numpy(), "S!= (one correct)": s_neq.numpy()}, distance,
            f"{family}: {method}", bins=config["histogram_bins"])
        for family in clean["model"].unique() for method, (s_eq, s_neq) in scores[family].separation.items()
    }
    scores_text = (
        f"{config['k']}-fold cross-training on {config['train_size'] or 'all'} {config['dataset']} training images; "
        f"{n_images} images explained ({config['target']} class, {config['output']}, maps reduced by "
        f"{config['reduction']}), distance: {distance}. MeGe, ReCo, ReCo_AUC and muFidelity: higher is better. "
        "muFidelity is the mean over the images, each scored on the model that did not train on it. "
        "ReCo (reco) takes TPR and TNR as the rates the paper's text names (share of S= below and of S!= above the "
        "threshold), as the authors' code does; reco_as_written takes eq. 6 as printed (shares of each side of the "
        "threshold), which the sizes of S= and S!= push towards |S=| / |S| for any maps."
    )
    intervals_text = (
        f"95% percentile bootstrap intervals over {config['bootstrap_samples']} resamples of the {n_images} explained "
        "images (each resampled image brings all its pairs). Noise floor: the ReCo of S= and S!= sets of the same "
        f"sizes whose distances carry no information ({config['floor_draws']} random assignments of the distances to "
        "the two sets): its mean and 95% quantile. A ReCo below the 95% floor is indistinguishable from "
        "uninformative maps; for ReCo as written the floor shows how far the sizes alone carry it. ReCo is a maximum "
        "over thresholds, so resampling biases it upwards: its interval can sit mostly above the value."
    )
    distances_text = (
        "Appendix F of the paper: F.1 a point of interest moves across a 32 x 32 image "
        f"({config['distance_test_positions']} positions); the distance to the first image must grow monotonically. "
        f"F.2 Gaussian noise of growing sigma ({config['distance_test_repeats']} draws per sigma); the mean distance "
        "to the clean image must grow monotonically. A curve passes when it never falls more than 5% of its largest "
        "value below its running maximum and ends above its start; drop: that largest fall, relative to the largest "
        "value; a -> b: the curve from no to the largest displacement (F.1), from the smallest to the largest sigma "
        "(F.2). The paper reports that every candidate passes both tests and keeps 1 - |Spearman|."
    )
    sanity_text = (
        f"Weight noise N(0, {config['noise_std']}) on {config['noise_unit']} shares {config['noise_levels']}; labels "
        f"shuffled for shares {config['shuffle_levels']}. Level 0 is the clean family."
    )
    separation_text = (
        "S=: distances between two models' maps of an image both classify correctly; S!=: exactly one does. Well "
        "separated histograms (S= to the left) mean consistent explanations (high ReCo)."
    )
    sections = [
        Section("Scores of the clean families (paper Tables 1-3, 7)", [scores_text],
                tables={"Mean per method": side_by_side, "Held-out accuracy per fold model": accuracy}),
        Section("Uncertainty of MeGe and ReCo, and ReCo's noise floor", [intervals_text],
                tables={"Score [95% bootstrap interval] and noise floor": interval_table(intervals)}),
        Section("Sanity check: degraded models (paper Fig. 3/9, Fig. 4)", [sanity_text],
                tables={"Score per level": sanity.pivot_table(index=["metric", "method"], values="mean",
                                                              columns=["degradation", "level"], dropna=False)},
                figures=sanity_figures(figures, sanity)),
        Section("S= and S!= (paper Fig. 5/10)", [separation_text], tables={"Sizes and means": separation},
                figures=histograms),
        Section("Distance sanity tests (paper appendix F)", [distances_text],
                tables={"Each candidate distance, each test": distance_test_table(distances)}),
        Section("Example maps", [], figures={
            f"Maps of fold model 0 ({family})": plot_map_grid(figures / f"maps-{family}.png", images,
                                                              scores[family].examples, title=family)
            for family in clean["model"].unique()}),
    ]
    answer = headline(intervals, base, n_images)
    write_summary(run.path / "summary.json", answer, summary=summary, intervals=intervals, accuracy=accuracy,
                  separation=separation, sanity=sanity, distance_tests=distances)
    return write_report(run.path / "report.html", "MeGe and ReCo", findings(summary, accuracy, sanity, base, intervals),
                        sections, tomli_w.dumps(config), headline=answer)
