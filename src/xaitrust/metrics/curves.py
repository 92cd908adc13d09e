"""Perturbation curves: the target's score while the pixels of a ranking are removed (or inserted) step by step.

Shared by deletion and insertion (Petsiuk et al., 2018, RISE; Calibrate-to-Interpret), MIF/LIF (Brocki & Chung,
FPA) and the insertion game (Loreth's thesis, section 4.2). Every curve of every image is one ``RankedMasks`` set
evaluated by ``masked_scores``: one batched pass over samples x steps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..perturb.engine import RankedMasks, masked_scores
from ..perturb.orders import check_fractions, counts_from_fractions


@dataclass(frozen=True)
class PerturbationCurves:
    """Per-sample perturbation curves.

    Attributes:
        curves: ``(B, M)`` score at each fraction; divided by ``clean_score`` when ``normalized``.
        fractions: ``(M,)`` fraction of features removed (deletion) or inserted (insertion) at each point.
        area: ``(B,)`` trapezoid area under each curve over ``fractions`` (x in [0, 1]).
        clean_score: ``(B,)`` score of the unperturbed image.
        normalized: whether ``curves`` were divided by ``clean_score``.
    """

    curves: torch.Tensor
    fractions: torch.Tensor
    area: torch.Tensor
    clean_score: torch.Tensor
    normalized: bool


def ranked_curves(
    model: torch.nn.Module,
    x: torch.Tensor,
    ranks: torch.Tensor,
    n_features,
    fractions,
    target,
    *,
    mode: str,
    replacement,
    output: str,
    normalize: bool,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> PerturbationCurves:
    """Curves of ``target``'s score as ``round(fraction * n_features)`` ranks are removed (``mode="delete"``) or kept
    (``mode="insert"``), for each fraction.

    ``n_features`` is an int, or ``(B,)`` per image (superpixels). The clean score is read from the curve where the
    fraction leaves the image intact (0 for deletion, 1 for insertion), else computed with one extra pass.
    """
    fractions = check_fractions(fractions)
    counts = counts_from_fractions(fractions, n_features)
    scores = masked_scores(
        model, x, RankedMasks(ranks, counts, mode=mode), target,
        replacement=replacement, output=output, batch_size=batch_size, generator=generator,
    )
    intact = 0.0 if mode == "delete" else 1.0
    if (fractions == intact).any():
        clean = scores[:, int((fractions == intact).nonzero()[0])]
    else:
        clean = masked_scores(model, x, torch.ones(1, 1, *x.shape[2:]), target, output=output, batch_size=batch_size)[:, 0]
    curves = normalize_curves(scores, clean, output) if normalize else scores
    return PerturbationCurves(curves, fractions, curve_area(curves, fractions), clean, normalize)


def normalize_curves(curves: torch.Tensor, clean_score: torch.Tensor, output: str) -> torch.Tensor:
    """``curves / clean_score`` per row; warns when a clean score is not positive (the ratio then flips or explodes)."""
    bad = clean_score <= 0
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} of {len(clean_score)} clean {output} scores are <= 0 (first: "
            f"{bad.nonzero().flatten()[:5].tolist()}); curves normalised by them are flipped or unbounded. "
            "Use output='probability' or normalize=False for such samples.",
            UserWarning,
            stacklevel=3,
        )
    return curves / clean_score[:, None]


def curve_area(curves: torch.Tensor, fractions: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Trapezoid area under each row of ``curves`` over ``fractions * scale``: ``(B,)``."""
    x = (fractions * scale).to(device=curves.device, dtype=curves.dtype)
    return torch.trapezoid(curves, x=x, dim=-1)
