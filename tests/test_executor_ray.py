"""The Ray executor: on a local Ray cluster the smoke profiles of roar, mege-reco and fpa give byte-identical results
to the local executor, their explanation and scoring shards run as tasks; a user's classes reach workers that cannot
import them; a run whose driver is killed resumes without retraining its finished models and gives the
results of an uninterrupted run; a mistake inside a task, or a cluster that cannot be reached, is one clear error; a
runner stops the Ray instance it started and leaves one it found running."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from functools import partial

import pytest

ray = pytest.importorskip("ray")

from xaitrust.errors import XaitrustError  # noqa: E402
from xaitrust.models import build_model  # noqa: E402
from xaitrust.protocols import run_protocol  # noqa: E402
from xaitrust.sources import load_from_file  # noqa: E402
from xaitrust.training import Task, TrainConfig, TrainingJob  # noqa: E402
from xaitrust.training.ray_runner import RayRunner  # noqa: E402

#: The files of a finished run that must not depend on the executor.
RESULT_FILES = {"roar": ("results.csv", "summary.csv", "report.html"),
                "mege-reco": ("results.csv", "summary.csv", "accuracy.csv", "separation.csv", "sanity.csv",
                              "report.html"),
                "fpa": ("results.csv", "summary.csv", "accuracy.csv", "report.html")}
#: The explanation and scoring shards each protocol's smoke profile sends to the cluster.
SHARDS = {"roar": {"explain train/saliency", "explain test/saliency"},
          "mege-reco": {f"explain and score {family}/{method}"
                        for family in ("cnn", "cnn+noise-0.3", "cnn+shuffle-0.3")
                        for method in ("saliency", "gradient-input", "integrated-gradients", "smoothgrad", "gradcam",
                                       "gradcam++", "rise", "random")} | {"distance sanity tests"},
          "fpa": {f"explain and score {regime}/{explainer}" for regime in ("none", "fpa", "erasing")
                  for explainer in ("random", "integrated-gradients", "sensitivity", "smoothgrad", "smoothgrad-squared")}}
#: A user's file: a class and functions a Ray worker cannot import by name.
USER_FILE = """\
from xaitrust.errors import XaitrustError

class Box:
    def __init__(self, value):
        self.value = value

def open_box(box):
    return type(box).__name__, box.value

def refuse():
    raise XaitrustError("the input is wrong")
"""
DRIVER = "from xaitrust.cli import main; main()"


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance with two CPUs for the module; the runs find it running and leave it so."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="error")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_runs(run_smoke):
    """``{protocol: run folder}`` of the local executor's smoke runs (the session's, ``run_smoke``)."""
    return {protocol: run_smoke(protocol)[0] for protocol in RESULT_FILES}


def read(folder, protocol) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in RESULT_FILES[protocol]}


@pytest.mark.parametrize("protocol", list(RESULT_FILES))
def test_ray_executor_gives_the_local_executors_results(protocol, cluster, local_runs, tmp_path, one_torch_thread,
                                                        monkeypatch):
    shipped = []
    original = RayRunner.map

    def recording_map(self, tasks, threads=None):
        tasks = list(tasks)
        shipped.extend(task.name for task in tasks)
        return original(self, tasks, threads)

    monkeypatch.setattr(RayRunner, "map", recording_map)
    with one_torch_thread():
        run_protocol(protocol, profile="smoke", out=tmp_path / "run", overrides={"executor": "ray"})
    assert read(tmp_path / "run", protocol) == read(local_runs[protocol], protocol)
    assert set(shipped) == SHARDS[protocol] and len(shipped) == len(SHARDS[protocol])  # every shard once, as a task
    assert ray.is_initialized()  # a cluster the run did not start is left running


def test_tasks_of_a_users_file_run_on_workers_that_cannot_import_it(cluster, tmp_path):
    path = tmp_path / "user_tasks.py"
    path.write_text(USER_FILE)
    box = load_from_file(f"{path}:Box")(3)
    tasks = [Task("open", load_from_file(f"{path}:open_box"), (box,)), Task("sum", sum, ([1, 2],))]
    assert RayRunner(progress=False).map(tasks, threads=1) == [("Box", 3), 3]
    with pytest.raises(XaitrustError, match="^check the input: the input is wrong$"):
        RayRunner(progress=False).map([Task("check the input", load_from_file(f"{path}:refuse"))])


def checkpoints(out) -> dict:
    """``{model file: modification time}`` of the finished trainings in a run folder."""
    models = out / "models"
    return {path: path.stat().st_mtime_ns for path in models.rglob("model.safetensors")} if models.is_dir() else {}


def test_a_killed_driver_loses_no_finished_training(cluster, local_runs, tmp_path, one_torch_thread):
    out = tmp_path / "run"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, "run", "roar", "--profile", "smoke", "--executor", "ray", "--threads", "1",
             "--out", str(out)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not any("unmodified" not in path.parts for path in checkpoints(out)):
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no retrained model appeared"
            time.sleep(0.2)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        time.sleep(2)  # the local Ray the driver started may outlive it for a moment: end what is left of it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)
    finished = checkpoints(out)
    assert 2 <= len(finished) < 13  # the unmodified model, some retrained ones, not all 12 of them

    with one_torch_thread():
        run_protocol("roar", profile="smoke", out=out, overrides={"executor": "ray"})
    assert {path: stamp for path, stamp in checkpoints(out).items() if path in finished} == finished
    assert len(checkpoints(out)) == 13
    assert read(out, "roar") == read(local_runs["roar"], "roar")



def test_a_mistake_inside_a_task_is_one_error_naming_the_training(cluster, digits_data):
    job = TrainingJob("three-channel", partial(build_model, "cnn", 3, 10, 8), digits_data[0],
                      TrainConfig(epochs=1), progress=False)
    with pytest.raises(XaitrustError, match=r"^training three-channel: digits \(train\) images are 1x8x8 but the "
                                            r"model expects 3x8x8$"):
        RayRunner(progress=False).run([job])


def test_an_unreachable_cluster_is_one_error_saying_how_to_start_one(monkeypatch):
    def refuse(**options):
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    message = ("cannot reach a Ray cluster at auto (Could not find any running Ray instance.); start one with "
               "`ray start --head` or correct --ray-address")
    with pytest.raises(XaitrustError, match=re.escape(message)):
        RayRunner("auto").run([])


def test_a_runner_that_started_ray_stops_it():
    script = ("import ray; from xaitrust.training.ray_runner import RayRunner; runner = RayRunner(progress=False); "
              "assert runner.run([]) == [] and ray.is_initialized(); runner.close(); assert not ray.is_initialized()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
