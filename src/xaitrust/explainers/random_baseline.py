"""A random attribution map: the baseline every explanation method should beat (C2I, MeGe, ROAR/KAR).

Independent noise for every pixel and channel, ``U(0, 1)`` or ``N(0, 1)``, drawn from ``seed`` for the whole batch at
once (an image's map therefore depends on its position in the batch). The model is never called.
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from .base import Explainer, register

DISTRIBUTIONS = ("uniform", "normal")


@register
class RandomAttribution(Explainer):
    name = "random"
    description = "Random baseline: seeded uniform or Gaussian noise, independent of the model"

    def __init__(self, distribution: str = "uniform", seed: int = 0) -> None:
        if distribution not in DISTRIBUTIONS:
            raise XaitrustError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}; got {distribution!r}")
        self.distribution = distribution
        self.seed = seed

    def attribute(self, model, x, target, output):
        draw = torch.rand if self.distribution == "uniform" else torch.randn
        return draw(x.shape, generator=self.generator(x.device), device=x.device, dtype=x.dtype)
