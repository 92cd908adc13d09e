"""Surrogate explainers over feature groups: KernelSHAP (Lundberg & Lee, NeurIPS 2017) and LIME (Ribeiro, Singh &
Guestrin, KDD 2016).

The image is cut into feature groups (SLIC superpixels or square patches, ``xaitrust.perturb.segments``). A coalition
``z ∈ {0, 1}^F`` keeps the groups where ``z = 1`` and replaces the others (``replacement``, zero by default as in
ReCalX); ``v(z)`` is the chosen score of the target class on that image, evaluated by ``masked_scores``. A weighted
linear model of ``v`` over ``z`` is fitted for every image at once (one batched solve of ``(B, F, F)`` normal
equations) and each pixel receives the coefficient of its group (as Captum does with a feature mask; not divided by
the group size), the same on every channel.

Coalitions are drawn from a generator seeded with ``seed`` for each number of groups, so images with the same number
of groups share coalitions and an image's map does not depend on the batch it is explained in. SLIC itself runs image
by image on the CPU (scikit-image); an image on which it collapses into a few segments (noise, fine texture) is cut
into a patch grid instead, and the explainer's ``segmentation(x).fallback`` says which images are.

Too few coalitions. When the coalitions cannot determine an image's ``F`` groups, its least-squares system is rank
deficient: many coefficient vectors fit the scores equally well and the solver returns the one of minimum norm, which
spreads credit over groups the coalitions never told apart. That is certain below ``samples_needed(F)`` coalitions
(KernelSHAP: ``2 (F - 1)``, as its coalitions come in complementary pairs; LIME without ridge: ``F + 1``) and can
happen just above it, where random coalitions repeat or depend on each other. The explainer warns once per call
naming those images; the fix is more coalitions (``n_samples`` well above that count) or fewer groups.
"""

from __future__ import annotations

import math
import warnings

import torch

from ..perturb import REPLACEMENTS, masked_scores
from ..perturb.masks import CoalitionMasks
from ..perturb.segments import FEATURE_GROUPS, Segmentation, feature_segmentation
from ._params import choice, choice_or_value, integer, non_negative_float, optional, positive_float, positive_int
from .base import Explainer, register


