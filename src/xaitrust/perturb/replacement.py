"""What a removed pixel is replaced by: zero, a constant, the per-channel mean, a blurred copy, noise, or a tensor.

The noise (``"uniform"``) is one noise image drawn from the generator and shared by every image of the batch (as
SmoothGrad shares its noise), so an image's noise does not depend on the batch it comes in, and the explainers that
replace pixels by noise give an image the same map whether it is explained alone or in a batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import XaitrustError

REPLACEMENTS = ("zero", "mean", "blur", "uniform")


def gaussian_kernel1d(kernel_size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``kernel_size``: ``exp(-t^2 / (2 sigma^2))`` for t centred on 0."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise XaitrustError(f"blur kernel_size must be a positive odd integer; got {kernel_size}")
    if sigma <= 0:
        raise XaitrustError(f"blur sigma must be positive; got {sigma}")
    t = torch.arange(kernel_size, device=device, dtype=dtype) - (kernel_size - 1) / 2
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_blur(x: torch.Tensor, kernel_size: int = 11, sigma: float = 10.0) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images with reflect padding (kernel clipped to the image size).

    Calibrate-to-Interpret's deletion replaces pixels by an 11x11 Gaussian blur with sigma 10 (the defaults here).
    Works with gradients, so Meaningful Perturbation uses it too.
    """
    channels = x.shape[1]
    kernel = gaussian_kernel1d(kernel_size, sigma, device=x.device, dtype=x.dtype)
    for dim, size in ((2, x.shape[2]), (3, x.shape[3])):
        half = min(kernel_size // 2, size - 1)
        k = kernel[kernel_size // 2 - half : kernel_size // 2 + half + 1]
        k = (k / k.sum()).reshape(1, 1, -1, 1) if dim == 2 else (k / k.sum()).reshape(1, 1, 1, -1)
        pad = (0, 0, half, half) if dim == 2 else (half, half, 0, 0)
        x = F.conv2d(F.pad(x, pad, mode="reflect") if half else x, k.expand(channels, 1, *k.shape[2:]), groups=channels)
    return x


def make_replacement(
    x: torch.Tensor,
    replacement: str | float | torch.Tensor = "zero",
    *,
    mean: torch.Tensor | None = None,
    blur_kernel_size: int = 11,
    blur_sigma: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The image ``(B, C, H, W)`` whose pixels replace removed ones.

    Args:
        x: images ``(B, C, H, W)``.
        replacement: ``"zero"``; a number (constant); ``"mean"`` (per-channel ``mean``, e.g. the dataset's mean, which
            every xaitrust model stores as ``model.input_mean``; when not given, the batch's own per-channel mean);
            ``"blur"`` (Gaussian blur of ``x``); ``"uniform"`` (one U(0, 1) noise image ``(1, C, H, W)`` drawn with
            ``generator``, shared by every image of the batch); or a tensor broadcastable to ``x``.
    """
    if isinstance(replacement, torch.Tensor):
        try:
            return torch.broadcast_to(replacement.to(device=x.device, dtype=x.dtype), x.shape)
        except RuntimeError:
            raise XaitrustError(
                f"a replacement tensor must broadcast to the images' shape {tuple(x.shape)}; got {tuple(replacement.shape)}"
            ) from None
    if isinstance(replacement, (int, float)) and not isinstance(replacement, bool):
        return torch.full_like(x, float(replacement))
    if replacement == "zero":
        return torch.zeros_like(x)
    if replacement == "mean":
        if mean is None:
            mean = x.mean(dim=(0, 2, 3))
        return torch.broadcast_to(mean.to(device=x.device, dtype=x.dtype).reshape(1, -1, 1, 1), x.shape)
    if replacement == "blur":
        return gaussian_blur(x, blur_kernel_size, blur_sigma)
    if replacement == "uniform":
        device = "cpu" if generator is None else generator.device
        noise = torch.rand((1, *x.shape[1:]), generator=generator, device=device)
        return torch.broadcast_to(noise.to(device=x.device, dtype=x.dtype), x.shape)
    raise XaitrustError(f"replacement must be one of {', '.join(REPLACEMENTS)}, a number or a tensor; got {replacement!r}")


#: Added to a metric's seed for its noise image, so the noise is not drawn from the same stream as the random orders
#: the metric draws from that seed (the first order's keys would be the noise values: pixels with the least noise
#: removed first).
NOISE_SEED_OFFSET = 7_919


def seeded_replacement(x: torch.Tensor, replacement, seed: int):
    """``replacement`` with its randomness fixed by ``seed``: ``"uniform"`` becomes the noise image drawn from a
    generator seeded with ``seed + NOISE_SEED_OFFSET`` (broadcast to ``x``'s shape ``(B, C, H, W)``); any other
    replacement is returned unchanged. Metrics call this once so that every curve of one call (and a map's curve and
    its random baseline) sees the same noise."""
    if isinstance(replacement, str) and replacement == "uniform":
        generator = torch.Generator().manual_seed(int(seed) + NOISE_SEED_OFFSET)
        return make_replacement(x, "uniform", generator=generator)
    return replacement
