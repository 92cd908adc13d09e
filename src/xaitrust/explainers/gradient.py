"""Plain-gradient explainers: one forward and one backward pass for the whole batch (``_autograd.score_gradients``).

With ``s`` the chosen score of the target class (``output``) and ``x`` the image in [0, 1]:

- ``saliency``: ``|ds/dx|`` (Simonyan et al. 2014, "Deep inside convolutional networks"; MeGe/ReCo's SA).
- ``sensitivity``: the signed gradient ``ds/dx`` (Calibrate to Interpret, eq. 3; FPA's vanilla gradient VG).
  Calibrate to Interpret's map is its magnitude summed over channels, the ``"abs-sum"`` reduction
  (``xaitrust.explainers.reduce``): "the sensitivity of the output to infinitesimal changes in each input feature",
  as its authors' code computes it; eq. 3 as printed is the signed ``"sum"``. ``"input-sum"`` gives FPA's primed VG'.
- ``gradient-input``: ``x * ds/dx`` (Shrikumar et al. 2016); with ``gradient="absolute"``, ``x * |ds/dx|``, the
  form MeGe/ReCo's appendix B prints for GI (``x ⊙ |∂f_c/∂x|``). The two give the same ``abs-sum`` map for inputs
  >= 0; they differ where the signed attributions are used (e.g. muFidelity's attribution sums).

Captum's ``Saliency`` and ``InputXGradient`` compute the same maps; ours use plain autograd to batch the whole input
in one pass and to honour ``output`` directly. Tests compare them with Captum.
"""

from __future__ import annotations

import torch

from ._autograd import score_gradients
from ._params import choice
from .base import Explainer, register


class _InputGradient(Explainer):
    """Computes ``ds/dx`` for the batch; subclasses say how it becomes an attribution."""

    def __init__(self) -> None:
        pass

    def attribute(self, model, x, target, output):
        return self.from_gradient(score_gradients(model, x, target, output), x)

    def from_gradient(self, gradient: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register
class Saliency(_InputGradient):
    name = "saliency"
    description = "absolute gradient |ds/dx| of the target score (Simonyan et al. 2014)"

    def from_gradient(self, gradient, x):
        return gradient.abs()


@register
class Sensitivity(_InputGradient):
    name = "sensitivity"
    description = "signed gradient ds/dx of the target score; its 'abs-sum' reduction is Calibrate to Interpret's map"

    def from_gradient(self, gradient, x):
        return gradient


@register
class GradientInput(_InputGradient):
    name = "gradient-input"
    description = "gradient times input x * ds/dx (Shrikumar et al. 2016); gradient='absolute': x * |ds/dx| (MeGe)"

    def __init__(self, gradient: str = "signed") -> None:
        self.gradient = choice(self.name, "gradient", gradient, ("signed", "absolute"))

    def from_gradient(self, gradient, x):
        return (gradient.abs() if self.gradient == "absolute" else gradient) * x
