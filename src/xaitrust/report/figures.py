"""Figures of the report (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from ..io import atomic_write  # noqa: E402
from ..statistics import ci95_half_width  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig`` (``tight_layout``, below its title if it has one), write it to ``path`` as a PNG at 110 dpi
    with an atomic write (``xaitrust.io.atomic_write``), close it and return the path."""
    path = Path(path)
    # A figure title gets a band of its own (about 0.4 inch): tight_layout would otherwise let the top row cover it.
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()) if fig._suptitle is not None else None)
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)
    return path


def curve_band(values) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(S,)`` of curves ``values (N, S)`` and the half-width ``(S,)`` of its 95% Student-t confidence interval
    (sample std with ``ddof=1``, ``N`` counting each point's non-NaN values; NaN where fewer than two)."""
    values = np.asarray(values, dtype=float)
    with warnings.catch_warnings():  # all-NaN points and single values give NaN, as intended
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0, ddof=1)
    return mean, ci95_half_width(std, np.isfinite(values).sum(axis=0))


def plot_curves(path, curves: dict[str, tuple], xlabel: str, ylabel: str, title: str = "") -> Path:
    """Mean curves with a shaded band: ``curves[label] = (x (S,), values (N, S))`` (band = 95% Student-t confidence
    interval of the mean, see ``curve_band``; no band where fewer than two curves have a value)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    banded = False
    for label, (x, values) in curves.items():
        mean, half = curve_band(np.asarray(torch.as_tensor(values).double().cpu()))
        x = np.asarray(torch.as_tensor(x).double().cpu())
        ax.plot(x, mean, label=label)
        if np.isfinite(half).any():
            ax.fill_between(x, mean - half, mean + half, alpha=0.2)
            banded = True
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="shaded: 95% CI of the mean" if banded else None, title_fontsize=7)
    return save_figure(fig, path)


def plot_histograms(path, samples: dict[str, np.ndarray], xlabel: str, title: str = "", bins: int = 30) -> Path:
    """Overlaid normalised histograms of several sets of values."""
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [np.asarray(v, dtype=float)[np.isfinite(v)] for v in samples.values()]
    values = np.concatenate([v for v in finite if len(v)] or [np.zeros(1)])
    edges = np.histogram_bin_edges(values, bins=bins)
    for (label, _), v in zip(samples.items(), finite):
        if len(v):
            ax.hist(v, bins=edges, alpha=0.5, density=True, label=f"{label} (n={len(v)})")
    ax.set(xlabel=xlabel, ylabel="density", title=title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_bars(path, values: dict[str, float], errors: dict[str, float] | None, ylabel: str, title: str = "") -> Path:
    """One bar per label, with optional error bars."""
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(values) + 2), 4))
    labels = list(values)
    ax.bar(labels, [values[k] for k in labels], yerr=None if errors is None else [errors.get(k, 0) for k in labels])
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=45)
    return save_figure(fig, path)


def plot_map_grid(
    path, images: torch.Tensor, maps: dict[str, torch.Tensor], title: str = "", image_titles: list[str] | None = None
) -> Path:
    """Rows: images ``(N, C, H, W)`` then one row per method of maps ``(N, H, W)`` (each map min-max scaled on its
    own); ``image_titles`` label the columns."""
    images = images.detach().cpu().float()
    n = len(images)
    rows = 1 + len(maps)
    fig, axes = plt.subplots(rows, n, figsize=(1.4 * n + 1.2, 1.4 * rows), squeeze=False)
    for col in range(n):
        image = images[col].permute(1, 2, 0).numpy()
        axes[0, col].imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        if image_titles is not None:
            axes[0, col].set_title(image_titles[col], fontsize=7)
    for row, (label, method_maps) in enumerate(maps.items(), start=1):
        method_maps = method_maps.detach().cpu().float()
        for col in range(n):
            m = method_maps[col]
            span = (m.max() - m.min()).item()
            axes[row, col].imshow(((m - m.min()) / span).numpy() if span > 0 else np.zeros(m.shape), cmap="inferno")
        axes[row, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].set_ylabel("image", rotation=0, ha="right", va="center", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_box_panels(path, panels: dict[str, dict[str, np.ndarray]], ylabel: str, title: str = "",
                    per_row: int = 4) -> Path:
    """One panel per key of ``panels`` (each with its own y scale), and in it one box per group: ``panels[panel]
    [group] = values``. Boxes span the quartiles with the median as a line and the mean as a triangle, whiskers reach
    the furthest value within 1.5 interquartile ranges, values beyond are dots; NaN values are left out and each box
    is labelled with its count ``n``. A group with no finite value gets an empty slot."""
    count = max(len(panels), 1)
    columns = min(count, per_row)
    rows = -(-count // columns)
    groups = list(dict.fromkeys(group for values in panels.values() for group in values))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(rows, columns, figsize=(max(3.2, 0.9 * len(groups) + 1.2) * columns, 3.4 * rows),
                             squeeze=False)
    for ax, (panel, values) in zip(axes.ravel(), panels.items()):
        finite = {group: np.asarray(values[group], dtype=float) for group in groups if group in values}
        finite = {group: v[np.isfinite(v)] for group, v in finite.items()}
        shown = [group for group in groups if len(finite.get(group, ()))]
        boxes = ax.boxplot([finite[g] for g in shown], positions=[groups.index(g) for g in shown], widths=0.6,
                           patch_artist=True, showmeans=True, flierprops={"markersize": 3},
                           medianprops={"color": "black"},
                           meanprops={"marker": "^", "markerfacecolor": "white", "markeredgecolor": "black"})
        for box, group in zip(boxes["boxes"], shown):
            box.set(facecolor=colours[groups.index(group) % len(colours)], alpha=0.5)
        ax.set_xticks(range(len(groups)), [f"{g}\n(n={len(finite.get(g, ()))})" for g in groups], fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_title(panel, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_intervals(path, estimates: dict[str, dict[str, tuple[float, float]]], xlabel: str, title: str = "",
                   reference: float = 0.0) -> Path:
    """Estimates with their confidence intervals as dots and horizontal bars: ``estimates[series][item] = (value,
    half-width)``, one row per item (in first-seen order, top to bottom), the series side by side within a row and
    told apart by colour; a NaN half-width draws the dot alone. A dashed vertical line marks ``reference``."""
    items = list(dict.fromkeys(item for values in estimates.values() for item in values))
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(items) * max(1, len(estimates)) ** 0.5 + 1.6))
    spread = 0.6 / max(len(estimates), 1)
    for k, (series, values) in enumerate(estimates.items()):
        shown = [item for item in items if item in values]
        rows = np.array([items.index(item) for item in shown], dtype=float) + (k - (len(estimates) - 1) / 2) * spread
        value = np.array([values[item][0] for item in shown], dtype=float)
        half = np.array([values[item][1] for item in shown], dtype=float)
        ax.errorbar(value, rows, xerr=np.where(np.isfinite(half), half, 0), fmt="o", markersize=4, capsize=3,
                    label=series)
    ax.axvline(reference, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(items)), items)
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    below_label = offset_copy(ax.transAxes, fig=fig, y=-36, units="points")  # under the tick labels and x label
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below_label)
    return save_figure(fig, path)
