"""Training jobs as tasks of a Ray cluster: ``RayRunner``, the runner of ``executor = "ray"``.

Each ``TrainingJob`` becomes one Ray task that asks for ``threads`` CPUs (and one GPU when the runner's device is a
CUDA device) and trains exactly as ``SequentialRunner`` would: the same ``TrainingJob.run`` on the same number of
torch threads, writing its checkpoint and resumable state into the job's own ``checkpoint_dir`` with the same atomic
writes and names. So a run folder can be started by one runner and resumed by the other, and a driver that dies loses
no finished task: every finished training is on disk and is loaded, not retrained, on the rerun; an interrupted one
resumes after its last finished epoch.

How the jobs go out: jobs whose checkpoint holds a finished training are loaded in this process (no task); the others
are submitted as the cluster frees slots, at most two per slot in flight, so a caller's generator builds a job's data
only shortly before it runs and the object store holds the data of those jobs only. A data set shared by several jobs
(e.g. the seeds of one ROAR setting) is put into the object store once. A task returns the trained weights (on the
CPU) and the training record; the model is rebuilt here by the job's factory (on the device it builds on, as under
``SequentialRunner``) and gets those weights, so results never depend on which node trained them.

Tasks run in the driver's working directory, so relative paths (the run folder, a model file named
``path/to/file.py:Name``) mean what they mean to the driver: on a cluster of several machines that folder must be on a
file system every node sees at the same path. Ray is imported here only, when the runner first runs jobs: without
``executor = "ray"`` nothing imports it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..errors import XaitrustError
from .jobs import TrainingJob
from .trainer import TrainResult

RAY_MISSING = "executor = \"ray\" needs Ray, which is not installed: pip install 'xaitrust[ray]'"
#: Jobs in flight per slot of the cluster: one running, one waiting with its data in the object store, so no slot
#: idles between two tasks.
IN_FLIGHT_PER_SLOT = 2


def check_ray_installed() -> None:
    """Raise ``XaitrustError`` when Ray cannot be imported (checked without importing it)."""
    if importlib.util.find_spec("ray") is None:
        raise XaitrustError(RAY_MISSING)


def _import_ray():
    check_ray_installed()
    import ray

    return ray


def _train_task(job: TrainingJob, train, val, threads: int, directory: str):
    """The body of a Ray task: ``job`` with its data, run in the driver's working directory ``directory``; returns the
    trained weights on the CPU and the ``TrainResult`` without its model."""
    if not Path(directory).is_dir():
        raise XaitrustError(
            f"the driver's working directory {directory} does not exist on this Ray node; the run folder (and model "
            "files) must be on a file system every node sees at the same path"
        )
    here = os.getcwd()
    os.chdir(directory)
    try:
        result = dataclasses.replace(job, train=train, val=val).run(threads)
    finally:
        os.chdir(here)
    weights = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    return weights, dataclasses.replace(result, model=None)


class RayRunner:
    """Runs training jobs as Ray tasks (see the module notes).

    ``address``: the cluster to connect to (``"auto"``: the one started on this machine by ``ray start --head``;
    ``"HOST:6379"``); None: Ray's default, ``$RAY_ADDRESS`` or the cluster ``ray start`` started on this machine,
    else a new local Ray instance on this machine's CPUs, which ``close`` stops again.
    ``threads``: torch threads of every training, and the CPUs each task asks for. ``device``: the device the jobs'
    factories build on; a CUDA device makes each task ask for one GPU, and the task trains on the GPU Ray gives it.
    """

    def __init__(self, address: str | None = None, threads: int = 1, device: str | torch.device = "cpu",
                 progress: bool = True) -> None:
        self.address = address
        self.threads = threads
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            raise XaitrustError(f"device {self.device} names a GPU of this machine, but Ray assigns each training "
                                "the GPU it runs on: use device cuda")
        self.progress = progress
        self._ray = None
        self._started = False

    def _connect(self):
        """The ``ray`` module, connected: to the running instance when this process already has one, else by
        ``ray.init`` (then ``close`` disconnects)."""
        if self._ray is None:
            ray = _import_ray()
            if not ray.is_initialized():
                try:
                    ray.init(address=self.address, include_dashboard=False, logging_level="warning")
                except ConnectionError as error:
                    raise XaitrustError(
                        f"cannot reach a Ray cluster at {self.address} ({error}); start one with `ray start --head` "
                        "or correct --ray-address"
                    ) from None
                self._started = True
            self._ray = ray
        return self._ray

    def _slots(self, ray) -> int:
        """How many trainings the cluster runs at once."""
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.threads)
        if self.device.type == "cuda":
            slots = min(slots, int(resources.get("GPU", 0)))
            if slots == 0:
                raise XaitrustError("device cuda asked for, but the Ray cluster has no GPU; use --device cpu or add "
                                    "GPU nodes")
        return max(slots, 1)

    def run(self, jobs: Iterable[TrainingJob]) -> list[TrainResult]:
        ray = self._connect()
        task = ray.remote(_train_task)
        needs = {"num_cpus": self.threads, "num_gpus": 1 if self.device.type == "cuda" else 0}
        in_flight = IN_FLIGHT_PER_SLOT * self._slots(ray)
        results: dict[int, TrainResult] = {}
        pending: dict = {}  # task reference -> (position, job)
        shared: dict[int, list] = {}  # id(data set) -> [data set, object reference, jobs in flight that use it]

        def put(data):
            if data is None:
                return None
            entry = shared.get(id(data))
            if entry is None:
                entry = shared[id(data)] = [data, ray.put(data), 0]
            entry[2] += 1
            return entry[1]

        def release(data) -> None:
            if data is not None:
                shared[id(data)][2] -= 1
                if shared[id(data)][2] == 0:
                    del shared[id(data)]

        def collect(bar) -> None:
            done, _ = ray.wait(list(pending), num_returns=1)
            position, job = pending.pop(done[0])
            try:
                weights, result = ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                if isinstance(error.cause, XaitrustError):
                    raise XaitrustError(f"training {job.name}: {error.cause}") from None
                raise
            release(job.train)
            release(job.val)
            with torch.random.fork_rng(devices=[]):
                model = job.model_factory()
            model.load_state_dict(weights)
            results[position] = dataclasses.replace(result, model=model.eval())
            bar.update()

        with tqdm(desc="trainings", unit="model", disable=not self.progress) as bar:
            for position, job in enumerate(jobs):
                if job.finished:
                    results[position] = job.run(self.threads)
                    bar.update()
                    continue
                while len(pending) >= in_flight:
                    collect(bar)
                shipped = dataclasses.replace(job, train=None, val=None, progress=False)
                reference = task.options(name=f"train {job.name}", **needs).remote(
                    shipped, put(job.train), put(job.val), self.threads, os.getcwd())
                pending[reference] = (position, job)
            while pending:
                collect(bar)
        return [results[position] for position in range(len(results))]

    def close(self) -> None:
        """Disconnect from Ray when ``run`` connected (stopping the local instance it started)."""
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._ray = None
