"""Synthetic shapes with ground truth: one class-defining object per image, its pixels marked in ``masks``.

Every image holds one object whose *shape* is its class (circle, square, triangle, cross, ring, diamond), at a random
position and size, fully inside the image. The background is a smooth random texture (uniform values on a 4x4 grid,
bilinearly upsampled, in [0.05, 0.45]). Distractors, small dots and thin line segments drawn with the same colour
distribution as the objects and in numbers independent of the class, are kept at least two pixels away from the
object, so they carry no class information and never touch the mask. Gaussian pixel noise (std ``noise``) is added
last and the result clipped to [0, 1].

Object and distractor intensities lie in [0.5, 1] (greyscale), or each RGB channel does (``channels=3``: the colour
is drawn independently of the class, so only the shape tells the class). Masks are drawn on coordinate grids, a batch
of samples at a time. The train and test splits come from different random streams derived from ``seed``, and the
labels are balanced (``n`` samples split as evenly as possible over the classes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from .dataset import ImageDataset

CLASSES = ["circle", "square", "triangle", "cross", "ring", "diamond"]
SPLIT_STREAMS = {"train": 0, "test": 1}
CHUNK = 1024  # samples rendered at once, bounding memory for large n
MAX_DOTS = 3
MAX_LINES = 2
OBJECT_RADIUS = (0.18, 0.3)  # object half-extent as a fraction of the image size
DOT_RADIUS = (0.04, 0.07)
LINE_LENGTH = (0.3, 0.6)
LINE_HALF_WIDTH = 0.7  # pixels
CLEARANCE = 2  # pixels kept free of distractors around the object
BACKGROUND = (0.05, 0.45)
FOREGROUND = (0.5, 1.0)


def _shape_mask(label: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels of shape ``label`` in coordinates ``(u, v)`` normalised by the object's centre and half-extent."""
    name = CLASSES[label]
    if name == "circle":
        return u**2 + v**2 <= 1.0
    if name == "square":
        return np.maximum(abs(u), abs(v)) <= 0.8
    if name == "triangle":  # apex up at v = -1, base of half-width 1 at v = 0.8
        return (v <= 0.8) & (abs(u) <= (v + 1.0) / 1.8)
    if name == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 1.0)) | ((abs(v) <= 0.3) & (abs(u) <= 1.0))
    if name == "ring":
        return (u**2 + v**2 <= 1.0) & (u**2 + v**2 >= 0.55**2)
    return abs(u) + abs(v) <= 1.0  # diamond


