"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018).

``saliency(p) = 1 / (E[M] * N) * sum_i f(x ⊙ M_i) * M_i(p)`` over ``N`` random masks ``M_i`` (``RiseMasks``), where
``f`` is the chosen score of the target class and ``E[M] = keep_prob`` (the paper's normalisation). Defaults follow
Calibrate-to-Interpret: 4000 masks on an 8x8 grid, keep probability 0.6, bicubic upsampling with a random shift
(MeGe uses 1000 masks and bilinear upsampling on small images).

Every image of a batch is probed with the same masks (drawn from ``seed``), so explaining a batch gives the same maps
as explaining its images one by one. The masked scores come from ``masked_scores`` (chunked, memory-bounded, levels
passed to perturbation-aware models); the weighted sum of masks is one matmul per block of masks.
"""

from __future__ import annotations

from ..perturb import REPLACEMENTS, masked_scores
from ..perturb.masks import INTERPOLATIONS, RiseMasks, mask_weighted_sum
from ._params import bounded_float, choice, choice_or_value, integer, optional, positive_int
from .base import Explainer, register


@register
class Rise(Explainer):
    name = "rise"
    description = "RISE: random low-resolution masks weighted by the masked images' scores (Petsiuk et al. 2018)"

    def __init__(
        self,
        n_masks: int = 4000,
        grid_size: int = 8,
        keep_prob: float = 0.6,
        interpolation: str = "bicubic",
        replacement="zero",
        seed: int = 0,
        batch_size: int | None = None,
    ) -> None:
        self.n_masks = positive_int(self.name, "n_masks", n_masks)
        self.grid_size = positive_int(self.name, "grid_size", grid_size)
        self.keep_prob = bounded_float(self.name, "keep_prob", keep_prob, 0.0, 1.0, open_low=True)
        self.interpolation = choice(self.name, "interpolation", interpolation, INTERPOLATIONS)
        self.replacement = choice_or_value(self.name, "replacement", replacement, REPLACEMENTS)
        self.seed = integer(self.name, "seed", seed)
        self.batch_size = optional(positive_int, self.name, "batch_size", batch_size)

    def attribute(self, model, x, target, output):
        masks = RiseMasks(
            x.shape[2:], self.n_masks, self.grid_size, self.keep_prob, self.interpolation, self.seed, device=x.device
        )
        scores = masked_scores(
            model, x, masks, target, replacement=self.replacement, output=output, batch_size=self.batch_size,
            generator=self.generator(),
        )
        saliency = mask_weighted_sum(scores, masks) / (self.keep_prob * self.n_masks)
        return saliency.expand(-1, x.shape[1], -1, -1)
