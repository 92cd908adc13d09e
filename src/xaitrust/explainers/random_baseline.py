"""A random attribution map: the baseline every explanation method should beat (C2I, MeGe, ROAR/KAR).

Independent noise for every pixel and channel, ``U(0, 1)`` or ``N(0, 1)``. Each image draws its map from its own
generator, seeded by ``seed`` and the image's bytes (``xaitrust.seeding.image_seed``), so an image gets the same map
whether it is explained alone or in any batch, and different images get independent maps even when they are explained
in separate calls (one generator per call would repeat the same maps batch after batch). Identical images share a
map. The model is never called.
"""

from __future__ import annotations

import torch

from ..seeding import image_seed
from ._params import choice, integer
from .base import Explainer, register

DISTRIBUTIONS = ("uniform", "normal")


@register
class RandomAttribution(Explainer):
    name = "random"
    description = "Random baseline: uniform or Gaussian noise seeded per image, independent of the model"

    def __init__(self, distribution: str = "uniform", seed: int = 0) -> None:
        self.distribution = choice(self.name, "distribution", distribution, DISTRIBUTIONS)
        self.seed = integer(self.name, "seed", seed)

    def attribute(self, model, x, target, output):
        draw = torch.rand if self.distribution == "uniform" else torch.randn
        generator = torch.Generator()  # on the CPU: the same maps on every device
        maps = []
        for image in x:  # one cheap draw per image: the map must not depend on the batch it came in
            generator.manual_seed(image_seed(self.seed, image))
            maps.append(draw(image.shape, generator=generator, dtype=x.dtype))
        return torch.stack(maps).to(x.device)
