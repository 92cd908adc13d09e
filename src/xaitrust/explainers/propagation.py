"""Explainers that propagate a modified signal backwards through the layers: Guided Backpropagation, DeepLIFT, LRP.

Each method has a rule for some non-linear modules; any other non-linear module would pass its plain gradient, which
silently turns the method into another one (on ``lipschitz-cnn``, whose activations are ``MaxMin``, Guided
Backpropagation would be the plain gradient and DeepLIFT gradient times input). So every layer of the model must be
linear (``LINEAR_LAYERS``), pass its input on (``PASS_LAYERS``) or have one of the non-linear types the method
handles (the exact type, as Captum's DeepLIFT matches it), else the explainer raises an error naming the other
types. A parametrized layer (``torch.nn.utils.parametrize``, e.g. ``lipschitz-cnn``'s normalised convolutions) is one
layer of its own class (a subclass of ``nn.Conv2d``, ...).

Operations done outside modules are found by tracing the model with ``torch.fx``
(``xaitrust.models.preflight.inspect_graph``). Linear ones (a residual addition, a mean) are fine. A non-linear one
applied as a function or tensor method (``F.relu``, ``x.relu()``, ``F.max_pool2d``, ``torch.sigmoid``, a product of
two signals, ...) on its way to a layer with weights passes its plain gradient, so the method refuses it unless that
plain gradient is its own rule for it (``PLAIN_GRADIENT_OPS``): max pools for ``guided-backprop`` (Captum's
``GuidedBackprop`` hooks ReLUs only), ReLUs and max pools for ``lrp`` (which passes both unchanged), none for
``deeplift``. ``deeplift`` also refuses a non-linear module of its rule called at several places of the forward pass
(Captum's ``DeepLift`` keeps one set of inputs and outputs per module; it would fail), ``guided-backprop`` and
``deeplift`` an in-place ``nn.ReLU`` whose input the forward reads again (switching it out of place, below, would
change the model), and all three a model ``torch.fx`` cannot trace (nothing of this could be ruled out).
``xaitrust.models.preflight.make_explainable`` rewrites functional ReLUs and max pools into modules and gives each
call of a reused stateless module its own copy. Non-linearities after the last layer with weights (a calibrator's
log-softmax) transform the score, as ``output="probability"`` does, and are left to the convergence check below.

- ``guided-backprop`` (Springenberg et al. 2015): the gradient in which every ReLU also zeroes negative incoming
  gradients. Captum's ``GuidedBackprop``: it hooks ``nn.ReLU`` modules only, so ReLUs applied as functions would not
  be guided (refused, above). Max pools pass the gradient to their maximum (the "switches" of Zeiler & Fergus's
  deconvnet, on which guided backpropagation builds).
- ``deeplift`` (Shrikumar et al. 2017, Rescale rule): ``(x - x0) * m`` with multipliers ``m`` propagated from the black
  image ``x0 = 0``. Captum's ``DeepLift``: it hooks the non-linear modules of its ``SUPPORTED_NON_LINEAR``
  (``nn.ReLU``, ``nn.ELU``, ``nn.LeakyReLU``, ``nn.Sigmoid``, ``nn.Tanh``, ``nn.Softplus``, max pools, ``nn.Softmax``),
  so each such module must be used once per forward pass (no module reused at two places of the network).
  DeepLIFT's summation-to-delta, ``sum(attributions) = s(x) - s(x0)``, holds exactly for ReLU networks with average
  pooling, but not with Captum 0.9's rule for max pooling: on the ``cnn`` model, attribution sums of
  [-0.310, -0.068, 0.744] against score differences of [-0.254, -0.150, 0.732]. Nor does it hold through
  non-linearities outside modules, such as the softmax of ``output="probability"``. The explainer measures Captum's
  convergence delta ``sum(attributions) - (s(x) - s(x0))`` and warns when its largest magnitude over the batch exceeds
  ``DEEPLIFT_TOLERANCE`` (1%) of the largest ``|s(x) - s(x0)|``; relative to the batch's largest score difference, not
  image by image, since an image whose score barely moves would make any float rounding look large.
- ``lrp`` (Bach et al. 2015; Calibrate to Interpret eq. 6), the epsilon rule
  ``R_j = sum_k a_j w_jk / (z_k + epsilon sign(z_k)) R_k`` with ``z_k = sum_j a_j w_jk + b_k``. Our own code (Captum's
  ``LRP`` has no rule for ``nn.Flatten``, which our models use): for ReLU networks LRP-epsilon is gradient times input
  with every linear layer's backward pass scaled by ``z / (z + epsilon sign(z))`` (Ancona et al. 2018), done here by
  forward hooks on the ``LINEAR_LAYERS`` (``nn.Conv*``, ``nn.Linear``, ``nn.BatchNorm*`` and average pools). ReLUs,
  max pools (winner takes all) and the ``PASS_LAYERS`` (flatten, dropout, identities) pass the signal unchanged. The
  relevance is that of the model's normalised input ``(x - mean) / std``, assigned to the pixel it came from:
  ``(x - mean) * dR/dx``. The relevance is seeded with ``z * ds/dz`` at the logits ``z``, i.e. the target logit itself
  when ``output="logit"``.

Captum runs under ``output`` by wrapping the model in ``ScoreModel`` (logits to the chosen scores). In-place ReLUs are
switched to out-of-place for the call (Captum's hooks cannot see through in-place operations) and restored afterwards.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch
from captum.attr import DeepLift as CaptumDeepLift
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR
from torch import nn
from torch.nn.utils import parametrize

from ..errors import XaitrustError
from ..models.preflight import inspect_graph
from ..outputs import scores_from_logits
from ._autograd import score_gradients
from ._params import non_negative_float
from .base import Explainer, register

LINEAR_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
# An empty nn.Sequential (e.g. a residual block's identity shortcut) is a leaf that passes its input on.
PASS_LAYERS = (nn.Flatten, nn.Dropout, nn.Identity, nn.Sequential)
#: The non-linear modules LRP passes unchanged (ReLU, max pooling: winner takes all).
LRP_NON_LINEAR = (nn.ReLU, nn.MaxPool2d)
# DeepLIFT warns when it misses summation-to-delta by more than this share of the batch's largest score difference.
DEEPLIFT_TOLERANCE = 0.01
#: Kinds of functional non-linearity (``xaitrust.models.preflight.NON_LINEAR_OPS``) whose plain gradient is the rule.
PLAIN_GRADIENT_OPS = {"guided-backprop": {"max-pool"}, "deeplift": set(), "lrp": {"relu", "max-pool"}}
# How many places an error message names before counting the rest.
NAMED_PLACES = 6


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


def layers(model: nn.Module) -> list[nn.Module]:
    """The layers of ``model``: its modules that hold no other module, a parametrized layer counting as one (the
    modules of its parametrizations transform its weights, not the signal)."""
    parametrizations = {
        inner for module in model.modules() if parametrize.is_parametrized(module)
        for inner in module.parametrizations.modules()
    }
    return [
        m for m in model.modules()
        if m not in parametrizations and all(child in parametrizations for child in m.children())
    ]


def check_layers(method: str, model: nn.Module, non_linear: tuple[type, ...]) -> list[nn.Module]:
    """The ``layers`` of ``model``, each linear, passing its input on or exactly of a type in ``non_linear`` (those
    ``method`` has a rule for); any other layer would pass its plain gradient, so it raises a clear error."""
    found = layers(model)
    unsupported = sorted(
        {type(m).__name__ for m in found if not (isinstance(m, LINEAR_LAYERS + PASS_LAYERS) or type(m) in non_linear)}
    )
    if unsupported:
        supported = ", ".join(t.__name__ for t in LINEAR_LAYERS + PASS_LAYERS + non_linear)
        raise XaitrustError(
            f"{method} has no rule for {', '.join(unsupported)}: a module without one passes its plain gradient, "
            f"silently giving another method. Explain this model with another explainer, or build it from supported "
            f"modules: {supported}"
        )
    return found


def _places(names: list[str]) -> str:
    shown = ", ".join(names[:NAMED_PLACES])
    return shown + (f" and {len(names) - NAMED_PLACES} more" if len(names) > NAMED_PLACES else "")


def check_graph(
    method: str, model: nn.Module, reused_types: tuple[type, ...] = (), switches_in_place: bool = False
) -> None:
    """Raise a clear error when ``model``'s forward, traced by ``torch.fx``, applies a non-linearity as a function
    that ``method`` has no rule for (``PLAIN_GRADIENT_OPS``), calls a module of ``reused_types`` more than once, or
    (when ``method`` ``switches_in_place`` ReLUs out of place) reads an in-place ReLU's input again."""
    graph = inspect_graph(model)
    if not graph.traced:
        raise XaitrustError(
            f"{method} cannot check this model: torch.fx could not trace it ({graph.error}), so non-linearities "
            "applied as functions, which would pass their plain gradient and silently give another method, cannot be "
            "ruled out. Keep Python control flow out of the forward (no branch on tensor values), or explain this "
            "model with another explainer"
        )
    problems, fixable, unfixable = [], [], []
    calls = [call for call in graph.functional if call.kind not in PLAIN_GRADIENT_OPS[method]]
    if calls:
        problems.append(
            "non-linearities applied as functions pass their plain gradient, silently giving another method: "
            + _places([str(call) for call in calls])
        )
        fixable += [call.node for call in calls if call.rewritable]
        unfixable += [call.node for call in calls if not call.rewritable]
    reused = [name for name in graph.reused if type(model.get_submodule(name)) in reused_types]
    if reused:
        problems.append(
            f"{method} keeps one state per non-linear module, but these run at several places: "
            + _places([f"{name} ({graph.reused[name]} calls)" for name in reused])
        )
        fixable += reused  # the non-linear modules of Captum's rules hold no weights: make_explainable copies them
    if switches_in_place and graph.in_place_rereads:
        problems.append(
            "the forward reads the input of these in-place ReLUs again after them, which the out-of-place switch "
            f"{method} needs would change: " + _places(list(graph.in_place_rereads))
        )
        unfixable += list(graph.in_place_rereads)
    if problems:
        fixes = []
        if fixable:
            fixes.append(
                "call xaitrust.models.preflight.make_explainable(model), which rewrites "
                f"{_places(fixable)} into modules"
            )
        if unfixable:
            fixes.append(f"change the model's code for {_places(unfixable)}, or explain it with another explainer")
        raise XaitrustError(
            f"{method} cannot explain this model as defined: {'; '.join(problems)}. To fix it: {'; '.join(fixes)}"
        )


