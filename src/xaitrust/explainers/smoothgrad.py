"""Gradients averaged over noisy copies of the input (Smilkov et al. 2017, "SmoothGrad: removing noise by adding noise").

With ``g_i = ds(x + e_i)/dx`` at ``n = samples`` noisy copies, ``e_i ~ N(0, sd^2)`` drawn independently per pixel:

- ``smoothgrad``: ``mean_i g_i`` (MeGe/ReCo's SG, FPA's SG);
- ``smoothgrad-squared``: ``mean_i g_i^2`` (Hooker et al. 2019, FPA's SQ-SG);
- ``vargrad``: ``mean_i g_i^2 - (mean_i g_i)^2``, the population variance (Adebayo et al. 2018).

``sigma`` is relative to each image's value range, as in Smilkov et al. (noise level ``sigma / (x_max - x_min)``):
``sd = sigma * (max(x) - min(x))`` per image (an image with a single value gets no noise). Defaults follow MeGe/ReCo
(60 samples, sigma 0.2); FPA uses 15 samples. Noise comes from ``seed``: one set of ``samples`` standard-normal
noise images is drawn per call and scaled by each image's ``sd``, so an image gets the same noise whatever batch it is
explained in (explaining a batch equals explaining its images one by one). Noise is drawn in float32 whatever the
input's dtype, so float32 and float64 runs see the same noise.

The ``B * samples`` noisy copies go through the model in large chunks (``_autograd.sampled_gradients``), plain
autograd; these equal Captum's ``NoiseTunnel`` ("smoothgrad", "smoothgrad_sq", "vargrad") fed the same noise.
"""

from __future__ import annotations

import torch

from ._autograd import sampled_gradients
from ._params import integer, non_negative_float, optional, positive_int
from .base import Explainer, register


class _NoisyGradients(Explainer):
    """Accumulates the sum and the sum of squares of the gradients at noisy copies; subclasses combine them."""

    def __init__(self, samples: int = 60, sigma: float = 0.2, seed: int = 0, batch_size: int | None = None) -> None:
        self.samples = positive_int(self.name, "samples", samples)
        self.sigma = non_negative_float(self.name, "sigma", sigma)
        self.seed = integer(self.name, "seed", seed)
        self.batch_size = optional(positive_int, self.name, "batch_size", batch_size)

    def noise_scale(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image noise standard deviation ``sigma * (max(x) - min(x))``, shape ``(B, 1, 1, 1)``."""
        flat = x.flatten(1)
        return (self.sigma * (flat.amax(dim=1) - flat.amin(dim=1))).reshape(-1, 1, 1, 1)

    def attribute(self, model, x, target, output):
        scale = self.noise_scale(x)
        noise = torch.randn((self.samples, *x.shape[1:]), generator=self.generator()).to(x.device)
        noise = noise.to(x.dtype)

        def noisy_inputs(image, point):
            return torch.addcmul(x[image], scale[image], noise[point])

        total, total_squares = torch.zeros_like(x), torch.zeros_like(x)
        for image, _, gradients in sampled_gradients(model, x, target, output, self.samples, noisy_inputs, self.batch_size):
            total.index_add_(0, image, gradients)
            total_squares.index_add_(0, image, gradients.square())
        return self.combine(total / self.samples, total_squares / self.samples)

    def combine(self, mean: torch.Tensor, mean_square: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register
class SmoothGrad(_NoisyGradients):
    name = "smoothgrad"
    description = "mean gradient over Gaussian-noised copies of the input (Smilkov et al. 2017)"

    def combine(self, mean, mean_square):
        return mean


@register
class SmoothGradSquared(_NoisyGradients):
    name = "smoothgrad-squared"
    description = "mean squared gradient over Gaussian-noised copies of the input (Hooker et al. 2019)"

    def combine(self, mean, mean_square):
        return mean_square


@register
class VarGrad(_NoisyGradients):
    name = "vargrad"
    description = "variance of the gradient over Gaussian-noised copies of the input (Adebayo et al. 2018)"

    def combine(self, mean, mean_square):
        return mean_square - mean.square()
