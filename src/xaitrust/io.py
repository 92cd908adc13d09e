"""Files written so that a crash never leaves a half-written file under the real name, and what every saved result
records about the software that made it.

Every write goes to a uniquely named temporary file in the same folder, which is then renamed over the target (an
atomic step on POSIX file systems). Tensors are stored in safetensors, never pickle.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import XaitrustError

VERSIONED_PACKAGES = ("xaitrust", "numpy", "scipy", "scikit-learn", "scikit-image", "captum", "safetensors")


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (parents are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as indented JSON (sorted keys) to ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True)))


def write_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as safetensors to ``path``, atomically (copies are made contiguous and unshared, as
    safetensors requires)."""
    tensors = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()}
    atomic_write(path, lambda p: save_file(tensors, str(p)))


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, with a clear error when it is missing or not safetensors."""
    path = Path(path)
    if not path.is_file():
        raise XaitrustError(f"no safetensors file at {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise XaitrustError(f"{path} is not a readable safetensors file ({error})") from None


def library_versions() -> dict:
    """Versions of Python, torch and the libraries that shape xaitrust's numbers (None for one not installed)."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    return versions
