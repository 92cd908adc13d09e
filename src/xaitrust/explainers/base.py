"""The explainer interface and its registry.

An explainer is called as ``explainer(model, x, target, output="logit")`` and returns raw attributions
``(B, C, H, W)`` on the model's device for the whole batch (CAM methods upsampled to the input size). Named
reductions (``xaitrust.explainers.reduce``) turn them into maps ``(B, H, W)``.

Besides the built-in methods, three kinds of user objects act as explainers (``as_explainer``), by name once
``register_explainer(name, obj)`` has added them, or from a file as ``get_explainer("path/to/file.py:Name")``:

- an ``Explainer`` subclass (or, given directly or in a file, an instance of one);
- a Captum attribution class such as ``captum.attr.Saliency`` or ``captum.attr.IntegratedGradients`` (any class built
  from a forward function that has ``attribute(inputs, target=...)``): it is built around the model's chosen score
  (logit, probability or log-probability of every class) and called as ``.attribute(x, target=target, **params)``;
- a callable ``fn(model, x, target) -> attributions (B, C, H, W)`` (``fn(model, x, target, output=...)`` when it has
  a parameter named ``output``), called as ``fn(model, x, target, **params)``.

Captum classes and callables run with torch's global generator seeded from their ``seed`` parameter (default 0) and
restored afterwards, so one that draws noise from it (e.g. ``captum.attr.NoiseTunnel``) gives the same attributions
on every call.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..model_mode import evaluation_mode
from ..outputs import check_output, scores_from_logits
from ..sources import is_file_reference, load_from_file, split_file_reference
from ..validation import check_images, check_target

_REGISTRY: dict[str, type["Explainer"]] = {}


class Explainer:
    """Base class. Subclasses set ``name`` and ``description``, take their parameters as keyword arguments of
    ``__init__`` (validated there), and implement ``attribute(model, x, target, output)``.

    ``x`` is a float ``(B, C, H, W)`` batch of images in [0, 1] (``xaitrust.validation.check_images``) on the model's
    device and ``target`` an int64 ``(B,)`` tensor when ``attribute`` is called, and the model is in eval mode
    (``evaluation_mode``: each module gets its own train/eval flag back afterwards); randomness comes from
    ``self.seed`` through ``self.generator()``, a CPU generator whose draws are moved to the device, so that random
    draws (noise, masks, baselines) are the same whatever device the model runs on.
    """

    name: str = ""
    description: str = ""

    def __call__(self, model: torch.nn.Module, x: torch.Tensor, target, output: str = "logit") -> torch.Tensor:
        check_output(output)
        check_images(x)
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

    def generator(self) -> torch.Generator:
        """A fresh CPU generator seeded with ``self.seed`` (so each call with the same inputs gives the same map, on
        every device: draw on the CPU, then move the draws to the images' device)."""
        return torch.Generator().manual_seed(int(getattr(self, "seed", 0)))

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


def register_explainer(name: str, obj) -> type[Explainer]:
    """Make a user's explainer usable by ``name`` (``get_explainer``, ``xaitrust.evaluate``, ``--explainers``).

    ``obj`` is an ``Explainer`` subclass, a Captum attribution class or a callable (see the module docstring); the
    class registered (and returned) builds it with the parameters given to ``get_explainer(name, **params)``.
    """
    if not isinstance(name, str) or not name.strip() or "," in name or is_file_reference(name):
        raise XaitrustError(
            f"an explainer name must be a non-empty word without commas, not a file reference; got {name!r}"
        )
    if name in _REGISTRY:
        raise XaitrustError(f"an explainer named {name!r} is already registered; choose another name")
    if isinstance(obj, Explainer):
        raise XaitrustError(f"register the class {type(obj).__name__}, not an instance of it, as explainer {name!r}")
    _REGISTRY[name] = explainer_class(obj, name)
    return _REGISTRY[name]


def available_explainers() -> list[ExplainerInfo]:
    """Every registered explainer with its description and parameters (name -> default)."""
    infos = []
    for name, cls in sorted(_REGISTRY.items()):
        signature = inspect.signature(cls.__init__)
        parameters = {p.name: p.default for p in signature.parameters.values()
                      if p.name != "self" and p.kind is not p.VAR_KEYWORD}
        infos.append(ExplainerInfo(name, cls.description, parameters))
    return infos


def get_explainer(name: str, **params) -> Explainer:
    """The explainer registered as ``name``, or defined in a file as ``path/to/file.py:Name``, built with ``params``."""
    if is_file_reference(name):
        return as_explainer(load_from_file(name, "explainer"), name=split_file_reference(name)[1], **params)
    if name not in _REGISTRY:
        raise XaitrustError(
            f"unknown explainer {name!r}; available: {', '.join(sorted(_REGISTRY))} "
            "(or path/to/file.py:Name for one defined in a file)"
        )
    return _build(_REGISTRY[name], name, params)


def as_explainer(obj, name: str | None = None, **params) -> Explainer:
    """An ``Explainer`` from any accepted form: a registered name or ``path/to/file.py:Name`` (built with
    ``params``), an ``Explainer`` instance (used as is, so no ``params``), an ``Explainer`` subclass, a Captum
    attribution class or a callable (built with ``params``). ``name`` labels a wrapped object in messages."""
    if isinstance(obj, str):
        return get_explainer(obj, **params)
    if isinstance(obj, Explainer):
        if params:
            raise XaitrustError(
                f"explainer {obj!r} is already built: give its parameters when building it, not as {sorted(params)}"
            )
        return obj
    return _build(explainer_class(obj, name), name or _object_name(obj), params)


def explainer_class(obj, name: str | None = None) -> type[Explainer]:
    """The ``Explainer`` class behind ``obj``: an ``Explainer`` subclass as is; a Captum attribution class or a
    callable in a class of its own (``CaptumExplainer``, ``CallableExplainer``) named ``name``."""
    name = name or _object_name(obj)
    if isinstance(obj, type) and issubclass(obj, Explainer):
        return obj
    if isinstance(obj, type) and callable(getattr(obj, "attribute", None)):
        return type(f"Captum{obj.__name__}", (CaptumExplainer,),
                    {"name": name, "description": _first_paragraph(obj.__doc__), "method": obj})
    if callable(obj) and not isinstance(obj, type):
        return type(f"Callable_{name}", (CallableExplainer,),
                    {"name": name, "description": _first_paragraph(getattr(obj, "__doc__", "")),
                     "function": staticmethod(obj)})
    raise XaitrustError(
        f"{name!r} is not an explainer: give an Explainer subclass or instance, a Captum attribution class (e.g. "
        "captum.attr.Saliency) or a callable (model, x, target) -> attributions (B, C, H, W)"
    )


def _build(cls: type[Explainer], name: str, params: dict) -> Explainer:
    try:
        return cls(**params)
    except TypeError as error:
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise XaitrustError(f"bad parameters for explainer {name!r} ({error}); allowed: "
                            f"{', '.join(allowed) or 'none, it takes no parameters'}") from None


def _object_name(obj) -> str:
    return getattr(obj, "__name__", None) or type(obj).__name__


def _first_paragraph(text) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


@contextmanager
def seeded_global_generator(seed: int, device: torch.device):
    """Run a block with torch's global generator (CPU, and ``device`` when it is a GPU) seeded with ``seed``, and give
    the generator its previous state back afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class _ScoreModel(torch.nn.Module):
    """``model`` followed by the chosen score of every class (``xaitrust.outputs.scores_from_logits``)."""

    def __init__(self, model: torch.nn.Module, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, x):
        return scores_from_logits(self.model(x), self.output)


class _WrappedExplainer(Explainer):
    """What the Captum and callable wrappers share: a ``seed`` for torch's global generator, keyword parameters passed
    on to the user's object, and a check of the attributions it returns."""

    def __init__(self, seed: int = 0, **params) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise XaitrustError(f"{self.name}: seed must be an integer; got {seed!r}")
        self.seed, self.extra = seed, params

    def params(self) -> dict:
        return {"seed": self.seed, **self.extra}

    def attribute(self, model, x, target, output):
        with seeded_global_generator(self.seed, x.device):
            attributions = self.run(model, x, target, output)
        if not isinstance(attributions, torch.Tensor) or tuple(attributions.shape) != tuple(x.shape):
            got = tuple(attributions.shape) if isinstance(attributions, torch.Tensor) else type(attributions).__name__
            raise XaitrustError(f"explainer {self.name!r} must return attributions of the images' shape "
                                f"{tuple(x.shape)}; got {got}")
        return attributions

    def run(self, model, x, target, output):
        raise NotImplementedError


class CaptumExplainer(_WrappedExplainer):
    """A Captum attribution class (``method``) built around the model's chosen score and called as
    ``method(scores).attribute(x, target=target, **params)``."""

    method: type

    def run(self, model, x, target, output):
        inputs = x.detach().requires_grad_()  # Captum warns about inputs that do not require gradients
        return self.method(_ScoreModel(model, output)).attribute(inputs, target=target, **self.extra)


class CallableExplainer(_WrappedExplainer):
    """A callable ``function(model, x, target, **params)`` (with ``output=`` when it has a parameter so named)."""

    function = None

    def run(self, model, x, target, output):
        takes_output = "output" in inspect.signature(self.function).parameters
        return self.function(model, x, target, **self.extra, **({"output": output} if takes_output else {}))
