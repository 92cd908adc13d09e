"""Maps with no information, which every metric that ranks pixels must say about.

A metric fed a map with NaN/inf values or of the wrong size raises a clear ``XaitrustError`` (``xaitrust.validation``,
whose image and map checks are also importable from here); a map with no information (constant) would give numbers
that look fine and mean nothing: ``constant_maps`` finds them so the caller can warn (and the ranking helpers break
every tie deterministically, see ``xaitrust.perturb.orders``).
"""

from __future__ import annotations

import warnings

import torch

from ..validation import check_images, check_maps  # noqa: F401  (also importable from here)


class ConstantMapWarning(UserWarning):
    """Some maps hold a single value: any ranking of their pixels is arbitrary."""


def constant_maps(maps: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B,)``: True where a map holds one value everywhere (its pixel ranking carries no information)."""
    flat = maps.reshape(len(maps), -1)
    return flat.amax(dim=1) == flat.amin(dim=1)


def warn_constant_maps(maps: torch.Tensor, consequence: str) -> torch.Tensor:
    """Warn (``ConstantMapWarning``) when some maps are constant; return the boolean ``(B,)`` flags."""
    flags = constant_maps(maps)
    if flags.any():
        index = flags.nonzero().flatten().tolist()
        warnings.warn(
            f"{len(index)} of {len(maps)} maps are constant (first: {index[:5]}); {consequence}",
            ConstantMapWarning,
            stacklevel=3,
        )
    return flags
