"""Calibration figures as PNG files (matplotlib, drawn off-screen with the Agg canvas).

- ``reliability_diagram``: per-bin accuracy against mean confidence (top-label, equal-width bins), the diagonal of
  perfect calibration, the gap coloured by its direction, and a histogram of confidences; the binned ECE in the
  title. ``draw_reliability`` draws it on given axes, so that several diagrams can share one figure.
- ``plot_error_by_level``: a calibration measure against perturbation level for several models (e.g. before and
  after ReCalX), from the rows of ``calibration_error_by_level``.
- ``plot_error_by_level_panels``: the same, one panel per perturbation family (e.g. superpixels and pixels) side by
  side on a shared y axis.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import XaitrustError
from .binned import ece, reliability_bins

#: The colours of the reliability diagram and what each shows: the accuracy (blue), and the gap between a bin's
#: accuracy and its mean confidence in each direction (light red: over-confident; yellow: under-confident).
RELIABILITY_COLOURS = {
    "accuracy": "tab:blue",
    "gap: confidence above accuracy": "#f3bebe",
    "gap: accuracy above confidence": "#fde28a",
}


def draw_reliability(top: Axes, bottom: Axes, probs, labels, n_bins: int = 15, title: str = "") -> None:
    """Draw the reliability diagram of ``probs`` ``(N, K)`` against ``labels`` on two axes. On ``top``, per bin of
    top-label confidence (``n_bins`` equal-width bins), a bar up to the bin's accuracy, blue up to its mean confidence
    and yellow above it, and a light red bar on top of it up to the mean confidence where that is higher
    (``RELIABILITY_COLOURS``); the diagonal of perfect calibration, a legend of every colour and the binned ECE
    (``xaitrust.calibration.binned.ece``) in the title. On ``bottom``, the share of images per bin. The patches are
    opaque and do not overlap, so every colour drawn is one of the legend's."""
    bins = reliability_bins(probs, labels, n_bins=n_bins)
    filled = bins.count[:, 0] > 0
    count, confidence, accuracy = bins.count[filled, 0], bins.confidence[filled, 0], bins.accuracy[filled, 0]
    edges = torch.linspace(0, 1, n_bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2)[filled]
    lower = torch.minimum(confidence, accuracy)
    (accuracy_colour, over_colour, under_colour) = RELIABILITY_COLOURS.values()
    top.bar(centres.tolist(), lower.tolist(), width=1 / n_bins, color=accuracy_colour, edgecolor="black")
    for gap, colour in ((confidence - accuracy, over_colour), (accuracy - confidence, under_colour)):
        shown = gap > 0
        top.bar(centres[shown].tolist(), gap[shown].tolist(), bottom=lower[shown].tolist(), width=1 / n_bins,
                color=colour, edgecolor="black")
    top.plot([0, 1], [0, 1], "k--", linewidth=1)
    handles = [Patch(facecolor=colour, edgecolor="black", label=label) for label, colour in RELIABILITY_COLOURS.items()]
    top.legend(handles=[*handles, Line2D([], [], color="black", linestyle="--", linewidth=1,
                                         label="perfect calibration")], loc="upper left", fontsize=7)
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.set_title(f"{title + ': ' if title else ''}ECE = {ece(probs, labels, n_bins=n_bins):.4f}")
    bottom.bar(centres.tolist(), (count / count.sum()).tolist(), width=1 / n_bins, color="gray", edgecolor="black")
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_ylabel("share")
    bottom.set_xlim(0, 1)


def reliability_diagram(probs, labels, path, n_bins: int = 15, title: str = "") -> Path:
    """Write the reliability diagram (``draw_reliability``) of ``probs`` ``(N, K)`` against ``labels`` to ``path``
    (PNG); return the path."""
    figure = Figure(figsize=(4.5, 5.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    draw_reliability(top, bottom, probs, labels, n_bins, title)
    return _save(figure, path)


def plot_error_by_level(curves: dict[str, list[dict]], path, measure: str = "kl_calibration_error",
                        title: str = "") -> Path:
    """Write ``measure`` against perturbation level, one line per entry of ``curves`` (label -> rows), to ``path``."""
    if not curves:
        raise XaitrustError("give at least one curve (label -> rows of calibration_error_by_level)")
    figure = Figure(figsize=(5.5, 4))
    axes = figure.subplots()
    for label, rows in curves.items():
        if not rows or measure not in rows[0]:
            raise XaitrustError(f"curve {label!r} has no {measure!r} values")
        axes.plot([r["perturbation_level"] for r in rows], [r[measure] for r in rows], marker="o", label=label)
    axes.set_xlabel("perturbation level (fraction of pixels replaced)")
    axes.set_ylabel(measure.replace("_", " "))
    axes.set_xlim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend()
    if title:
        axes.set_title(title)
    return _save(figure, path)


def plot_error_by_level_panels(
    panels: dict[str, dict[str, list[dict]]], path, measure: str = "kl_calibration_error"
) -> Path:
    """Write ``measure`` against perturbation level to ``path``: one panel per entry of ``panels`` (panel title ->
    label -> rows of ``calibration_error_by_level``), one line per label, the y axis shared."""
    if not panels or not all(panels.values()):
        raise XaitrustError("give at least one panel, each with at least one curve (label -> rows of "
                            "calibration_error_by_level)")
    figure = Figure(figsize=(4.5 * len(panels), 4))
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for panel, (title, curves) in zip(axes, panels.items()):
        for label, rows in curves.items():
            if not rows or measure not in rows[0]:
                raise XaitrustError(f"curve {label!r} of panel {title!r} has no {measure!r} values")
            panel.plot([r["perturbation_level"] for r in rows], [r[measure] for r in rows], marker="o", label=label)
        panel.set_title(title)
        panel.set_xlabel("perturbation level (fraction of features replaced)")
        panel.set_xlim(0, 1)
        panel.grid(alpha=0.3)
        panel.legend()
    axes[0].set_ylabel(measure.replace("_", " "))
    return _save(figure, path)


def _save(figure: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(str(path))
    return path
