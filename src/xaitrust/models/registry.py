"""Build a classifier by name: ``build_model`` and the list of architectures, ``available_models``.

A checkpoint rebuilds a model with ``build_model(spec["name"], spec["in_channels"], spec["num_classes"],
spec["image_size"], **spec["options"])`` and then loads its state dict; ``spec["options"]`` holds every option, the
defaults included, as JSON values.

A user's architecture is named ``path/to/file.py:Name`` (a ``nn.Module`` class or factory, called with the options as
keyword arguments) and is wrapped in ``xaitrust.models.user.WrappedModel``; its ``spec`` also records the wrapper's
settings (``spec["wrapper"]``), which ``build_model`` takes back as ``wrapper=``.

An architecture is an ``ImageClassifier`` subclass with class attributes ``name`` and ``description`` and an
``__init__(shape: ClassifierShape, *, option=default, ...)``: its keyword-only parameters are its options.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import XaitrustError
from ..sources import is_file_reference
from ._options import is_count
from .base import ClassifierShape, ImageClassifier
from .cnn import SmallCNN
from .lipschitz import LipschitzCNN
from .mnist_cnn import MnistCNN
from .resnet import ResNet18
from .user import build_user_architecture

_MODELS: dict[str, type[ImageClassifier]] = {cls.name: cls for cls in (SmallCNN, MnistCNN, ResNet18, LipschitzCNN)}
DEFAULT_MODEL = SmallCNN.name


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    options: dict


def _options(cls: type[ImageClassifier]) -> dict:
    """The keyword-only options of an architecture with their defaults (tuples as lists, as in ``spec``)."""
    parameters = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: list(p.default) if isinstance(p.default, tuple) else p.default
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def available_models() -> dict[str, ModelInfo]:
    """Every architecture by name, with its description and options (name -> default)."""
    return {name: ModelInfo(name, cls.description, _options(cls)) for name, cls in sorted(_MODELS.items())}


def build_model(
    name: str,
    in_channels: int,
    num_classes: int,
    image_size: int | Sequence[int],
    /,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options,
) -> ImageClassifier:
    """A freshly initialised ``name`` classifier for ``in_channels x H x W`` images and ``num_classes`` classes.

    ``image_size`` is ``H`` (square) or ``(H, W)``; ``mean`` / ``std`` are the per-channel statistics the model
    normalises its [0, 1] inputs with (default 0 / 1); ``options`` are the architecture's own (see
    ``available_models``), or the keyword arguments of a ``path/to/file.py:Name`` architecture (plus ``wrapper``, see
    the module notes). Raises ``XaitrustError`` for an unknown name or option or an invalid value.
    """
    if is_file_reference(name):
        shape = _shape(in_channels, num_classes, image_size)
        return build_user_architecture(name, shape.in_channels, shape.num_classes, shape.image_size, mean, std, **options)
    if name not in _MODELS:
        raise XaitrustError(
            f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}, or your own as path/to/file.py:Name"
        )
    cls = _MODELS[name]
    allowed = _options(cls)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(allowed) if allowed else "none"
        raise XaitrustError(f"model {name!r} has no option {', '.join(unknown)}; its options: {listed}")
    model = cls(_shape(in_channels, num_classes, image_size), **options)
    if mean is not None or std is not None:
        model.set_normalization(model.input_mean if mean is None else mean, model.input_std if std is None else std)
    return model


def _shape(in_channels, num_classes, image_size) -> ClassifierShape:
    """The validated shape; an int ``image_size`` means a square image."""
    for what, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if not is_count(value):
            raise XaitrustError(f"{what} must be a positive integer; got {value!r}")
    if num_classes < 2:
        raise XaitrustError(f"num_classes must be at least 2; got {num_classes}")
    size = [image_size, image_size] if isinstance(image_size, numbers.Integral) else list(image_size)
    if len(size) != 2 or not all(map(is_count, size)):
        raise XaitrustError(f"image_size must be a positive int or a pair (H, W) of them; got {image_size!r}")
    return ClassifierShape(int(in_channels), int(num_classes), (int(size[0]), int(size[1])))
