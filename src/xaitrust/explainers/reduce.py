"""Named reductions of raw attributions ``(B, C, H, W)`` to maps ``(B, H, W)``, and per-map normalisation.

Reductions (FPA, Brocki & Chung, section 3, names its two main ones "unsigned" and "signed"):

- ``"abs-sum"``: ``sum_c |a_c|``, FPA's unsigned estimators (subscript abs);
- ``"input-sum"``: ``sum_c a_c x_c``, FPA's signed "primed" estimators (e.g. VG'_sum, SG'_sum); needs ``inputs``;
- ``"sum"``: ``sum_c a_c``, the signed channel sum (Calibrate to Interpret's eq. 3 as printed);
- ``"max-abs"``: ``max_c |a_c|`` (Simonyan et al. 2014's saliency map).

Normalisations of each map on its own (``normalize_maps``):

- ``"min-max"``: ``(m - min m) / (max m - min m)`` in [0, 1];
- ``"max-abs"``: ``m / max |m|`` in [-1, 1], keeping the sign and zero.

A map with nothing to divide by (constant for "min-max", all zero for "max-abs") carries no ranking: it becomes all
zeros, never NaN.
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..validation import check_finite

REDUCTIONS = ("abs-sum", "input-sum", "sum", "max-abs")
NORMALIZATIONS = ("min-max", "max-abs")


def reduce_attributions(attributions: torch.Tensor, reduction: str, inputs: torch.Tensor | None = None) -> torch.Tensor:
    """Reduce attributions ``(B, C, H, W)`` over channels to maps ``(B, H, W)`` (``REDUCTIONS``)."""
    if reduction not in REDUCTIONS:
        raise XaitrustError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if not isinstance(attributions, torch.Tensor) or attributions.ndim != 4:
        raise XaitrustError(f"attributions must be a tensor (B, C, H, W); got {getattr(attributions, 'shape', type(attributions))}")
    check_finite(attributions, "attributions")
    if reduction == "abs-sum":
        return attributions.abs().sum(dim=1)
    if reduction == "sum":
        return attributions.sum(dim=1)
    if reduction == "max-abs":
        return attributions.abs().amax(dim=1)
    if inputs is None:
        raise XaitrustError("the 'input-sum' reduction multiplies attributions by the inputs: pass inputs=x")
    if tuple(inputs.shape) != tuple(attributions.shape):
        raise XaitrustError(
            f"inputs {tuple(inputs.shape)} must have the attributions' shape {tuple(attributions.shape)} for 'input-sum'"
        )
    return (attributions * inputs.to(device=attributions.device, dtype=attributions.dtype)).sum(dim=1)


def normalize_maps(maps: torch.Tensor, method: str = "min-max") -> torch.Tensor:
    """Normalise each map of ``(B, H, W)`` on its own (``NORMALIZATIONS``); maps with zero spread become zeros."""
    if method not in NORMALIZATIONS:
        raise XaitrustError(f"normalisation method must be one of {', '.join(NORMALIZATIONS)}; got {method!r}")
    if not isinstance(maps, torch.Tensor) or maps.ndim != 3 or not maps.dtype.is_floating_point:
        raise XaitrustError(f"maps must be a float tensor (B, H, W); got {getattr(maps, 'shape', type(maps))}")
    check_finite(maps, "maps")
    flat = maps.flatten(1)
    if method == "min-max":
        low = flat.amin(dim=1, keepdim=True)
        shifted, spread = flat - low, flat.amax(dim=1, keepdim=True) - low
    else:
        shifted, spread = flat, flat.abs().amax(dim=1, keepdim=True)
    normalised = torch.where(spread > 0, shifted / torch.where(spread > 0, spread, 1), torch.zeros_like(flat))
    return normalised.reshape(maps.shape)
