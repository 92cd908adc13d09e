"""Faithfulness metrics that remove regions of the image in the order of their relevance, as defined by the papers
Quantus (Hedström et al., 2023) collects.

- ``region_perturbation`` (Samek et al., 2017): the area over the perturbation curve (AOPC) while square regions are
  removed most relevant first.
- ``selectivity`` (Montavon, Samek & Mueller, 2018): the area under the score's curve while square patches are removed
  most relevant first.
- ``irof`` (Rieger & Hansen, 2020): the area over the normalised score's curve while superpixels are removed in order
  of their mean relevance.
- ``road`` (Rong et al., 2022): the model's accuracy once a fraction of the pixels, most or least relevant first, is
  replaced by noisy linear imputation (``noisy_linear_imputation``), which leaks less about the removed pixels'
  places than a constant.

Regions are integer segment ids ``(B, H, W)`` (patches or superpixels, ``xaitrust.perturb.segments``), ranked by the
sum or mean of the map over their pixels, equal values ordered by ``ties`` (``xaitrust.perturb.orders``); every curve
of every image is one ``RankedMasks`` set evaluated by ``masked_scores``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from ..chunks import chunk_slices
from ..errors import XaitrustError
from ..outputs import check_target
from ..perturb.engine import RankedMasks, masked_logits, masked_scores
from ..perturb.orders import check_fractions, ranks_from_maps
from ..perturb.segments import check_segments, patches, superpixel_segmentation
from ..seeding import image_seed
from ..validation import check_count, check_images, check_maps
from ._validation import warn_constant_maps
from .curves import normalize_curves
from .faithfulness_peers import replacement_for

ORDERS = ("most-important-first", "least-important-first")
STATISTICS = ("sum", "mean")
#: ROAD's removal fractions: Quantus's percentages 1, 3, ..., 99.
ROAD_FRACTIONS = tuple(p / 100 for p in range(1, 100, 2))
#: The neighbours of a pixel in noisy linear imputation and their weights (Rong et al., 2022): 1/6 for
#: the four direct neighbours, 1/12 for the four diagonal ones.
NEIGHBOUR_WEIGHTS = (((1, 1), 1 / 12), ((0, 1), 1 / 6), ((-1, 1), 1 / 12), ((1, -1), 1 / 12), ((0, -1), 1 / 6),
                     ((-1, -1), 1 / 12), ((1, 0), 1 / 6), ((-1, 0), 1 / 6))
#: Unknowns of one sparse solve of ``noisy_linear_imputation`` (several masked images share a block-diagonal system).
IMPUTATION_BLOCK = 2**18
#: Bytes of the repeated images and their imputations ROAD holds at once.
ROAD_CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class RegionRemoval:
    """Scores while regions are removed in the map's order, and the metric's value.

    Attributes:
        scores: ``(B, M)`` the target's score after removing ``removed[b, m]`` regions; column 0 is the clean image.
        removed: ``(B, M)`` int, how many regions are removed; an image with fewer regions than the longest curve
            repeats its last point.
        n_regions: ``(B,)`` regions of each image.
        value: ``(B,)`` the metric's value.
    """

    scores: torch.Tensor
    removed: torch.Tensor
    n_regions: torch.Tensor
    value: torch.Tensor

    @property
    def fractions(self) -> torch.Tensor:
        """``(B, M)`` float64: the fraction of each image's regions removed at each point."""
        return self.removed.double() / self.n_regions.double()[:, None]


