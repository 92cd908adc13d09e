"""Occlusion (Zeiler & Fergus, ECCV 2014), computed as Captum's ``Occlusion`` does.

A window of ``window`` pixels (all channels) slides with ``stride`` over the image and is replaced (``replacement``,
zero by default). Each pixel's attribution is the mean score drop over the windows that cover it:
``a(p) = sum_{w ∋ p} (f(x) - f(x_w)) / #{w ∋ p}``, with ``f`` the chosen score of the target class and ``x_w`` the
image with window ``w`` replaced. Windows start at every multiple of the stride, the last ones cut by the edge
(``WindowMasks``), so the stride must not exceed the window. The defaults (4x4 windows, stride 2) suit 28x28 images;
scale them with the image.
"""

from __future__ import annotations

import torch

from ..perturb import REPLACEMENTS, masked_scores
from ..perturb.masks import WindowMasks, mask_weighted_sum
from ._params import choice_or_value, optional, positive_int, positive_int_or_pair
from .base import Explainer, register


@register
class Occlusion(Explainer):
    name = "occlusion"
    description = "Occlusion: mean score drop when a sliding window over each pixel is replaced (Zeiler & Fergus 2014)"

    def __init__(self, window=4, stride=2, replacement="zero", batch_size: int | None = None) -> None:
        self.window = positive_int_or_pair(self.name, "window", window)
        self.stride = positive_int_or_pair(self.name, "stride", stride)
        WindowMasks.check(self.window, self.stride)  # the stride must not exceed the window
        self.replacement = choice_or_value(self.name, "replacement", replacement, REPLACEMENTS)
        self.batch_size = optional(positive_int, self.name, "batch_size", batch_size)

    def attribute(self, model, x, target, output):
        windows = WindowMasks(x.shape[2:], self.window, self.stride, device=x.device)
        settings = dict(
            replacement=self.replacement, output=output, batch_size=self.batch_size, generator=self.generator()
        )
        clean = masked_scores(model, x, torch.ones(1, 1, *x.shape[2:], device=x.device), target, **settings)
        drops = (clean - masked_scores(model, x, windows, target, **settings)).double()
        # sum over the windows covering p = sum over all windows - sum over the windows keeping p (in float64, so
        # that the difference of two large sums keeps its precision)
        occluded_drop = drops.sum(dim=1).reshape(-1, 1, 1, 1) - mask_weighted_sum(drops, windows)
        coverage = windows.num_masks - mask_weighted_sum(torch.ones_like(drops[:1]), windows)
        return (occluded_drop / coverage).to(x.dtype).expand(-1, x.shape[1], -1, -1)
