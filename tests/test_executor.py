"""The executor keys and what holds for every runner: a training's weights depend on its torch threads, so a job runs
on the thread count it is given whatever the process's; runners draw jobs from a generator only as they start them;
the run folder records the config without the execution keys (either executor resumes it) but with
``training_threads``; a local run never imports Ray; mistakes in the execution keys are one clear error."""

import subprocess
import sys
from functools import partial

import pytest
import torch
from click.testing import CliRunner

from xaitrust.cli import cli
from xaitrust.errors import XaitrustError
from xaitrust.models import build_model
from xaitrust.protocols import protocol_config, run_protocol
from xaitrust.protocols.common import run_shards
from xaitrust.protocols.config import read_toml
from xaitrust.protocols.run_folder import RunFolder
from xaitrust.training import (
    SequentialRunner,
    Task,
    TrainConfig,
    TrainingJob,
    ray_runner,
    run_jobs,
)

LOCAL_RUN = """\
import sys
from xaitrust.protocols import run_protocol
run_protocol("roar", profile="smoke", out=sys.argv[1])
print("ray imported" if "ray" in sys.modules else "ray not imported")
"""


def weights(result) -> bytes:
    return b"".join(tensor.numpy().tobytes() for tensor in result.model.state_dict().values())


def test_a_job_trains_on_the_threads_it_is_given_whatever_the_process_uses(digits_data):
    train = digits_data[0].subset(torch.arange(320))
    job = TrainingJob("job", partial(build_model, "cnn", 1, 10, 8), train, TrainConfig(epochs=1, batch_size=32),
                      progress=False)
    previous = torch.get_num_threads()
    try:
        runs = {}
        for ambient in (1, 2):
            torch.set_num_threads(ambient)
            runs[ambient] = weights(job.run(threads=1))
            assert torch.get_num_threads() == ambient  # given back afterwards
        torch.set_num_threads(1)
        on_two = weights(job.run(threads=2))
    finally:
        torch.set_num_threads(previous)
    assert runs[1] == runs[2]
    # Why the count is fixed: on two threads a convolution's backward pass sums in another order.
    assert on_two != runs[1]


class Recorded:
    """A stand-in job that notes when it runs."""

    def __init__(self, log: list, index: int) -> None:
        self.log, self.index = log, index

    def run(self, threads=None):
        self.log.append(f"ran {self.index}")
        return self.index


def test_a_runner_draws_each_job_only_when_it_starts_it():
    log = []

    def jobs():
        for index in range(3):
            log.append(f"made {index}")
            yield Recorded(log, index)

    assert run_jobs(jobs(), SequentialRunner(threads=1)) == [0, 1, 2]
    assert log == ["made 0", "ran 0", "made 1", "ran 1", "made 2", "ran 2"]


def test_the_local_runner_maps_tasks_in_order_on_the_threads_it_is_given():
    tasks = [Task(f"task {i}", divmod, (7 * i, 3)) for i in range(4)] + [Task("threads", torch.get_num_threads)]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert SequentialRunner().map(tasks, threads=1) == [(0, 0), (2, 1), (4, 2), (7, 0), 1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_a_local_runner_runs_no_shard_ahead_of_the_pipeline(tmp_path):
    def shards():
        raise AssertionError("the local runner drew a shard")
        yield

    run_shards(RunFolder(tmp_path / "run", {"seed": 0}), shards())


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """A roar smoke run of the local executor in a fresh process: its folder and what it printed."""
    out = tmp_path_factory.mktemp("executor") / "run"
    done = subprocess.run([sys.executable, "-c", LOCAL_RUN, str(out)], capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_a_local_run_never_imports_ray(local_run):
    assert local_run[1].strip().endswith("ray not imported")


def test_the_run_folder_holds_training_threads_but_no_execution_keys(local_run):
    out, _ = local_run
    config = read_toml(out / "config.toml")
    assert config["training_threads"] == 1
    assert "executor" not in config and "ray_address" not in config
    # training_threads is part of the results: another count is another run.
    with pytest.raises(XaitrustError, match="different config .keys training_threads"):
        run_protocol("roar", profile="smoke", out=out, overrides={"training_threads": 2})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"executor": "spark"}, "'executor' has value.*'spark'; allowed: local, ray"),
        ({"ray_address": "auto"}, "'ray_address' is used by the Ray executor only; set executor = \"ray\""),
        ({"training_threads": 0}, "'training_threads' must be a finite number >= 1"),
        ({"executor": "ray", "device": "cuda:1"}, "names a GPU of this machine.*use device = \"cuda\""),
    ],
)
def test_mistakes_in_the_execution_keys_name_the_key(monkeypatch, overrides, message):
    monkeypatch.setattr(ray_runner, "check_ray_installed", lambda: None)  # whether Ray is installed here or not
    with pytest.raises(XaitrustError, match=message):
        protocol_config("roar", "smoke", overrides=overrides)


def test_the_ray_executor_without_ray_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(ray_runner.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(XaitrustError, match=r"needs Ray, which is not installed: pip install 'xaitrust\[ray\]'"):
        protocol_config("mege-reco", "smoke", overrides={"executor": "ray"})


def test_run_options_set_the_execution_keys(monkeypatch):
    monkeypatch.setattr(ray_runner, "check_ray_installed", lambda: None)
    result = CliRunner().invoke(cli, ["run", "roar", "--profile", "smoke", "--check", "--executor", "ray",
                                      "--ray-address", "auto", "--training-threads", "2"])
    assert result.exit_code == 0, result.output
    assert "each a task of the Ray cluster at auto on 2 torch threads" in result.output
    result = CliRunner().invoke(cli, ["run", "roar", "--profile", "smoke", "--check", "--ray-address", "auto"])
    assert result.exit_code == 2 and "'ray_address' is used by the Ray executor only" in result.output
