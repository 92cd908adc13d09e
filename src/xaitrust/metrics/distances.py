"""Distances between two saliency maps of the same sample: the candidates of MeGe/ReCo (Fel et al. 2022, sec. 4.1).

Every distance takes paired batches ``a``, ``b`` of shape ``(N, H, W)`` and returns ``(N,)`` (0 = identical):

| name | distance | notes |
|---|---|---|
| ``spearman`` | ``1 - abs(rho_S(a, b))`` | the paper's choice; average ranks for ties; NaN when a map is constant |
| ``wasserstein`` | exact W1 between ``|a| / sum|a|`` and ``|b| / sum|b|`` over pixel positions, Manhattan ground distance | ``xaitrust.metrics.wasserstein``; slow (one LP per pair), as the paper warns |
| ``dice`` | ``1 - 2 |A & B| / (|A| + |B|)`` on the Otsu foregrounds ``A``, ``B`` | NaN when both maps are constant |
| ``ssim`` | ``1 - SSIM(a', b')`` on min-max-normalised maps, data range 1 | 7x7 uniform window (scikit-image's default) |
| ``l1`` | ``sum |a - b|`` | on the maps as given: scale-dependent |
| ``l2`` | ``sqrt(sum (a - b)^2)`` | on the maps as given: scale-dependent |

A distance is split into ``prepare`` (per map: ranks, masks, mass, ...) and ``compare`` (per pair), so that
cross-fold training, which compares each map with several others, prepares each map once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..explainers.reduce import normalize_maps
from ..validation import check_maps
from .binarize import otsu_masks
from .correlation import average_ranks, standardize_rows
from .ssim import ssim
from .wasserstein import grid_wasserstein, mass_distribution


@dataclass(frozen=True)
class MapDistance:
    """A distance between paired maps: ``distance(a, b) = compare(prepare(a), prepare(b))``."""

    name: str
    description: str
    prepare: Callable[[torch.Tensor], torch.Tensor]
    compare: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = check_map_pair(a, b)
        return self.compare(self.prepare(a), self.prepare(b))


def check_map_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("maps_a", "maps_b")):
    """Validate two paired batches of maps (finite, ``(N, H, W)`` or ``(N, 1, H, W)``, same shape); return them."""
    a, b = check_maps(a, name=names[0]), check_maps(b, name=names[1])
    if a.shape != b.shape:
        raise XaitrustError(
            f"{names[0]} and {names[1]} must have the same shape (N, H, W); got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def _spearman_features(maps: torch.Tensor) -> torch.Tensor:
    return standardize_rows(average_ranks(maps.reshape(len(maps), -1)))


def _spearman_compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Standardised ranks make rho a dot product; the clamp removes rounding below 0 for identical maps.
    return (1 - (a * b).sum(dim=1).abs()).clamp(min=0)


def _dice_compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    overlap = (a & b).sum(dim=(1, 2)).double()
    sizes = (a.sum(dim=(1, 2)) + b.sum(dim=(1, 2))).double()
    return 1 - 2 * overlap / torch.where(sizes > 0, sizes, torch.nan)


def _ssim_compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1 - ssim(a, b, data_range=1.0)


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.reshape(len(maps), -1)


DISTANCES: dict[str, MapDistance] = {
    distance.name: distance
    for distance in (
        MapDistance("spearman", "1 - |Spearman rank correlation|", _spearman_features, _spearman_compare),
        MapDistance("wasserstein", "exact 1-Wasserstein over pixel positions (Manhattan)", mass_distribution, grid_wasserstein),
        MapDistance("dice", "1 - Dice coefficient of the Otsu foregrounds", otsu_masks, _dice_compare),
        MapDistance("ssim", "1 - SSIM of min-max-normalised maps", normalize_maps, _ssim_compare),
        MapDistance("l1", "L1 norm of the difference", _flat, lambda a, b: (a - b).abs().sum(dim=1)),
        MapDistance("l2", "L2 norm of the difference", _flat, lambda a, b: (a - b).norm(dim=1)),
    )
}


def get_distance(name: str | MapDistance) -> MapDistance:
    """The distance registered as ``name`` (a ``MapDistance`` is returned as is)."""
    if isinstance(name, MapDistance):
        return name
    if name not in DISTANCES:
        raise XaitrustError(f"unknown distance {name!r}; available: {', '.join(DISTANCES)}")
    return DISTANCES[name]
