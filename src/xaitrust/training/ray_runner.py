"""Training jobs and other independent tasks of a run as tasks of a Ray cluster: ``RayRunner``, the runner of
``executor = "ray"``.

Each ``TrainingJob`` becomes one Ray task that asks for ``threads`` CPUs (and one GPU when the runner's device is a
CUDA device) and trains exactly as ``SequentialRunner`` would: the same ``TrainingJob.run`` on the same number of
torch threads, writing its checkpoint and resumable state into the job's own ``checkpoint_dir`` with the same atomic
writes and names. So a run folder can be started by one runner and resumed by the other, and a driver that dies loses
no finished task: every finished training is on disk and is loaded, not retrained, on the rerun; an interrupted one
resumes after its last finished epoch. ``map`` runs other tasks (``xaitrust.training.jobs.Task``: e.g. the
explanation and scoring shard of one model family and method) the same way, each on the threads it is given; they
write what they compute into the run folder themselves.

How the jobs go out: jobs whose checkpoint holds a finished training are loaded in this process (no task); the others
are submitted as the cluster frees slots, at most two per slot in flight, so a caller's generator builds a job's data
only shortly before it runs and the object store holds the data of those jobs only. An argument shared by several
tasks in flight (the data set of the seeds of one ROAR setting, the models of a family) is put into the object store
once. A training task returns the trained weights (on the CPU) and the training record; the model is rebuilt here by
the job's factory (on the device it builds on, as under ``SequentialRunner``) and gets those weights, so results never
depend on which node trained them.

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
from ..sources import user_modules
from .jobs import Task, TrainingJob, torch_threads
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


def _task_body(directory: str, threads: int, function, *args):
    """The body of every Ray task: ``function(*args)`` on ``threads`` torch threads, run in the driver's working
    directory ``directory``."""
    if not Path(directory).is_dir():
        raise XaitrustError(
            f"the driver's working directory {directory} does not exist on this Ray node; the run folder (and model "
            "files) must be on a file system every node sees at the same path"
        )
    here = os.getcwd()
    os.chdir(directory)
    try:
        with torch_threads(threads):
            return function(*args)
    finally:
        os.chdir(here)


def _train(job: TrainingJob, train, val, threads: int):
    """``job`` with its data, trained on ``threads`` torch threads; the trained weights on the CPU and the
    ``TrainResult`` without its model."""
    result = dataclasses.replace(job, train=train, val=val).run(threads)
    weights = {name: tensor.detach().cpu() for name, tensor in result.model.state_dict().items()}
    return weights, dataclasses.replace(result, model=None)


#: Argument types sent with a task as they are; any other argument (data sets, tensors, models, run folders) goes to
#: the object store once, however many tasks in flight share it.
_PLAIN = (str, int, float, bool, type(None))


class _Flight:
    """Tasks in flight on the cluster: at most ``limit`` at once (``submit`` waits for one to finish beyond that);
    ``finish`` waits for all. ``done(value)`` of each task is called here, in this process, as it finishes."""

    def __init__(self, ray, limit: int, bar) -> None:
        self.ray, self.limit, self.bar = ray, limit, bar
        for module in user_modules():  # a worker cannot import them by name: send their classes by value
            ray.cloudpickle.register_pickle_by_value(module)
        self.body = ray.remote(_task_body)
        self.pending: dict = {}  # task reference -> (name, arguments, done)
        self.shared: dict[int, list] = {}  # id(argument) -> [argument, object reference, tasks in flight using it]

    def _put(self, value):
        if isinstance(value, _PLAIN):
            return value
        entry = self.shared.get(id(value))
        if entry is None:
            entry = self.shared[id(value)] = [value, self.ray.put(value), 0]
        entry[2] += 1
        return entry[1]

    def _release(self, value) -> None:
        if not isinstance(value, _PLAIN):
            entry = self.shared[id(value)]
            entry[2] -= 1
            if entry[2] == 0:
                del self.shared[id(value)]

    def submit(self, name: str, needs: dict, threads: int, function, args: tuple, done) -> None:
        while len(self.pending) >= self.limit:
            self._collect()
        reference = self.body.options(name=name, **needs).remote(
            os.getcwd(), threads, function, *(self._put(value) for value in args))
        self.pending[reference] = (name, args, done)

    def _collect(self) -> None:
        finished, _ = self.ray.wait(list(self.pending), num_returns=1)
        name, args, done = self.pending.pop(finished[0])
        try:
            value = self.ray.get(finished[0])
        except self.ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, XaitrustError):
                raise XaitrustError(f"{name}: {error.cause}") from None
            raise
        for argument in args:
            self._release(argument)
        done(value)
        self.bar.update()

    def finish(self) -> None:
        while self.pending:
            self._collect()


class RayRunner:
    """Runs training jobs and tasks as Ray tasks (see the module notes).

    ``address``: the cluster to connect to (``"auto"``: the one started on this machine by ``ray start --head``;
    ``"HOST:6379"``); None: Ray's default, ``$RAY_ADDRESS`` or the cluster ``ray start`` started on this machine,
    else a new local Ray instance on this machine's CPUs, which ``close`` stops again.
    ``threads``: torch threads of every training, and the CPUs each training task asks for (a ``map`` task asks for
    the threads it is given). ``device``: the device the jobs' factories build on; a CUDA device makes each task ask
    for one GPU, and the task runs on the GPU Ray gives it.
    """

    remote = True

    def __init__(self, address: str | None = None, threads: int = 1, device: str | torch.device = "cpu",
                 progress: bool = True) -> None:
        self.address = address
        self.threads = threads
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            raise XaitrustError(f"device {self.device} names a GPU of this machine, but Ray assigns each task the GPU "
                                "it runs on: use device cuda")
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

    def _slots(self, ray, threads: int) -> int:
        """How many tasks of ``threads`` CPUs (and one GPU each on a CUDA device) the cluster runs at once."""
        resources = ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // threads)
        if self.device.type == "cuda":
            slots = min(slots, int(resources.get("GPU", 0)))
            if slots == 0:
                raise XaitrustError("device cuda asked for, but the Ray cluster has no GPU; use --device cpu or add "
                                    "GPU nodes")
        return max(slots, 1)

    def _flight(self, ray, threads: int, bar) -> tuple[_Flight, dict]:
        """A ``_Flight`` sized to the cluster and the resources each of its tasks asks for."""
        needs = {"num_cpus": threads, "num_gpus": 1 if self.device.type == "cuda" else 0}
        return _Flight(ray, IN_FLIGHT_PER_SLOT * self._slots(ray, threads), bar), needs

    def run(self, jobs: Iterable[TrainingJob]) -> list[TrainResult]:
        ray = self._connect()
        results: dict[int, TrainResult] = {}

        def rebuild(position: int, job: TrainingJob):
            def done(value) -> None:
                weights, result = value
                with torch.random.fork_rng(devices=[]):
                    model = job.model_factory()
                model.load_state_dict(weights)
                results[position] = dataclasses.replace(result, model=model.eval())
            return done

        with tqdm(desc="trainings", unit="model", disable=not self.progress) as bar:
            flight, needs = self._flight(ray, self.threads, bar)
            for position, job in enumerate(jobs):
                if job.finished:
                    results[position] = job.run(self.threads)
                    bar.update()
                    continue
                shipped = dataclasses.replace(job, train=None, val=None, progress=False)
                flight.submit(f"training {job.name}", needs, self.threads, _train,
                              (shipped, job.train, job.val, self.threads), rebuild(position, job))
            flight.finish()
        return [results[position] for position in range(len(results))]

    def map(self, tasks: Iterable[Task], threads: int | None = None) -> list:
        """Each task's result, the tasks run side by side as Ray tasks of ``threads`` CPUs (None: this process's
        torch threads, so that they compute what this process would)."""
        ray = self._connect()
        threads = threads or torch.get_num_threads()
        results: dict[int, object] = {}

        def keep(position: int):
            return lambda value: results.__setitem__(position, value)

        with tqdm(desc="tasks", unit="task", disable=not self.progress) as bar:
            flight, needs = self._flight(ray, threads, bar)
            for position, task in enumerate(tasks):
                flight.submit(task.name, needs, threads, task.function, task.args, keep(position))
            flight.finish()
        return [results[position] for position in range(len(results))]

    def close(self) -> None:
        """Disconnect from Ray when ``run`` or ``map`` connected (stopping the local instance it started)."""
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._ray = None
