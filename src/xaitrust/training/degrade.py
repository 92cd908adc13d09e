"""Deliberately degraded models and labels, for the sanity checks of MeGe/ReCo (Fel et al. 2022, section 4.3 and
appendix E.2) and of Adebayo et al. 2018 ("Sanity checks for saliency maps"): an explanation metric should score a
degraded predictor worse.

* ``shuffle_labels``: the "switched labels" training sets (5%, 10%, 30% bad labels);
* ``permute_labels``: the training labels randomly permuted, Adebayo's data randomisation test;
* ``randomize_weights``: Gaussian noise ``N(0, std)``, ``std = 0.5``, *added* to the weights (MeGe, E.2: "we added
  noise drawn from a normal distribution N(0, 0.5)") of a share of the layers, from the output down;
* ``parameterized_layers`` / ``reinitialize_layers``: the layers in top-down order and their re-initialisation, the
  pieces of Adebayo's cascading randomisation (re-initialise the top layer, then the top two, ...).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import XaitrustError

NORMALIZATION_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
RANDOMIZATION_UNITS = ("layers", "parameters")
#: Which layers weight noise may reach: every weight layer, or the convolutions only (MeGe E.2: "to each convolution
#: layer").
NOISE_LAYERS = {"all": nn.Module, "convolutions": nn.modules.conv._ConvNd}


def shuffle_labels(y: torch.Tensor, fraction: float, seed: int = 0, num_classes: int | None = None) -> torch.Tensor:
    """A copy of the labels ``y`` in which exactly ``round(fraction * N)`` labels are wrong.

    Those samples are picked uniformly without replacement and each gets a label drawn uniformly from the *other*
    ``num_classes - 1`` classes (default ``num_classes = max(y) + 1``), so the share of bad labels is exactly the
    requested one (a permutation among the picked samples would leave some of them right). Use
    ``dataclasses.replace(dataset, y=shuffle_labels(dataset.y, 0.1))`` for a dataset with 10% bad labels.
    """
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.dtype.is_floating_point or len(y) == 0:
        raise XaitrustError(f"y must be a non-empty 1-D integer label tensor; got shape {tuple(y.shape)}, {y.dtype}")
    if not 0.0 <= fraction <= 1.0:
        raise XaitrustError(f"fraction of labels to change must lie in [0, 1]; got {fraction}")
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if num_classes < 2 or y.min() < 0 or y.max() >= num_classes:
        raise XaitrustError(f"labels must lie in [0, {num_classes - 1}] with at least 2 classes to switch between")
    generator = torch.Generator().manual_seed(int(seed))
    count = round(fraction * len(y))
    chosen = torch.randperm(len(y), generator=generator)[:count]
    offsets = torch.randint(1, num_classes, (count,), generator=generator)
    shuffled = y.long().clone()
    shuffled[chosen] = (shuffled[chosen] + offsets) % num_classes
    return shuffled


def permute_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The labels ``y`` in a random order (one permutation seeded by ``seed``): Adebayo et al. 2018, "Sanity checks
    for saliency maps", section 4, data randomisation test: "we permute the training labels and train a model on the
    randomized training data", a model that can only memorise. A permutation keeps every class's count and, unlike
    ``shuffle_labels(y, 1.0)`` (every label moved to *another* class), leaves no trace of the true label."""
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.dtype.is_floating_point or len(y) == 0:
        raise XaitrustError(f"y must be a non-empty 1-D integer label tensor; got shape {tuple(y.shape)}, {y.dtype}")
    return y.long()[torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))]


def weight_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The tensors that hold ``module``'s own weight: ``weight``, or the originals behind a parametrised or
    spectral-normalised weight. Biases are left out."""
    if parametrize.is_parametrized(module, "weight"):
        return list(module.parametrizations.weight.parameters())
    return [module._parameters[name] for name in ("weight", "weight_orig") if module._parameters.get(name) is not None]


def parameterized_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every layer that owns a weight (convolutions, linear layers, custom weight layers;
    normalisation layers excluded), ordered from the output down to the input, i.e. the reverse of the order in which
    the modules are defined (the forward order for the xaitrust models)."""
    layers = [
        (name, module)
        for name, module in model.named_modules()
        if not isinstance(module, NORMALIZATION_LAYERS) and weight_parameters(module)
    ]
    return layers[::-1]


def noise_candidates(model: nn.Module, layers: str = "all") -> list[tuple[str, nn.Module]]:
    """The ``parameterized_layers`` that weight noise may reach under ``layers`` (``NOISE_LAYERS``), output first.
    With ``unit="layers"``, a fraction ``f`` degrades the first ``ceil(f * len(noise_candidates(model, layers)))``."""
    return [(name, layer) for name, layer in parameterized_layers(model) if isinstance(layer, NOISE_LAYERS[layers])]


def randomize_weights(
    model: nn.Module, fraction: float, std: float = 0.5, seed: int = 0, unit: str = "layers", layers: str = "all"
) -> nn.Module:
    """A copy of ``model`` with Gaussian noise ``N(0, std**2)`` added to its weights; ``model`` is left untouched.

    ``unit="layers"`` (the main text of MeGe: "we gradually randomize 5%, 10% and 30% of the predictor layers"):
    every weight of the top ``ceil(fraction * L)`` of the ``L`` ``parameterized_layers`` gets noise, so any positive
    fraction degrades at least the output layer. ``unit="parameters"`` (the reading of MeGe's appendix E.2, "the
    intensity of the degradation impacting on the number of parameters affected"): every weight entry of every layer
    gets noise with probability ``fraction``.

    ``layers`` restricts the candidates: ``"all"`` weight layers, or ``"convolutions"`` only (E.2: noise added "to
    each convolution layer"). E.2 as written is ``unit="parameters", layers="convolutions"``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise XaitrustError(f"fraction to randomise must lie in [0, 1]; got {fraction}")
    if unit not in RANDOMIZATION_UNITS:
        raise XaitrustError(f"unit must be one of {', '.join(RANDOMIZATION_UNITS)}; got {unit!r}")
    if layers not in NOISE_LAYERS:
        raise XaitrustError(f"layers must be one of {', '.join(NOISE_LAYERS)}; got {layers!r}")
    if std < 0:
        raise XaitrustError(f"noise std must be non-negative; got {std}")
    degraded = copy.deepcopy(model)
    candidates = noise_candidates(degraded, layers)
    if unit == "layers":
        candidates = candidates[: math.ceil(fraction * len(candidates))]
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for _, layer in candidates:
            for weight in weight_parameters(layer):
                noise = torch.randn(weight.shape, generator=generator) * std
                if unit == "parameters":
                    noise *= torch.rand(weight.shape, generator=generator) < fraction
                weight.add_(noise.to(weight.device, weight.dtype))
    return degraded


def reinitialize_layers(model: nn.Module, layer_names, seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose layers named in ``layer_names`` get fresh random parameters (their own
    ``reset_parameters``, seeded); ``model`` is left untouched. Cascading randomisation re-initialises
    ``[name for name, _ in parameterized_layers(model)][:i]`` for i = 1, 2, ..."""
    degraded = copy.deepcopy(model)
    modules = dict(degraded.named_modules())
    unknown = [name for name in layer_names if name not in modules]
    if unknown:
        raise XaitrustError(f"no layer named {', '.join(map(repr, unknown))}; see parameterized_layers(model)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        for name in layer_names:
            if not hasattr(modules[name], "reset_parameters"):
                raise XaitrustError(f"layer {name!r} ({type(modules[name]).__name__}) cannot be re-initialised")
            modules[name].reset_parameters()
    return degraded
