"""MIF/LIF perturbation curves and the fidelity area A between them (Brocki & Chung, *Feature Perturbation
Augmentation*, section 3).

Pixels are set to zero in most-important-first (MIF) or least-important-first (LIF) order, from 0 to 95% of the
pixels in 5% steps, and the target's raw logit is recorded and divided by the clean image's logit. A good map makes
the MIF curve fall fast and the LIF curve stay high, so the fidelity

    A = mean_i AUC(LIF_i) - mean_i AUC(MIF_i)

with the x-axis in percent of pixels removed (0-95), is large. For signed maps MIF runs from the largest positive to
the most negative value, so LIF removes counter-evidence first.
"""

from __future__ import annotations

import warnings

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from ..errors import XaitrustError
from ..perturb.orders import check_fractions, ranks_from_maps
from ..perturb.replacement import seeded_replacement
from ..validation import check_images, check_maps
from ._validation import warn_constant_maps
from .curves import PerturbationCurves, curve_area, ranked_curves

FPA_FRACTIONS = tuple(round(0.05 * k, 2) for k in range(20))
CI_METHODS = ("normal", "bootstrap")


@dataclass(frozen=True)
class MifLif:
    """MIF and LIF curves of the same images (``PerturbationCurves`` each, areas over fractions in [0, 1])."""

    mif: PerturbationCurves
    lif: PerturbationCurves


def mif_lif(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    fractions=FPA_FRACTIONS,
    replacement="zero",
    output: str = "logit",
    normalize: bool = True,
    *,
    ties: str = "stable",
    seed: int = 0,
    batch_size: int | None = None,
) -> MifLif:
    """MIF and LIF curves ``(B, len(fractions))`` of maps ``(B, H, W)``, normalised by the clean logit."""
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    warn_constant_maps(maps, "their pixels are removed in a random order (seeded) in both MIF and LIF")
    replacement = seeded_replacement(x, replacement, seed)
    curves = {
        order: ranked_curves(
            model, x, ranks_from_maps(maps, order, seed=seed, ties=ties), maps[0].numel(), fractions, target,
            mode="delete", replacement=replacement, output=output, normalize=normalize, batch_size=batch_size,
        )
        for order in ("most-important-first", "least-important-first")
    }
    return MifLif(curves["most-important-first"], curves["least-important-first"])


@dataclass(frozen=True)
class AreaBetween:
    """The fidelity A with its confidence interval.

    Attributes:
        value: A = mean AUC(LIF) - mean AUC(MIF).
        ci_low, ci_high: bounds of the ``ci`` confidence interval of A.
        per_sample: ``(B,)`` AUC(LIF_i) - AUC(MIF_i), whose mean is A; NaN where the clean score is <= 0.
        n: how many samples A and its interval are computed from (the defined entries of ``per_sample``).
    """

    value: float
    ci_low: float
    ci_high: float
    per_sample: torch.Tensor
    n: int


