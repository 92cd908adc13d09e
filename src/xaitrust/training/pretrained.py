"""Ready-trained models: train a named model on a named dataset with a named recipe, or reuse the cached result.

Profiles (``PROFILES``):

* ``default``: Adam, lr 1e-3, batch 128, 3 epochs on the whole training split; the ``cnn`` model reaches 89.8%
  Fashion-MNIST test accuracy (about 2 CPU-minutes on one thread);
* ``quick``: Adam, lr 2e-3, batch 128, 2 epochs on a stratified 6000-image subset, validated on a stratified
  2000-image subset of the test split, for tests and smoke runs (83.6% on Fashion-MNIST, about 10 CPU-seconds).

The cache folder is ``cache_dir`` or ``$XAITRUST_CACHE`` or ``~/.cache/xaitrust``; each model lives in
``<dataset>-<model>-<profile>-<hash>``, the hash covering dataset, model, model options, subset size and config, so
a changed recipe never picks up a stale model. The test split is the validation set: its accuracy is reported in the
history and the checkpoint metrics (``test_accuracy``), never used to choose anything.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ..data import load_dataset
from ..devices import on_device
from ..errors import XaitrustError
from ..models import build_model
from .config import TrainConfig, fingerprint
from .degrade import permute_labels
from .jobs import TrainingJob
from .trainer import TrainResult

CACHE_VARIABLE = "XAITRUST_CACHE"


@dataclass(frozen=True)
class Profile:
    """A named recipe: the training config and how many training / test images to use (None: all)."""

    config: TrainConfig
    train_limit: int | None = None
    test_limit: int | None = None


PROFILES = {
    "default": Profile(TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, epochs=3)),
    "quick": Profile(
        TrainConfig(optimizer="adam", lr=2e-3, batch_size=128, epochs=2), train_limit=6000, test_limit=2000
    ),
}


def default_cache_dir() -> Path:
    """``$XAITRUST_CACHE`` if set, else ``~/.cache/xaitrust``."""
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "xaitrust")


def train_on_dataset(
    dataset: str,
    model: str,
    config: TrainConfig,
    out_dir: str | Path,
    root: str | Path | None = None,
    train_limit: int | None = None,
    test_limit: int | None = None,
    model_options: dict | None = None,
    progress: bool = True,
    dataset_options: dict | None = None,
    device: torch.device | str = "cpu",
    permuted_labels: bool = False,
) -> TrainResult:
    """Load ``dataset`` (its train and test splits with the loader's ``dataset_options``, or stratified subsets of
    ``train_limit`` / ``test_limit`` images), build ``model`` (a built-in name or ``path/to/file.py:Name``) for it
    (initialised with ``config.seed``, on ``device``) and train it with ``config`` into ``out_dir``, validating on the
    test split; resumes or reuses what ``out_dir`` holds. ``permuted_labels`` trains on the training labels randomly
    permuted with ``config.seed`` (``permute_labels``), the model of the data randomisation test."""
    train = load_dataset(dataset, root, "train", limit=train_limit, **(dataset_options or {}))
    if permuted_labels:
        train = dataclasses.replace(train, y=permute_labels(train.y, config.seed))
    test = load_dataset(dataset, root, "test", limit=test_limit, **(dataset_options or {}))
    architecture = partial(
        build_model, model, train.in_channels, train.num_classes, train.image_size, **(model_options or {})
    )
    factory = partial(on_device, architecture, torch.device(device))
    job = TrainingJob(f"{dataset}-{model}", factory, train, config, test, Path(out_dir), progress)
    return job.run()


def get_trained_model(
    dataset: str = "fashion-mnist",
    model: str = "cnn",
    config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    profile: str = "default",
    root: str | Path | None = None,
    model_options: dict | None = None,
    progress: bool = True,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """A trained ``model`` for ``dataset``: trained with ``profile``'s recipe (or ``config`` in its place) on
    ``device`` the first time, then read back from the cache. ``result.model`` is the model (on ``device``),
    ``result.reused`` says whether it came from the cache, ``result.metrics["test_accuracy"]`` its test accuracy,
    ``result.checkpoint_dir`` where it is. A model trained on a GPU is cached apart from the CPU one: their weights
    differ in the last bits."""
    if profile not in PROFILES:
        raise XaitrustError(f"unknown training profile {profile!r}; available: {', '.join(PROFILES)}")
    chosen = PROFILES[profile]
    config = config or chosen.config
    key = fingerprint(
        {
            "dataset": dataset,
            "model": model,
            "model_options": model_options or {},
            "train_limit": chosen.train_limit,
            "test_limit": chosen.test_limit,
            "config": config.to_dict(),
            # the kind of device, for GPUs only, so that the CPU models keep the cache keys they always had
            **({"device": torch.device(device).type} if torch.device(device).type != "cpu" else {}),
        }
    )
    out_dir = Path(cache_dir or default_cache_dir()) / f"{dataset}-{model}-{profile}-{key}"
    return train_on_dataset(
        dataset, model, config, out_dir, root, chosen.train_limit, chosen.test_limit, model_options, progress,
        device=device,
    )
