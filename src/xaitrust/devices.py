"""Where models and tensors run: ``resolve_device("auto" | "cpu" | "cuda" | "cuda:N")``."""

from __future__ import annotations

import re

import torch

from .errors import XaitrustError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` stands for: ``auto`` is the first CUDA device when one is available, else the CPU. A CUDA
    device that is not there is an error, not a silent fall-back to the CPU."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise XaitrustError(f"device must be {DEVICE_FORMS}; got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise XaitrustError(f"device {name!r} asked for, but torch sees no CUDA device here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise XaitrustError(f"device {name!r} asked for, but there are {torch.cuda.device_count()} CUDA devices")
    return device


def on_device(factory, device: torch.device) -> torch.nn.Module:
    """``factory()`` moved to ``device``: a picklable model factory for training jobs that build on a device."""
    return factory().to(device)
