"""Training jobs and the seam that runs them.

A ``TrainingJob`` is everything one training run needs; a ``Runner`` turns jobs into a list of ``TrainResult`` in the
order of the jobs. ``SequentialRunner`` runs them one after the other in this process;
``xaitrust.training.ray_runner.RayRunner`` runs them as tasks of a Ray cluster; callers (k-fold cross-training, ROAR
retraining, FPA regimes) do not change. Jobs are plain data plus a model factory, so keep the factory picklable
(e.g. ``functools.partial(build_model, ...)``) for runners that ship jobs to other processes.

A runner takes any iterable of jobs and draws from it only as it starts them, so a caller can build each job's data
when it is needed (a generator) instead of holding every job's data at once.

Besides trainings, a runner runs other independent work of a run (e.g. the explanation and scoring shard of one model
family and method) as ``Task``s: ``runner.map(tasks, threads)`` calls each task's function on its arguments, on
``threads`` torch threads, and returns the results in order. A task function must leave everything it computes in the
run folder (atomic writes, as the protocols' ``RunFolder.cached_*`` do) and be a module-level function (picklable), so
that the driver only reads what the tasks wrote and a task run in another process counts as if run here.

Thread count: a CPU training's weights depend on the number of torch threads (the reductions of a convolution's
backward pass are split by thread), so a runner given ``threads`` runs every job on exactly that many, whatever the
process or machine it runs in; that is what makes a job's result the same under every runner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from ..data.dataset import ImageDataset
from .config import TrainConfig
from .state import read_training_state
from .trainer import TrainResult, train_model


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and restore the previous count after it (None: leave it)."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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

    def run(self, threads: int | None = None) -> TrainResult:
        """Train (or reuse the finished training in ``checkpoint_dir``) on ``threads`` torch threads (None: the
        current count), restored afterwards."""
        with torch_threads(threads):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.config.seed)
                model = self.model_factory()
            return train_model(model, self.train, self.config, self.val, self.checkpoint_dir, self.progress)

    @property
    def finished(self) -> bool:
        """Whether ``checkpoint_dir`` holds the state of a finished training, so that ``run`` only loads it (it still
        checks that the state is this job's)."""
        if self.checkpoint_dir is None:
            return False
        state = read_training_state(Path(self.checkpoint_dir))
        return state is not None and state["epoch"] >= self.config.epochs


@dataclass(frozen=True)
class Task:
    """One independent piece of work other than a training: ``function(*args)``, named ``name`` (for progress and
    error messages). ``function`` is a module-level function so that it can be sent to another process."""

    name: str
    function: Callable[..., object]
    args: tuple = ()


class Runner(Protocol):
    """Runs training jobs (``run``) and other tasks (``map``); returns their results in the order given. ``close``
    releases what the runner holds (e.g. the Ray cluster it started)."""

    #: Whether the runner runs its work in other processes (whose progress bars the user would not see).
    remote: bool

    def run(self, jobs: Iterable[TrainingJob]) -> list[TrainResult]: ...

    def map(self, tasks: Iterable[Task], threads: int | None = None) -> list: ...

    def close(self) -> None: ...


@dataclass
class SequentialRunner:
    """Runs the jobs one after another in this process, each on ``threads`` torch threads (None: the current count)."""

    threads: int | None = None
    remote = False

    def run(self, jobs: Iterable[TrainingJob]) -> list[TrainResult]:
        return [job.run(self.threads) for job in jobs]

    def map(self, tasks: Iterable[Task], threads: int | None = None) -> list:
        """Each task's result, computed here one after another on ``threads`` torch threads (None: the current
        count)."""
        with torch_threads(threads):
            return [task.function(*task.args) for task in tasks]

    def close(self) -> None:
        """Nothing to release."""


def run_jobs(jobs: Iterable[TrainingJob], runner: Runner | None = None) -> list[TrainResult]:
    """Run ``jobs`` with ``runner`` (default ``SequentialRunner()``)."""
    return (runner or SequentialRunner()).run(jobs)
