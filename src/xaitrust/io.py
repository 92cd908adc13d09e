"""Files written so that a crash never leaves a half-written file under the real name, files read back with a check
that they are whole, and what every saved result records about the software that made it.

Every write goes to a temporary file in the same folder, ``.<name>.<pid>-<random>.tmp``, which is flushed to disk
and then renamed over the target (an atomic step on POSIX file systems): the real name only ever holds a complete
file, even after a crash of the process or the machine. The temporary is created like any other file, so the result
follows the umask. A write killed before its rename leaves its temporary behind; the next write of the same target
removes those whose process is gone (on POSIX; elsewhere they are left), and only files of exactly that pattern.

Tensors are stored in safetensors, never pickle, with a SHA-256 of their names, dtypes, shapes and bytes in the
file's metadata; reading checks it, so a damaged file is refused instead of read as if valid. Other files that are
reused later (``write_bytes_checked``) get a ``<name>.sha256`` file beside them, in ``sha256sum`` format.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata as importlib_metadata
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from .errors import XaitrustError

VERSIONED_PACKAGES = ("xaitrust", "numpy", "scipy", "scikit-learn", "scikit-image", "captum", "safetensors")
DIGEST_KEY = "sha256"
CHECKSUM_SUFFIX = ".sha256"


def _temporaries(path: Path) -> re.Pattern:
    """The names ``atomic_write`` gives the temporaries of ``path``; group 1 is the writing process's id."""
    return re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[0-9a-f]{{16}}\.tmp")


def _writer_gone(pid: int) -> bool:
    """Whether process ``pid`` no longer exists (never claimed for this process, nor where it cannot be asked)."""
    if os.name != "posix" or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists but belongs to someone else
        return False
    return False


def _remove_stale_temporaries(path: Path) -> None:
    """Delete the temporaries of ``path`` left in its folder by writes whose process was killed."""
    pattern = _temporaries(path)
    with os.scandir(path.parent) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False) and _writer_gone(int(match[1])):
                Path(entry.path).unlink(missing_ok=True)


def _flush_to_disk(path: Path) -> None:
    """Wait until the file's bytes are on disk, so that a crash of the machine after the rename cannot leave the real
    name pointing at an empty or partial file."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path`` (parents are created); stale
    temporaries of ``path`` are removed first (see the module notes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as to any file
    mode = os.fstat(handle).st_mode
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, mode)  # in case ``write`` replaced the file instead of writing into it
        _flush_to_disk(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, data) -> None:
    """Write ``data`` as indented JSON (sorted keys) to ``path``, atomically."""
    atomic_write(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=True)))


def _checksum_path(path: str | Path) -> Path:
    """Where ``write_bytes_checked`` keeps the SHA-256 of ``path``: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def write_bytes_checked(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path``, then its SHA-256 to ``<path>.sha256``, each atomically: a file whose checksum file is
    missing or disagrees with it was damaged, or its write was cut short."""
    path = Path(path)
    atomic_write(path, lambda p: p.write_bytes(data))
    atomic_write(_checksum_path(path), lambda p: p.write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n"))


def read_bytes_checked(path: str | Path) -> bytes:
    """The bytes of a file written by ``write_bytes_checked``; ``XaitrustError`` when its checksum file is missing or
    the bytes do not match it."""
    path = Path(path)
    data, checksum = path.read_bytes(), _checksum_path(path)
    try:
        recorded = checksum.read_text(encoding="ascii").split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        raise XaitrustError(f"{path} has no readable checksum file {checksum.name}") from None
    if hashlib.sha256(data).hexdigest() != recorded:
        raise XaitrustError(f"{path} is damaged: its content does not match {checksum.name}")
    return data


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of CPU ``tensors`` (in name order)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def write_tensors_atomic(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write ``tensors`` as safetensors to ``path``, atomically, with their digest in the metadata.

    Tensors are moved to the CPU and made contiguous; one that shares memory with an earlier one is copied, as
    safetensors requires. The file is serialised in memory and written through ``atomic_write``, because
    ``safetensors.torch.save_file`` writes through a temporary of its own (private, and left behind when killed)."""
    prepared, storages = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        prepared[name] = tensor.clone() if storage in storages else tensor
        storages.add(storage)
    data = save(prepared, metadata={DIGEST_KEY: _tensor_digest(prepared)})
    atomic_write(path, lambda p: p.write_bytes(data))


@contextmanager
def _safetensors(path: Path) -> Iterator:
    """``safe_open(path)``, with a clear error when the file is missing or not (whole) safetensors."""
    if not path.is_file():
        raise XaitrustError(f"no safetensors file at {path}")
    try:
        with safe_open(str(path), "pt") as handle:
            yield handle
    except (SafetensorError, OSError) as error:
        raise XaitrustError(f"{path} is not a readable safetensors file ({error})") from None


def read_tensor_shapes(path: str | Path) -> dict[str, list[int]]:
    """The name and shape of every tensor in a safetensors file, read from its header alone (no tensor is loaded)."""
    with _safetensors(Path(path)) as handle:
        return {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}


def read_tensors(path: str | Path, require_digest: bool = False) -> dict[str, torch.Tensor]:
    """Read a safetensors file, with a clear error when it is missing, not safetensors, or damaged (its tensors do
    not match the digest ``write_tensors_atomic`` stored). A file without a digest (written elsewhere) is read as it
    is, unless ``require_digest``."""
    path = Path(path)
    with _safetensors(path) as handle:
        recorded = (handle.metadata() or {}).get(DIGEST_KEY)
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    if recorded is None and require_digest:
        raise XaitrustError(f"{path} holds no checksum of its tensors, so it cannot be trusted to be whole")
    if recorded is not None and recorded != _tensor_digest(tensors):
        raise XaitrustError(f"{path} is damaged: its tensors do not match the checksum stored with them")
    return tensors


def library_versions() -> dict:
    """Versions of Python, torch and the libraries that shape xaitrust's numbers (None for one not installed)."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            versions[package] = None
    return versions
