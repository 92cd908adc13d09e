"""Integrated Gradients (Sundararajan et al. 2017, "Axiomatic attribution for deep networks").

    IG(x) = (x - x0) * integral_0^1 ds(x0 + a (x - x0))/dx da  ~=  (x - x0) * sum_k w_k ds(x0 + a_k (x - x0))/dx

with ``s`` the chosen target score and the quadrature ``rule``:

- ``riemann-right``: ``a_k = k/m``, k = 1..m, ``w_k = 1/m`` (Calibrate to Interpret eq. 4 and FPA's formula);
- ``riemann-left``: ``a_k = k/m``, k = 0..m-1; ``riemann-middle``: ``a_k = (k + 1/2)/m``, k = 0..m-1; both ``w_k = 1/m``;
- ``trapezoid``: ``a_k = k/(m-1)``, k = 0..m-1, ``w_k = 1/(m-1)`` with both ends halved (MeGe/ReCo's choice). The
  weights sum to 1, so the map is complete for a linear model; Captum's ``riemann_trapezoid`` uses ``1/m`` instead,
  i.e. Captum's map times ``(m-1)/m``;
- ``gauss-legendre``: Gauss-Legendre nodes and weights on [0, 1] (Captum's default rule).

Baselines ``x0`` (images live in [0, 1] before the model's own normalisation): ``"zero"`` and ``"black"`` (the image
0), ``"white"`` (the image 1), a number (constant image), a tensor broadcastable to ``x``, or ``"black+white"``:
Calibrate to Interpret's "black and white references combined". How the maps of several references are combined is
``combine``:

- ``"mean"`` (default): the signed mean ``(IG_black + IG_white) / 2``, so the completeness sum is
  ``s(x) - (s(black) + s(white)) / 2``. The two references pull in opposite directions, so an unsigned reduction of
  this mean cancels them: for a linear model it is ``|w| * |x - 1/2|``, zero on mid-grey pixels;
- ``"mean-abs"``: the mean of the magnitudes ``(|IG_black| + |IG_white|) / 2``, unsigned. With the ``abs-sum``
  reduction this is the mean of the two references' ``abs-sum`` maps, which is how the Calibrate to Interpret
  authors' code combines them (each reference's map is reduced by ``abs().sum(channels)``, then averaged).

Paper defaults: MeGe/ReCo 60 points, trapezoid, zero baseline (the defaults here); Calibrate to Interpret 30 points,
riemann-right, black+white, mean-abs; FPA 200 points, riemann-right, black.

All ``B * steps`` (times 2 for black+white) path points go through the model in large chunks, one forward and one
backward pass per chunk, chunk size chosen by ``_autograd.gradient_batch_size`` unless ``batch_size`` is given. Plain
autograd, not Captum: the cost is the bare forward+backward passes, in bounded memory, where Captum's default batching
holds every point of every image at once (benchmarks/bench_gradient_explainers.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import XaitrustError
from ._autograd import sampled_gradients
from ._params import choice, choice_or_value, optional, positive_int
from .base import Explainer, register

RULES = ("riemann-left", "riemann-right", "riemann-middle", "trapezoid", "gauss-legendre")
COMBINATIONS = ("mean", "mean-abs")
NAMED_BASELINES = {"zero": (0.0,), "black": (0.0,), "white": (1.0,), "black+white": (0.0, 1.0)}


def path_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``a_k`` in [0, 1] and weights ``w_k`` (summing to 1) of ``rule`` with ``steps`` points."""
    k = np.arange(steps, dtype=np.float64)
    weights = np.full(steps, 1.0 / steps)
    if rule == "riemann-left":
        return k / steps, weights
    if rule == "riemann-right":
        return (k + 1) / steps, weights
    if rule == "riemann-middle":
        return (k + 0.5) / steps, weights
    if rule == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return k / (steps - 1), weights
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


@register
class IntegratedGradients(Explainer):
    name = "integrated-gradients"
    description = "path integral of gradients from a baseline to the input, times (input - baseline)"

    def __init__(
        self, steps: int = 60, baseline="zero", rule: str = "trapezoid", combine: str = "mean",
        batch_size: int | None = None,
    ) -> None:
        self.steps = positive_int(self.name, "steps", steps)
        self.rule = choice(self.name, "rule", rule, RULES)
        self.combine = choice(self.name, "combine", combine, COMBINATIONS)
        if self.rule == "trapezoid" and self.steps < 2:
            raise XaitrustError(f"{self.name}: the trapezoid rule needs steps >= 2; got {steps}")
        self.baseline = choice_or_value(self.name, "baseline", baseline, tuple(NAMED_BASELINES))
        self.batch_size = optional(positive_int, self.name, "batch_size", batch_size)

    def baselines(self, x: torch.Tensor) -> torch.Tensor:
        """The reference images ``(J, B, C, H, W)``: one per named reference (two for black+white)."""
        if isinstance(self.baseline, torch.Tensor):
            try:
                return torch.broadcast_to(self.baseline.to(device=x.device, dtype=x.dtype), x.shape).unsqueeze(0)
            except RuntimeError:
                raise XaitrustError(
                    f"{self.name}: a baseline tensor must broadcast to the images' shape {tuple(x.shape)}; "
                    f"got {tuple(self.baseline.shape)}"
                ) from None
        values = NAMED_BASELINES[self.baseline] if isinstance(self.baseline, str) else (self.baseline,)
        values = torch.tensor(values, device=x.device, dtype=x.dtype)
        return values.reshape(-1, 1, 1, 1, 1).expand(len(values), *x.shape)

    def attribute(self, model, x, target, output):
        bases = self.baselines(x)
        deltas = x.unsqueeze(0) - bases
        nodes, weights = path_points(self.rule, self.steps)
        nodes = torch.as_tensor(nodes, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        weights = torch.as_tensor(weights, device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1)
        steps = self.steps

        def path_inputs(image, point):
            reference, k = point // steps, point % steps
            return torch.addcmul(bases[reference, image], nodes[k], deltas[reference, image])

        per_reference = x.new_zeros((len(bases) * len(x), *x.shape[1:]))  # row reference * B + image
        points = len(bases) * steps
        for image, point, gradients in sampled_gradients(model, x, target, output, points, path_inputs, self.batch_size):
            reference, k = point // steps, point % steps
            per_reference.index_add_(0, reference * len(x) + image, gradients * weights[k] * deltas[reference, image])
        per_reference = per_reference.reshape(len(bases), *x.shape)
        return (per_reference.abs() if self.combine == "mean-abs" else per_reference).mean(dim=0)