def area_between(
    mif_curves: torch.Tensor | PerturbationCurves,
    lif_curves: torch.Tensor | PerturbationCurves,
    fractions=None,
    percent: bool = True,
    ci: float = 0.95,
    ci_method: str = "normal",
    *,
    n_bootstrap: int = 10_000,
    seed: int = 0,
    clean_score: torch.Tensor | None = None,
) -> AreaBetween:
    """A = mean AUC(LIF) - mean AUC(MIF) (trapezoid rule, x in percent when ``percent``) and its ``ci`` interval.

    Since both curves are measured on the same images, A is the mean of the per-sample differences
    ``d_i = AUC(LIF_i) - AUC(MIF_i)``. ``ci_method="normal"`` (default) gives ``A +- z_{(1+ci)/2} * sd(d) / sqrt(n)``
    (normal approximation of the mean, sample standard deviation with ``n - 1``; the FPA paper reports A +- this
    half-width over thousands of images); ``"bootstrap"`` gives the percentile interval of ``n_bootstrap`` means of
    resampled ``d`` drawn from ``seed``. With a single sample the interval is ``(nan, nan)``.

    Pass the ``mif`` and ``lif`` results of ``mif_lif`` to integrate over the fractions they were measured at; with
    plain curve tensors, ``fractions`` (default: FPA's 0-95% in 5% steps) must be those fractions.

    Curves normalised by a clean score <= 0 are flipped or unbounded (a misclassified image's logit of its label, the
    shifted log-probabilities of a Dirichlet-calibrated model): their ``d_i`` is NaN, with a warning, and A and its
    interval are computed from the others. The clean scores come with normalised ``PerturbationCurves``; pass
    ``clean_score`` ``(B,)`` with plain tensors of normalised curves.
    """
    if clean_score is None and isinstance(mif_curves, PerturbationCurves) and mif_curves.normalized:
        clean_score = mif_curves.clean_score
    measured = [c.fractions for c in (mif_curves, lif_curves) if isinstance(c, PerturbationCurves)]
    mif_curves, lif_curves = (c.curves if isinstance(c, PerturbationCurves) else c for c in (mif_curves, lif_curves))
    if fractions is None:
        fractions = measured[0] if measured else FPA_FRACTIONS
    fractions = check_fractions(fractions)
    if any(not torch.equal(m.to(fractions), fractions) for m in measured):
        raise XaitrustError("the curves were measured at other fractions than those given; omit fractions")
    for name, curves in (("mif_curves", mif_curves), ("lif_curves", lif_curves)):
        if curves.ndim != 2 or curves.shape[1] != len(fractions):
            raise XaitrustError(f"{name} must be (B, {len(fractions)}) to match the fractions; got {tuple(curves.shape)}")
    if mif_curves.shape != lif_curves.shape:
        raise XaitrustError(f"MIF and LIF curves must have the same shape; got {tuple(mif_curves.shape)} and {tuple(lif_curves.shape)}")
    if not 0 < ci < 1:
        raise XaitrustError(f"ci must be a confidence level in (0, 1); got {ci}")
    if ci_method not in CI_METHODS:
        raise XaitrustError(f"ci_method must be one of {', '.join(CI_METHODS)}; got {ci_method!r}")
    scale = 100.0 if percent else 1.0
    per_sample = curve_area(lif_curves.double(), fractions, scale) - curve_area(mif_curves.double(), fractions, scale)
    undefined = torch.zeros(len(per_sample), dtype=torch.bool)
    if clean_score is not None:
        undefined = undefined_normalisation(clean_score).cpu()
        per_sample = per_sample.masked_fill(undefined.to(per_sample.device), float("nan"))
    differences = per_sample[~undefined.to(per_sample.device)].cpu().numpy()  # other NaN (a broken curve) propagate
    value = float(differences.mean()) if len(differences) else float("nan")
    if len(differences) < 2:
        return AreaBetween(value, float("nan"), float("nan"), per_sample, len(differences))
    if ci_method == "normal":
        half = stats.norm.ppf(0.5 + ci / 2) * differences.std(ddof=1) / np.sqrt(len(differences))
        low, high = value - half, value + half
    else:
        low, high = np.quantile(_bootstrap_means(differences, n_bootstrap, seed), [0.5 - ci / 2, 0.5 + ci / 2])
    return AreaBetween(value, float(low), float(high), per_sample, len(differences))


def undefined_normalisation(clean_score: torch.Tensor) -> torch.Tensor:
    """Bool ``(B,)``: where curves normalised by ``clean_score`` are flipped or unbounded (score <= 0), with a warning
    counting them."""
    undefined = torch.as_tensor(clean_score) <= 0
    if undefined.any():
        warnings.warn(f"{int(undefined.sum())} of {len(undefined)} samples have a clean score <= 0: their MIF/LIF "
                      "area is NaN and left out of A", UserWarning, stacklevel=3)
    return undefined


def _bootstrap_means(values: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    """Means of ``n_bootstrap`` resamples (with replacement) of ``values``, drawn in chunks of about 2**22 indices."""
    if n_bootstrap < 1:
        raise XaitrustError(f"n_bootstrap must be a positive integer; got {n_bootstrap}")
    rng = np.random.default_rng(seed)
    chunk = max(1, 2**22 // len(values))
    sizes = [min(chunk, n_bootstrap - start) for start in range(0, n_bootstrap, chunk)]
    return np.concatenate([values[rng.integers(0, len(values), size=(size, len(values)))].mean(axis=1) for size in sizes])