class SurrogateExplainer(Explainer):
    """Shared machinery: feature groups, coalition sampling per group count, evaluation, per-pixel coefficients.

    Parameters: ``n_samples`` coalitions per image; ``features`` ``"superpixels"`` or ``"patches"``; for
    superpixels (``xaitrust.perturb.segments.superpixel_segmentation``) ``n_segments`` asked, ``compactness`` (``None``:
    10 for RGB, 0.1 otherwise), ``sigma`` of the Gaussian smoothing before SLIC (``None``: 1 for RGB, 0 otherwise) and
    ``min_segments``, below which an image is cut into a patch grid of about ``n_segments`` patches instead (``None``:
    half of SLIC's seeds); for patches their side ``patch_size``; ``replacement`` of switched-off groups; ``seed``;
    ``batch_size`` of the masked evaluation (``None``: the engine's choice).

    ``segmentation(x)`` gives the feature groups of images ``x`` (deterministic, image by image) with ``fallback``, a
    bool tensor ``(B,)``: True for the images whose superpixels fell back to the patch grid (always False for
    ``features="patches"``).

    Subclasses implement ``draw(n_features, generator) -> (coalitions (M, n_features), weights (M,))``,
    ``fit(coalitions (B, M, F), scores (B, M), weights (B, M), present (B, F)) -> (coefficients (B, F), rank_deficient
    (B,))`` (``least_squares`` gives both) and ``samples_needed(n_features)``, the fewest ``n_samples`` that can
    determine ``n_features`` groups, named by the warning about rank-deficient images (see the module notes).
    """

    def __init__(
        self,
        n_samples: int = 200,
        features: str = "superpixels",
        n_segments: int = 50,
        compactness: float | None = None,
        sigma: float | None = None,
        min_segments: int | None = None,
        patch_size: int = 4,
        replacement="zero",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        self.n_samples = positive_int(self.name, "n_samples", n_samples)
        self.features = choice(self.name, "features", features, FEATURE_GROUPS)
        self.n_segments = positive_int(self.name, "n_segments", n_segments)
        self.compactness = optional(positive_float, self.name, "compactness", compactness)
        self.sigma = optional(non_negative_float, self.name, "sigma", sigma)
        self.min_segments = optional(positive_int, self.name, "min_segments", min_segments)
        self.patch_size = positive_int(self.name, "patch_size", patch_size)
        self.replacement = choice_or_value(self.name, "replacement", replacement, REPLACEMENTS)
        self.seed = integer(self.name, "seed", seed)
        self.batch_size = optional(positive_int, self.name, "batch_size", batch_size)

    def segmentation(self, x: torch.Tensor) -> Segmentation:
        """The feature groups of images ``x`` and which images fell back to a patch grid."""
        return feature_segmentation(
            x, self.features, n_segments=self.n_segments, compactness=self.compactness, sigma=self.sigma,
            min_segments=self.min_segments, patch_size=self.patch_size,
        )

    def attribute(self, model, x, target, output):
        segments = self.segmentation(x).ids
        n_features = segments.flatten(1).max(dim=1).values + 1
        width = int(n_features.max())
        present = torch.arange(width, device=x.device) < n_features[:, None]
        coalitions, weights = self.coalitions(n_features, width)
        scores = masked_scores(
            model, x, CoalitionMasks(coalitions, segments), target, replacement=self.replacement, output=output,
            batch_size=self.batch_size, generator=self.generator(),
        )
        coefficients, rank_deficient = self.fit(coalitions.double(), scores.double(), weights, present)
        if rank_deficient.any():
            self.warn_rank_deficient(rank_deficient.cpu(), n_features.cpu())
        pixels = coefficients.to(x.dtype).gather(1, segments.flatten(1)).reshape(len(x), 1, *x.shape[2:])
        return pixels.expand(-1, x.shape[1], -1, -1)

    def coalitions(self, n_features: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Coalitions ``(B, M, width)`` (zero beyond each image's groups) and weights ``(B, M)``; images with fewer
        drawn coalitions than ``M`` are padded with zero-weight empty ones."""
        counts = n_features.cpu()
        draws = {
            count: self.draw(count, torch.Generator().manual_seed(int(self.seed))) for count in counts.unique().tolist()
        }
        rows = max(len(drawn) for drawn, _ in draws.values())
        coalitions = torch.zeros(len(counts), rows, width)
        weights = torch.zeros(len(counts), rows, dtype=torch.float64)
        for count, (drawn, drawn_weights) in draws.items():
            images = counts == count
            coalitions[images, : len(drawn), :count] = drawn
            weights[images, : len(drawn)] = drawn_weights
        return coalitions.to(n_features.device), weights.to(n_features.device)

    def warn_rank_deficient(self, rank_deficient: torch.Tensor, n_features: torch.Tensor) -> None:
        """One warning naming the images (bool ``rank_deficient`` ``(B,)``) whose coefficients are a minimum-norm
        solution, with their group counts ``n_features`` ``(B,)`` and the ``n_samples`` that would determine them."""
        images = rank_deficient.nonzero().flatten().tolist()
        groups = int(n_features[rank_deficient].max())
        shown = ", ".join(map(str, images[:10])) + (", ..." if len(images) > 10 else "")
        warnings.warn(
            f"{self.name}: {len(images)} of {len(rank_deficient)} images (batch positions {shown}; up to {groups} "
            f"feature groups) have more groups than n_samples={self.n_samples} coalitions can determine; their "
            "least-squares system is rank deficient and their coefficients are the minimum-norm solution, one of many "
            f"that fit equally well. Raise n_samples well above {self.samples_needed(groups)}, the fewest coalitions "
            f"that can determine {groups} groups (or use fewer groups: n_segments, patch_size).",
            UserWarning,
            stacklevel=4,
        )

    def draw(self, n_features: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def fit(self, coalitions, scores, weights, present) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def samples_needed(self, n_features: int) -> int:
        raise NotImplementedError


def normal_equations(design, targets, weights, present):
    """``A = Xᵀ W X`` ``(B, F, F)`` and ``c = Xᵀ W y`` ``(B, F)``, with ``A_ff = 1`` for groups not ``present``
    (their columns are zero, so their coefficient comes out 0)."""
    weighted = design * weights.unsqueeze(-1)
    gram = weighted.transpose(1, 2) @ design
    gram = gram + torch.diag_embed((~present).to(gram.dtype))
    return gram, (weighted.transpose(1, 2) @ targets.unsqueeze(-1)).squeeze(-1)


def subsets_of_sizes(sizes: torch.Tensor, n_features: int, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random subset of ``sizes[i]`` of the ``n_features`` groups per row: ``(len(sizes), n_features)``."""
    ranks = torch.rand(len(sizes), n_features, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < sizes[:, None]).float()


@register
class KernelShap(SurrogateExplainer):
    """KernelSHAP: Shapley values of the groups as the solution of a constrained weighted least-squares problem.

    ``phi = argmin sum_z pi(z) (v(z) - v(0) - zᵀ phi)^2`` subject to ``sum_f phi_f = v(1) - v(0)`` (efficiency), with
    the Shapley kernel ``pi(z) = (F - 1) / (C(F, |z|) |z| (F - |z|))`` (Lundberg & Lee 2017, Theorem 2). When
    ``n_samples >= 2^F - 2`` every coalition is enumerated with its kernel weight and the result is the exact Shapley
    value; otherwise ``n_samples`` coalitions are drawn with size ``k`` from ``p(k) ∝ 1 / (k (F - k))`` and a uniform
    subset of that size (the kernel absorbed by the sampling, unit weights), in complementary pairs (Covert & Lee,
    AISTATS 2021). The empty and full coalitions are always evaluated too (``n_samples + 2`` masked images per image).
    The constraint is solved exactly through the Lagrangian system of the normal equations.
    """

    name = "kernelshap"
    description = "KernelSHAP: Shapley values of superpixels/patches by constrained regression (Lundberg & Lee 2017)"

    def draw(self, n_features, generator):
        ends = torch.stack([torch.ones(n_features), torch.zeros(n_features)])
        if n_features < 63 and self.n_samples >= 2**n_features - 2:
            codes = torch.arange(1, 2**n_features - 1)
            sampled = ((codes[:, None] >> torch.arange(n_features)) & 1).float()
            sizes = sampled.sum(dim=1)
            binomials = torch.tensor([float(math.comb(n_features, int(k))) for k in sizes])
            weights = (n_features - 1) / (binomials * sizes * (n_features - sizes))
        else:
            sizes = torch.arange(1, n_features, dtype=torch.float64)
            size_probs = 1.0 / (sizes * (n_features - sizes))
            half = torch.multinomial(size_probs, -(-self.n_samples // 2), replacement=True, generator=generator) + 1
            subsets = subsets_of_sizes(half, n_features, generator)
            sampled = torch.stack([subsets, 1.0 - subsets], dim=1).flatten(0, 1)[: self.n_samples]
            weights = torch.ones(len(sampled), dtype=torch.float64)
        return torch.cat([ends, sampled]), torch.cat([torch.zeros(2, dtype=torch.float64), weights.double()])

    def fit(self, coalitions, scores, weights, present):
        empty, full = scores[:, 1:2], scores[:, 0]
        gram, moment = normal_equations(coalitions, scores - empty, weights, present)
        ones = present.to(gram.dtype)
        # Lagrangian (KKT) system [[A, u], [uᵀ, 0]] [phi; lambda] = [c; v(1) - v(0)], u = present groups
        top = torch.cat([gram, ones.unsqueeze(-1)], dim=2)
        bottom = torch.cat([ones, torch.zeros_like(ones[:, :1])], dim=1).unsqueeze(1)
        system = torch.cat([top, bottom], dim=1)
        rhs = torch.cat([moment, full.unsqueeze(-1) - empty], dim=1).unsqueeze(-1)
        solution, rank_deficient = least_squares(system, rhs)
        return solution[:, :-1, 0], rank_deficient

    def samples_needed(self, n_features):
        """``2 (F - 1)``: a complementary pair ``z, 1 - z`` fixes one direction of the coefficients beyond the
        efficiency constraint's, so ``F - 1`` independent pairs are the fewest that fix all ``F``."""
        return 2 * (n_features - 1)


def least_squares(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The minimum-norm least-squares solutions of the batched systems ``a x = b``, solved on the CPU (LAPACK's
    ``gelsd``, an SVD, which handles rank-deficient systems: fewer coalitions than groups, ``ridge = 0``; CUDA's only
    driver assumes full rank) and returned on ``a``'s device, with a bool ``(B,)``: True where the system's numerical
    rank (singular values above gelsd's default cut-off) is below its size, so that its solution is one of many. The
    systems are small, ``(F + 1) x (F + 1)``. Not ``gelsy``: torch's call of it starts the column pivoting from
    uninitialised memory, so identical systems got different solutions (up to 0.378 apart on a rank-deficient
    batch)."""
    result = torch.linalg.lstsq(a.cpu(), b.cpu(), driver="gelsd")
    return result.solution.to(a.device), (result.rank < a.shape[-1]).to(a.device)


@register
class Lime(SurrogateExplainer):
    """LIME: a weighted ridge regression of the scores on the coalitions, with intercept.

    Coalitions: the full one first, then each group kept with probability 1/2 (as the ``lime`` package's image
    explainer). Weights: ``pi(z) = exp(-d(z)^2 / (2 sigma^2))`` with ``d`` the cosine distance between ``z`` and the
    all-ones vector, ``d = 1 - sqrt(|z| / F)``, and ``sigma = kernel_width`` (0.25, the ``lime`` image default;
    ``exp(-d^2 / (2 sigma^2))`` is ``lime``'s ``sqrt(exp(-d^2 / sigma^2))`` and Captum's exponential kernel).
    ``beta = argmin sum_z pi(z) (v(z) - beta_0 - zᵀ beta)^2 + ridge * |beta|^2``; ``ridge = 1`` as ``lime``'s default
    ``Ridge(alpha=1)``, ``ridge = 0`` for plain weighted least squares.
    """

    name = "lime"
    description = "LIME: locally weighted ridge regression on superpixel/patch coalitions (Ribeiro et al. 2016)"

    def __init__(
        self,
        n_samples: int = 200,
        features: str = "superpixels",
        n_segments: int = 50,
        compactness: float | None = None,
        sigma: float | None = None,
        min_segments: int | None = None,
        patch_size: int = 4,
        kernel_width: float = 0.25,
        ridge: float = 1.0,
        replacement="zero",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(
            n_samples, features, n_segments, compactness, sigma, min_segments, patch_size, replacement, seed, batch_size
        )
        self.kernel_width = positive_float(self.name, "kernel_width", kernel_width)
        self.ridge = non_negative_float(self.name, "ridge", ridge)

    def draw(self, n_features, generator):
        sampled = (torch.rand(self.n_samples, n_features, generator=generator) < 0.5).float()
        sampled[0] = 1.0
        distance = 1.0 - (sampled.sum(dim=1).double() / n_features).sqrt()
        return sampled, torch.exp(-(distance**2) / (2 * self.kernel_width**2))

    def fit(self, coalitions, scores, weights, present):
        total = weights.sum(dim=1, keepdim=True)
        centred = coalitions - (weights.unsqueeze(-1) * coalitions).sum(dim=1, keepdim=True) / total.unsqueeze(-1)
        targets = scores - (weights * scores).sum(dim=1, keepdim=True) / total
        gram, moment = normal_equations(centred, targets, weights, present)
        gram = gram + self.ridge * torch.diag_embed(present.to(gram.dtype))
        solution, rank_deficient = least_squares(gram, moment.unsqueeze(-1))
        return solution[..., 0], rank_deficient

    def samples_needed(self, n_features):
        """``F + 1``: centring on the weighted means takes one degree of freedom from the coalitions (only binding
        with ``ridge = 0``; a positive ridge makes every system full rank)."""
        return n_features + 1
