"""A run folder: the resolved config, cached intermediate results, and resumption after an interruption.

Everything a protocol computes goes through ``RunFolder.cached_*``: a finished piece (tensors, a table, a trained model)
is written atomically (to a temporary name, then renamed), so a partial file never counts as finished, and a rerun in
the same folder loads it instead of recomputing. The folder's ``config.toml`` is the fully resolved config; rerunning
with a different config in the same folder is refused, so cached pieces always match the config beside them.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pandas as pd
import tomli_w
import torch
from safetensors.torch import load_file, save_file

from ..errors import XaitrustError
from ..io import atomic_write, library_versions
from .config import read_toml


class LibraryVersionWarning(UserWarning):
    """A run folder is resumed with other library versions than the ones it was started with."""


class RunFolder:
    """The folder one protocol run writes into, with caching of every finished piece."""

    def __init__(self, path: str | Path, config: dict) -> None:
        self.path = Path(path)
        self.config = config
        #: Objects given to the Python API instead of named in the config: ``"model"`` (an ``nn.Module``) and
        #: ``"data"`` (a ``(train, test)`` pair of ``ImageDataset``); the config records their names and fingerprints.
        self.supplied: dict = {}
        self.path.mkdir(parents=True, exist_ok=True)
        config_path = self.path / "config.toml"
        if config_path.exists():
            stored = read_toml(config_path)
            if stored != json.loads(json.dumps(config)):
                changed = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
                raise XaitrustError(
                    f"{self.path} holds a run with a different config (keys {', '.join(changed)}); "
                    "choose another --out folder, or delete this one to start over"
                )
        else:
            atomic_write(config_path, lambda p: p.write_text(tomli_w.dumps(config)))
        self._record_versions()

    def _record_versions(self) -> None:
        """Write ``versions.json`` when the folder is new; on a resume keep the first run's record and warn when the
        libraries have changed since, because finished pieces were computed with the recorded ones."""
        path, current = self.path / "versions.json", library_versions()
        if not path.exists():
            atomic_write(path, lambda p: p.write_text(json.dumps(current, indent=2)))
            return
        recorded = json.loads(path.read_text())
        changed = sorted(name for name in set(recorded) | set(current) if recorded.get(name) != current.get(name))
        if changed:
            warnings.warn(
                f"{self.path} was started with other library versions ({', '.join(changed)}; see versions.json); "
                "its finished pieces are reused as they are. Use a new --out folder to recompute everything.",
                LibraryVersionWarning, stacklevel=3,
            )

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
        path = self.inside("cache", f"{name}.safetensors")
        if path.exists():
            return load_file(path)
        tensors = {key: value.detach().cpu().contiguous() for key, value in compute().items()}
        atomic_write(path, lambda p: save_file(tensors, p))
        return tensors

    def cached_table(self, name: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """Load ``cache/<name>.csv`` if finished, else compute, save atomically and return."""
        path = self.inside("cache", f"{name}.csv")
        if path.exists():
            return pd.read_csv(path)
        table = compute()
        atomic_write(path, lambda p: table.to_csv(p, index=False))
        return table

    def cached_json(self, name: str, compute: Callable[[], dict]) -> dict:
        """Load ``cache/<name>.json`` if finished, else compute, save atomically and return."""
        path = self.inside("cache", f"{name}.json")
        if path.exists():
            return json.loads(path.read_text())
        value = compute()
        atomic_write(path, lambda p: p.write_text(json.dumps(value, indent=2)))
        return value

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
