"""The trainer: learning, seeding, checkpoints (safetensors + JSON, no pickle) and resuming."""

import json
import struct
from functools import partial

import pytest
import torch
from safetensors.torch import load_file

from xaitrust.errors import XaitrustError
from xaitrust.models import build_model
from xaitrust.training import (
    TrainConfig,
    evaluate_accuracy,
    load_metadata,
    load_model,
    save_checkpoint,
    train_model,
)
from xaitrust.training.optim import learning_rate

new_model = partial(build_model, "cnn", 1, 10, 8, channels=[8, 16], hidden=32, dropout=0.25)


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_torch_thread):
    with one_torch_thread():
        yield


def seeded_model(seed=0):
    torch.manual_seed(seed)
    return new_model()


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_training_lowers_the_loss_and_learns_digits(digits_data):
    train, test = digits_data
    model = seeded_model()
    before = evaluate_accuracy(model, test)
    result = train_model(model, train, TrainConfig(epochs=4, batch_size=32, lr=3e-3), val=test, progress=False)
    losses = [record["train_loss"] for record in result.history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.5 * losses[0]
    assert before < 0.3 and result.metrics["test_accuracy"] > 0.85
    assert result.metrics["test_accuracy"] == pytest.approx(evaluate_accuracy(model, test))
    assert torch.allclose(model.input_mean.flatten(), train.mean)
    assert torch.allclose(model.input_std.flatten(), train.std)
    assert not model.training


def test_same_seed_same_weights_and_caller_rng_untouched(digits_data):
    train, _ = digits_data
    config = TrainConfig(epochs=1, batch_size=64, augmentation="flip+fpa+erasing", seed=5)
    first = train_model(seeded_model(), train, config, progress=False).model
    rng = torch.get_rng_state()
    second = train_model(seeded_model(), train, config, progress=False).model
    assert torch.equal(torch.get_rng_state(), rng)
    assert same_weights(first, second)
    other = train_model(seeded_model(), train, TrainConfig(epochs=1, batch_size=64, seed=6), progress=False).model
    assert not same_weights(first, other)


def test_checkpoint_round_trip_is_safetensors_and_json(digits_data, tmp_path, monkeypatch):
    train, test = digits_data
    model = train_model(seeded_model(), train, TrainConfig(epochs=1), progress=False).model
    save_checkpoint(model, tmp_path / "ckpt", {"dataset": "digits", "seed": 0, "metrics": {"test_accuracy": 0.5}})
    weights = (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    header_size = struct.unpack("<Q", weights[:8])[0]
    header = json.loads(weights[8:8 + header_size])
    assert "body.conv1.weight" in header and "input_mean" in header  # safetensors header, not a pickle/zip
    assert not weights.startswith(b"PK")

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load_model(tmp_path / "ckpt")
    assert torch.equal(loaded(test.x[:50]), model(test.x[:50]))
    metadata = load_metadata(tmp_path / "ckpt" / "model.json")
    assert metadata["spec"] == model.spec and metadata["metrics"] == {"test_accuracy": 0.5}
    assert metadata["dataset"] == "digits" and metadata["versions"]["torch"] == torch.__version__
    with pytest.raises(XaitrustError, match="reserved"):
        save_checkpoint(model, tmp_path / "other", {"spec": 1})
    with pytest.raises(XaitrustError, match="no checkpoint metadata"):
        load_model(tmp_path / "missing")


class Interrupt(Exception):
    pass


def interrupt_after_first_epoch(record):
    if record["epoch"] == 1:
        raise Interrupt


def test_resume_after_interruption_equals_an_uninterrupted_run(digits_data, tmp_path):
    train, test = digits_data
    small_val = test.subset(slice(0, 100))
    config = TrainConfig(epochs=2, batch_size=64, augmentation="flip+fpa", optimizer="sgd", schedule="cosine")
    full = train_model(seeded_model(), train, config, val=small_val, checkpoint_dir=tmp_path / "a", progress=False)

    with pytest.raises(Interrupt):
        train_model(seeded_model(), train, config, small_val, tmp_path / "b", False, interrupt_after_first_epoch)
    assert not (tmp_path / "b" / "model.json").exists()
    assert json.loads((tmp_path / "b" / "state.json").read_text())["epoch"] == 1
    resumed = train_model(seeded_model(7), train, config, val=small_val, checkpoint_dir=tmp_path / "b", progress=False)
    assert resumed.start_epoch == 1 and [r["epoch"] for r in resumed.history] == [1, 2]
    assert same_weights(resumed.model, full.model)
    assert resumed.history[1]["val_accuracy"] == full.history[1]["val_accuracy"]

    again = train_model(seeded_model(9), train, config, val=small_val, checkpoint_dir=tmp_path / "b", progress=False)
    assert again.reused and same_weights(again.model, full.model)
    state_files = sorted(p.name for p in (tmp_path / "b").glob("state-epoch*.safetensors"))
    assert state_files == ["state-epoch2.safetensors"]  # the previous epoch's state is dropped
    assert any(name.startswith("optimizer.") for name in load_file(tmp_path / "b" / state_files[0]))
    assert load_metadata(tmp_path / "b")["metrics"]["test_accuracy"] == full.metrics["test_accuracy"]

    with pytest.raises(XaitrustError, match="different config"):
        train_model(seeded_model(), train, TrainConfig(epochs=2), small_val, tmp_path / "b", progress=False)


def test_learning_rate_schedules():
    step = TrainConfig(lr=0.1, schedule="step", milestones=(2, 4), gamma=0.5, epochs=6)
    assert [learning_rate(step, e) for e in range(6)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cosine = TrainConfig(lr=0.2, schedule="cosine", epochs=4)
    assert [learning_rate(cosine, e) for e in range(4)] == pytest.approx([0.2, 0.2 * 0.8535534, 0.1, 0.2 * 0.1464466])


def test_config_round_trips_and_rejects_bad_values():
    config = TrainConfig(optimizer="sgd", milestones=(3,), augmentation="fpa+flip")
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.augmentations() == ["flip", "fpa"]
    assert config.fingerprint() != TrainConfig(optimizer="sgd", milestones=(3,), augmentation="flip").fingerprint()
    for bad in ({"optimizer": "rmsprop"}, {"lr": 0}, {"fpa_p2": 1.5}, {"epochs": 0}, {"erasing_area": (0.5, 0.1)}):
        with pytest.raises(XaitrustError):
            TrainConfig(**bad)
    with pytest.raises(XaitrustError, match="unknown training option"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_data_that_does_not_fit_the_model_is_a_clear_error(digits_data):
    train, _ = digits_data
    with pytest.raises(XaitrustError, match="model expects 1x28x28"):
        train_model(build_model("cnn", 1, 10, 28), train, TrainConfig(epochs=1), progress=False)
