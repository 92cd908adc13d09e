"""Localisation against ground-truth masks as the peer benchmarks (Quantus) define it, beyond ``localization``.

Maps ``(B, H, W)`` are used as given (reduce attributions first); masks ``(B, H, W)`` mark the object. Pixels are
ranked by their map value, highest first (``xaitrust.perturb.orders.ranks_from_maps``: ties broken by ``ties``, at
random from ``seed`` or by pixel index). An empty mask leaves every score undefined: NaN with a warning.

- Top-K Intersection (Theiner, Müller-Budack & Ewerth, "Interpretable semantic photo geolocation", WACV 2022;
  arXiv 2104.14995, 2021): the share of the map's top-k pixels that lie in the mask, ``|P_top-k ∩ GT| / k``. ``k``
  is a number of pixels or a fraction of the image; the default 2% is Quantus's k=1000 of a 224x224 image.
- Relevance Rank Accuracy (Arras, Osman & Samek, "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of
  neural network explanations", Information Fusion 2022): with K = |GT| the mask's size, the share of the mask found
  among the map's top-K pixels, ``|P_top-K ∩ GT| / |GT|``.
- Relevance Mass Accuracy (same paper): the share of the map's mass inside the mask, ``R_within / R_total`` with
  ``R_within = sum_{p in GT} m_p``, ``R_total = sum_p m_p``. The paper measures pooled heatmaps, which its poolings make
  non-negative; on a signed map negative relevance inside the mask lowers the score, and where ``R_total <= 0`` the
  share means nothing: NaN with a warning.
- AUC (Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006): the area under the ROC curve of
  the map as a score for the mask's pixels, computed as its equivalent Mann-Whitney statistic (Fawcett, sec. 7),
  ``AUC = (sum_{p in GT} rank_p - |GT| (|GT| + 1) / 2) / (|GT| |not GT|)`` with average ranks for tied values (a tie
  of a mask and a background pixel counts one half, as the trapezoids of the ROC curve do). Undefined when the mask
  is empty or covers the whole image.
- Focus (Arias-Duart, Parés, Garcia-Gasulla & Giménez-Ábalos, "Focus! Rating XAI methods and finding biases",
  FUZZ-IEEE 2022): on a mosaic of 2x2 images of which two show the target class, the share of the positive
  relevance that falls on those two tiles, ``sum_{p in target tiles} max(m_p, 0) / sum_p max(m_p, 0)``: the object
  localisation score of ``xaitrust.metrics.localization`` with the target tiles as the mask. ``make_mosaics`` builds
  such mosaics, masks included, from a labelled data set.

The object localisation score of Kohlbrenner et al. (2020), Quantus's Attribution Localisation, is
``xaitrust.metrics.localization``, the share of positive relevance inside the mask. Quantus 0.6 gives it with
``positive_attributions=True, abs=False``; its defaults (``abs=True``) give the share of ``|m|`` instead (the
relevance mass accuracy of ``|m|``), and its ``weighted`` option divides the mask's size by ``x_batch[2:].size``, the
size of the batch from its third image on, not that of one image.

Quantus 0.6 gives the same numbers for Top-K Intersection, Relevance Rank Accuracy, Relevance Mass Accuracy and AUC on
maps without ties (its ``argsort`` orders ties arbitrarily) and with its default max-normalisation, which changes none
of them; and for Focus. Its Focus before 0.6 (per-image quadrant functions, up to 0.5.3) read the top-right tile as
``a[:, H/2:, :W/2]``, rows and columns swapped, so the top-right and bottom-left tiles were exchanged; 0.6 indexes the
tiles as its ``mosaic_creation`` lays them out (checked on non-square mosaics in the tests).
"""

from __future__ import annotations

import numbers
import warnings

import torch

from ..data.dataset import ImageDataset
from ..errors import XaitrustError
from ..perturb.orders import ranks_from_maps
from .correlation import average_ranks
from .localization import _check_masks, _undefined_for_empty_masks

#: Tile positions of a mosaic, in the order of ``make_mosaics``' ``info["tiles"]`` columns (and Quantus's).
TILES = ("top-left", "top-right", "bottom-left", "bottom-right")


def _top_ranked(maps: torch.Tensor, seed: int, ties: str) -> torch.Tensor:
    """Each pixel's place ``(B, H*W)`` in its map's ranking, highest value first (0 = first)."""
    return ranks_from_maps(maps, "most-important-first", seed=seed, ties=ties).flatten(1)


def _pixel_count(k, n_pixels: int) -> int:
    """``k`` pixels (an integer in [1, n_pixels]) or the fraction ``k`` in (0, 1) of them, at least one."""
    if isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= k <= n_pixels:
        return int(k)
    if isinstance(k, float) and 0 < k < 1:
        return max(1, round(k * n_pixels))
    raise XaitrustError(
        f"k must be a number of pixels in [1, {n_pixels}] or a fraction of the image in (0, 1); got {k!r}"
    )


def top_k_intersection(maps: torch.Tensor, masks: torch.Tensor, k=0.02, *, seed: int = 0,
                       ties: str = "stable") -> torch.Tensor:
    """``|P_top-k ∩ GT| / k`` ``(B,)``: the share of each map's top ``k`` pixels inside its mask."""
    maps, masks = _check_masks(maps, masks)
    k = _pixel_count(k, maps[0].numel())
    inside = masks.bool().flatten(1)
    hits = (inside & (_top_ranked(maps, seed, ties) < k)).sum(dim=1)
    return _undefined_for_empty_masks(hits.to(maps.dtype) / k, masks)


