"""Completeness and soundness of a saliency method through the insertion game (Loreth's thesis, section 4.2, after
Gupta & Arora, 2019).

Insertion game: for s = 1 .. dim(x), keep the top s pixels of x as ranked by the map m, give every other pixel a
default value (``replacement``, zero by default) and record the model's probability of label a, f(x_s, a). Its area
is the mean of the curve over the s values, ``g_AUC(x, a, m) = (1/S) sum_s f(x_s, a)`` (right Riemann sum over
x = s / dim(x) in (0, 1]; with ``steps`` given, s runs over ``round(k * dim(x) / steps)``, k = 1 .. steps). Then, with
f(x, a) the clean image's probability,

    alpha(x, a) = min(max(g_AUC(x, a, m), eps1) / f(x, a), 1)     (completeness: the kept pixels still predict a)
    beta(x, a)  = min(max(f(x, a), eps2) / g_AUC(x, a, m), 1)     (soundness: they are not over-confident)
    alpha(m) = E_x[min_a alpha(x, a)],   beta(m) = E_x[min_a beta(x, a)].

The thesis prints the second definition with alpha on its left side; it is beta's. The minimum over a runs over the
labels given for each image: one map per label, ``maps (B, A, H, W)`` with ``target (B, A)``; with ``(B, H, W)`` maps
and a ``(B,)`` target (the true label, as the thesis uses) it is that label's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..perturb.orders import ranks_from_maps
from ..validation import check_images, check_maps
from ._validation import warn_constant_maps
from .curves import ranked_curves


@dataclass(frozen=True)
class CompletenessSoundness:
    """Per-sample and mean completeness (alpha) and soundness (beta).

    Attributes:
        alpha, beta: ``(B,)`` min over the labels of alpha(x, a) and beta(x, a).
        g_auc: ``(B, A)`` insertion-game areas.
        clean_probability: ``(B, A)`` f(x, a) on the clean images.
        alpha_mean, beta_mean: alpha(m) and beta(m), the means over the images.
    """

    alpha: torch.Tensor
    beta: torch.Tensor
    g_auc: torch.Tensor
    clean_probability: torch.Tensor
    alpha_mean: float
    beta_mean: float


def completeness_soundness(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    steps: int | None = None,
    replacement="zero",
    eps1: float = 1e-6,
    eps2: float = 1e-6,
    *,
    ties: str = "stable",
    seed: int = 0,
    batch_size: int | None = None,
) -> CompletenessSoundness:
    """alpha and beta of maps ``(B, H, W)`` (target ``(B,)``) or ``(B, A, H, W)`` (target ``(B, A)``) for ``x``.

    ``steps=None`` plays every s = 1 .. H*W, as the thesis writes; fewer steps approximate it.
    """
    check_images(x)
    per_label = isinstance(maps, torch.Tensor) and maps.ndim == 4 and maps.shape[1] != 1
    n_labels = maps.shape[1] if per_label else 1
    if per_label and torch.as_tensor(target).shape != (len(x), n_labels):
        raise XaitrustError(f"with maps (B, A, H, W) = {tuple(maps.shape)} the target must be (B, A); got {tuple(torch.as_tensor(target).shape)}")
    target = torch.as_tensor(target, device=x.device).reshape(-1) if per_label else target
    images = x.repeat_interleave(n_labels, dim=0)
    flat_maps = check_maps(maps.flatten(0, 1) if per_label else maps, images)
    warn_constant_maps(flat_maps, "their pixels are inserted in a random order (seeded)")
    n_pixels = flat_maps[0].numel()
    steps = n_pixels if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= n_pixels:
        raise XaitrustError(f"steps must be an integer in [1, {n_pixels}] (pixels per image) or None; got {steps!r}")
    game = ranked_curves(
        model, images,
        ranks_from_maps(flat_maps.to(x.device), "most-important-first", seed=seed, ties=ties),
        n_pixels, torch.arange(1, steps + 1, dtype=torch.float64) / steps, target,
        mode="insert", replacement=replacement, output="probability", normalize=False, batch_size=batch_size,
    )
    g_auc = game.curves.mean(dim=1).reshape(len(x), n_labels)
    clean = game.clean_score.reshape(len(x), n_labels)
    alpha = (g_auc.clamp_min(eps1) / clean).clamp_max(1.0).amin(dim=1)
    beta = (clean.clamp_min(eps2) / g_auc).clamp_max(1.0).amin(dim=1)
    return CompletenessSoundness(alpha, beta, g_auc, clean, float(alpha.mean()), float(beta.mean()))
