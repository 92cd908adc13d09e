"""Explainers that propagate a modified signal backwards through the layers: Guided Backpropagation, DeepLIFT, LRP.

- ``guided-backprop`` (Springenberg et al. 2015): the gradient in which every ReLU also zeroes negative incoming
  gradients. Captum's ``GuidedBackprop``: it hooks ``nn.ReLU`` modules, so ReLUs applied as functions are not guided.
- ``deeplift`` (Shrikumar et al. 2017, Rescale rule): ``(x - x0) * m`` with multipliers ``m`` propagated from the black
  image ``x0 = 0``. Captum's ``DeepLift``: it hooks non-linear modules (``nn.ReLU``, ``nn.MaxPool2d``, ...), so each
  such module must be used once per forward pass (no module reused at two places of the network); functional
  non-linearities fall back to their gradient.
- ``lrp`` (Bach et al. 2015; Calibrate to Interpret eq. 6), the epsilon rule
  ``R_j = sum_k a_j w_jk / (z_k + epsilon sign(z_k)) R_k`` with ``z_k = sum_j a_j w_jk + b_k``. Our own code (Captum's
  ``LRP`` has no rule for ``nn.Flatten``, which our models use): for ReLU networks LRP-epsilon is gradient times input
  with every linear layer's backward pass scaled by ``z / (z + epsilon sign(z))`` (Ancona et al. 2018), done here by
  forward hooks on ``nn.Conv*``, ``nn.Linear``, ``nn.BatchNorm*`` and average pools. ReLUs, max pools (winner takes
  all), flatten, dropout and identities pass the signal unchanged; any other module type raises an error. Operations
  done outside modules (a residual addition, a functional ReLU) pass their plain gradient. The relevance is that of
  the model's normalised input ``(x - mean) / std``, assigned to the pixel it came from: ``(x - mean) * dR/dx``. The
  relevance is seeded with ``z * ds/dz`` at the logits ``z``, i.e. the target logit itself when ``output="logit"``.

Captum runs under ``output`` by wrapping the model in ``ScoreModel`` (logits to the chosen scores). In-place ReLUs are
switched to out-of-place for the call (Captum's hooks cannot see through in-place operations) and restored afterwards.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from torch import nn

from ..errors import XaitrustError
from ..outputs import scores_from_logits
from ._autograd import score_gradients
from ._params import non_negative_float
from .base import Explainer, register

LRP_EPSILON_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
# An empty nn.Sequential (e.g. a residual block's identity shortcut) is a leaf that passes its input on.
LRP_PASS_LAYERS = (nn.ReLU, nn.MaxPool2d, nn.Flatten, nn.Dropout, nn.Identity, nn.Sequential)


class ScoreModel(nn.Module):
    """``model`` followed by the chosen score of every class (``xaitrust.outputs.scores_from_logits``)."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return scores_from_logits(self.model(x), self.output)


@contextmanager
def out_of_place_relus(model: nn.Module):
    """Temporarily set ``inplace=False`` on every ``nn.ReLU`` of ``model``."""
    switched = [module for module in model.modules() if isinstance(module, nn.ReLU) and module.inplace]
    for module in switched:
        module.inplace = False
    try:
        yield
    finally:
        for module in switched:
            module.inplace = True


class _CaptumPropagation(Explainer):
    """Runs a Captum attribution method on ``ScoreModel(model, output)``."""

    captum_method: type

    def __init__(self) -> None:
        pass

    def attribute(self, model, x, target, output):
        with out_of_place_relus(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting .*hooks", category=UserWarning)
            method = self.captum_method(ScoreModel(model, output))
            inputs = x.detach().requires_grad_(True)
            return method.attribute(inputs, target=target, **self.captum_arguments(x)).to(x.dtype)

    def captum_arguments(self, x: torch.Tensor) -> dict:
        return {}


@register
class GuidedBackprop(_CaptumPropagation):
    name = "guided-backprop"
    description = "gradient with negative gradients zeroed at every ReLU (Springenberg et al. 2015; Captum)"
    captum_method = CaptumGuidedBackprop


@register
class DeepLift(_CaptumPropagation):
    name = "deeplift"
    description = "DeepLIFT Rescale rule against the black image (Shrikumar et al. 2017; Captum)"
    captum_method = CaptumDeepLift

    def captum_arguments(self, x):
        return {"baselines": torch.zeros_like(x)}


def epsilon_rule_hook(epsilon: float):
    """Forward hook keeping a layer's output ``z`` but scaling its backward pass by ``z / (z + epsilon sign(z))``."""

    def hook(module, inputs, z):
        stabilised = z + epsilon * torch.where(z >= 0, 1.0, -1.0)
        factor = torch.where(stabilised == 0, torch.ones_like(z), z / stabilised).detach()
        return z * factor + (z * (1 - factor)).detach()

    return hook


@register
class LRPEpsilon(Explainer):
    name = "lrp"
    description = "layer-wise relevance propagation, epsilon rule (Bach et al. 2015)"

    def __init__(self, epsilon: float = 1e-6) -> None:
        self.epsilon = non_negative_float(self.name, "epsilon", epsilon)

    def attribute(self, model, x, target, output):
        leaves = [module for module in model.modules() if not any(True for _ in module.children())]
        unsupported = sorted({type(m).__name__ for m in leaves if not isinstance(m, LRP_EPSILON_LAYERS + LRP_PASS_LAYERS)})
        if unsupported:
            raise XaitrustError(
                f"lrp has no rule for {', '.join(unsupported)}; supported modules: "
                f"{', '.join(t.__name__ for t in LRP_EPSILON_LAYERS + LRP_PASS_LAYERS)}"
            )
        handles = [m.register_forward_hook(epsilon_rule_hook(self.epsilon)) for m in leaves if isinstance(m, LRP_EPSILON_LAYERS)]
        try:
            gradients = score_gradients(model, x, target, output)
        finally:
            for handle in handles:
                handle.remove()
        mean = getattr(model, "input_mean", None)
        return gradients * (x if mean is None else x - mean.to(x.dtype))
