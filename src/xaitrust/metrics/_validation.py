"""Checks shared by every metric that takes images and saliency maps.

A metric fed a map with NaN/inf values, a map of the wrong size or a map with no information (constant) would return
numbers that look fine and mean nothing. These helpers turn the first two into a clear ``XaitrustError`` and make the
third explicit: ``constant_maps`` finds them so the caller can warn (and the ranking helpers break every tie
deterministically, see ``xaitrust.perturb.orders``).
"""

from __future__ import annotations

import warnings

import torch

from ..errors import XaitrustError


class ConstantMapWarning(UserWarning):
    """Some maps hold a single value: any ranking of their pixels is arbitrary."""


def check_images(x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` if it is a finite float ``(B, C, H, W)`` batch, else raise."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        raise XaitrustError(f"images must be a float tensor (B, C, H, W); got {_describe(x)}")
    if len(x) == 0:
        raise XaitrustError("images are an empty batch (B = 0); give at least one image")
    if not torch.isfinite(x).all():
        raise XaitrustError("images contain NaN or infinite values")
    return x


def check_maps(maps: torch.Tensor, x: torch.Tensor | None = None, *, name: str = "maps") -> torch.Tensor:
    """Validate saliency maps and return them as a float ``(B, H, W)`` tensor.

    Accepts ``(B, H, W)`` or ``(B, 1, H, W)``. With ``x`` given, the batch size and spatial size must match the
    images'. Raises ``XaitrustError`` on a wrong shape, a non-numeric dtype or NaN/inf values.
    """
    if not isinstance(maps, torch.Tensor):
        raise XaitrustError(f"{name} must be a tensor (B, H, W); got {type(maps).__name__}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise XaitrustError(
            f"{name} must be (B, H, W) or (B, 1, H, W); got {tuple(maps.shape)} "
            "(reduce (B, C, H, W) attributions first with xaitrust.explainers.reduce.reduce_attributions)"
        )
    if maps.dtype.is_complex:
        raise XaitrustError(f"{name} must hold real numbers; got dtype {maps.dtype}")
    maps = maps if maps.dtype.is_floating_point else maps.float()
    if x is not None:
        expected = (x.shape[0], x.shape[2], x.shape[3])
        if tuple(maps.shape) != expected:
            raise XaitrustError(f"{name} must have shape (B, H, W) = {expected} to match the images; got {tuple(maps.shape)}")
    check_finite(maps, name)
    return maps


def check_attributions(attributions: torch.Tensor, x: torch.Tensor, *, name: str = "attributions") -> torch.Tensor:
    """Validate attributions ``(B, C, H, W)`` (same shape as ``x``) or maps ``(B, H, W)``; return them as floats."""
    if isinstance(attributions, torch.Tensor) and attributions.ndim == 4 and attributions.shape[1] != 1:
        if attributions.shape != x.shape:
            raise XaitrustError(
                f"{name} must have the images' shape {tuple(x.shape)} or (B, H, W); got {tuple(attributions.shape)}"
            )
        check_finite(attributions, name)
        return attributions.float()
    return check_maps(attributions, x, name=name)


def check_finite(values: torch.Tensor, name: str) -> None:
    """Raise if ``values`` hold NaN or inf, naming how many samples are affected."""
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if bad.any():
        index = bad.nonzero().flatten().tolist()
        raise XaitrustError(
            f"{name} contain NaN or infinite values for {len(index)} sample(s) (first: {index[:5]}); "
            "check the explainer's output (e.g. a division by a zero gradient norm)"
        )


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


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {value.dtype}"
    return type(value).__name__
