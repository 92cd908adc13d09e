"""The image gallery of a report: for each of the first held-out images, its dataset index, true and predicted class
and confidence, every method's map labelled with the method's name, and the image's deletion and insertion curves
of every method, the random control dashed.

One figure per block of ``IMAGES_PER_FIGURE`` images, each image a strip: the image, its maps in at most
``MAP_COLUMNS`` columns (two rows for the benchmark's 18 methods), then one curve panel per curve kind. A map is drawn
min-max scaled to [0, 1] on ``inferno`` when it has no negative value; a map with negative values is divided by its
largest magnitude, to [-1, 1], on the diverging ``RdBu_r`` with 0 white, so that the sign stays readable
(``shown_map``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.lines import Line2D

from ..errors import XaitrustError
from ..validation import check_count, check_images, check_maps
from .figures import plt, save_figure
from .html import Section

#: Images per gallery figure, so that a figure stays readable on a 1280 px wide page.
IMAGES_PER_FIGURE = 4
#: Most maps side by side in an image's strip; more methods wrap onto further rows.
MAP_COLUMNS = 9
#: Grid columns of a curve panel (a map takes one).
CURVE_SPAN = 3
#: The random control's method name: its curves are drawn black and dashed.
CONTROL = "random"
#: What the curves hold (the deletion and insertion metrics' normalised curves).
CURVE_KINDS = {"deletion": "deletion (x: fraction removed)", "insertion": "insertion (x: fraction inserted)"}
#: The curves in words, for the section's text.
CURVE_WORDS = {
    "deletion": "deletion curve (the score of the explained class, relative to the clean image's, as the pixels a "
                "map ranks highest are removed first)",
    "insertion": "insertion curve (the same score as those pixels are put back first into the image with every "
                 "pixel removed)",
}
SAMPLE_COLUMNS = ("sample", "label", "prediction", "confidence")
FIGURE_WIDTH = 11.0  # inches: 1210 px at the 110 dpi of ``figures.save_figure``


def shown_map(values) -> tuple[np.ndarray, str, float, float]:
    """A map ``(H, W)`` as drawn: ``(image, colormap, vmin, vmax)``. Without negative values, min-max scaled
    ``(m - min) / (max - min)`` on ``inferno`` over [0, 1]; with some, ``m / max |m|`` on ``RdBu_r`` over [-1, 1], 0
    white. A constant map is drawn as zeros."""
    m = np.asarray(torch.as_tensor(values).detach().cpu().double())
    low, high = float(m.min()), float(m.max())
    if low < 0:
        return m / max(-low, high), "RdBu_r", -1.0, 1.0
    span = high - low
    return ((m - low) / span if span > 0 else np.zeros_like(m)), "inferno", 0.0, 1.0


def method_colours(methods) -> dict[str, tuple]:
    """A colour per method, in order: the dark then the light shades of ``tab20`` (distinct hues first), cycling
    beyond 20; the random control black."""
    palette = plt.get_cmap("tab20").colors
    shades = palette[0::2] + palette[1::2]
    others = [method for method in methods if method != CONTROL]
    colours = {method: shades[i % len(shades)] for i, method in enumerate(others)}
    return {method: (0.0, 0.0, 0.0) if method == CONTROL else colours[method] for method in methods}


def _wrapped(name: str) -> str:
    """A method name broken after its hyphens when long, to fit above a small map."""
    return name.replace("-", "-\n") if len(name) > 10 else name


def curve_kinds(curves: dict[str, dict]) -> list[str]:
    """The kinds of ``CURVE_KINDS`` that at least one method of ``curves`` has, in that order."""
    return [kind for kind in CURVE_KINDS if any(kind in curve for curve in curves.values())]


def _as_array(values) -> np.ndarray:
    return np.asarray(torch.as_tensor(values).detach().cpu().double())


def plot_gallery(path, images: torch.Tensor, titles: list[str], maps: dict[str, torch.Tensor],
                 curves: dict[str, dict], ylabel: str = "score / clean score") -> Path:
    """One strip per image of ``images`` ``(n, C, H, W)`` (titled by ``titles``): the image, each method's map
    ``maps[method]`` ``(n, H, W)`` under the method's name (``shown_map``), then one panel per curve kind of
    ``CURVE_KINDS`` that some method has (``curves[method] = {"fractions": (S,), "deletion": (n, S), "insertion":
    (n, S)}``, kinds optional), one line per method (``method_colours``; the random control dashed), the y axis
    shared and labelled on the right. A legend of the methods closes the figure."""
    n, methods = len(images), list(maps)
    kinds = curve_kinds(curves)
    rows = math.ceil(len(methods) / MAP_COLUMNS)  # map rows per image
    columns = math.ceil(len(methods) / rows)
    grid_columns = rows + columns + CURVE_SPAN * len(kinds)  # the image is a square of rows x rows cells
    unit = FIGURE_WIDTH / (grid_columns + 1)
    fig = plt.figure(figsize=(FIGURE_WIDTH, unit * 1.45 * n * rows + 0.5 + 0.18 * math.ceil(len(curves) / 9)))
    grid = fig.add_gridspec(n * rows + 1, grid_columns, height_ratios=[1.0] * (n * rows) + [0.35])
    colours = method_colours(list(dict.fromkeys([*maps, *curves])))
    shared = None
    for i in range(n):
        top = i * rows
        image = images[i].detach().cpu().float().permute(1, 2, 0).numpy()
        ax = fig.add_subplot(grid[top:top + rows, :rows])
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(titles[i], fontsize=7)
        ax.set_axis_off()
        for k, method in enumerate(methods):
            ax = fig.add_subplot(grid[top + k // columns, rows + k % columns])
            shown, cmap, vmin, vmax = shown_map(maps[method][i])
            ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
            # Out of the layout: the names may overhang their maps a little, instead of spacing all maps apart.
            ax.set_title(_wrapped(method), fontsize=6.5, pad=2).set_in_layout(False)
            ax.set_axis_off()
        for p, kind in enumerate(kinds):
            start = rows + columns + CURVE_SPAN * p
            ax = fig.add_subplot(grid[top:top + rows, start:start + CURVE_SPAN], sharey=shared)
            shared = shared or ax
            for method, curve in curves.items():
                if kind in curve:
                    ax.plot(_as_array(curve["fractions"]), _as_array(curve[kind][i]), color=colours[method],
                            linestyle="--" if method == CONTROL else "-", linewidth=1.4 if method == CONTROL else 1)
            ax.set_title(CURVE_KINDS[kind], fontsize=7, pad=2)
            ax.tick_params(labelsize=6, length=2, pad=1)
            ax.set_xlim(0, 1)
            ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
            ax.grid(alpha=0.3)
            if p == len(kinds) - 1:
                ax.yaxis.tick_right()
                ax.yaxis.set_label_position("right")
                ax.set_ylabel(ylabel, fontsize=6)
            else:
                ax.tick_params(labelleft=False)
    legend = fig.add_subplot(grid[-1, :])
    legend.set_axis_off()
    if curves:
        handles = [Line2D([], [], color=colours[m], linestyle="--" if m == CONTROL else "-") for m in curves]
        legend.legend(handles, list(curves), loc="center", ncol=min(len(curves), 9), fontsize=7, frameon=False,
                      handlelength=1.6, columnspacing=1.0)
    return save_figure(fig, path)


def image_titles(samples: pd.DataFrame, class_names: list[str]) -> list[str]:
    """The title of each image: its dataset index, then true class, predicted class and the confidence (softmax
    probability of the predicted class)."""
    titles = []
    for row in samples.itertuples(index=False):
        label, prediction = int(row.label), int(row.prediction)
        titles.append(f"#{int(row.sample)} true {class_names[label]}\n"
                      f"pred {class_names[prediction]} ({float(row.confidence):.2f})")
    return titles


def _check_inputs(x, samples, class_names, maps, curves) -> None:
    check_images(x)
    if not isinstance(samples, pd.DataFrame) or not set(SAMPLE_COLUMNS) <= set(samples.columns):
        raise XaitrustError(f"samples must be a table with the columns {', '.join(SAMPLE_COLUMNS)} (one row per image)")
    if len(samples) != len(x):
        raise XaitrustError(f"samples must have one row per image, in order; got {len(samples)} rows for {len(x)} "
                            "images")
    classes = pd.concat([samples["label"], samples["prediction"]])
    if classes.isna().any() or not classes.between(0, len(class_names) - 1).all():
        raise XaitrustError(f"the labels and predictions of samples must be class indices below the "
                            f"{len(class_names)} class names; give every class's name")
    if not maps:
        raise XaitrustError("give the maps of at least one method (method -> (N, H, W))")
    for method, values in maps.items():
        check_maps(values, x, name=f"maps[{method!r}]")
    for method, curve in curves.items():
        if "fractions" not in curve or not {"deletion", "insertion"} & set(curve):
            raise XaitrustError(f"curves[{method!r}] must hold 'fractions' (S,) and 'deletion' and/or 'insertion' "
                                f"(N, S); got the keys {sorted(curve)}")
        steps = len(_as_array(curve["fractions"]).reshape(-1))
        for kind in CURVE_KINDS:
            if kind in curve and _as_array(curve[kind]).shape != (len(x), steps):
                raise XaitrustError(f"curves[{method!r}][{kind!r}] must have shape (N, S) = {(len(x), steps)}, one "
                                    f"curve per image over the fractions; got {_as_array(curve[kind]).shape}")


def gallery_section(figures_dir: Path, x: torch.Tensor, samples: pd.DataFrame, class_names: list[str],
                    maps: dict[str, torch.Tensor], curves: dict[str, dict], n_images: int = 8, *,
                    model: str | None = None) -> Section:
    """The "Image gallery" section: the first ``n_images`` images of ``x`` ``(N, C, H, W)`` (``samples``: one row per
    image, in order, with ``SAMPLE_COLUMNS``; ``class_names`` name the label and prediction indices), each method's
    map ``maps[method]`` ``(N, H, W)`` and the deletion and insertion curves ``curves[method]`` (``plot_gallery``),
    in figures ``gallery-<first>-<last>.png`` of ``IMAGES_PER_FIGURE`` images in ``figures_dir``. Given a ``model``
    name (letters, digits, ``_``, ``-``, ``.``), the title names it and the figures are ``gallery-<model>-...``, so
    that the galleries of several models share a folder."""
    _check_inputs(x, samples, class_names, maps, curves)
    if model is not None and not re.fullmatch(r"[\w.-]+", model):
        raise XaitrustError(f"model must be a name of letters, digits, '_', '-' and '.' (it names the figure files); "
                            f"got {model!r}")
    stem = "gallery" if model is None else f"gallery-{model}"
    n = min(check_count(n_images, "n_images"), len(x))
    titles = image_titles(samples.iloc[:n], class_names)
    figures = {}
    for start in range(0, n, IMAGES_PER_FIGURE):
        stop = min(start + IMAGES_PER_FIGURE, n)
        part = slice(start, stop)
        chosen = {method: {key: (values if key == "fractions" else values[part]) for key, values in curve.items()}
                  for method, curve in curves.items()}
        path = plot_gallery(Path(figures_dir) / f"{stem}-{start + 1}-{stop}.png", x[part], titles[part],
                            {method: values[part] for method, values in maps.items()}, chosen)
        shown = f"Image {stop}" if stop == start + 1 else f"Images {start + 1}-{stop}"
        figures[f"{shown} of {n}: the maps of every method and the image's curves"] = path
    kinds = curve_kinds(curves)
    paragraphs = [(
        f"The first {n} explained images, each titled with its dataset index, true class, predicted class and the "
        "model's confidence in it. Next to each image, every method's map: bright (inferno) marks the pixels a "
        "method ranks most important, each map scaled to its own range; a map with negative values is drawn blue "
        "(negative) to red (positive) with white at zero. Maps are compared by where they put their weight, not "
        "by their brightness.")]
    if kinds:
        paragraphs.append(
            f"On the right, the image's {' and '.join(CURVE_WORDS[kind] for kind in kinds)}, one line per method, "
            "the random maps dashed black. A faithful map's deletion curve falls faster and its insertion curve "
            "rises faster than the random maps' curve; a curve that follows the random one ranks pixels no better "
            "than chance on this image.")
    return Section("Image gallery" if model is None else f"Image gallery ({model} model)", paragraphs,
                   figures=figures)
