"""Degradations for sanity checks: bad labels, weight noise, re-initialised layers."""

import math
from functools import partial

import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.models import build_model
from xaitrust.training import parameterized_layers, randomize_weights, reinitialize_layers, shuffle_labels

new_model = partial(build_model, "cnn", 1, 10, 28, channels=[8, 16], hidden=64)


def changed_tensors(original, degraded):
    before, after = original.state_dict(), degraded.state_dict()
    return {name for name in before if not torch.equal(before[name], after[name])}


def test_shuffle_labels_makes_exactly_the_requested_share_wrong():
    y = torch.arange(1000) % 7
    original = y.clone()
    for fraction in (0.0, 0.05, 0.1, 0.3, 1.0):
        shuffled = shuffle_labels(y, fraction, seed=1)
        assert int((shuffled != y).sum()) == round(fraction * 1000)
        assert shuffled.min() >= 0 and shuffled.max() <= 6
    assert torch.equal(y, original)
    assert torch.equal(shuffle_labels(y, 0.3, seed=1), shuffle_labels(y, 0.3, seed=1))
    assert not torch.equal(shuffle_labels(y, 0.3, seed=1), shuffle_labels(y, 0.3, seed=2))
    # the new labels are spread evenly over the other classes
    wrong = shuffle_labels(torch.zeros(6000, dtype=torch.long), 1.0, num_classes=4)
    assert torch.bincount(wrong, minlength=4)[0] == 0
    assert ((torch.bincount(wrong, minlength=4)[1:] - 2000).abs() < 200).all()
    with pytest.raises(XaitrustError, match="fraction"):
        shuffle_labels(y, 1.5)


def test_parameterized_layers_run_from_the_output_down():
    names = [name for name, _ in parameterized_layers(new_model())]
    assert names == ["body.fc2", "body.fc1", "body.conv2", "body.conv1"]


@pytest.mark.parametrize("fraction, expected_layers", [(0.05, 1), (0.3, 2), (0.5, 2), (1.0, 4)])
def test_randomize_weights_adds_noise_to_the_top_layers_only(fraction, expected_layers):
    torch.manual_seed(0)
    model = new_model()
    snapshot = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    degraded = randomize_weights(model, fraction, std=0.5, seed=3)
    layers = [name for name, _ in parameterized_layers(model)][:expected_layers]
    assert changed_tensors(model, degraded) == {f"{layer}.weight" for layer in layers}
    assert all(torch.equal(snapshot[name], tensor) for name, tensor in model.state_dict().items())
    noise = degraded.body.fc2.weight - model.body.fc2.weight
    assert abs(noise.std().item() - 0.5) < 0.05 and abs(noise.mean().item()) < 0.05


def test_randomize_weights_by_parameters_touches_the_requested_share_of_entries():
    torch.manual_seed(0)
    model = new_model()
    degraded = randomize_weights(model, 0.1, seed=0, unit="parameters")
    changed = (degraded.body.fc1.weight != model.body.fc1.weight).float().mean().item()
    n = model.body.fc1.weight.numel()
    assert abs(changed - 0.1) < 4 * math.sqrt(0.09 / n)
    assert len(changed_tensors(model, degraded)) == 4
    with pytest.raises(XaitrustError, match="unit"):
        randomize_weights(model, 0.1, unit="neurons")


def test_randomize_weights_can_spare_the_dense_layers():
    model = new_model()
    top_conv = randomize_weights(model, 0.05, seed=0, layers="convolutions")
    assert changed_tensors(model, top_conv) == {"body.conv2.weight"}
    every_conv = randomize_weights(model, 0.5, seed=0, unit="parameters", layers="convolutions")
    assert changed_tensors(model, every_conv) == {"body.conv1.weight", "body.conv2.weight"}
    with pytest.raises(XaitrustError, match="layers must be one of all, convolutions"):
        randomize_weights(model, 0.1, layers="dense")


def test_reinitialize_layers_changes_only_the_named_layers():
    torch.manual_seed(0)
    model = new_model()
    degraded = reinitialize_layers(model, ["body.fc2", "body.fc1"], seed=0)
    assert changed_tensors(model, degraded) == {"body.fc2.weight", "body.fc2.bias", "body.fc1.weight", "body.fc1.bias"}
    assert torch.equal(reinitialize_layers(model, ["body.fc2"], 4).body.fc2.weight,
                       reinitialize_layers(model, ["body.fc2"], 4).body.fc2.weight)
    with pytest.raises(XaitrustError, match="no layer named"):
        reinitialize_layers(model, ["body.fc9"])
