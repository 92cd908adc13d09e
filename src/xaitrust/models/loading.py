"""How a model comes in: ``ModelSource`` (CLI ``--model`` / ``--weights``, config keys ``model`` / ``weights``).

``model`` is one of

- a built-in architecture name (``cnn``, ``resnet18``, ...; ``xaitrust.models.available_models``);
- ``path/to/file.py:Name``, the user's own architecture (a ``nn.Module`` class or factory called with
  ``model_options`` as keyword arguments);
- an xaitrust checkpoint folder (``model.safetensors`` + ``model.json``, as ``xaitrust train`` writes);
- a ``torch.export`` archive (``.pt2``) or an ONNX file (``.onnx``), see ``xaitrust.models.external``;
- ``python:Name@fingerprint``, a model passed as an object to the Python API (``xaitrust.benchmark(model, ...)``),
  recorded by its class name and a fingerprint of its weights.

An architecture with ``weights`` (a ``.safetensors`` state dict) is a trained model; an architecture without them is
something to train. Checkpoints, ``.pt2`` and ``.onnx`` files are trained models and take no ``weights``. Pickled
files (``torch.save``) are refused: loading them runs arbitrary code.

``input_mean`` / ``input_std`` are the per-channel statistics a trained model expects its [0, 1] inputs to be
normalised with: given, a wrapper applies them (``WrappedModel(normalize_input=True)``); not given, the model gets
[0, 1] images as they are (it normalises itself), and the data's statistics only set the value of a removed pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import XaitrustError
from ..sources import is_file_reference, split_file_reference
from ..validation import check_finite_model
from .base import ImageClassifier
from .registry import _MODELS, build_model
from .user import WrappedModel, load_weights

CHECKPOINT_METADATA = "model.json"
OBJECT_PREFIX = "python:"
EXPORT_SUFFIXES = (".pt2", ".onnx")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from and how to present it (see the module notes)."""

    model: str
    weights: str = ""
    model_options: dict = field(default_factory=dict)
    input_mean: tuple[float, ...] = ()
    input_std: tuple[float, ...] = ()
    cam_layer: str = ""

    @classmethod
    def from_config(cls, config: dict) -> "ModelSource":
        """The source named by a protocol config's keys ``model``, ``weights``, ``model_options``, ``input_mean``,
        ``input_std`` and ``cam_layer`` (the last five optional)."""
        return cls(
            config["model"], config.get("weights", ""), dict(config.get("model_options", {})),
            tuple(config.get("input_mean", ())), tuple(config.get("input_std", ())), config.get("cam_layer", ""),
        )

    @property
    def kind(self) -> str:
        """``"builtin"``, ``"file"`` (``path/to/file.py:Name``), ``"checkpoint"``, ``"export"`` (.pt2 / .onnx) or
        ``"object"`` (passed to the Python API)."""
        if self.model in _MODELS:
            return "builtin"
        if self.model.startswith(OBJECT_PREFIX):
            return "object"
        if is_file_reference(self.model):
            return "file"
        path = Path(self.model)
        if path.suffix.lower() in EXPORT_SUFFIXES:
            return "export"
        if path.is_dir() and (path / CHECKPOINT_METADATA).is_file():
            return "checkpoint"
        if path.is_file():
            from .external import load_model_file

            load_model_file(path)  # refuses pickles and other files with the message that shows the accepted forms
        raise XaitrustError(
            f"model {self.model!r} is neither a built-in architecture ({', '.join(sorted(_MODELS))}), "
            "path/to/file.py:Name, an xaitrust checkpoint folder, a .pt2 torch.export archive nor an .onnx file"
        )

    @property
    def is_trained(self) -> bool:
        """Whether this is a trained model to score as it is (else an architecture to train)."""
        return bool(self.weights) or self.kind in ("checkpoint", "export", "object")

    @property
    def label(self) -> str:
        """A short name for reports: the architecture, file or folder name."""
        if self.kind == "file":
            path, name = split_file_reference(self.model)
            return f"{path.name}:{name}"
        if self.kind == "object":
            return self.model[len(OBJECT_PREFIX):].split("@")[0]
        return Path(self.model).name if self.kind != "builtin" else self.model

    def check(self) -> None:
        """Validate what can be checked without data: the kind, files that must exist, option types, and that
        ``weights`` goes with an architecture. Raises ``XaitrustError`` naming the key."""
        kind = self.kind
        if kind == "file":
            path, _ = split_file_reference(self.model)
            if not path.is_file():
                raise XaitrustError(f"model file {path} does not exist (model = path/to/file.py:Name)")
        if self.weights:
            if kind not in ("builtin", "file"):
                raise XaitrustError(f"weights go with an architecture (a built-in name or path/to/file.py:Name); "
                                    f"{self.model} already holds its weights: drop weights")
            if not Path(self.weights).is_file():
                raise XaitrustError(f"weights file {self.weights} does not exist")
        if self.model_options and kind not in ("builtin", "file"):
            raise XaitrustError("model_options only apply to an architecture (a built-in name or path/to/file.py:Name)")
        if not isinstance(self.model_options, dict):
            raise XaitrustError(f"model_options must be a table of keyword options; got {self.model_options!r}")
        if bool(self.input_mean) != bool(self.input_std):
            raise XaitrustError("give input_mean and input_std together (the statistics the model was trained with)")
        if self.input_mean and not self.is_trained:
            raise XaitrustError("input_mean / input_std describe a trained model; an architecture xaitrust trains "
                                "normalises with the training images' statistics: drop them or give weights")
        for key, values in (("input_mean", self.input_mean), ("input_std", self.input_std)):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                raise XaitrustError(f"{key} must be a list of numbers, one per channel; got {list(values)}")

    def load(
        self, in_channels: int, num_classes: int, image_size, mean=None, std=None, module: torch.nn.Module | None = None
    ) -> torch.nn.Module:
        """The trained model for data of ``in_channels x image_size`` images and ``num_classes`` classes, in eval mode.

        ``mean`` / ``std`` are the data's per-channel statistics: the removal value of a model that normalises itself.
        ``module`` is the object of an ``"object"`` source. Only for ``is_trained`` sources; an architecture without
        weights is built by ``build_model`` and trained.
        """
        self.check()
        if not self.is_trained:
            raise XaitrustError(f"{self.model} is an architecture without weights: give weights, or train it")
        kind = self.kind
        if kind == "object" and module is None:
            raise XaitrustError(f"{self.model} names a model object passed to the Python API; pass the object again "
                                "(e.g. xaitrust.benchmark(model, data, out=...)) to resume this run")
        own_statistics = bool(self.input_mean)
        mean = list(self.input_mean) if own_statistics else mean
        std = list(self.input_std) if own_statistics else std
        if kind == "checkpoint":
            from ..training.checkpoint import load_model

            model = load_model(self.model)
        elif kind == "builtin":
            model = build_model(self.model, in_channels, num_classes, image_size, **self.model_options)
            from .external import read_state_dict

            load_weights(model, read_state_dict(self.weights), self.weights)
            if own_statistics:
                model.set_normalization(mean, std)
        elif kind == "file":
            model = build_model(self.model, in_channels, num_classes, image_size, mean, std,
                                wrapper={"normalize_input": own_statistics}, **self.model_options)
            from .external import read_state_dict

            load_weights(model.body, read_state_dict(self.weights), self.weights)
        elif kind == "object" and isinstance(module, ImageClassifier):
            model = module
        else:
            if kind == "export":
                from .external import load_model_file

                module = load_model_file(self.model)
            model = WrappedModel(module, self.label, in_channels, num_classes, image_size, mean, std,
                                 normalize_input=own_statistics)
        if self.cam_layer:
            if not isinstance(model, WrappedModel):
                raise XaitrustError(f"cam_layer applies to your own models; {self.model} names its CAM layer itself")
            model.set_cam_layer(self.cam_layer)
        check_finite_model(model, f"weights file {self.weights}" if self.weights
                           else f"model {self.label if kind == 'object' else self.model}")
        return model.eval()