class _CaptumPropagation(Explainer):
    """Runs a Captum attribution method on ``ScoreModel(model, output)``, once ``check_layers`` has found a rule for
    every non-linear module of the model among ``non_linear``."""

    captum_method: type
    non_linear: tuple[type, ...]
    #: Module types whose hooks keep state per module, so that each must run once per forward pass.
    reused_types: tuple[type, ...] = ()

    def __init__(self) -> None:
        pass

    def check_model(self, model):
        check_layers(self.name, model, self.non_linear)
        check_graph(self.name, model, self.reused_types, switches_in_place=True)

    def attribute(self, model, x, target, output):
        self.check_model(model)
        with out_of_place_relus(model), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting .*hooks", category=UserWarning)
            method = self.captum_method(ScoreModel(model, output))
            return self.run(method, x.detach().requires_grad_(True), target).to(x.dtype)

    def run(self, method, inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The attributions of Captum's ``method`` for ``inputs``."""
        return method.attribute(inputs, target=target)


@register
class GuidedBackprop(_CaptumPropagation):
    name = "guided-backprop"
    description = "gradient with negative gradients zeroed at every ReLU (Springenberg et al. 2015; Captum)"
    captum_method = CaptumGuidedBackprop
    non_linear = (nn.ReLU, nn.MaxPool2d)


@register
class DeepLift(_CaptumPropagation):
    name = "deeplift"
    description = (
        "DeepLIFT Rescale rule against the black image (Shrikumar et al. 2017; Captum); "
        "its sum misses s(x) - s(0) with max pooling (warns)"
    )
    captum_method = CaptumDeepLift
    non_linear = tuple(SUPPORTED_NON_LINEAR)
    reused_types = tuple(SUPPORTED_NON_LINEAR)

    def run(self, method, inputs, target):
        """Captum's attributions, with a warning when they miss summation-to-delta by more than the tolerance."""
        attributions, delta = method.attribute(
            inputs, torch.zeros_like(inputs), target=target, return_convergence_delta=True
        )
        largest_delta = delta.abs().max()
        largest_change = (attributions.sum(dim=tuple(range(1, inputs.ndim))) - delta).abs().max()  # of s(x) - s(0)
        if largest_delta > DEEPLIFT_TOLERANCE * largest_change:
            warnings.warn(
                f"deeplift: the attributions miss summation-to-delta by up to {largest_delta / largest_change:.1%} of "
                f"the batch's largest |s(x) - s(0)| (tolerance {DEEPLIFT_TOLERANCE:.0%}): Captum's max-pooling rule "
                "does not conserve the score difference, nor do non-linearities outside modules such as the softmax "
                "of output='probability'. Average pooling and output='logit' conserve it.",
                UserWarning,
                stacklevel=4,  # run <- attribute <- Explainer.__call__ <- the caller
            )
        return attributions


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

    def check_model(self, model):
        check_layers(self.name, model, LRP_NON_LINEAR)
        check_graph(self.name, model)

    def attribute(self, model, x, target, output):
        found = check_layers(self.name, model, LRP_NON_LINEAR)
        check_graph(self.name, model)
        hook = epsilon_rule_hook(self.epsilon)
        handles = [m.register_forward_hook(hook) for m in found if isinstance(m, LINEAR_LAYERS)]
        try:
            gradients = score_gradients(model, x, target, output)
        finally:
            for handle in handles:
                handle.remove()
        mean = getattr(model, "input_mean", None)
        return gradients * (x if mean is None else x - mean.to(x.dtype))
