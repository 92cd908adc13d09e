"""Layers whose Lipschitz constant with respect to the L2 norm is at most 1.

* ``lipschitz_linear`` / ``lipschitz_conv2d``: the weight is divided by the layer's operator norm (exact for dense
  layers, a tight upper bound for convolutions) at every forward pass (``UnitOperatorNorm`` parametrization). No power-iteration state is kept, so the bound holds after every
  optimiser step and a state dict reproduces the layer exactly. Deel-Lip's ``SpectralDense`` / ``SpectralConv2D``
  (and deel-torchlip's ``SpectralLinear`` / ``SpectralConv2d``) estimate the largest singular value of the weight
  (reshaped ``out x in*kh*kw`` for a convolution) by a few power iterations, push every other singular value towards
  1 by Björck orthonormalisation ``W <- (1 + b) W - b W W^T W`` and, for a convolution, multiply by a coefficient of
  about ``1 / sqrt(kh kw)`` that bounds the norm of the convolution by that of the reshaped kernel (Serrurier et al.,
  "Achieving robustness in classification using optimal transport with hinge regularization"). Power iteration
  approaches the largest singular value from below (deel-torchlip divides by it plus a small epsilon) and the reshaped
  bound can be loose by a factor up to ``sqrt(kh kw)``; the norm here is exact for dense layers and, for
  convolutions, an upper bound within the margins ``conv_operator_norm`` states. Björck orthonormalisation would
  only change which weights the parametrisation can express, not the bound; what it brings to training, a flat
  spectrum, comes here from Deel-Lip's initialisation: orthogonal weights (``torch.nn.init.orthogonal_``, i.e. an
  orthonormal reshaped kernel) and zero biases. On Fashion-MNIST (6,400 training images, 2 epochs of Adam with
  cross-entropy, the MeGe/ReCo quick profile) it takes the test accuracy of ``lipschitz-cnn`` from 0.682 to 0.711;
  Björck orthonormalisation inside the parametrisation on top of it gave no further gain (one epoch, 2,000 test
  images: 0.716 against 0.717).
* ``MaxMin``: GroupSort with groups of two (Anil, Lucas & Grosse 2019, "Sorting out Lipschitz function
  approximation"); it permutes each pair of values, so it is 1-Lipschitz and preserves gradient norms.
* ``BoundedPReLU``: PReLU whose slopes are clamped to [-1, 1], hence 1-Lipschitz (Deel-Lip's PReLU).
* ``ScaledAvgPool2d``: non-overlapping k x k average pooling times k. Each output is the mean of its own k*k inputs,
  a row of norm sqrt(k^2) / k^2 = 1/k, and windows do not overlap, so plain average pooling has operator norm 1/k;
  times k it is 1 (attained by constant images). Rows or columns dropped by flooring only lower it. This is
  Deel-Lip's ``ScaledAveragePooling2D``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize


def conv_operator_norm(weight: torch.Tensor, input_size: Sequence[int]) -> torch.Tensor:
    """An upper bound on the L2 operator norm of the stride-1 convolution with kernel
    ``weight`` ``(O, I, kh, kw)`` and zero padding of at most ``k - 1``, applied to images of ``input_size`` ``(h, w)``.

    On an ``(h + kh - 1) x (w + kw - 1)`` grid no tap of that convolution wraps around, so it is the circular
    convolution of the zero-embedded image followed by a selection of outputs; embedding and selection have norm 1,
    hence ``||conv|| <= ||circular conv||``. The 2D DFT block-diagonalises a circular convolution (Sedghi, Gupta &
    Long 2019, "The singular values of convolutional layers"): its singular values are those of the ``O x I``
    matrices ``K(f) = sum_t W[:, :, t] exp(-2 pi i <f, t> / N)`` over the grid's frequencies ``f``. The result is
    ``max_f sigma_max(K(f))``, the square root of the top eigenvalue of the smaller Gram matrix; for a real kernel
    ``K(-f)`` is the conjugate of ``K(f)``, so the half spectrum of ``rfft2`` suffices. Measured against the exact
    norm of the zero-padded operator (random 8-to-8-channel 3x3 kernels, Gaussian or orthogonal), the bound is high by
    a median 1% (at most 2%) on 14x14 images, 4% (8%) on 7x7, 14% (24%) on 4x4 and 56% (90%) on 2x2.
    """
    grid = (input_size[0] + weight.shape[-2] - 1, input_size[1] + weight.shape[-1] - 1)
    spectrum = torch.fft.rfft2(weight, s=grid).permute(2, 3, 0, 1)
    gram = spectrum.mH @ spectrum if spectrum.shape[-1] <= spectrum.shape[-2] else spectrum @ spectrum.mH
    return torch.linalg.eigvalsh(gram)[..., -1].max().clamp_min(0).sqrt()


class UnitOperatorNorm(nn.Module):
    """Parametrization ``weight -> weight / ||layer||_2``.

    ``input_size=None``: the weight is a dense layer's matrix and the norm its largest singular value.
    ``input_size=(h, w)``: the weight is a convolution kernel applied to ``h x w`` images and the norm is
    ``conv_operator_norm`` (so the layer's norm is at most 1 on images of that size or smaller).
    """

    def __init__(self, input_size: Sequence[int] | None = None) -> None:
        super().__init__()
        self.input_size = None if input_size is None else (int(input_size[0]), int(input_size[1]))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.input_size is None:
            norm = torch.linalg.matrix_norm(weight, ord=2)
        else:
            norm = conv_operator_norm(weight, self.input_size)
        return weight / norm.clamp_min(1e-12)


def _deel_lip_init(layer: nn.Linear | nn.Conv2d) -> None:
    """Deel-Lip's initialisation of its spectral layers: an orthogonal weight (reshaped ``out x rest``) and zero bias."""
    nn.init.orthogonal_(layer.weight)
    nn.init.zeros_(layer.bias)


def lipschitz_linear(in_features: int, out_features: int) -> nn.Linear:
    """A linear layer whose weight matrix always has spectral norm 1 (orthogonal at initialisation)."""
    layer = nn.Linear(in_features, out_features)
    _deel_lip_init(layer)
    parametrize.register_parametrization(layer, "weight", UnitOperatorNorm())
    return layer


def lipschitz_conv2d(in_channels: int, out_channels: int, input_size: Sequence[int], kernel_size: int = 3) -> nn.Conv2d:
    """A "same" zero-padded convolution (odd ``kernel_size``) of L2 operator norm <= 1 on ``input_size`` images,
    initialised with an orthonormal reshaped kernel."""
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    _deel_lip_init(layer)
    parametrize.register_parametrization(layer, "weight", UnitOperatorNorm(input_size))
    return layer


class MaxMin(nn.Module):
    """Splits the channels into halves ``a, b`` and returns ``cat(max(a, b), min(a, b))`` (needs an even count),
    computed as ``max = b + relu(a - b)``, ``min = a - relu(a - b)`` (one rectification instead of two masks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        gap = torch.relu(a - b)
        return torch.cat([b + gap, a - gap], dim=1)


class BoundedPReLU(nn.PReLU):
    """PReLU with one slope per channel, clamped to [-1, 1] when applied."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope = self.weight.clamp(-1.0, 1.0).reshape(1, -1, *([1] * (x.ndim - 2)))
        return torch.where(x >= 0, x, slope * x)


class ScaledAvgPool2d(nn.AvgPool2d):
    """``kernel_size x kernel_size`` average pooling with stride ``kernel_size``, multiplied by ``kernel_size``."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__(kernel_size)
        self.scale = float(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.scale
