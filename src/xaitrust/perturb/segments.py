"""Feature groups of an image: SLIC superpixels or square patches, as integer segment ids ``(B, H, W)``.

Surrogate explainers (KernelSHAP, LIME) switch whole groups on and off, and the random-superpixel baseline of the
deletion metric removes them in random order. Ids of each image run over ``0 .. n_features[b] - 1``.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from skimage.segmentation import slic

from ..errors import XaitrustError

FEATURE_GROUPS = ("superpixels", "patches")


def patches(shape, size: int, device=None) -> torch.Tensor:
    """Ids ``(H, W)`` of a grid of ``size x size`` patches, numbered row by row (edge patches may be smaller)."""
    height, width = (int(s) for s in shape)
    if size < 1:
        raise XaitrustError(f"patch size must be a positive integer; got {size}")
    rows = torch.arange(height, device=device) // size
    cols = torch.arange(width, device=device) // size
    return rows[:, None] * (-(-width // size)) + cols[None, :]


def superpixels(
    x: torch.Tensor,
    n_segments: int = 100,
    compactness: float | None = None,
    sigma: float = 0.0,
) -> torch.Tensor:
    """SLIC superpixels (Achanta et al., 2012, via ``skimage.segmentation.slic``) of each image: ids ``(B, H, W)``.

    scikit-image segments one image at a time, so this loops over the batch on the CPU. ``compactness`` trades colour
    similarity for square shape; by default 10 for three-channel images (SLIC works in Lab colour space there) and
    0.1 otherwise (intensities in [0, 1]), following scikit-image's guidance. The ids are renumbered to
    ``0 .. n - 1`` in scan order.

    SLIC places its seeds on a grid, so small images get fewer segments than asked: 61-77 (median 68) for 100 on
    28 x 28 Fashion-MNIST images, and one pixel each on the 8 x 8 digits. A warning says so when the median count is
    below half of ``n_segments``.
    """
    if x.ndim != 4:
        raise XaitrustError(f"x must be (B, C, H, W) to compute superpixels; got {tuple(x.shape)}")
    if n_segments < 1:
        raise XaitrustError(f"n_segments must be a positive integer; got {n_segments}")
    channels = x.shape[1]
    if compactness is None:
        compactness = 10.0 if channels == 3 else 0.1
    images = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    segments = []
    for image in images:
        labels = slic(
            image[..., 0] if channels == 1 else image,
            n_segments=n_segments,
            compactness=compactness,
            sigma=sigma,
            start_label=0,
            channel_axis=None if channels == 1 else -1,
            convert2lab=channels == 3,
        )
        _, ids = np.unique(labels, return_inverse=True)
        segments.append(ids.reshape(labels.shape))
    counts = [int(ids.max()) + 1 for ids in segments]
    if np.median(counts) < n_segments / 2:
        warnings.warn(f"SLIC made {min(counts)}-{max(counts)} segments per image (median {np.median(counts):g}) for "
                      f"the {n_segments} asked: images of {x.shape[2]} x {x.shape[3]} pixels hold fewer seeds; ask "
                      "for fewer segments", UserWarning, stacklevel=2)
    return torch.as_tensor(np.stack(segments), dtype=torch.long, device=x.device)


def feature_groups(
    x: torch.Tensor,
    kind: str = "superpixels",
    *,
    n_segments: int = 100,
    compactness: float | None = None,
    patch_size: int = 4,
) -> torch.Tensor:
    """Segment ids ``(B, H, W)``: ``kind="superpixels"`` (``superpixels``) or ``"patches"`` (``patches``)."""
    if kind == "superpixels":
        return superpixels(x, n_segments=n_segments, compactness=compactness)
    if kind == "patches":
        return patches(x.shape[2:], patch_size, device=x.device).expand(len(x), -1, -1)
    raise XaitrustError(f"feature groups must be one of {', '.join(FEATURE_GROUPS)}; got {kind!r}")


def check_segments(segments: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Validate integer segment ids ``(H, W)`` or ``(B, H, W)`` for images ``x`` and return them as ``(B, H, W)``."""
    if segments.dtype.is_floating_point or segments.dtype == torch.bool:
        raise XaitrustError(f"segment ids must be an integer tensor; got dtype {segments.dtype}")
    if segments.ndim == 2:
        segments = segments.expand(len(x), -1, -1)
    if segments.shape != (len(x), *x.shape[2:]):
        raise XaitrustError(
            f"segment ids must have shape (H, W) or (B, H, W) = {(len(x), *x.shape[2:])}; got {tuple(segments.shape)}"
        )
    if segments.numel() and segments.min() < 0:
        raise XaitrustError("segment ids must be non-negative")
    return segments.to(device=x.device, dtype=torch.long)
