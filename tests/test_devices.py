"""Devices: every computing command runs with ``--device cpu`` and with ``--device auto`` (the CPU on a machine without
CUDA, with the same output) and refuses ``cuda`` in one line where there is none; ``auto`` picks CUDA when torch sees
it; random draws of explainers do not depend on the device; a training on a GPU keeps that GPU's RNG in its resumable
state."""

from functools import partial

import pytest
import torch
from click.testing import CliRunner

from xaitrust.cli import cli
from xaitrust.devices import resolve_device
from xaitrust.errors import XaitrustError
from xaitrust.explainers import available_explainers, get_explainer
from xaitrust.models import build_model
from xaitrust.protocols.common import predictions
from xaitrust.training import TrainConfig, TrainingJob, train_on_dataset
from xaitrust.training import state as training_state
from xaitrust.training.pretrained import get_trained_model

TRAIN = ["train", "--dataset", "digits", "--epochs", "1", "--batch-size", "64", "--limit", "300", "--quiet"]
#: A benchmark run on the digits that trains for one epoch and explains two images.
RUN_CONFIG = """\
dataset = "digits"
train_size = 300
calibration_size = 100
n_images = 2
explainers = ["saliency", "random"]
lipschitz_explainers = ["saliency"]
"""


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_torch_thread):
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("devices") / "model"
    train_on_dataset("digits", "cnn", TrainConfig(epochs=1, batch_size=64, seed=0), folder, train_limit=300,
                     progress=False)
    return folder


def commands(checkpoint, out, config) -> dict[str, tuple[list, str]]:
    """``{command: (arguments, the file whose bytes must not depend on --device auto / cpu here)}``."""
    return {
        "train": ([*TRAIN, "--out", out / "model"], "model/model.safetensors"),
        "explain": (["explain", "--checkpoint", checkpoint, "--methods", "saliency,smoothgrad,random", "--n-images",
                     "3", "--out", out], "attributions.safetensors"),
        "evaluate": (["evaluate", "--checkpoint", checkpoint, "--explainers", "saliency,random", "--metrics",
                      "deletion_area,mu_fidelity", "--n-images", "3", "--steps", "8", "--out", out / "t.csv"], "t.csv"),
        "calibrate": (["calibrate", "--model", checkpoint, "--calibration-size", "100", "--limit", "300", "--out",
                       out], "calibration-temperature.safetensors"),
        "run": (["run", "benchmark", "--profile", "smoke", "--config", config, "--out", out / "run"],
                "run/results.csv"),
    }


def invoke(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


@pytest.mark.parametrize("command", ["train", "explain", "evaluate", "calibrate", "run"])
def test_every_computing_command_runs_on_cpu_and_auto_alike(command, checkpoint, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(RUN_CONFIG)
    outputs = {}
    for device in ("cpu", "auto"):
        args, output = commands(checkpoint, tmp_path / device, config)[command]
        result = invoke(*args, "--device", device)
        assert result.exit_code == 0, result.output
        outputs[device] = (tmp_path / device / output).read_bytes()
    assert outputs["cpu"] == outputs["auto"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there")
@pytest.mark.parametrize("command", ["train", "explain", "evaluate", "calibrate", "run", "demo"])
def test_cuda_without_a_gpu_is_a_one_line_error(command, checkpoint, tmp_path):
    args = (["demo", "--out", tmp_path] if command == "demo"
            else commands(checkpoint, tmp_path, tmp_path / "config.toml")[command][0])
    result = invoke(*args, "--device", "cuda")
    assert result.exit_code == 2
    assert "error: device 'cuda' asked for, but torch sees no CUDA device here; use --device cpu" in result.output


def test_demo_runs_on_cpu_and_auto(fashion_quick_model, fashion_quick_cache, tmp_path):
    for device in ("cpu", "auto"):
        result = invoke("demo", "--profile", "quick", "--cache-dir", fashion_quick_cache, "--out", tmp_path / device,
                        "--explainers", "saliency", "--images", "2", "--device", device)
        assert result.exit_code == 0, result.output
        assert "reusing the cached model" in result.output  # auto is the CPU here: the CPU model's cache entry


def test_a_model_trained_on_a_gpu_is_cached_apart(monkeypatch, tmp_path):
    folders = []
    monkeypatch.setattr("xaitrust.training.pretrained.train_on_dataset",
                        lambda dataset, model, config, out_dir, *args, **kwargs: folders.append(out_dir))
    for device in ("cpu", torch.device("cpu"), "cuda", "cuda:1"):
        get_trained_model("digits", cache_dir=tmp_path, profile="quick", device=device)
    assert folders[0] == folders[1] != folders[2] == folders[3]


def test_auto_picks_cuda_when_torch_sees_it(monkeypatch):
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(XaitrustError, match="there are 2 CUDA devices"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", [info.name for info in available_explainers()])
def test_explainers_draw_their_randomness_on_the_cpu(name):
    # The same seeded CPU stream on every device: a GPU explains with the noise, masks and baselines of the CPU.
    generator = get_explainer(name).generator()
    assert generator.device == torch.device("cpu")
    assert torch.equal(torch.rand(4, generator=generator), torch.rand(4, generator=get_explainer(name).generator()))


def test_a_training_on_a_gpu_keeps_the_gpus_rng_in_its_state(monkeypatch, digits_data, tmp_path):
    # No GPU here: the model's device is faked as cuda, and the GPU RNG by a tensor that training does not use.
    monkeypatch.setattr(training_state, "model_device", lambda model: torch.device("cuda"))
    gpu_rng = {"state": torch.tensor([1, 2, 3], dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: gpu_rng["state"].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: gpu_rng.update(state=state))
    train = digits_data[0].subset(torch.arange(64))
    job = TrainingJob("gpu", partial(build_model, "cnn", 1, 10, 8), train, TrainConfig(epochs=2, batch_size=32), checkpoint_dir=tmp_path,
                      progress=False)
    job.run()
    document = training_state.read_training_state(tmp_path)
    saved = training_state.read_tensors(tmp_path / document["tensors"])[training_state.RNG_CUDA]
    assert torch.equal(saved, torch.tensor([1, 2, 3], dtype=torch.uint8))
    # A resume puts it back: a state one epoch short is resumed, and the GPU RNG is what was saved.
    document["epoch"], document["history"] = 1, document["history"][:1]
    training_state.write_json_atomic(tmp_path / training_state.STATE_FILE, document)
    gpu_rng["state"] = torch.tensor([9], dtype=torch.uint8)
    restored = []
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append(state.clone()))
    job.run()
    assert restored and torch.equal(restored[0], torch.tensor([1, 2, 3], dtype=torch.uint8))


class RecordingModel(torch.nn.Module):
    """A model whose parameters are on the ``meta`` device; it notes the device of every batch it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(1, device="meta"))
        self.seen = []

    def forward(self, x):
        self.seen.append(x.device.type)
        return torch.zeros(len(x), 3)


def test_protocol_predictions_run_on_the_models_device_and_come_back_to_the_cpu():
    model = RecordingModel()
    logits = predictions(model, torch.rand(5, 1, 4, 4), batch_size=2)
    assert model.seen == ["meta"] * 3 and logits.device == torch.device("cpu") and logits.shape == (5, 3)
