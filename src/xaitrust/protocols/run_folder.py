"""A run folder: the resolved config, cached intermediate results, and resumption after an interruption.

Everything a protocol computes goes through ``RunFolder.cached_*``: a finished piece (tensors, a table, a trained model)
is written atomically (to a temporary name, then renamed), so a partial file never counts as finished, and a rerun in
the same folder loads it instead of recomputing. A piece is reused only when it checks out against the SHA-256 written
with it (in the safetensors metadata, or a ``<name>.sha256`` file beside a CSV or JSON piece): a truncated, altered or
half-finished piece is computed again, with a ``DamagedFileWarning`` naming it, rather than read as if valid. The
folder's ``config.toml`` is the fully resolved config without the execution keys (``executor``, ``ray_address``: how
the trainings run, not what is computed, so either executor resumes a run); rerunning with a different config in the
same folder is refused, so cached pieces always match the config beside them.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import TypeVar

import pandas as pd
import tomli_w
import torch

from ..errors import XaitrustError
from ..io import (
    atomic_write,
    library_versions,
    read_bytes_checked,
    read_tensors,
    write_bytes_checked,
    write_tensors_atomic,
)
from ..training.jobs import Runner, SequentialRunner
from .config import read_toml, without_execution_keys

Piece = TypeVar("Piece")


class LibraryVersionWarning(UserWarning):
    """A run folder is resumed with other library versions than the ones it was started with."""


class DamagedFileWarning(UserWarning):
    """A file of a run folder is damaged (truncated, altered, or its write was cut short) and is written anew."""


class RunFolder:
    """The folder one protocol run writes into, with caching of every finished piece."""

    def __init__(self, path: str | Path, config: dict) -> None:
        self.path = Path(path)
        config = without_execution_keys(config)  # how trainings run is not part of the run: either executor resumes it
        self.config = config
        #: Objects given to the Python API instead of named in the config: ``"model"`` (an ``nn.Module``) and
        #: ``"data"`` (a ``(train, test)`` pair of ``ImageDataset``); the config records their names and fingerprints.
        self.supplied: dict = {}
        #: What runs the protocol's trainings; ``run_protocol`` sets the one the config asks for
        #: (``xaitrust.protocols.common.runner_for``).
        self.runner: Runner = SequentialRunner()
        self.path.mkdir(parents=True, exist_ok=True)
        config_path = self.path / "config.toml"
        if config_path.exists():
            try:
                stored = read_toml(config_path)
            except XaitrustError as error:  # the config cannot be recomputed: which one the pieces belong to is lost
                raise XaitrustError(
                    f"{error}. The run folder's config is damaged: if {self.path} was started with this same config, "
                    f"delete {config_path} to resume; otherwise delete the folder or choose another --out folder"
                ) from None
            if stored != json.loads(json.dumps(config)):
                changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
                raise XaitrustError(
                    f"{self.path} holds a run with a different config (keys {', '.join(changed)}); "
                    "choose another --out folder, or delete this one to start over"
                )
        else:
            atomic_write(config_path, lambda p: p.write_text(tomli_w.dumps(config)))
        self._record_versions()

    def __getstate__(self) -> dict:
        """What a copy of the folder sent to another process (a task of the run's runner) holds: its path and config,
        for the ``cached_*`` pieces; not the runner nor the supplied objects, which stay with the driver."""
        return {"path": self.path, "config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.path, self.config = state["path"], state["config"]
        self.supplied, self.runner = {}, SequentialRunner()

    def has_piece(self, name: str) -> bool:
        """Whether ``cache/<name>`` (with its suffix, e.g. ``intervals/cnn/saliency.json``) is on disk: written
        whole by a ``cached_*`` call, checked when that call loads it."""
        return self.inside("cache", name).exists()

    def _record_versions(self) -> None:
        """Write ``versions.json`` when the folder is new; on a resume keep the first run's record and warn when the
        libraries have changed since, because finished pieces were computed with the recorded ones. A damaged record
        is written anew with a warning: which versions computed the finished pieces is then unknown."""
        path, current = self.path / "versions.json", library_versions()
        if path.exists():
            recorded = _read_versions(path)
            if recorded is not None:
                changed = sorted(k for k in set(recorded) | set(current) if recorded.get(k) != current.get(k))
                if changed:
                    warnings.warn(
                        f"{self.path} was started with other library versions ({', '.join(changed)}; see "
                        "versions.json); its finished pieces are reused as they are. Use a new --out folder to "
                        "recompute everything.",
                        LibraryVersionWarning, stacklevel=3,
                    )
                return
            warnings.warn(
                f"{path} is damaged; it is written anew with the current library versions, so the versions that "
                "computed the finished pieces are unknown. Use a new --out folder to recompute everything.",
                DamagedFileWarning, stacklevel=3,
            )
        atomic_write(path, lambda p: p.write_text(json.dumps(current, indent=2)))

    def inside(self, *parts: str) -> Path:
        """The path ``parts`` joined below the run folder, which it never leaves: names that hold a path of their own
        (an explainer given as ``/path/to/file.py:Name``) lose their leading ``/``, and ``..`` is refused."""
        relative = PurePosixPath(*(part.lstrip("/") for part in parts))
        if ".." in relative.parts:
            raise XaitrustError(f"{'/'.join(parts)!r} would leave the run folder {self.path}; rename it without '..'")
        return self.path / relative

    def file(self, name: str) -> Path:
        """Path of a file inside the run folder (sub-folders are created)."""
        path = self.inside(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def cached_tensors(self, name: str, compute: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Load ``cache/<name>.safetensors`` if finished, else compute, save atomically and return."""
        return _cached(
            self.inside("cache", f"{name}.safetensors"),
            lambda path: read_tensors(path, require_digest=True),
            write_tensors_atomic,
            lambda: {key: value.detach().cpu().contiguous() for key, value in compute().items()},
        )

    def cached_table(self, name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Load ``cache/<name>.csv`` if finished, else compute, save atomically and return."""
        return _cached(
            self.inside("cache", f"{name}.csv"),
            _read_table,
            _write_table,
            compute,
        )

    def finished_table(self, name: str) -> pd.DataFrame | None:
        """``cache/<name>.csv`` when it is finished and checks out, else None (a damaged one with a
        ``DamagedFileWarning``): for a protocol that decides which pieces still need work before doing it."""
        path = self.inside("cache", f"{name}.csv")
        if not path.exists():
            return None
        try:
            return _read_table(path)
        except XaitrustError as error:
            warnings.warn(f"{error}; computing it again", DamagedFileWarning, stacklevel=2)
            return None

    def store_table(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        """Save ``table`` atomically as the finished ``cache/<name>.csv`` (what ``cached_table`` would) and return
        it."""
        _write_table(self.inside("cache", f"{name}.csv"), table)
        return table

    def cached_json(self, name: str, compute: Callable[[], dict]) -> dict:
        """Load ``cache/<name>.json`` if finished, else compute, save atomically and return."""
        return _cached(
            self.inside("cache", f"{name}.json"),
            lambda path: json.loads(read_bytes_checked(path)),
            lambda path, value: write_bytes_checked(path, json.dumps(value, indent=2).encode()),
            compute,
        )

    def write_table(self, name: str, table: pd.DataFrame) -> Path:
        """Write a result table as CSV (and Parquet when pyarrow is installed); returns the CSV path."""
        path = self.inside(f"{name}.csv")
        atomic_write(path, lambda p: table.to_csv(p, index=False))
        try:
            import pyarrow  # noqa: F401

            atomic_write(self.inside(f"{name}.parquet"), lambda p: table.to_parquet(p, index=False))
        except ImportError:
            pass
        return path


def _cached(
    path: Path, load: Callable[[Path], Piece], save: Callable[[Path, Piece], None], compute: Callable[[], Piece]
) -> Piece:
    """``load(path)`` when the piece is there and checks out; else ``compute()``, ``save`` it and return it. A piece
    that fails its check is computed again, with a ``DamagedFileWarning`` reported at the protocol's call."""
    if path.exists():
        try:
            return load(path)
        except XaitrustError as error:
            warnings.warn(f"{error}; computing it again", DamagedFileWarning, stacklevel=3)
    value = compute()
    save(path, value)
    return value


def _read_table(path: Path) -> pd.DataFrame:
    """The CSV piece at ``path``, checked against its SHA-256."""
    return pd.read_csv(io.BytesIO(read_bytes_checked(path)))


def _write_table(path: Path, table: pd.DataFrame) -> None:
    """Save the CSV piece ``table`` atomically at ``path``, with its SHA-256 beside it."""
    write_bytes_checked(path, table.to_csv(index=False).encode())


def _read_versions(path: Path) -> dict | None:
    """The library versions recorded in ``path``, or None when the file is not such a record."""
    try:
        recorded = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(recorded, dict) or not all(isinstance(v, (str, type(None))) for v in recorded.values()):
        return None
    return recorded
