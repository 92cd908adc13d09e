"""Calibration figures as PNG files (matplotlib, drawn off-screen with the Agg canvas).

- ``reliability_diagram``: per-bin accuracy against mean confidence (top-label, equal-width bins), the diagonal of
  perfect calibration, the gap shaded, and a histogram of confidences; the binned ECE in the title.
- ``plot_error_by_level``: a calibration measure against perturbation level for several models (e.g. before and
  after ReCalX), from the rows of ``calibration_error_by_level``.
- ``plot_error_by_level_panels``: the same, one panel per perturbation family (e.g. superpixels and pixels) side by
  side on a shared y axis.
"""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import XaitrustError
from .binned import ece, reliability_bins


def reliability_diagram(probs, labels, path, n_bins: int = 15, title: str = "") -> Path:
    """Write the reliability diagram of ``probs`` ``(N, K)`` against ``labels`` to ``path`` (PNG); return the path."""
    bins = reliability_bins(probs, labels, n_bins=n_bins)
    count, confidence, accuracy = bins.count[:, 0], bins.confidence[:, 0], bins.accuracy[:, 0]
    filled = count > 0
    edges = torch.linspace(0, 1, n_bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2)[filled].tolist()
    figure = Figure(figsize=(4.5, 5.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(centres, accuracy[filled].tolist(), width=1 / n_bins, edgecolor="black", label="accuracy")
    top.bar(
        centres, (confidence - accuracy)[filled].tolist(), bottom=accuracy[filled].tolist(), width=1 / n_bins,
        color="tab:red", alpha=0.3, edgecolor="tab:red", label="gap to confidence",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set_ylabel("accuracy")
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(f"{title + ': ' if title else ''}ECE = {ece(probs, labels, n_bins=n_bins):.4f}")
    bottom.bar(centres, (count[filled] / count.sum()).tolist(), width=1 / n_bins, color="gray", edgecolor="black")
    bottom.set_xlabel("confidence (top-label probability)")
    bottom.set_ylabel("share")
    bottom.set_xlim(0, 1)
    return _save(figure, path)


def plot_error_by_level(curves: dict[str, list[dict]], path, measure: str = "kl_calibration_error", title: str = "") -> Path:
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