def region_ranks(maps: torch.Tensor, segments: torch.Tensor, statistic: str = "sum",
                 order: str = "most-important-first", seed: int = 0, ties: str = "stable"
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel ranks ``(B, 1, H, W)`` of each pixel's region, the regions ranked by the ``statistic`` (``"sum"`` or
    ``"mean"``) of the maps ``(B, H, W)`` over their pixels in ``order``, and the number of regions of each image
    ``(B,)``. Equal values are ordered by ``ties`` from ``seed`` and each image's map (``ranks_from_maps``)."""
    if statistic not in STATISTICS:
        raise XaitrustError(f"statistic must be one of {', '.join(STATISTICS)}; got {statistic!r}")
    if order not in ORDERS:
        raise XaitrustError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    flat = segments.reshape(len(segments), -1)
    n_ids = int(flat.max()) + 1
    sums = torch.zeros(len(maps), n_ids, dtype=torch.float64, device=maps.device)
    sums.scatter_add_(1, flat, maps.reshape(len(maps), -1).double())
    sizes = torch.zeros_like(sums).scatter_add_(1, flat, torch.ones_like(sums[:, :1]).expand_as(flat))
    present = sizes > 0
    values = sums / sizes.clamp(min=1) if statistic == "mean" else sums
    absent = float("-inf") if order == "most-important-first" else float("inf")  # ids an image lacks rank last
    values = values.masked_fill(~present, absent)
    ranks = ranks_from_maps(values[:, None], order, seed=seed, ties=ties, seed_from=maps).reshape(len(maps), n_ids)
    return ranks.gather(1, flat).reshape(len(maps), 1, *maps.shape[1:]), present.sum(dim=1)


