"""k-fold cross-training, the model family MeGe and ReCo compare (Fel et al. 2022, section 3.3).

The data is split into ``k`` class-stratified folds (``xaitrust.data.stratified_kfold``); model ``i`` is trained with
the same recipe on every fold but fold ``i``, which it never sees (it is its validation set). Seed policy: the one
``seed`` of the experiment fixes the fold assignment, and model ``i`` is initialised and trained with seed
``seed + i`` (``config.seed`` is replaced). Everything goes to ``out_dir``:

* ``folds.safetensors`` (int64 tensor ``fold``, the fold of every sample) and ``folds.json`` (k, seed, dataset name,
  size and fingerprint, the recipe, the model folders);
* ``fold-<i>/``: model ``i``'s checkpoint and resumable state, so a rerun reuses finished models and resumes the
  interrupted one.

``train_k_fold`` trains one family. To train several families together (so a runner with several workers runs them
side by side), ``plan_k_fold`` records each family's folds and ``train_k_folds`` sends all their trainings to the
runner in one call.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.dataset import ImageDataset
from ..data.splits import stratified_kfold
from ..errors import XaitrustError
from ..io import read_tensors, write_json_atomic, write_tensors_atomic
from .checkpoint import load_model
from .config import TrainConfig
from .jobs import Runner, TrainingJob, run_jobs
from .trainer import TrainResult, dataset_fingerprint

FOLDS_FILE = "folds.json"
FOLDS_TENSORS = "folds.safetensors"
HELD_OUT_SPLIT = "validation"


@dataclass
class KFoldResult:
    """The ``k`` models and the fold of every sample (``models[i]`` never saw the samples with ``folds == i``).

    ``results`` holds the ``TrainResult`` of each model when they come from ``train_k_fold`` (None from
    ``load_k_fold``)."""

    models: list[torch.nn.Module]
    folds: torch.Tensor
    directory: Path
    results: list[TrainResult] | None = None

    @property
    def k(self) -> int:
        return len(self.models)

    def held_out(self, i: int) -> torch.Tensor:
        """Indices of the samples model ``i`` did not train on."""
        return torch.nonzero(self.folds == i).squeeze(1)


def label_fingerprint(labels: torch.Tensor) -> str:
    """A short hash of a label tensor, naming the labels the folds were stratified on."""
    return hashlib.sha256(labels.cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def _fold_dir(i: int) -> str:
    return f"fold-{i}"


def _write_folds(out: Path, document: dict, folds: torch.Tensor) -> None:
    stored_path = out / FOLDS_FILE
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text())
        if stored != document:
            differing = sorted(key for key in document.keys() | stored.keys() if stored.get(key) != document.get(key))
            raise XaitrustError(
                f"{out} holds a k-fold run with a different {', '.join(differing)}; use another folder or delete it"
            )
        return
    write_tensors_atomic(out / FOLDS_TENSORS, {"fold": folds})
    write_json_atomic(stored_path, document)


@dataclass
class KFoldPlan:
    """The ``k`` trainings of one k-fold family, whose folds are fixed and recorded (``plan_k_fold``): ``jobs()`` makes
    them, ``result(results)`` turns their results into the ``KFoldResult``. Several plans' jobs can go to one runner
    together (``train_k_folds``)."""

    model_factory: Callable[[], torch.nn.Module]
    dataset: ImageDataset
    k: int
    config: TrainConfig
    folds: torch.Tensor
    directory: Path
    seed: int
    progress: bool

    def jobs(self) -> Iterator[TrainingJob]:
        """Model ``i``'s training job for every ``i``, each made (its data cut from ``dataset``) only when drawn. A
        job is named after the family's folder and its own, e.g. ``cnn/fold-0``."""
        for i in range(self.k):
            yield TrainingJob(
                name=f"{self.directory.absolute().name}/{_fold_dir(i)}",
                model_factory=self.model_factory,
                train=self.dataset.subset(torch.nonzero(self.folds != i).squeeze(1), split="train"),
                config=dataclasses.replace(self.config, seed=self.seed + i),
                val=self.dataset.subset(torch.nonzero(self.folds == i).squeeze(1), split=HELD_OUT_SPLIT),
                checkpoint_dir=self.directory / _fold_dir(i),
                progress=self.progress,
            )

    def result(self, results: list[TrainResult]) -> KFoldResult:
        """The ``KFoldResult`` of the results of ``jobs()``, in their order."""
        return KFoldResult([result.model for result in results], self.folds, self.directory, list(results))


