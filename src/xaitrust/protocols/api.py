"""The scoring protocols from Python, on a model and data of your own: ``benchmark``, ``calibrate_to_interpret`` and
``recalx`` write the same run folder and report as ``xaitrust run PROTOCOL``.

``model`` is an ``nn.Module`` (trained; it is scored as it is) or anything the config key ``model`` takes (a
built-in name, ``path/to/file.py:Name`` with ``weights=...``, a checkpoint folder, a ``.pt2`` or ``.onnx`` file).
``data`` is an ``ImageDataset`` (the images to calibrate on and explain; ``xaitrust.data.ImageDataset(x, y,
classes)``), a ``(train, test)`` pair of them, a dataset name, an ``.npz`` file or an image folder. Every other
config key of the protocol is a keyword argument (``n_images=32``, ``explainers=[...]``, ...).

A model or data set given as an object is recorded in ``config.toml`` by its name and a fingerprint of its weights
or images, so a rerun with the same objects and ``out`` resumes, and a rerun with other ones is refused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ..data import ImageDataset
from ..errors import XaitrustError
from ..models.loading import OBJECT_PREFIX
from ..training.trainer import dataset_fingerprint
from . import run_protocol


def benchmark(model, data, out=None, *, profile: str = "quick", **config) -> Path:
    """The benchmark scorecard of ``model`` on ``data`` (``xaitrust run benchmark``); returns the report's path."""
    return _run("benchmark", model, data, out, profile, config)


def calibrate_to_interpret(model, data, out=None, *, profile: str = "quick", **config) -> Path:
    """The Calibrate-to-Interpret protocol on ``model`` and ``data``; returns the report's path."""
    return _run("calibrate-to-interpret", model, data, out, profile, config)


def recalx(model, data, out=None, *, profile: str = "quick", **config) -> Path:
    """The ReCalX protocol on ``model`` and ``data``; returns the report's path."""
    return _run("recalx", model, data, out, profile, config)


def _run(protocol: str, model, data, out, profile: str, config: dict) -> Path:
    overrides, supplied = dict(config), {}
    if isinstance(model, torch.nn.Module):
        overrides["model"] = f"{OBJECT_PREFIX}{type(model).__name__}@{weights_fingerprint(model)}"
        supplied["model"] = model
    elif isinstance(model, (str, Path)):
        overrides["model"] = str(model)
    else:
        raise XaitrustError(f"model must be a torch.nn.Module or a model name/path; got {type(model).__name__}")
    overrides.update(data_keys(data, supplied))
    return run_protocol(protocol, profile, None, out, overrides, supplied)


def data_keys(data, supplied: dict) -> dict:
    """The config keys naming ``data``; an ``ImageDataset`` (or a ``(train, test)`` pair) goes into ``supplied``."""
    if isinstance(data, ImageDataset):
        data = (data, data)
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(d, ImageDataset) for d in data):
        supplied["data"] = data
        fingerprint = "+".join(dataset_fingerprint(d) for d in data)
        return {"dataset": f"{OBJECT_PREFIX}{data[1].name}@{fingerprint}"}
    if isinstance(data, (str, Path)):
        path = Path(data)
        if path.suffix == ".npz":
            return {"dataset": "npz", "data_root": str(path)}
        if path.is_dir():
            return {"dataset": "folder", "data_root": str(path)}
        return {"dataset": str(data)}
    raise XaitrustError("data must be an ImageDataset, a (train, test) pair of them, a dataset name, an .npz file or "
                        f"an image folder; got {type(data).__name__}")


def weights_fingerprint(model: torch.nn.Module) -> str:
    """First 16 hex digits of the SHA-256 of ``model``'s state dict (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()[:16]