def _segment_distance(px, py, x0, y0, x1, y1):
    """Distance from pixel centres ``(px, py)`` to the segments from ``(x0, y0)`` to ``(x1, y1)`` (broadcast)."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / (dx**2 + dy**2), 0.0, 1.0)
    return np.hypot(px - x0 - t * dx, py - y0 - t * dy)


def _draw_parameters(rng: np.random.Generator, n: int, size: int, channels: int) -> dict:
    """Every random choice of ``n`` images except the pixel noise: labels, objects, distractors, texture."""
    labels = rng.permutation(np.arange(n) % len(CLASSES))
    radius = rng.uniform(*OBJECT_RADIUS, n) * size
    low, high = radius + 1.0, size - 2.0 - radius
    return {
        "labels": labels,
        "radius": radius,
        "cx": rng.uniform(low, high),
        "cy": rng.uniform(low, high),
        "colour": rng.uniform(*FOREGROUND, (n, channels)),
        "texture": rng.uniform(*BACKGROUND, (n, channels, 4, 4)),
        "dot_xy": rng.uniform(0, size, (n, MAX_DOTS, 2)),
        "dot_radius": rng.uniform(*DOT_RADIUS, (n, MAX_DOTS)) * size,
        "dot_on": np.arange(MAX_DOTS) < rng.integers(0, MAX_DOTS + 1, (n, 1)),
        "dot_colour": rng.uniform(*FOREGROUND, (n, MAX_DOTS, channels)),
        "line_start": rng.uniform(0, size, (n, MAX_LINES, 2)),
        "line_angle": rng.uniform(0, 2 * np.pi, (n, MAX_LINES)),
        "line_length": rng.uniform(*LINE_LENGTH, (n, MAX_LINES)) * size,
        "line_on": np.arange(MAX_LINES) < rng.integers(0, MAX_LINES + 1, (n, 1)),
        "line_colour": rng.uniform(*FOREGROUND, (n, MAX_LINES, channels)),
    }


def _render(p: dict, size: int, noise: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Images ``(n, C, H, W)`` and object masks ``(n, H, W)`` from drawn parameters ``p``."""
    n, channels = p["colour"].shape
    grid = np.arange(size) + 0.5
    px, py = grid[None, None, :], grid[None, :, None]
    u = (px - p["cx"][:, None, None]) / p["radius"][:, None, None]
    v = (py - p["cy"][:, None, None]) / p["radius"][:, None, None]
    masks = np.zeros((n, size, size), dtype=bool)
    for label in range(len(CLASSES)):
        rows = p["labels"] == label
        masks[rows] = _shape_mask(label, u[rows], v[rows])
    texture = torch.from_numpy(p["texture"])
    images = F.interpolate(texture, size=(size, size), mode="bilinear", align_corners=False).numpy()
    near_object = F.max_pool2d(torch.from_numpy(masks).float()[:, None], 2 * CLEARANCE + 1, 1, CLEARANCE)
    free = ~near_object[:, 0].bool().numpy()
    px4, py4 = px[..., None, :, :], py[..., None, :, :]
    dots = np.hypot(px4 - p["dot_xy"][..., 0, None, None], py4 - p["dot_xy"][..., 1, None, None])
    dots = (dots <= p["dot_radius"][..., None, None]) & p["dot_on"][..., None, None]
    x0, y0 = p["line_start"][..., 0], p["line_start"][..., 1]
    x1, y1 = x0 + p["line_length"] * np.cos(p["line_angle"]), y0 + p["line_length"] * np.sin(p["line_angle"])
    lines = _segment_distance(px4, py4, *(c[..., None, None] for c in (x0, y0, x1, y1))) <= LINE_HALF_WIDTH
    lines &= p["line_on"][..., None, None]
    distractors = [(dots[:, k], p["dot_colour"][:, k]) for k in range(MAX_DOTS)]
    distractors += [(lines[:, k], p["line_colour"][:, k]) for k in range(MAX_LINES)]
    for layer, colour in [*((layer & free, colour) for layer, colour in distractors), (masks, p["colour"])]:
        images = np.where(layer[:, None], colour[:, :, None, None], images)
    if noise > 0:
        images = images + rng.normal(0.0, noise, images.shape)
    return np.clip(images, 0.0, 1.0).astype(np.float32), masks


def make_shapes(
    n: int = 1200, size: int = 32, channels: int = 1, noise: float = 0.05, seed: int = 0, split: str = "train"
) -> ImageDataset:
    """``n`` synthetic shape images ``(n, channels, size, size)`` with object masks; see the module docstring.

    The random stream is ``numpy.random.default_rng([seed, 0 or 1])`` for the train or test split, so the same
    arguments always give the same images and the two splits never share them.
    """
    if not isinstance(n, int) or n < 1:
        raise XaitrustError(f"shapes: n (samples per split) must be a positive integer; got {n!r}")
    if not isinstance(size, int) or size < 16:
        raise XaitrustError(f"shapes: size must be an integer of at least 16 pixels; got {size!r}")
    if channels not in (1, 3):
        raise XaitrustError(f"shapes: channels must be 1 (greyscale) or 3 (RGB); got {channels!r}")
    if not 0 <= noise <= 0.5:
        raise XaitrustError(f"shapes: noise (std of the pixel noise) must lie in [0, 0.5]; got {noise!r}")
    rng = np.random.default_rng([int(seed), SPLIT_STREAMS[split]])
    parameters = _draw_parameters(rng, n, size, channels)
    chunks = [
        _render({key: value[start : start + CHUNK] for key, value in parameters.items()}, size, noise, rng)
        for start in range(0, n, CHUNK)
    ]
    return ImageDataset(
        x=torch.from_numpy(np.concatenate([images for images, _ in chunks])),
        y=torch.from_numpy(parameters["labels"]).long(),
        classes=list(CLASSES),
        masks=torch.from_numpy(np.concatenate([masks for _, masks in chunks])),
        name="shapes",
        split=split,
        source=f"generated: shapes(n={n}, size={size}, channels={channels}, noise={noise}, seed={seed})",
    )
