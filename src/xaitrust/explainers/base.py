"""The explainer interface and its registry.

An explainer is called as ``explainer(model, x, target, output="logit")`` and returns raw attributions
``(B, C, H, W)`` on the model's device for the whole batch (CAM methods upsampled to the input size). Named
reductions (``xaitrust.explainers.reduce``) turn them into maps ``(B, H, W)``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..model_mode import evaluation_mode
from ..outputs import check_output, check_target

_REGISTRY: dict[str, type["Explainer"]] = {}


class Explainer:
    """Base class. Subclasses set ``name`` and ``description``, take their parameters as keyword arguments of
    ``__init__`` (validated there), and implement ``attribute(model, x, target, output)``.

    ``x`` is a float ``(B, C, H, W)`` batch on the model's device and ``target`` an int64 ``(B,)`` tensor when
    ``attribute`` is called, and the model is in eval mode (``evaluation_mode``: each module gets its own train/eval
    flag back afterwards); randomness comes from ``self.seed`` through ``self.generator(device)``.
    """

    name: str = ""
    description: str = ""

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, target, output: str = "logit") -> torch.Tensor:
        check_output(output)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
            raise XaitrustError(f"x must be a float tensor (B, C, H, W); got {getattr(x, 'shape', type(x))}")
        device = next(iter(model.parameters()), torch.empty(0)).device
        x = x.to(device)
        target = check_target(target, len(x), getattr(model, "num_classes", None), device=device)
        with evaluation_mode(model):
            attributions = self.attribute(model, x, target, output)
        return attributions.detach()

    def attribute(self, model, x, target, output):
        raise NotImplementedError

    def check_model(self, model: torch.nn.Module) -> None:
        """Raise an ``XaitrustError`` if this explainer cannot explain ``model`` as its method defines (e.g. a
        propagation rule missing for one of its layers). Protocols call it before their long runs; any model by
        default."""

    def generator(self, device) -> torch.Generator:
        """A fresh generator seeded with ``self.seed`` (so each call with the same inputs gives the same map)."""
        gen = torch.Generator(device=device)
        gen.manual_seed(int(getattr(self, "seed", 0)))
        return gen

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({params})"

    def params(self) -> dict:
        """The explainer's parameters and their current values."""
        return {name: getattr(self, name) for name in inspect.signature(type(self).__init__).parameters if name != "self"}


@dataclass(frozen=True)
class ExplainerInfo:
    name: str
    description: str
    parameters: dict


def register(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator adding an explainer to the registry under ``cls.name``."""
    if not cls.name or cls.name in _REGISTRY:
        raise RuntimeError(f"explainer name {cls.name!r} is empty or registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def available_explainers() -> list[ExplainerInfo]:
    """Every registered explainer with its description and parameters (name -> default)."""
    infos = []
    for name, cls in sorted(_REGISTRY.items()):
        signature = inspect.signature(cls.__init__)
        parameters = {p.name: p.default for p in signature.parameters.values() if p.name != "self"}
        infos.append(ExplainerInfo(name, cls.description, parameters))
    return infos


def get_explainer(name: str, **params) -> Explainer:
    """The explainer registered as ``name``, built with ``params``."""
    if name not in _REGISTRY:
        raise XaitrustError(f"unknown explainer {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    try:
        return _REGISTRY[name](**params)
    except TypeError as error:
        allowed = [p for p in inspect.signature(_REGISTRY[name].__init__).parameters if p != "self"]
        raise XaitrustError(f"bad parameters for explainer {name!r} ({error}); allowed: {', '.join(allowed)}") from None
