"""How well maps point at the ground-truth object: localisation, human/ground-truth alignment and the pointing game.

ReCalX (Decker, Tresp & Buettner, sec. 5) evaluates two proxies against annotations:

* object localisation (Kohlbrenner et al. 2020, as implemented in Quantus, Hedström et al. 2023): "the proportion of
  positive importance scores that fall within the ground truth bounding box",
  ``sum_{p in M} max(m_p, 0) / sum_p max(m_p, 0)``;
* human alignment (Fel et al. 2022): the Spearman rank correlation between the importance scores and a human
  attention map; with a boolean mask as the annotation, the rank correlation between the map and the mask
  (average ranks for the mask's ties).

The pointing game (Zhang et al. 2018) counts a hit when the map's maximum lies in the mask, optionally dilated by
``tolerance`` pixels (a square, i.e. Chebyshev, neighbourhood); ties for the maximum are broken by taking the first
maximal pixel in row-major order, as ``argmax`` does.

Maps are used as given (signed or not: reduce them first). Undefined cases are NaN with a warning: an empty mask (all
three: there is no object to point at), no positive attribution (localisation), a constant map or mask (alignment),
a constant map (pointing game).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from ..validation import check_maps, check_masks
from ._validation import warn_constant_maps
from .correlation import spearman


def _check_masks(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = check_maps(maps)
    return maps, check_masks(masks, maps.shape).to(maps.device)


def _undefined_for_empty_masks(scores: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``scores`` with NaN (and a warning) where the mask holds no pixel: no object, nothing to localise."""
    empty = ~masks.bool().flatten(1).any(dim=1)
    if empty.any():
        warnings.warn(f"{int(empty.sum())} mask(s) are empty: their score is NaN", UserWarning, stacklevel=3)
    return scores.masked_fill(empty, torch.nan)


def localization(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share ``(N,)`` of each map's positive attribution that lies inside its boolean mask ``(N, H, W)``."""
    maps, masks = _check_masks(maps, masks)
    positive = maps.clamp(min=0)
    total = positive.sum(dim=(1, 2))
    if (total == 0).any():
        message = f"{int((total == 0).sum())} map(s) have no positive attribution: their localisation is NaN"
        warnings.warn(message, UserWarning, stacklevel=2)
    inside = (positive * masks.bool()).sum(dim=(1, 2))
    return _undefined_for_empty_masks(inside / torch.where(total > 0, total, torch.nan), masks)


def gt_alignment(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation ``(N,)`` between each map and its annotation (boolean mask or attention map)."""
    maps, masks = _check_masks(maps, masks)
    masks = masks.to(maps.dtype)
    constant = warn_constant_maps(maps, "their alignment is NaN")
    constant |= warn_constant_maps(masks, "(annotations, e.g. empty masks) their alignment is NaN")
    scores = spearman(maps.flatten(1), masks.flatten(1))
    return scores.masked_fill(constant, torch.nan)


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """1.0 where the map's (first) maximum lies within ``tolerance`` pixels of the mask, else 0.0 ``(N,)``."""
    maps, masks = _check_masks(maps, masks)
    if tolerance < 0:
        raise XaitrustError(f"tolerance must be a non-negative number of pixels; got {tolerance}")
    region = masks.bool().float().unsqueeze(1)
    if tolerance:
        region = F.max_pool2d(region, kernel_size=2 * tolerance + 1, stride=1, padding=tolerance)
    peak = maps.flatten(1).argmax(dim=1, keepdim=True)
    hits = region.flatten(1).gather(1, peak)[:, 0]
    hits = hits.masked_fill(warn_constant_maps(maps, "they have no maximum: pointing game NaN"), torch.nan)
    return _undefined_for_empty_masks(hits, masks)
