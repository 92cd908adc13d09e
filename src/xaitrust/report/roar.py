"""The report of the ROAR/KAR protocol (``xaitrust.protocols.roar``; RemOve And Retrain and Keep And Retrain, Hooker
et al., "A Benchmark for Interpretability Methods in Deep Neural Networks", NeurIPS 2019, as reconstructed in Loreth's
thesis "Evaluation of image recognition interpretation methods"): the question and its answer, the findings, the
tables and figures, and ``summary.json``.

A method is informative under ROAR when the test accuracy after retraining falls below that of the random ranking,
and under KAR when it stays above it. ``versus_random`` counts, per method and mode, the fractions at which the mean
accuracy over the seeds is on that side of random's and those at which the whole seed range (min-max) is; a method
beats the random ranking consistently only when the latter holds at every fraction, which takes two seeds or more.
The headline gives the accuracies at the largest fraction with their Student-t 95% intervals over the seeds
(``mean +- t_{0.975, n-1} s / sqrt(n)``, the summary's ``ci95``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import tomli_w
import torch

from ..protocols.run_folder import RunFolder
from .figures import plot_curves, plot_map_grid
from .html import Headline, Section, write_report
from .summary import write_summary
from .text import interval_text

QUESTION = ("Do the attribution methods find the pixels a model needs: does retraining without their top-ranked "
            "pixels (ROAR) lose more accuracy, and retraining on those pixels alone (KAR) keep more, than with a "
            "random ranking?")

#: What each mode replaces, for the figures and the headline.
MODE_LABELS = {"roar": "ROAR: most important pixels replaced", "kar": "KAR: least important pixels replaced"}


def accuracy_curves(results: pd.DataFrame, mode: str) -> dict[str, tuple]:
    """``{method: (fractions (S,), accuracies (seeds, S))}`` of one mode, for ``plot_curves``."""
    curves = {}
    for method, part in results[results["mode"] == mode].groupby("method", sort=False):
        table = part.pivot_table(index="seed", columns="fraction", values="value")
        curves[method] = (torch.tensor(table.columns.to_numpy()), torch.tensor(table.to_numpy()))
    return curves


def _mean_over_fractions(summary: pd.DataFrame, mode: str) -> pd.Series:
    part = summary[(summary["mode"] == mode) & (summary["fraction"] > 0)]
    return part.groupby("method")["mean"].mean().sort_values()


def versus_random(summary: pd.DataFrame, config: dict) -> pd.DataFrame:
    """Per mode and method other than ``random``: at how many of the ``fractions`` the mean accuracy is on the
    informative side of random's (``by_mean``: below under ROAR, above under KAR), at how many the seed ranges are
    apart on that side (``ranges_apart``: the method's max below random's min under ROAR, its min above random's max
    under KAR), and whether the method beats the random ranking ``consistently`` (ranges apart at every fraction, with
    more than one seed). Empty when the run has no random ranking or no other method."""
    methods = [m for m in config["methods"] if m != "random"]
    if "random" not in config["methods"] or not methods:
        return pd.DataFrame(columns=["mode", "method", "by_mean", "ranges_apart", "fractions", "consistently"])
    rows = []
    for mode in config["modes"]:
        part = summary[(summary["mode"] == mode) & (summary["fraction"] > 0)].set_index(["method", "fraction"])
        random = part.loc["random"]
        for method in methods:
            own = part.loc[method]
            if mode == "roar":
                better, apart = own["mean"] < random["mean"], own["max"] < random["min"]
            else:
                better, apart = own["mean"] > random["mean"], own["min"] > random["max"]
            rows.append({"mode": mode, "method": method, "by_mean": int(better.sum()), "ranges_apart": int(apart.sum()),
                         "fractions": len(own), "consistently": config["seeds"] > 1 and bool(apart.all())})
    return pd.DataFrame(rows)


def findings(summary: pd.DataFrame, config: dict) -> list[str]:
    """Plain sentences computed from the summary: base accuracy, fastest ROAR degradation, best KAR, vs random
    (``versus_random``)."""
    base = summary[summary["fraction"] == 0].iloc[0]
    if config["seeds"] == 1:
        lines = [(f"Unmodified data: test accuracy {base['mean']:.3f}. One seed per setting: no spread is measured, "
                 "differences may be noise.")]
    else:
        lines = [(f"Unmodified data: test accuracy {base['mean']:.3f} (std {base['std']:.3f}, range {base['min']:.3f}"
                 f"-{base['max']:.3f} over {int(base['n'])} seeds).")]
    against = versus_random(summary, config)
    for mode in config["modes"]:
        means = _mean_over_fractions(summary, mode)
        lowest, highest = f"{means.index[0]} ({means.iloc[0]:.3f})", f"{means.index[-1]} ({means.iloc[-1]:.3f})"
        if mode == "roar":
            lines.append(f"ROAR (informative pixels removed): accuracy averaged over the fractions falls most for "
                         f"{lowest} and least for {highest}.")
        else:
            lines.append(f"KAR (only informative pixels kept): accuracy averaged over the fractions stays highest for "
                         f"{highest} and lowest for {lowest}.")
        counts = against[against["mode"] == mode]
        if not len(counts):
            continue
        side = "below" if mode == "roar" else "above"
        for row in counts.itertuples():
            spread = ("one seed, no spread measured" if config["seeds"] == 1
                      else f"at {row.ranges_apart} of {row.fractions} with non-overlapping seed ranges")
            lines.append(f"{mode.upper()}: {row.method} is {side} the random ranking at {row.by_mean} of "
                         f"{row.fractions} fractions by the mean accuracy ({spread}).")
        claim = (" (Hooker et al. under ROAR: Gradients, IG and Guided Backprop no better than random, SG-Squared "
                 "and VarGrad far better)") if mode == "roar" else ""
        if config["seeds"] == 1:
            lines.append(f"{mode.upper()}: with one seed per setting no method can be shown to beat the random "
                         f"ranking consistently{claim}.")
        else:
            consistent = list(counts.loc[counts["consistently"], "method"])
            lines.append(f"{mode.upper()}: {len(consistent)} of {len(counts)} methods beat the random ranking "
                         f"consistently, i.e. {side} it with non-overlapping seed ranges at every fraction"
                         f"{': ' + ', '.join(consistent) if consistent else ''}{claim}.")
    if "roar" in config["modes"] and "random" in config["methods"]:
        top = summary[(summary["mode"] == "roar") & (summary["method"] == "random")].sort_values("fraction").iloc[-1]
        lines.append(f"With {top['fraction']:.0%} of the pixels replaced at random, retraining reaches "
                     f"{top['mean']:.3f} (unmodified: {base['mean']:.3f}).")
    return lines


def _accuracy(row: pd.Series) -> str:
    """``mean [low, high]`` of a summary row, ``mean +- ci95`` (its Student-t 95% interval over the seeds; none with
    one seed)."""
    return interval_text(row["mean"], row["mean"] - row["ci95"], row["mean"] + row["ci95"], 3)


def _mode_answer(summary: pd.DataFrame, against: pd.DataFrame, mode: str, seeds: int) -> str:
    """One mode's answer: which methods beat the random ranking consistently (or how close the best one comes), and
    the accuracy of the best method and of random at the largest fraction with their intervals."""
    side = "below" if mode == "roar" else "above"
    counts = against[against["mode"] == mode]
    part = summary[summary["mode"] == mode]
    fraction = part["fraction"].max()
    last = part[part["fraction"] == fraction].set_index("method")
    others = last.drop(index="random")
    best = others["mean"].idxmin() if mode == "roar" else others["mean"].idxmax()
    closest = counts.sort_values(["ranges_apart", "by_mean"], ascending=False, kind="stable").iloc[0]
    measured = f"by the mean accuracy at {closest['by_mean']} of {closest['fractions']} fractions"
    if seeds == 1:
        verdict = (f"not resolved with one seed per setting (no spread measured; {closest['method']} is {side} the "
                   f"random ranking {measured})")
    elif counts["consistently"].any():
        winners = list(counts.loc[counts["consistently"], "method"])
        verdict = (f"{', '.join(winners)} {'beats' if len(winners) == 1 else 'beat'} the random ranking, {side} it "
                   "with seed ranges apart at every fraction")
    else:
        verdict = (f"no method beats the random ranking at every fraction (closest: {closest['method']} is {side} it "
                   f"{measured}, with seed ranges apart at {closest['ranges_apart']})")
    interval = "" if seeds == 1 else f"; 95% CI over {seeds} seeds"
    return (f"{mode.upper()}: {verdict}. With {fraction:.0%} of the pixels replaced: {best} "
            f"{_accuracy(last.loc[best])}, random {_accuracy(last.loc['random'])} (test accuracy{interval}).")


def accuracy_table(summary: pd.DataFrame, modes) -> pd.DataFrame:
    """The mean accuracy over the seeds, methods x (mode, fraction): the columns ordered by mode as in ``modes``, then
    by fraction (0, the unmodified data, first)."""
    means = summary.pivot_table(index="method", columns=["mode", "fraction"], values="mean", sort=False)
    order = sorted(means.columns, key=lambda column: (list(modes).index(column[0]), column[1]))
    return means[order]


def headline(summary: pd.DataFrame, config: dict) -> Headline:
    """The thesis' question and its answer from ``summary``, one sentence per mode (``versus_random``), saying when
    the run cannot resolve it (one seed, overlapping seed ranges, no random ranking)."""
    against = versus_random(summary, config)
    if not len(against):
        return Headline(QUESTION, ["Not measured: the run has no random ranking, or no method besides it."])
    return Headline(QUESTION, [_mode_answer(summary, against, mode, config["seeds"]) for mode in config["modes"]])


def write_roar_report(run: RunFolder, *, results: pd.DataFrame, summary: pd.DataFrame, image: torch.Tensor,
                      examples: dict, training_images: int, test_images: int) -> Path:
    """Write ``report.html`` and ``summary.json`` of a ROAR/KAR run: ``results`` and ``summary`` as the protocol
    writes them (``results.csv``, ``summary.csv``), ``image`` ``(1, C, H, W)`` a test image and ``examples[mode]
    [method]`` ``(fractions, C, H, W)`` that image as modified at every fraction, and the sizes of the training and
    test sets. Returns the report's path."""
    config = run.config
    figures = run.path / "figures"
    curve_figures = {
        f"{MODE_LABELS[mode]} (band: 95% CI of the mean over seeds)": plot_curves(
            figures / f"{mode}.png", accuracy_curves(results, mode), "fraction of pixels replaced",
            "test accuracy after retraining", title=mode.upper())
        for mode in config["modes"]
    }
    columns = ", ".join(f"{f:.0%}" for f in config["fractions"])
    example_figures = {  # one row per method, the channel mean of each modified image
        f"{mode.upper()} examples": plot_map_grid(
            figures / f"examples-{mode}.png", image.expand(len(config["fractions"]), *image.shape[1:]),
            {method: modified.mean(dim=1) for method, modified in examples[mode].items()},
            title=f"{mode.upper()} at {columns}")
        for mode in config["modes"]
    }
    setup = (f"{config['model']} retrained from scratch on {training_images} {config['dataset']} images per setting, "
             f"{config['seeds']} seed(s), accuracy on {test_images} modified test images. Pixels ranked by "
             f"{config['reduction']} of the attributions ({config['output']} of the {config['target']} class), "
             f"replaced by the {config['replacement']} of the training data; fraction 0 is the unmodified data.")
    sections = [
        Section("Accuracy after retraining", [setup],
                tables={"Mean accuracy": accuracy_table(summary, config["modes"])}, figures=curve_figures),
        Section("Spread over seeds", [("std (ddof=1), min and max of the test accuracy over the seeds of each "
                                       "setting; ci95: half-width of the 95% Student-t confidence interval of the "
                                       "mean (none with one seed).")],
                tables={"Summary": summary.drop(columns=["metric", "model"])}),
        Section("Modified images", [("The first test image as the retrained models see it, at each fraction "
                                    "(each picture min-max scaled).")], figures=example_figures),
    ]
    answer = headline(summary, config)
    write_summary(run.path / "summary.json", answer, summary=summary, versus_random=versus_random(summary, config))
    return write_report(run.path / "report.html", "ROAR and KAR", findings(summary, config), sections,
                        tomli_w.dumps(config), headline=answer)