def region_removal(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    segments: torch.Tensor,
    *,
    statistic: str = "sum",
    order: str = "most-important-first",
    steps: int | None = None,
    replacement="zero",
    output: str = "probability",
    seed: int = 0,
    ties: str = "stable",
    batch_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores, removed, n_regions)`` of ``RegionRemoval``: the target's score as the regions of ``segments`` are
    removed one by one (``region_ranks`` order), up to ``steps`` of them (``None``: all), replaced by
    ``replacement``."""
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    segments = check_segments(segments, x)
    warn_constant_maps(maps, "the order of their regions carries no information")
    ranks, n_regions = region_ranks(maps, segments, statistic, order, seed, ties)
    last = n_regions if steps is None else n_regions.clamp(max=check_count(steps, "steps"))
    removed = torch.arange(int(last.max()) + 1, device=x.device)[None, :].minimum(last[:, None])
    scores = masked_scores(model, x, RankedMasks(ranks, removed), target,
                           replacement=replacement_for(x, replacement, seed), output=output, batch_size=batch_size)
    return scores, removed, n_regions


def region_perturbation(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    patch_size: int = 9,
    steps: int = 100,
    replacement="uniform",
    order: str = "most-important-first",
    output: str = "probability",
    seed: int = 0,
    *,
    ties: str = "stable",
    batch_size: int | None = None,
) -> RegionRemoval:
    """Region perturbation (Samek et al., *Evaluating the Visualization of What a Deep Neural Network Has Learned*,
    IEEE TNNLS 2017), per sample: the area over the MoRF perturbation curve

        AOPC = 1 / (L + 1) * sum_{k=0}^{L} ( f(x^(0)) - f(x^(k)) )

    where ``x^(k)`` has the ``k`` most relevant regions removed: the image's non-overlapping ``patch_size`` squares
    (the paper's 9 x 9; edge patches may be smaller), ranked by the sum of the map over them, replaced by
    ``replacement`` (the paper's uniform noise, one noise image drawn from ``seed``), ``L = min(steps, regions)``
    (the paper's 100). ``order="least-important-first"`` gives the LeRF curve. Higher (MoRF) is better; the paper's
    AOPC is the mean over images.

    Quantus's ``RegionPerturbation`` returns the curve ``f(x^(0)) - f(x^(k))`` for ``k = 1..L`` (``scores`` here
    gives it) and pads the image to a multiple of the patch size on both sides; the two agree when the patch size
    divides the image and the replacement is the same.
    """
    check_images(x)
    segments = patches(x.shape[2:], check_count(patch_size, "patch_size"), device=x.device).expand(len(x), -1, -1)
    scores, removed, n_regions = region_removal(
        model, x, maps, target, segments, statistic="sum", order=order, steps=steps, replacement=replacement,
        output=output, seed=seed, ties=ties, batch_size=batch_size,
    )
    drops = scores[:, :1].double() - scores.double()
    return RegionRemoval(scores, removed, n_regions, drops.mean(dim=1).float())


def selectivity(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    patch_size: int = 8,
    replacement="zero",
    output: str = "probability",
    seed: int = 0,
    *,
    ties: str = "stable",
    batch_size: int | None = None,
) -> RegionRemoval:
    """Selectivity (Montavon, Samek & Mueller, *Methods for Interpreting and Understanding Deep Neural Networks*,
    Digital Signal Processing 2018), per sample: the area under the curve of the target's score while the
    image's ``patch_size`` squares are removed (set to ``replacement``) one by one, the highest sum of the map first,
    until none is left,

        AUC = integral_0^1 f(x with a fraction t of the patches removed) dt     (trapezoid rule over k / K)

    A sharp early drop (a low area) is better. Quantus's ``Selectivity`` returns the curve for ``k = 1..K`` (without
    the clean image) and integrates it with unit steps; its curve is ``scores[:, 1:]`` here when the patch size
    divides the image.
    """
    check_images(x)
    segments = patches(x.shape[2:], check_count(patch_size, "patch_size"), device=x.device).expand(len(x), -1, -1)
    scores, removed, n_regions = region_removal(
        model, x, maps, target, segments, statistic="sum", replacement=replacement, output=output, seed=seed,
        ties=ties, batch_size=batch_size,
    )
    fractions = removed.double() / n_regions.double()[:, None]
    return RegionRemoval(scores, removed, n_regions, torch.trapezoid(scores.double(), x=fractions, dim=1).float())


def irof(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    n_segments: int = 100,
    replacement="image-mean",
    output: str = "probability",
    seed: int = 0,
    *,
    segments: torch.Tensor | None = None,
    ties: str = "stable",
    batch_size: int | None = None,
) -> RegionRemoval:
    """Iterative Removal Of Features (Rieger & Hansen, *IROF: a Low Resource Evaluation Metric for Explanation
    Methods*, ICLR 2020 workshop), per sample: the area over the curve of the normalised score while the
    superpixels are removed in decreasing order of their mean relevance,

        IROF(x) = 1 - integral_0^1 f(x with a fraction t of the superpixels removed) / f(x) dt   (trapezoid over l / n)

    The superpixels are ``superpixel_segmentation(x, n_segments)`` (SLIC) unless ``segments`` (ids ``(B, H, W)``) are
    given; removed superpixels take ``replacement`` (the image's per-channel mean, as the paper's mean value). Higher
    is better; the paper's IROF is the mean over images. A clean score <= 0 flips the curve (warned).

    Quantus's ``IROF`` returns ``n - sum_trapezoid(f(x_l) / f(x), l = 1..n, unit steps)`` (the curve without its first
    point, over ``n`` superpixels instead of [0, 1]), which ``scores`` here reproduces; under NumPy 2 it stops at
    ``np.trapz``, which NumPy removed.
    """
    check_images(x)
    if segments is None:
        segments = superpixel_segmentation(x, n_segments).ids
    scores, removed, n_regions = region_removal(
        model, x, maps, target, segments, statistic="mean", replacement=replacement, output=output, seed=seed,
        ties=ties, batch_size=batch_size,
    )
    curves = normalize_curves(scores.double(), scores[:, 0].double(), output)
    fractions = removed.double() / n_regions.double()[:, None]
    return RegionRemoval(scores, removed, n_regions, (1.0 - torch.trapezoid(curves, x=fractions, dim=1)).float())


@dataclass(frozen=True)
class Road:
    """ROAD's outcome per image and removal fraction.

    Attributes:
        correct: ``(B, P)`` bool, whether the model still predicts the target once ``fractions[p]`` of the pixels are
            removed and imputed.
        fractions: ``(P,)`` the removed fractions.
        accuracy: ``(B,)`` the mean of ``correct`` over the fractions; its mean over images is the mean of the paper's
            accuracy curve.
    """

    correct: torch.Tensor
    fractions: torch.Tensor

    @property
    def accuracy(self) -> torch.Tensor:
        return self.correct.float().mean(dim=1)


def road(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    order: str = "most-important-first",
    fractions=ROAD_FRACTIONS,
    noise: float = 0.01,
    seed: int = 0,
    *,
    ties: str = "stable",
    batch_size: int | None = None,
) -> Road:
    """Remove And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, *A Consistent and Efficient Evaluation Strategy
    for Attribution Methods*, ICML 2022; arXiv:2202.00449): for each fraction ``p`` of ``fractions``, the
    ``floor(p H W)`` pixels ranked first by the map in ``order`` (MoRF: most relevant first, a lower accuracy is
    better; LeRF: least relevant first, a higher one is better) are removed and filled by ``noisy_linear_imputation``
    (noise ``noise``, drawn from ``seed`` and each masked image), and the model is asked whether it still predicts the
    target: the accuracy without retraining that the paper's curves report.

    Quantus's ``ROAD`` (MoRF only) returns, for each percentage, the accuracy over the first batch of its call only
    (``batch_size`` images, 64 by default); it ranks every channel of a pixel apart and draws its noise from NumPy's
    global generator, so the two agree on single-channel images with ``noise=0``. The reference implementation's LeRF
    at ``p`` removes all but the top ``p``; here ``p`` is the removed fraction in both orders.
    """
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    if order not in ORDERS:
        raise XaitrustError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise XaitrustError(f"noise must be a number >= 0; got {noise!r}")
    fractions = check_fractions(fractions)
    warn_constant_maps(maps, "their pixels are removed in a random order (seeded)")
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)
    ranks = ranks_from_maps(maps, order, seed=seed, ties=ties)
    counts = torch.floor(fractions * maps[0].numel()).long().to(x.device)
    n_fractions = len(counts)
    per_chunk = max(1, ROAD_CHUNK_BYTES // (8 * n_fractions * x[0].numel()))
    correct = []
    for part in chunk_slices(len(x), per_chunk):  # bounds the memory of the imputed copies
        rows = x[part].repeat_interleave(n_fractions, dim=0)
        removed = (ranks[part] < counts.reshape(1, -1, 1, 1)).reshape(-1, *x.shape[2:])
        filled = noisy_linear_imputation(rows, removed, noise, seed)
        keep = (~removed).to(x.dtype)[:, None, None]
        logits = masked_logits(model, rows, keep, replacement=filled, batch_size=batch_size)[:, 0]
        correct.append((logits.argmax(dim=1) == target[part].repeat_interleave(n_fractions)).reshape(-1, n_fractions))
    return Road(torch.cat(correct), fractions)


def noisy_linear_imputation(x: torch.Tensor, removed: torch.Tensor, noise: float = 0.01, seed: int = 0) -> torch.Tensor:
    """Images ``(B, C, H, W)`` whose ``removed`` pixels (bool ``(B, H, W)``) are imputed as ROAD does (Rong et al.,
    2022, and its reference code): each removed pixel takes the weighted mean of its in-image neighbours
    (``NEIGHBOUR_WEIGHTS``), known or imputed, which is one sparse linear system per image and channel, solved
    exactly (SuperLU, several images' systems at once as one block-diagonal system); then Gaussian noise of standard
    deviation ``noise`` is added to the imputed values, drawn per image from ``seed`` and the bytes of the image and
    its mask (``xaitrust.seeding.image_seed``), so that an image's imputation depends on nothing else. An image with
    every pixel removed has nothing to impute from: an error.
    """
    check_images(x)
    if removed.shape != (len(x), *x.shape[2:]) or removed.dtype != torch.bool:
        raise XaitrustError(f"removed must be a bool mask (B, H, W) = {(len(x), *x.shape[2:])}; got "
                            f"{tuple(removed.shape)} {removed.dtype}")
    if removed.flatten(1).all(dim=1).any():
        raise XaitrustError("noisy linear imputation needs at least one kept pixel per image; some masks remove all")
    images = x.detach().to("cpu", torch.float64).numpy()
    masks = removed.detach().cpu().numpy()
    unknowns = masks.reshape(len(masks), -1).sum(axis=1)
    filled = images.copy()
    start = 0
    while start < len(images):  # consecutive images whose unknowns fit one block share one sparse solve
        stop = start + max(1, int(np.searchsorted(np.cumsum(unknowns[start:]), IMPUTATION_BLOCK, side="right")))
        filled[start:stop] = _impute_block(images[start:stop], masks[start:stop])
        start = stop
    result = torch.from_numpy(filled)
    if noise > 0:
        draws = torch.empty(result.shape, dtype=torch.float64)
        generator = torch.Generator()
        for row in range(len(x)):  # one cheap draw per image; the solve above is batched
            generator.manual_seed(image_seed(seed, torch.cat([x[row].detach().cpu().flatten(),
                                                              removed[row].detach().cpu().flatten().to(x.dtype)])))
            draws[row] = torch.randn(result.shape[1:], generator=generator, dtype=torch.float64)
        result = torch.where(removed.cpu()[:, None], result + noise * draws, result)
    return result.to(device=x.device, dtype=x.dtype)


def _impute_block(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``images`` ``(b, C, H, W)`` float64 with the ``masks`` ``(b, H, W)`` pixels imputed: one block-diagonal sparse
    system for all of them, an equation per removed pixel ``p``:
    ``sum_{q in N(p)} w_q v_q - (sum_{q in N(p)} w_q) v_p = 0``, known neighbours on the right-hand side."""
    count, channels, height, width = images.shape
    plane = height * width
    flat_mask = masks.reshape(-1)
    positions = np.flatnonzero(flat_mask)
    if not len(positions):
        return images
    variable = np.full(flat_mask.shape, -1, dtype=np.int64)
    variable[positions] = np.arange(len(positions))
    values = images.transpose(0, 2, 3, 1).reshape(-1, channels)
    image, pixel = np.divmod(positions, plane)
    row, col = np.divmod(pixel, width)
    diagonal = np.zeros(len(positions))
    rhs = np.zeros((len(positions), channels))
    entries_row, entries_col, entries_value = [], [], []
    for (d_row, d_col), weight in NEIGHBOUR_WEIGHTS:
        n_row, n_col = row + d_row, col + d_col
        inside = (n_row >= 0) & (n_row < height) & (n_col >= 0) & (n_col < width)
        equation = np.flatnonzero(inside)
        neighbour = image[inside] * plane + n_row[inside] * width + n_col[inside]
        diagonal[equation] -= weight
        unknown = flat_mask[neighbour]
        entries_row.append(equation[unknown])
        entries_col.append(variable[neighbour[unknown]])
        entries_value.append(np.full(int(unknown.sum()), weight))
        rhs[equation[~unknown]] -= weight * values[neighbour[~unknown]]  # one neighbour per equation and offset
    entries = np.arange(len(positions))
    system = coo_matrix(
        (np.concatenate([*entries_value, diagonal]),
         (np.concatenate([*entries_row, entries]), np.concatenate([*entries_col, entries]))),
        shape=(len(positions), len(positions)),
    ).tocsc()
    solution = np.asarray(spsolve(system, rhs)).reshape(len(positions), channels)
    values = values.copy()
    values[positions] = solution
    return values.reshape(count, height, width, channels).transpose(0, 3, 1, 2)