def plan_k_fold(
    model_factory: Callable[[], torch.nn.Module],
    dataset: ImageDataset,
    k: int,
    config: TrainConfig,
    out_dir: str | Path,
    seed: int = 0,
    progress: bool = True,
    stratify_by: torch.Tensor | None = None,
) -> KFoldPlan:
    """Split ``dataset`` into ``k`` folds, record them in ``out_dir`` (``folds.json``, ``folds.safetensors``; a
    folder holding another k-fold run is refused) and return the plan of the ``k`` trainings, which nothing has run
    yet. Arguments as for ``train_k_fold``."""
    out = Path(out_dir)
    stratify_by = dataset.y if stratify_by is None else torch.as_tensor(stratify_by)
    if stratify_by.shape != dataset.y.shape:
        raise XaitrustError(f"stratify_by must hold one label per sample {tuple(dataset.y.shape)}; "
                            f"got {tuple(stratify_by.shape)}")
    folds = stratified_kfold(stratify_by, k, seed)
    document = {
        "k": k,
        "seed": seed,
        "dataset": dataset.name,
        "size": len(dataset),
        "data_fingerprint": dataset_fingerprint(dataset),
        "train_config": config.to_dict(),
        "seed_policy": "folds from seed; model i trained with seed + i",
        "models": [_fold_dir(i) for i in range(k)],
    }
    if not torch.equal(stratify_by, dataset.y):  # recorded only then, so folders of the default stay valid
        document["stratified_by"] = label_fingerprint(stratify_by)
    _write_folds(out, document, folds)
    return KFoldPlan(model_factory, dataset, k, config, folds, out, seed, progress)


def train_k_folds(plans: Sequence[KFoldPlan], runner: Runner | None = None) -> list[KFoldResult]:
    """Run the trainings of every plan in one ``run_jobs(jobs, runner)`` call, the plans' jobs one after another, so
    that a runner with several workers keeps them busy across families; the ``KFoldResult`` of each plan, in order.
    Each job's data are made only when the runner draws it."""
    results = run_jobs((job for plan in plans for job in plan.jobs()), runner)
    starts = itertools.accumulate((plan.k for plan in plans), initial=0)
    return [plan.result(results[start:start + plan.k]) for plan, start in zip(plans, starts)]


def train_k_fold(
    model_factory: Callable[[], torch.nn.Module],
    dataset: ImageDataset,
    k: int,
    config: TrainConfig,
    out_dir: str | Path,
    seed: int = 0,
    runner: Runner | None = None,
    progress: bool = True,
    stratify_by: torch.Tensor | None = None,
) -> KFoldResult:
    """Train ``k`` models, model ``i`` on all folds but fold ``i`` (see the module docstring for seeds and files).

    ``model_factory()`` builds a fresh, untrained model (called under each fold's seed). Jobs go through
    ``run_jobs(jobs, runner)``. Rerunning with the same arguments reuses what is on disk.

    ``stratify_by`` (default ``dataset.y``): the labels the folds are stratified on. A family trained on corrupted
    labels passes the clean ones, so that it shares the clean family's folds (same seed, same assignment).

    It is ``plan_k_fold`` followed by ``train_k_folds``; to train several families together, call those.
    """
    plan = plan_k_fold(model_factory, dataset, k, config, out_dir, seed, progress, stratify_by)
    return train_k_folds([plan], runner)[0]


def load_k_fold(out_dir: str | Path, device: str | torch.device = "cpu") -> KFoldResult:
    """The models and fold assignment that ``train_k_fold`` saved in ``out_dir``."""
    out = Path(out_dir)
    if not (out / FOLDS_FILE).is_file():
        raise XaitrustError(f"no {FOLDS_FILE} in {out}; run train_k_fold there first")
    try:
        names = json.loads((out / FOLDS_FILE).read_text())["models"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise XaitrustError(f"{out / FOLDS_FILE} is damaged ({error}); delete {out} to train the folds again") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n and Path(n).name == n != ".." for n in names):
        raise XaitrustError(f"{out / FOLDS_FILE} names fold models outside {out}; delete {out} to train the folds "
                            "again")
    folds = read_tensors(out / FOLDS_TENSORS)["fold"]
    models = [load_model(out / name, device) for name in names]
    return KFoldResult(models, folds, out)
