"""Feature groups of an image: SLIC superpixels or square patches, as integer segment ids ``(B, H, W)``.

Surrogate explainers (KernelSHAP, LIME) switch whole groups on and off, and the random-superpixel baseline of the
deletion metric removes them in random order. Ids of each image run over ``0 .. n_features[b] - 1``.

SLIC (Achanta et al., 2012, via ``skimage.segmentation.slic``) places its seeds on a regular grid of step ``S`` and
gives each pixel to the seed nearest in ``D = sqrt(d_colour^2 + (compactness * d_space / S)^2)`` (their eq. 3). When
pixel-level noise or texture outweighs the spatial term, a cluster's pixels scatter; scikit-image then enforces
connectivity by merging the small scattered pieces into their neighbours, and the image collapses into a handful of
segments. ``superpixel_segmentation``
smooths three-channel images first (``sigma``) and replaces a collapsed segmentation by a grid of square patches,
recording which images did so (``Segmentation.fallback``).
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import slic
from skimage.util import regular_grid

from ..errors import XaitrustError

FEATURE_GROUPS = ("superpixels", "patches")


@dataclass(frozen=True)
class Segmentation:
    """Segment ids of a batch and which of its images fell back to a patch grid.

    Attributes:
        ids: long ``(B, H, W)``; the ids of image ``b`` run over ``0 .. n_b - 1``.
        fallback: bool ``(B,)``; True where SLIC made fewer than ``min_segments`` segments and the image is cut into
            square patches instead (``fallback_patch_size``). Always False for ``kind="patches"``.
    """

    ids: torch.Tensor
    fallback: torch.Tensor


def patches(shape, size: int, device=None) -> torch.Tensor:
    """Ids ``(H, W)`` of a grid of ``size x size`` patches, numbered row by row (edge patches may be smaller)."""
    height, width = (int(s) for s in shape)
    if size < 1:
        raise XaitrustError(f"patch size must be a positive integer; got {size}")
    rows = torch.arange(height, device=device) // size
    cols = torch.arange(width, device=device) // size
    return rows[:, None] * (-(-width // size)) + cols[None, :]


def slic_seeds(shape, n_segments: int) -> int:
    """How many seeds SLIC places on an image of ``shape`` ``(H, W)`` when asked for ``n_segments``: scikit-image's
    regular grid (``skimage.util.regular_grid``) of step ``round(sqrt(H W / n_segments))``, or every pixel when the
    image has no more pixels than ``n_segments``. SLIC cannot make (many) more segments than this: 36 for 50 asked on
    32 x 32 images, 121 for 100; 49 for 50 and 81 for 100 on 28 x 28."""
    height, width = (int(s) for s in shape)
    _, rows, cols = regular_grid((1, height, width), n_segments)
    return len(range(height)[rows]) * len(range(width)[cols])


def fallback_patch_size(shape, n_segments: int) -> int:
    """Side of the square patches replacing a collapsed segmentation: the integer nearest ``sqrt(H W / n_segments)``
    (at least 1), so the grid holds about ``n_segments`` patches (49 for 50 on 32 x 32, 100 for 100 on 28 x 28)."""
    height, width = (int(s) for s in shape)
    return max(1, round(math.sqrt(height * width / n_segments)))


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_options(n_segments, compactness, sigma, min_segments) -> None:
    """Raise an ``XaitrustError`` naming the first bad option: ``n_segments`` and ``min_segments`` (when given) must be
    positive integers, ``compactness`` (when given) a finite number > 0, ``sigma`` (when given) a finite number >= 0."""
    if not _is_integer(n_segments) or n_segments < 1:
        raise XaitrustError(f"n_segments must be a positive integer; got {n_segments!r}")
    if compactness is not None and (not _is_finite_real(compactness) or compactness <= 0):
        raise XaitrustError(f"compactness must be a finite number > 0; got {compactness!r}")
    if sigma is not None and (not _is_finite_real(sigma) or sigma < 0):
        raise XaitrustError(f"sigma must be a finite number >= 0; got {sigma!r}")
    if min_segments is not None and (not _is_integer(min_segments) or min_segments < 1):
        raise XaitrustError(f"min_segments must be a positive integer; got {min_segments!r}")


def superpixel_segmentation(
    x: torch.Tensor,
    n_segments: int = 100,
    *,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
) -> Segmentation:
    """SLIC superpixels (Achanta et al., 2012, via ``skimage.segmentation.slic``) of each image, with a patch grid for
    the images where SLIC collapses.

    scikit-image segments one image at a time (on the CPU, each image rescaled to [0, 1] by its own range), so an
    image's segments depend neither on the other images of the batch nor on anything but the options: the same
    input gives the same ids. The ids are renumbered to ``0 .. n - 1`` in scan order.

    Args:
        x: images ``(B, C, H, W)``; three-channel ones are segmented in Lab colour space.
        n_segments: the number of superpixels asked for; SLIC makes at most about ``slic_seeds((H, W), n_segments)``.
        compactness: weight of the spatial distance against the colour distance; default 10 for three-channel images
            (Lab, range 0-100) and 0.1 otherwise (intensities in [0, 1]), following scikit-image's guidance.
        sigma: standard deviation, in pixels, of the Gaussian smoothing applied before segmenting; default 1 for
            three-channel images and 0 otherwise (see the counts below).
        min_segments: an image for which SLIC makes fewer segments is cut into square patches of side
            ``fallback_patch_size((H, W), n_segments)`` instead (``Segmentation.fallback``); default half the seeds,
            ``max(1, slic_seeds((H, W), n_segments) // 2)`` (18 for 50 asked on 32 x 32, 60 for 100).

    Segments per image for the defaults (50 test images per set unless said; seeds in brackets; "was" is the former
    ``sigma=0`` for RGB):

    - 32 x 32 RGB synthetic shapes (``xaitrust.data.shapes``), pixel noise sd 0 / 0.05 / 0.1 / 0.2: for 50 asked
      [36] 25-35 / 26-36 / 27-36 / 26-36 (medians 31-32), was 26-34 / 16-26 / 1-12 / 1-3; for 100 asked [121]
      99-120 / 102-120 / 99-120 / 104-118, was 97-116 / 81-100 / 39-58 / 13-34.
    - 32 x 32 downsampled crops of scikit-image's colour photographs, noise sd 0 / 0.1 / 0.2: for 50 asked 27-37 /
      27-36 / 25-35, was 22-36 / 1-13 / 1-5; for 100 asked 103-121 / 108-121 / 108-121, was 96-122 / 31-67 / 9-39.
      Uniform RGB noise: 25-34 for 50 and 103-119 for 100, was 1 and 3-15. No image of these sets falls back.
    - 28 x 28 Fashion-MNIST (greyscale, unchanged; 200 images): 55-83 (median 69) for 100 asked [81], 24-46
      (median 37) for 50 [49]. Of 2000 images, 9 fall back at 50 asked (18-23 segments) and none at 100; on those 9
      the patch grid explains the image better than SLIC (share of pixel variance explained by the segment means,
      0.45 against 0.41), while for 24-27 segments SLIC does (0.61 against 0.56).
    - 32 x 32 greyscale shapes, 50 asked [36]: noise sd 0.05: 27-34; 0.1: 12-28 (2 fall back); 0.2: 4-14 (all fall
      back; ``sigma=1`` gives 26-36, so pass it for noisy greyscale images).

    What the smoothing costs, as the share of the clean image's pixel variance explained by the segment means (50
    asked): on noisy RGB images the segments beat a patch grid of about the same size (noise sd 0.2: 0.75 against 0.62
    for the shapes, 0.74 against 0.68 for the photographs); on clean photographs smoothing changes little (0.81 against
    0.80 without); on clean shapes, whose edges are sharp, it costs (0.76 against 0.90 without, 0.62 for patches):
    pass ``sigma=0`` for clean images with sharp edges.

    Warns when the image is too small for what was asked (fewer than ``n_segments / 2`` seeds) and when images fell
    back, naming the cause and the remedy.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise XaitrustError(f"x must be (B, C, H, W) to compute superpixels; got {tuple(getattr(x, 'shape', ()))}")
    _check_options(n_segments, compactness, sigma, min_segments)
    channels, shape = x.shape[1], tuple(x.shape[2:])
    rgb = channels == 3
    compactness = float(compactness if compactness is not None else 10.0 if rgb else 0.1)
    sigma = float(sigma if sigma is not None else 1.0 if rgb else 0.0)
    seeds = slic_seeds(shape, n_segments)
    threshold = max(1, seeds // 2) if min_segments is None else int(min_segments)
    images = x.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    segments = []
    for image in images:
        labels = slic(
            image if channels > 1 else image[..., 0],
            n_segments=int(n_segments),
            compactness=compactness,
            sigma=sigma,
            start_label=0,
            channel_axis=-1 if channels > 1 else None,
            convert2lab=rgb,
        )
        _, ids = np.unique(labels, return_inverse=True)
        segments.append(ids.reshape(labels.shape))
    counts = np.array([int(ids.max()) + 1 for ids in segments])
    fallback = counts < threshold
    size = fallback_patch_size(shape, n_segments)
    grid = patches(shape, size).numpy()
    for b in np.flatnonzero(fallback):
        segments[b] = grid
    if seeds < n_segments / 2:
        warnings.warn(
            f"SLIC made {counts.min()}-{counts.max()} segments per image (median {np.median(counts):g}) for the "
            f"{n_segments} asked: images of {shape[0]} x {shape[1]} pixels hold only {seeds} SLIC seeds for that "
            "many segments; ask for fewer segments", UserWarning, stacklevel=2,
        )
    if fallback.any():
        warnings.warn(
            f"SLIC made fewer than {threshold} segments (min_segments) on {int(fallback.sum())} of {len(counts)} "
            f"images, down to {counts.min()} of its {seeds} seeds: pixel noise or fine texture outweighs its spatial "
            "term, so its clusters scatter and are merged into a few. Those images use a grid of "
            f"{size} x {size} patches instead (flagged as fallback). Smooth more (raise sigma, now {sigma:g}) or raise "
            f"compactness (now {compactness:g}), or use patches", UserWarning, stacklevel=2,
        )
    return Segmentation(
        torch.as_tensor(np.stack(segments), dtype=torch.long, device=x.device),
        torch.as_tensor(fallback, dtype=torch.bool, device=x.device),
    )


def superpixels(
    x: torch.Tensor,
    n_segments: int = 100,
    compactness: float | None = None,
    sigma: float | None = None,
    *,
    min_segments: int | None = None,
) -> torch.Tensor:
    """The ids ``(B, H, W)`` of ``superpixel_segmentation`` (same options), without the fallback flags."""
    return superpixel_segmentation(
        x, n_segments, compactness=compactness, sigma=sigma, min_segments=min_segments
    ).ids


def feature_segmentation(
    x: torch.Tensor,
    kind: str = "superpixels",
    *,
    n_segments: int = 100,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
    patch_size: int = 4,
) -> Segmentation:
    """Feature groups as a ``Segmentation``: ``kind="superpixels"`` (``superpixel_segmentation`` with
    ``n_segments``, ``compactness``, ``sigma``, ``min_segments``) or ``"patches"`` (``patches`` of side
    ``patch_size``, no fallback)."""
    if kind == "superpixels":
        return superpixel_segmentation(
            x, n_segments, compactness=compactness, sigma=sigma, min_segments=min_segments
        )
    if kind == "patches":
        ids = patches(x.shape[2:], patch_size, device=x.device).expand(len(x), -1, -1)
        return Segmentation(ids, torch.zeros(len(x), dtype=torch.bool, device=x.device))
    raise XaitrustError(f"feature groups must be one of {', '.join(FEATURE_GROUPS)}; got {kind!r}")


def feature_groups(
    x: torch.Tensor,
    kind: str = "superpixels",
    *,
    n_segments: int = 100,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
    patch_size: int = 4,
) -> torch.Tensor:
    """Segment ids ``(B, H, W)`` of ``feature_segmentation`` (same options), without the fallback flags."""
    return feature_segmentation(
        x, kind, n_segments=n_segments, compactness=compactness, sigma=sigma, min_segments=min_segments,
        patch_size=patch_size,
    ).ids


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
