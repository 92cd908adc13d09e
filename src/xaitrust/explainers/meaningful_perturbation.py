"""Meaningful Perturbation (Fong & Vedaldi, ICCV 2017): the smallest, smoothest deletion that destroys the score.

A low-resolution keep mask ``m`` in [0, 1] of ``mask_size x mask_size`` cells (28, as Fong & Vedaldi's 28x28 mask for
224x224 images; never more than the image's pixels) is upsampled bilinearly to the image size. The perturbed image is
``x' = x ⊙ m + r ⊙ (1 - m)`` with ``r`` a blurred copy of ``x`` (Gaussian, 11x11, sigma 10 by default; any
``make_replacement`` choice works). Starting from ``m = 1``, Adam minimises

    l1_weight * mean(|1 - m|) + tv_weight * TV_beta(m) + f(x')

where ``f`` is the chosen score of the target class and
``TV_beta(m) = (1 / |m|) * sum_u (|m_{u + e_row} - m_u|^beta + |m_{u + e_col} - m_u|^beta)``, clamping ``m`` to
[0, 1] after each step. Defaults follow Calibrate-to-Interpret (its eq. 8: Adam, lr 0.1, 600 steps, L1 weight 0.1,
TV weight 0.4, which scores by softmax probability, ``output="probability"``) and Fong & Vedaldi (``beta = 3``,
blurred deletion); the norms are means over the mask so the weights do not depend on its size.

The whole batch is optimised together: the per-image losses are summed, and Adam's per-element updates keep the
images independent. A perturbation-aware model receives each perturbed image's level ``1 - mean(m)``. The result is
the deleted region ``1 - m`` (upsampled), the same on every channel: ``(B, C, H, W)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..outputs import target_scores
from ..perturb import REPLACEMENTS, accepts_perturbation_level, compose, make_replacement
from ._params import bounded_float, choice_or_value, non_negative_float, positive_float, positive_int
from .base import Explainer, register


def total_variation(mask: torch.Tensor, exponent: float) -> torch.Tensor:
    """``TV_beta`` of masks ``(B, 1, h, w)`` per image ``(B,)``: mean over pixels of ``|d_row|^beta + |d_col|^beta``."""
    rows = mask.diff(dim=2).abs().pow(exponent).flatten(1).sum(dim=1)
    cols = mask.diff(dim=3).abs().pow(exponent).flatten(1).sum(dim=1)
    return (rows + cols) / mask[0].numel()


@register
class MeaningfulPerturbation(Explainer):
    name = "meaningful-perturbation"
    description = "Meaningful Perturbation: smallest smooth blurred region that deletes the score (Fong & Vedaldi 2017)"

    def __init__(
        self,
        steps: int = 600,
        learning_rate: float = 0.1,
        l1_weight: float = 0.1,
        tv_weight: float = 0.4,
        tv_exponent: float = 3.0,
        mask_size: int = 28,
        replacement="blur",
    ) -> None:
        self.steps = positive_int(self.name, "steps", steps)
        self.learning_rate = positive_float(self.name, "learning_rate", learning_rate)
        self.l1_weight = non_negative_float(self.name, "l1_weight", l1_weight)
        self.tv_weight = non_negative_float(self.name, "tv_weight", tv_weight)
        self.tv_exponent = bounded_float(self.name, "tv_exponent", tv_exponent, 1.0)
        self.mask_size = positive_int(self.name, "mask_size", mask_size)
        self.replacement = choice_or_value(self.name, "replacement", replacement, REPLACEMENTS)

    def attribute(self, model, x, target, output):
        size = x.shape[2:]
        mean = getattr(model, "input_mean", None) if self.replacement == "mean" else None
        mean = None if mean is None else mean.reshape(-1)
        base = make_replacement(x, self.replacement, mean=mean, generator=self.generator())
        low = (min(self.mask_size, size[0]), min(self.mask_size, size[1]))
        mask = torch.ones(len(x), 1, *low, device=x.device, dtype=x.dtype, requires_grad=True)
        optimizer = torch.optim.Adam([mask], lr=self.learning_rate)
        level_aware = accepts_perturbation_level(model)
        for _ in range(self.steps):
            keep = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
            inputs = compose(x, keep, base)
            logits = model(inputs, perturbation_level=1.0 - keep.mean(dim=(1, 2, 3))) if level_aware else model(inputs)
            loss = (
                self.l1_weight * (1.0 - mask).abs().mean(dim=(1, 2, 3))
                + self.tv_weight * total_variation(mask, self.tv_exponent)
                + target_scores(logits, target, output)
            )
            (mask.grad,) = torch.autograd.grad(loss.sum(), mask)
            optimizer.step()
            with torch.no_grad():
                mask.clamp_(0.0, 1.0)
        with torch.no_grad():
            deleted = 1.0 - F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        return deleted.expand(-1, x.shape[1], -1, -1)
