"""Logits of images with random subsets of their features replaced, at chosen perturbation levels.

ReCalX (Decker, Tresp & Buettner, "Why uncertainty calibration matters for reliable perturbation-based explanations")
fits and evaluates calibration under the perturbations explanations use: a subset of the ``d`` features chosen
uniformly at random is replaced by a baseline (zero, the dataset mean, a blur: ``xaitrust.perturb.make_replacement``).
The features (``grouping``) are single pixels, square patches or SLIC superpixels; patches and superpixels are cut by
``xaitrust.perturb.segments.feature_segmentation`` with the same options the surrogate explainers (KernelSHAP, LIME:
``xaitrust.explainers.surrogate``) take - ``patch_size``; ``n_segments``, ``compactness``, ``sigma``,
``min_segments`` - so that given an explainer's settings the perturbed copies are built from exactly the feature groups
that explainer switches off.

The *perturbation level* of a perturbed image is the fraction of its **pixels** replaced, ``1 - mean(keep)``: the
level the masked-evaluation engine passes to perturbation-aware models, so also the level a ReCalX model sees when an
explainer evaluates a coalition. For pixels and for patches that tile the image it equals the paper's fraction of
features ``lambda(S) = (d - |S|) / d``; for superpixels of unequal size it is its pixel-weighted version (the paper's
Fig. 1 axis: "share of replaced pixels with zeros").

Every image gets ``repeats`` independent random feature orders; its masks at the requested fractions remove the first
``round(fraction * d)`` features of an order (so the masks of one order are nested, while those of different orders
are independent). All masked images go through the engine (``xaitrust.perturb.masked_logits``) in bounded chunks.
Each image's orders are drawn from its own generator, seeded by ``seed`` and the image's pixels
(``xaitrust.perturb.orders.random_segment_ranks``), so the same seed gives an image the same perturbations whatever
the chunk size and whatever other images share its call.
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..perturb import RankedMasks, masked_logits
from ..perturb.orders import counts_from_fractions, random_segment_ranks
from ..perturb.replacement import seeded_replacement
from ..perturb.segments import feature_groups, patches

GROUPINGS = ("pixels", "patches", "superpixels")
#: The options of ``feature_segments`` besides ``grouping``, named as the surrogate explainers name them.
SEGMENTATION_OPTIONS = ("patch_size", "n_segments", "compactness", "sigma", "min_segments")


def feature_segments(
    x: torch.Tensor,
    grouping: str = "pixels",
    patch_size: int = 4,
    n_segments: int = 50,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
) -> torch.Tensor:
    """Feature ids ``(B, H, W)``: every pixel its own feature, square patches of side ``patch_size``, or SLIC
    superpixels (``xaitrust.perturb.segments.superpixel_segmentation`` with ``n_segments``, ``compactness``,
    ``sigma``, ``min_segments``; the defaults are the surrogate explainers')."""
    if grouping == "pixels":
        return patches(x.shape[2:], 1, device=x.device).expand(len(x), -1, -1)
    if grouping not in GROUPINGS:
        raise XaitrustError(f"grouping must be one of {', '.join(GROUPINGS)}; got {grouping!r}")
    return feature_groups(x, grouping, n_segments=n_segments, compactness=compactness, sigma=sigma,
                          min_segments=min_segments, patch_size=patch_size)


def perturbed_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    fractions: torch.Tensor,
    *,
    repeats: int = 1,
    grouping: str = "pixels",
    segmentation: dict | None = None,
    replacement="zero",
    seed: int = 0,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of randomly perturbed copies of ``x``.

    Args:
        x: images ``(N, C, H, W)``.
        fractions: fractions of features to replace, ``(L,)`` for every copy or ``(N * repeats, L)`` per copy (rows
            image-major: copy ``r`` of image ``n`` is row ``n * repeats + r``).
        repeats: independent random feature orders per image.
        grouping, segmentation: the features (``feature_segments``); ``segmentation`` holds its options
            (``SEGMENTATION_OPTIONS``), the missing ones at their defaults.

    Returns:
        ``(logits, levels)``: ``(N * repeats, L, K)`` and the realised pixel perturbation levels ``(N * repeats, L)``.
    """
    if x.ndim != 4 or not x.dtype.is_floating_point:
        raise XaitrustError(f"x must be a float tensor (N, C, H, W); got {tuple(getattr(x, 'shape', ()))}")
    if not isinstance(repeats, int) or repeats < 1:
        raise XaitrustError(f"repeats must be a positive integer; got {repeats!r}")
    fractions = torch.as_tensor(fractions, dtype=torch.float64)
    if fractions.numel() == 0 or fractions.min() < 0 or fractions.max() > 1:
        raise XaitrustError("perturbation fractions must lie in [0, 1]")
    segments = feature_segments(x, grouping, **check_segmentation(segmentation))
    ranks, n_features = random_segment_ranks(segments, n_orders=repeats, seed=seed, seed_from=x)
    if fractions.ndim == 1:
        counts = counts_from_fractions(fractions, n_features.double())
    else:
        counts = torch.round(fractions * n_features.double()[:, None].to(fractions.device)).long()
    levels = _pixel_levels(ranks.flatten(1), counts.to(ranks.device))
    copies = x.repeat_interleave(repeats, dim=0)
    logits = masked_logits(
        model, copies, RankedMasks(ranks, counts, mode="delete"),
        replacement=seeded_replacement(copies, replacement, seed), batch_size=batch_size,
    )
    return logits, levels


def check_segmentation(segmentation: dict | None) -> dict:
    """``segmentation`` as a dict of ``feature_segments`` options; an unknown option raises, naming the known ones."""
    segmentation = dict(segmentation or {})
    unknown = sorted(set(segmentation) - set(SEGMENTATION_OPTIONS))
    if unknown:
        raise XaitrustError(f"unknown segmentation option(s) {', '.join(unknown)}; known: {', '.join(SEGMENTATION_OPTIONS)}")
    return segmentation


def _pixel_levels(ranks: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels whose rank is below each count: ``(R, L)`` from ranks ``(R, P)`` and counts ``(R, L)``."""
    per_rank = torch.zeros(len(ranks), int(ranks.max()) + 2, dtype=torch.float64, device=ranks.device)
    per_rank.scatter_add_(1, ranks + 1, torch.ones_like(ranks, dtype=torch.float64))
    below = per_rank.cumsum(dim=1)  # below[:, k] = pixels with rank < k
    return below.gather(1, counts.clamp(0, below.shape[1] - 1)) / ranks.shape[1]
