"""What every calibrator provides: scikit-learn-like ``fit`` / ``__call__``, ``wrap(model)``, ``save`` / ``load``.

A calibrator maps a classifier's logits ``(N, K)`` to calibrated logits whose softmax is the calibrated distribution;
``__call__`` returns their log-softmax (calibrated log-probabilities). Learned parameters end with ``_``. It is fitted
on a held-out calibration split, never on the data it is evaluated on. ``wrap(model)`` returns an ``nn.Module`` that
explainers and metrics use like the model itself: gradients flow through it, it returns calibrated logits, and
attributes it does not have (``num_classes``, ``cam_layer``, ``input_mean``, ``spec``, ...) are the wrapped model's.

Saved calibrators are two files: ``<path>.safetensors`` (learned tensors) and ``<path>.json`` (method and settings).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..errors import XaitrustError
from ..io import read_tensors, write_json_atomic, write_tensors_atomic
from .checks import check_logits

FORMAT_VERSION = 1
_REGISTRY: dict[str, type["Calibrator"]] = {}


def register(cls: type["Calibrator"]) -> type["Calibrator"]:
    """Class decorator adding a calibrator to the registry under ``cls.name``."""
    _REGISTRY[cls.name] = cls
    return cls


def calibrator_names() -> list[str]:
    return sorted(_REGISTRY)


def get_calibrator(name: str, **params) -> "Calibrator":
    """A new, unfitted calibrator registered as ``name`` (``temperature``, ``dirichlet``, ``recalx``)."""
    if name not in _REGISTRY:
        raise XaitrustError(f"unknown calibration method {name!r}; available: {', '.join(calibrator_names())}")
    return _REGISTRY[name](**params)


class Calibrator:
    """Base class. Subclasses set ``name`` and ``learned_names`` (attributes set by ``fit``, each ending with ``_``:
    tensors, or floats for scalars), keep their constructor arguments as attributes of the same names (``settings``),
    and implement ``calibrated_logits``."""

    name: str = ""
    learned_names: tuple[str, ...] = ()

    def settings(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        raise NotImplementedError

    def calibrated_logits(self, logits: torch.Tensor, **context) -> torch.Tensor:
        """Calibrated logits ``(N, K)``; differentiable, on the device of ``logits``."""
        raise NotImplementedError

    def expected_classes(self) -> int | None:
        """The number of classes the fitted parameters are tied to (None when any number works)."""
        return None

    def __call__(self, logits, **context) -> torch.Tensor:
        """Calibrated log-probabilities ``(N, K)`` of ``logits`` ``(N, K)``."""
        self._require_fitted()
        logits, _ = check_logits(logits, num_classes=self.expected_classes())
        return torch.log_softmax(self.calibrated_logits(logits, **context), dim=-1)

    def wrap(self, model: nn.Module) -> "CalibratedModel":
        """``model`` followed by this calibrator, as an ``nn.Module`` returning calibrated logits."""
        self._require_fitted()
        return CalibratedModel(model, self)

    def save(self, path) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json`` (a ``.json`` / ``.safetensors`` suffix is dropped);
        return the JSON path."""
        self._require_fitted()
        stem = _stem(path)
        tensors = {name: torch.as_tensor(getattr(self, name)) for name in self.learned_names}
        write_tensors_atomic(stem.with_name(stem.name + ".safetensors"), tensors)
        json_path = stem.with_name(stem.name + ".json")  # written last: its presence marks a complete calibrator
        write_json_atomic(json_path, {"format_version": FORMAT_VERSION, "method": self.name, "settings": self.settings()})
        return json_path

    @classmethod
    def load(cls, path) -> "Calibrator":
        """Read a calibrator written by ``save`` (of any method when called as ``Calibrator.load``).

        Files that are not a whole, matching pair (unreadable JSON, unknown settings, tensors that are damaged or not
        the method's learned ones) are refused with an error naming the file and saying to delete the pair, so that
        the calibrator is fitted again."""
        stem = _stem(path)
        json_path, tensor_path = stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".safetensors")
        if not json_path.is_file() or not tensor_path.is_file():
            raise XaitrustError(f"no saved calibrator at {stem}: expected {json_path.name} and {tensor_path.name} there")
        refit = f"delete {json_path} and {tensor_path} to fit the calibrator again"
        try:
            meta = json.loads(json_path.read_bytes())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise XaitrustError(f"{json_path} is not valid JSON ({error}); {refit}") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("settings"), dict):
            raise XaitrustError(f"{json_path} is not a saved calibrator (no method and settings); {refit}")
        method = meta.get("method")
        if not isinstance(method, str) or method not in _REGISTRY or not issubclass(_REGISTRY[method], cls):
            raise XaitrustError(f"{json_path} holds a {method!r} calibrator, not a {cls.name or 'known'} one")
        try:
            calibrator = _REGISTRY[method](**meta["settings"])
        except (TypeError, ValueError) as error:
            raise XaitrustError(f"{json_path} holds settings {method} does not take ({error}); {refit}") from None
        try:
            tensors = read_tensors(tensor_path)
        except XaitrustError as error:
            raise XaitrustError(f"{error}; {refit}") from None
        if set(tensors) != set(calibrator.learned_names):
            raise XaitrustError(
                f"{tensor_path} holds tensors {sorted(tensors)}, not the {method} calibrator's learned "
                f"{', '.join(calibrator.learned_names)}; {refit}"
            )
        for name, value in tensors.items():
            setattr(calibrator, name, value.item() if value.ndim == 0 else value)
        return calibrator

    def _require_fitted(self) -> None:
        if not all(hasattr(self, name) for name in self.learned_names):
            raise XaitrustError(f"{type(self).__name__} is not fitted yet; call fit(...) on a calibration split first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({params})"


class CalibratedModel(nn.Module):
    """``calibrator.calibrated_logits(model(x))``: a model whose softmax is the calibrated distribution."""

    def __init__(self, model: nn.Module, calibrator: Calibrator) -> None:
        super().__init__()
        self.model = model
        self.calibrator = calibrator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.calibrator.calibrated_logits(self.model(x))

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["model"], name)


def _stem(path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
