"""Training jobs and the seam that runs them.

A ``TrainingJob`` is everything one training run needs; a ``Runner`` turns a list of jobs into a list of
``TrainResult`` in the same order. ``SequentialRunner`` runs them one after the other in this process; a parallel or
distributed runner only has to implement ``run``, and callers (k-fold cross-training, ROAR retraining, sanity-check
degradations) do not change. Jobs are plain data plus a model factory, so keep the factory picklable
(e.g. ``functools.partial(build_model, ...)``) for runners that ship jobs to other processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..data.dataset import ImageDataset
from .config import TrainConfig
from .trainer import TrainResult, train_model


@dataclass
class TrainingJob:
    """One training run: ``model_factory()`` is called with the global CPU RNG seeded by ``config.seed`` (so the
    initial weights are seeded too), then the model is trained by ``train_model``."""

    name: str
    model_factory: Callable[[], torch.nn.Module]
    train: ImageDataset
    config: TrainConfig
    val: ImageDataset | None = None
    checkpoint_dir: Path | None = None
    progress: bool = True

    def run(self) -> TrainResult:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            model = self.model_factory()
        return train_model(model, self.train, self.config, self.val, self.checkpoint_dir, self.progress)


class Runner(Protocol):
    """Runs training jobs; returns their results in the order of ``jobs``."""

    def run(self, jobs: Sequence[TrainingJob]) -> list[TrainResult]: ...


class SequentialRunner:
    """Runs the jobs one after another in this process."""

    def run(self, jobs: Sequence[TrainingJob]) -> list[TrainResult]:
        return [job.run() for job in jobs]


def run_jobs(jobs: Sequence[TrainingJob], runner: Runner | None = None) -> list[TrainResult]:
    """Run ``jobs`` with ``runner`` (default ``SequentialRunner()``)."""
    return (runner or SequentialRunner()).run(list(jobs))
