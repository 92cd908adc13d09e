"""Otsu binarisation of maps, batched.

Otsu (1979) picks the threshold that maximises the between-class variance ``w1 w2 (m1 - m2)^2`` of a grey-level
histogram. ``otsu_threshold`` reproduces ``skimage.filters.threshold_otsu(image, nbins=256)`` for every map of a
batch at once: a ``nbins``-bin histogram over ``[min, max]`` of each map (NumPy's binning rule: the maximum falls in
the last bin), the threshold at the centre of the best bin, the first best bin on ties, and a constant map's own
value as its threshold. Foreground is ``map > threshold``, as in scikit-image.
"""

from __future__ import annotations

import torch


def otsu_threshold(maps: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Otsu threshold of each map ``(N, H, W)`` -> ``(N,)``, equal to scikit-image's ``threshold_otsu``.

    Computed in the maps' own float dtype, as scikit-image does, so that near-ties resolve the same way.
    """
    flat = maps.reshape(len(maps), -1)
    flat = flat if flat.dtype in (torch.float32, torch.float64) else flat.double()
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    span = high - low
    constant = span[:, 0] == 0
    steps = torch.arange(nbins + 1, dtype=flat.dtype, device=maps.device)
    edges = steps * (span / nbins) + low
    edges[:, -1] = high[:, 0]
    bins = ((flat - low) / torch.where(span > 0, span, 1) * nbins).long().clamp_(0, nbins - 1)
    bins -= (flat < edges.gather(1, bins)).long()
    bins += ((flat >= edges.gather(1, bins + 1)) & (bins != nbins - 1)).long()
    counts = torch.zeros(len(flat), nbins, dtype=flat.dtype, device=maps.device).scatter_add_(1, bins, torch.ones_like(flat))
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    weight_low = counts.cumsum(dim=1)
    weight_high = counts.flip(1).cumsum(dim=1).flip(1)
    mass = counts * centres
    mean_low = mass.cumsum(dim=1) / weight_low
    mean_high = mass.flip(1).cumsum(dim=1).flip(1) / weight_high
    between = weight_low[:, :-1] * weight_high[:, 1:] * (mean_low[:, :-1] - mean_high[:, 1:]) ** 2
    best = between.argmax(dim=1, keepdim=True)
    return torch.where(constant, low[:, 0], centres.gather(1, best)[:, 0])


def otsu_masks(maps: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Boolean foreground ``(N, H, W)`` of each map: pixels above its Otsu threshold (none for a constant map)."""
    return maps > otsu_threshold(maps, nbins).reshape(-1, 1, 1)
