"""A user's own ``nn.Module`` presented as an xaitrust classifier: ``WrappedModel``.

Any module mapping images ``(B, C, H, W)`` to logits ``(B, K)`` can be wrapped. The wrapper adds what the library
reads from its own models: the input shape and class count, the per-channel statistics (``input_mean`` is also the
value a "removed" pixel takes in FPA and the MIF/LIF curves, the zero of the model's normalised input), the layer
Grad-CAM uses, and a ``spec`` from which a checkpoint rebuilds it.

Inputs follow the library's convention: images in [0, 1]. ``normalize_input`` says who normalises them:

- ``False``: the module does it itself (or expects [0, 1]); the wrapper passes ``x`` unchanged and its statistics only
  serve as the removal value.
- ``True``: the wrapper feeds ``(x - input_mean) / input_std`` to the module, for a model trained on normalised
  inputs (give the statistics it was trained with as ``input_mean`` / ``input_std``), and for user architectures that
  xaitrust trains itself (the trainer stores the training images' statistics, as for its own architectures).

A user architecture is named ``path/to/file.py:Name``: ``Name`` is a ``nn.Module`` class or a factory function,
called with the ``model_options`` as keyword arguments (``xaitrust.models.build_model``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import XaitrustError
from ..sources import load_from_file, split_file_reference
from .base import ImageClassifier


class WrappedModel(ImageClassifier):
    """``module`` behind the ``ImageClassifier`` interface; its parameters live under ``body.``.

    Args:
        module: the user's model (logits out).
        name: what the spec records: ``path/to/file.py:Name`` for a rebuildable architecture, else a description
            (e.g. ``"model.onnx"``) of a model that only lives in its file.
        in_channels, num_classes, image_size: the data it takes and the classes it tells apart.
        mean, std: per-channel statistics (default 0 / 1).
        normalize_input: whether the wrapper normalises inputs with them (see the module notes).
        cam_layer: dotted name of the Grad-CAM layer inside ``module`` ("" when not chosen).
        options: the keyword options ``module`` was built with (recorded in the spec).
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        in_channels: int,
        num_classes: int,
        image_size: Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        *,
        normalize_input: bool = False,
        cam_layer: str = "",
        options: dict | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise XaitrustError(f"{name} must be a torch.nn.Module; got {type(module).__name__}")
        super().__init__(name, in_channels, num_classes, image_size, mean, std, options)
        self.body = module
        self.normalize_input = bool(normalize_input)
        self.spec["wrapper"] = {"normalize_input": self.normalize_input, "cam_layer": ""}
        self.set_cam_layer(cam_layer)

    def set_cam_layer(self, name: str) -> None:
        """Use the module's layer ``name`` (dotted, inside the user's module) for Grad-CAM; "" clears it."""
        if name:
            try:
                self.body.get_submodule(name)
            except AttributeError:
                raise XaitrustError(f"the model has no layer {name!r} for Grad-CAM (cam_layer)") from None
        self.cam_layer_name = f"body.{name}" if name else ""
        self.spec["wrapper"]["cam_layer"] = name

    @property
    def cam_layer(self) -> nn.Module:
        if not self.cam_layer_name:
            raise XaitrustError("no Grad-CAM layer was chosen for this model; set cam_layer to a layer's dotted name")
        return super().cam_layer

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return super().normalize(x) if self.normalize_input else x


def build_user_architecture(
    reference: str,
    in_channels: int,
    num_classes: int,
    image_size: Sequence[int],
    /,
    mean=None,
    std=None,
    *,
    wrapper: dict | None = None,
    **options,
) -> WrappedModel:
    """A fresh ``path/to/file.py:Name`` model built with ``options``, wrapped.

    ``wrapper`` holds ``normalize_input`` (default True: an architecture xaitrust trains normalises its inputs with
    the training statistics, as the built-in ones do) and ``cam_layer``. The spec records the file's absolute path, so
    a checkpoint of the model rebuilds it from any working folder.
    """
    factory = load_from_file(reference, "model")
    path, name = split_file_reference(reference)
    reference = f"{path.expanduser().resolve()}:{name}"
    if not callable(factory):
        raise XaitrustError(f"{reference} is not a class or function that builds a model")
    try:
        module = factory(**options)
    except TypeError as error:
        raise XaitrustError(f"{reference}(**model_options) failed: {error}; check model_options") from None
    wrapper = {"normalize_input": True, "cam_layer": "", **(wrapper or {})}
    return WrappedModel(
        module, reference, in_channels, num_classes, image_size, mean, std,
        normalize_input=wrapper["normalize_input"], cam_layer=wrapper["cam_layer"], options=options,
    )


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model`` strictly, or say which keys are missing, unexpected or of the wrong shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})")
        if wrong:
            key = wrong[0]
            parts.append(f"{len(wrong)} of another shape (e.g. {key}: {tuple(state[key].shape)} in the file, "
                         f"{tuple(own[key].shape)} in the model)")
        raise XaitrustError(
            f"the weights in {source} do not fit the model: keys {'; '.join(parts)}. Save the state dict of the same "
            "class built with the same model_options"
        )
    model.load_state_dict(state)
