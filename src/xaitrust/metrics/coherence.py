"""Visual coherence of saliency maps: total variation of the Otsu-binarised map (Calibrate-to-Interpret, sec. 4.5).

Scafarto, Posocco & Bonnefoy min-max normalise each map, split activated from non-activated pixels with Otsu's
threshold, and report the total variation of the binary image; a higher value means a noisier, more fragmented map.
The paper does not spell out the total variation, so xaitrust uses the anisotropic one on the 4-neighbour grid:

    ``TV(b) = sum_{i,j} |b[i+1, j] - b[i, j]| + |b[i, j+1] - b[i, j]|``

i.e. the number of horizontally or vertically adjacent pixel pairs whose labels differ (the length of the
foreground's boundary inside the image), not divided by the image size.
"""

from __future__ import annotations

import torch

from ..explainers.reduce import normalize_maps
from ..validation import check_maps
from ._validation import warn_constant_maps
from .binarize import otsu_masks


def binary_total_variation(masks: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation of boolean images ``(N, H, W)`` -> ``(N,)`` float: label changes between neighbours."""
    masks = masks.to(torch.int8)
    vertical = (masks[:, 1:, :] != masks[:, :-1, :]).sum(dim=(1, 2))
    horizontal = (masks[:, :, 1:] != masks[:, :, :-1]).sum(dim=(1, 2))
    return (vertical + horizontal).float()


def otsu_tv(maps: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Otsu-TV of each map ``(N, H, W)`` (or ``(N, 1, H, W)``) -> ``(N,)``.

    A constant map has no foreground to separate: its score is NaN, with a ``ConstantMapWarning``.
    """
    maps = check_maps(maps)
    constant = warn_constant_maps(maps, "their Otsu-TV is NaN")
    scores = binary_total_variation(otsu_masks(normalize_maps(maps), nbins))
    return scores.masked_fill(constant, torch.nan)
