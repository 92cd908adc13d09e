"""Deletion, insertion and the Better-Than-Random ratio (Scafarto, Posocco & Bonnefoy, *Calibrate to Interpret*).

Deletion (Petsiuk et al., 2018): pixels are ranked by the map (most important first) and removed in ``steps`` equal
steps, a removed pixel being replaced by the image's 11x11 Gaussian blur with sigma 10; at each step the target's
score (softmax probability by default) is recorded. The curve is normalised by the clean image's score,
``curve(f) = s(x with a fraction f removed) / s(x)``, so it starts at 1, and the deletion area is the trapezoid area
under it over f in [0, 1]: lower is more faithful.

Insertion is the reverse game: start from the fully replaced (blurred) image and put the most important pixels back;
the curve is still divided by the clean score, so it starts at ``s(blurred) / s(x)`` and ends at 1; higher is better.

Better than random (C2I section 4.4): the image's SLIC superpixels (100 by default) are removed in a random order,
five orders averaged, with the same replacement, steps and normalisation; a map "beats random" when its deletion area
is strictly lower than the random one, and BTR is the share of images that do. An image on which SLIC collapses into a
few segments (``xaitrust.perturb.segments.superpixel_segmentation``) is cut into a grid of about as many square
patches instead; the results' ``fallback`` says which images were.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..outputs import check_target
from ..perturb.orders import random_segment_ranks, ranks_from_maps, uniform_fractions
from ..perturb.replacement import seeded_replacement
from ..perturb.segments import check_segments, superpixel_segmentation
from ._validation import check_images, check_maps, warn_constant_maps
from .curves import PerturbationCurves, curve_area, ranked_curves

CONSTANT_MAP_NOTE = "their pixels are removed in a random order (seeded), like the random baseline"


def _ranked_game(mode: str, name: str, doc: str):
    """The deletion (``mode="delete"``) or insertion (``"insert"``) metric: one signature, one body."""

    def game(
        model: torch.nn.Module,
        x: torch.Tensor,
        maps: torch.Tensor,
        target,
        steps: int = 100,
        replacement="blur",
        output: str = "probability",
        normalize: bool = True,
        *,
        ties: str = "stable",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> PerturbationCurves:
        check_images(x)
        maps = check_maps(maps, x)
        warn_constant_maps(maps, CONSTANT_MAP_NOTE)
        ranks = ranks_from_maps(maps.to(x.device), "most-important-first", seed=seed, ties=ties)
        return ranked_curves(
            model, x, ranks, maps[0].numel(), uniform_fractions(steps), target,
            mode=mode, replacement=seeded_replacement(x, replacement, seed), output=output, normalize=normalize,
            batch_size=batch_size,
        )

    game.__name__ = game.__qualname__ = name
    game.__doc__ = doc
    return game


deletion = _ranked_game(
    "delete",
    "deletion",
    """Deletion curves ``(B, steps + 1)`` and areas ``(B,)``: most important pixels of ``maps`` removed first.

    Args:
        maps: saliency maps ``(B, H, W)`` (one value per pixel; all channels of a pixel are removed together).
        steps: equal steps from 0 to 100% of the pixels (``round(k / steps * H * W)`` removed at step k).
        replacement: what a removed pixel becomes (``xaitrust.perturb.make_replacement``); C2I uses ``"blur"``.
        output: the target's score (``xaitrust.outputs``); C2I uses the softmax probability.
        normalize: divide each curve by the clean image's score.
        ties, seed: how equal map values are ordered (``xaitrust.perturb.orders``).
        batch_size: masked images per forward pass (automatic when ``None``).
    """,
)

insertion = _ranked_game(
    "insert",
    "insertion",
    """Insertion curves ``(B, steps + 1)`` and areas ``(B,)``: most important pixels of ``maps`` put back first into
    the fully replaced image (the curve starts at ``s(replaced) / s(x)`` when normalised). Arguments as ``deletion``.
    """,
)


@dataclass(frozen=True)
class RandomSuperpixelCurves(PerturbationCurves):
    """The random-superpixel baseline's curves (``PerturbationCurves``) and how each image was segmented.

    Attributes:
        fallback: bool ``(B,)``, True where SLIC collapsed and the image's superpixels were replaced by a patch grid
            (always False when the segments were given).
    """

    fallback: torch.Tensor


@dataclass(frozen=True)
class BetterThanRandom:
    """Deletion versus the random-superpixel baseline.

    Attributes:
        deletion: the maps' deletion curves and areas.
        random: the random baseline's curves and areas, averaged over the random orders, with its ``fallback``.
        better: ``(B,)`` True where the map's deletion area is strictly lower than the random one.
        ratio: BTR, the share of images whose map beats random.
    """

    deletion: PerturbationCurves
    random: RandomSuperpixelCurves
    better: torch.Tensor
    ratio: float

    @property
    def fallback(self) -> torch.Tensor:
        """bool ``(B,)``: the images whose random baseline removed patches because SLIC collapsed on them."""
        return self.random.fallback


def random_superpixel_deletion(
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    n_superpixels: int = 100,
    n_orders: int = 5,
    seed: int = 0,
    *,
    steps: int = 100,
    replacement="blur",
    output: str = "probability",
    segments: torch.Tensor | None = None,
    batch_size: int | None = None,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
) -> RandomSuperpixelCurves:
    """The random baseline of C2I: deletion curves of ``n_orders`` random orders of the image's superpixels, averaged.

    The superpixels are ``superpixel_segmentation(x, n_superpixels, compactness=..., sigma=..., min_segments=...)``
    (``None``: its defaults, e.g. smoothing with ``sigma = 1`` for RGB; images where SLIC collapses get a patch grid,
    flagged in the result's ``fallback``). ``segments`` (integer ids ``(B, H, W)``) replace them when given. The
    curve's x-axis is the fraction of superpixels removed (``round(f * n_b)`` of image ``b``'s ``n_b`` superpixels);
    curves are normalised by the clean score. It does not depend on any map, so one baseline serves every explanation
    method. Each image's orders are drawn from ``seed`` and its pixels (``xaitrust.perturb.orders``), so its baseline
    does not depend on the batch it comes in.
    """
    check_images(x)
    if segments is None:
        segmentation = superpixel_segmentation(
            x, n_superpixels, compactness=compactness, sigma=sigma, min_segments=min_segments
        )
        segments, fallback = segmentation.ids, segmentation.fallback
    else:
        segments = check_segments(segments, x)
        fallback = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    ranks, n_segments = random_segment_ranks(segments.to(x.device), n_orders, seed, seed_from=x)
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)
    replacement = seeded_replacement(x, replacement, seed)
    if isinstance(replacement, torch.Tensor) and replacement.ndim == 4 and len(replacement) == len(x) > 1:
        replacement = replacement.repeat_interleave(n_orders, dim=0)  # one row per (image, order), like x below
    rows = ranked_curves(
        model, x.repeat_interleave(n_orders, dim=0), ranks, n_segments, uniform_fractions(steps),
        target.repeat_interleave(n_orders),
        mode="delete", replacement=replacement, output=output, normalize=True, batch_size=batch_size,
    )
    curves = rows.curves.reshape(len(x), n_orders, -1).mean(dim=1)
    clean_score = rows.clean_score.reshape(len(x), n_orders)[:, 0]
    area = curve_area(curves, rows.fractions)
    return RandomSuperpixelCurves(curves, rows.fractions, area, clean_score, True, fallback)


def better_than_random(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    n_superpixels: int = 100,
    n_orders: int = 5,
    seed: int = 0,
    *,
    steps: int = 100,
    replacement="blur",
    output: str = "probability",
    segments: torch.Tensor | None = None,
    ties: str = "stable",
    batch_size: int | None = None,
    baseline: RandomSuperpixelCurves | None = None,
    compactness: float | None = None,
    sigma: float | None = None,
    min_segments: int | None = None,
) -> BetterThanRandom:
    """Deletion area of ``maps`` against the mean deletion area of ``n_orders`` random superpixel orders.

    ``baseline``, when given, is a ``random_superpixel_deletion`` result for the same model, images, targets and
    settings (compute it once and reuse it for every method); otherwise it is computed here with ``n_superpixels``,
    ``segments`` and the segmentation options ``compactness``, ``sigma``, ``min_segments`` (see
    ``random_superpixel_deletion``).
    """
    if baseline is not None and not isinstance(baseline, RandomSuperpixelCurves):
        raise XaitrustError(
            f"baseline must be the result of random_superpixel_deletion; got {type(baseline).__name__}"
        )
    maps_deletion = deletion(
        model, x, maps, target, steps, replacement, output, True, ties=ties, seed=seed, batch_size=batch_size
    )
    if baseline is None:
        baseline = random_superpixel_deletion(
            model, x, target, n_superpixels, n_orders, seed, steps=steps, replacement=replacement, output=output,
            segments=segments, batch_size=batch_size, compactness=compactness, sigma=sigma, min_segments=min_segments,
        )
    elif baseline.curves.shape != maps_deletion.curves.shape:
        raise XaitrustError(
            f"the random baseline's curves {tuple(baseline.curves.shape)} do not match these images and steps "
            f"{tuple(maps_deletion.curves.shape)}; compute it with the same images and steps"
        )
    better = maps_deletion.area < baseline.area
    return BetterThanRandom(maps_deletion, baseline, better, float(better.float().mean()))