def relevance_rank_accuracy(maps: torch.Tensor, masks: torch.Tensor, *, seed: int = 0,
                            ties: str = "stable") -> torch.Tensor:
    """``|P_top-K ∩ GT| / |GT|`` ``(B,)`` with K = |GT|: the share of each mask among its map's top-|GT| pixels."""
    maps, masks = _check_masks(maps, masks)
    inside = masks.bool().flatten(1)
    size = inside.sum(dim=1, keepdim=True)
    hits = (inside & (_top_ranked(maps, seed, ties) < size)).sum(dim=1)
    return _undefined_for_empty_masks(hits.to(maps.dtype) / size[:, 0].clamp_min(1), masks)


def relevance_mass_accuracy(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``sum_{p in GT} m_p / sum_p m_p`` ``(B,)``; NaN (with a warning) where the map's total is not positive."""
    maps, masks = _check_masks(maps, masks)
    total = maps.sum(dim=(1, 2))
    if (total <= 0).any():
        warnings.warn(f"{int((total <= 0).sum())} map(s) have a total relevance <= 0: their relevance mass accuracy "
                      "is NaN (reduce signed attributions to non-negative maps first)", UserWarning, stacklevel=2)
    within = (maps * masks.bool()).sum(dim=(1, 2))
    return _undefined_for_empty_masks(within / torch.where(total > 0, total, torch.nan), masks)


def roc_auc(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve ``(B,)`` of each map scoring its mask's pixels (Mann-Whitney form, ties count 1/2);
    NaN (with a warning) where the mask is empty or covers the whole image."""
    maps, masks = _check_masks(maps, masks)
    inside = masks.bool().flatten(1)
    positives = inside.sum(dim=1).double()
    negatives = inside.shape[1] - positives
    ranks = average_ranks(maps.flatten(1).double())
    rank_sum = (ranks * inside).sum(dim=1)
    full = negatives == 0
    if full.any():
        warnings.warn(f"{int(full.sum())} mask(s) cover the whole image: their AUC is NaN", UserWarning, stacklevel=2)
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives).clamp_min(1)
    return _undefined_for_empty_masks(auc.masked_fill(full, torch.nan).to(maps.dtype), masks)


def make_mosaics(dataset: ImageDataset, per_class: int = 10, seed: int = 0) -> ImageDataset:
    """Focus mosaics (Arias-Duart et al. 2022) from a labelled data set: ``per_class`` mosaics per class.

    A mosaic of class c is a 2x2 grid of images of the data set, ``(C, 2H, 2W)``: two different images of class c and
    two different images of other classes, at random places. Its label is c and its mask marks the two tiles of
    class c, so that ``xaitrust.evaluate(model, mosaics.x, mosaics.y, metrics="focus", masks=mosaics.masks)`` scores
    Focus. The model must take ``2H x 2W`` images (a fully convolutional network with global pooling, as the paper
    uses, or one built for that size). Draws come from a generator seeded with ``seed``: the same arguments give the
    same mosaics.

    Returns:
        An ``ImageDataset`` of ``per_class * number of classes`` mosaics, grouped by class; ``info["tiles"]`` holds
        each mosaic's four source indices ``(N, 4)`` (positions in ``dataset``, in the order of ``TILES``) and
        ``info["tile_labels"]`` their labels.
    """
    if not isinstance(dataset, ImageDataset):
        raise XaitrustError(f"make_mosaics needs an ImageDataset (xaitrust.data); got {type(dataset).__name__}")
    if isinstance(per_class, bool) or not isinstance(per_class, numbers.Integral) or per_class < 1:
        raise XaitrustError(f"per_class must be a positive integer; got {per_class!r}")
    generator = torch.Generator().manual_seed(int(seed))
    classes = torch.unique(dataset.y)
    tiles = []
    for label in classes.tolist():
        own = (dataset.y == label).nonzero().flatten()
        others = (dataset.y != label).nonzero().flatten()
        if len(own) < 2 or len(others) < 2:
            raise XaitrustError(
                f"a mosaic of class {dataset.classes[label]!r} needs two images of that class and two of other "
                f"classes; the data set has {len(own)} and {len(others)}"
            )
        chosen = torch.cat([own[_two_different(len(own), per_class, generator)],
                            others[_two_different(len(others), per_class, generator)]], dim=1)
        places = torch.rand(per_class, 4, generator=generator).argsort(dim=1)
        tiles.append(chosen.gather(1, places))
    tiles = torch.cat(tiles)
    labels = classes.repeat_interleave(per_class)
    height, width = dataset.image_size
    grid = dataset.x[tiles].unflatten(1, (2, 2))  # (N, row, column, C, H, W)
    x = grid.permute(0, 3, 1, 4, 2, 5).reshape(len(tiles), dataset.in_channels, 2 * height, 2 * width)
    target_tiles = (dataset.y[tiles] == labels[:, None]).reshape(-1, 2, 2)
    masks = target_tiles.repeat_interleave(height, dim=1).repeat_interleave(width, dim=2)
    return ImageDataset(
        x=x, y=labels, classes=list(dataset.classes), masks=masks, name=f"{dataset.name}-mosaics",
        split=dataset.split, source=f"make_mosaics({dataset.name}, per_class={per_class}, seed={seed})",
        info={"tiles": tiles, "tile_labels": dataset.y[tiles]},
    )


def _two_different(n: int, rows: int, generator: torch.Generator) -> torch.Tensor:
    """``(rows, 2)`` pairs of different indices in ``[0, n)``, uniform over the ordered pairs."""
    first = torch.randint(n, (rows,), generator=generator)
    second = (first + 1 + torch.randint(n - 1, (rows,), generator=generator)) % n
    return torch.stack([first, second], dim=1)
