"""Explainers, the perturbation engine and accuracy evaluation run the model in eval mode and give every module its own train/eval flag
back: a batch-norm layer frozen inside a training model stays frozen, a dropout left active in an evaluated model
stays active."""

import pytest
import torch
from torch import nn

from xaitrust.data import ImageDataset
from xaitrust.explainers import get_explainer
from xaitrust.model_mode import evaluation_mode
from xaitrust.perturb import batching, masked_scores
from xaitrust.protocols.common import predictions
from xaitrust.training import evaluate_accuracy


def small_model() -> nn.Sequential:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(), nn.Linear(72, 3)
    )
    model.num_classes = 3
    return model


def training_with_frozen_batch_norm() -> nn.Sequential:
    model = small_model().train()
    model[1].eval()
    return model


def evaluated_with_active_dropout() -> nn.Sequential:
    model = small_model().eval()
    model[3].train()
    return model


def flags(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


SCENARIOS = [training_with_frozen_batch_norm, evaluated_with_active_dropout]
RUNS = {
    "saliency": lambda model, x: get_explainer("saliency")(model, x, 0),
    "rise": lambda model, x: get_explainer("rise", n_masks=4, grid_size=2, batch_size=4)(model, x, 0),
    "masked_scores": lambda model, x: masked_scores(model, x, torch.ones(3, 1, 6, 6), 0, batch_size=4),
    "predictions": lambda model, x: predictions(model, x),
    "evaluate_accuracy": lambda model, x: evaluate_accuracy(
        model, ImageDataset(x, torch.zeros(len(x), dtype=torch.long), ["a", "b", "c"])),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_every_module_is_evaluated_then_gets_its_own_flag_back(scenario, run):
    model = scenario()
    before = flags(model)
    during = []
    model.register_forward_pre_hook(lambda module, inputs: during.append(flags(module)))
    run(model, torch.rand(2, 1, 6, 6))
    assert during and all(not any(seen) for seen in during)
    assert flags(model) == before


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_batch_size_probe_evaluates_the_model_then_restores_each_module(scenario, monkeypatch):
    model = scenario()
    before = flags(model)
    during = []
    monkeypatch.setattr(batching, "activation_bytes_per_sample", lambda model, *args: during.append(flags(model)) or 8)
    assert batching.auto_batch_size(model, (1, 6, 6)) == batching.MAX_BATCH
    assert during == [[False] * len(before)]
    assert flags(model) == before


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_flags_are_restored_when_the_model_raises(scenario):
    model = scenario()
    before = flags(model)

    def fail(module, inputs):
        raise RuntimeError("forward failed")

    model.register_forward_pre_hook(fail)
    with pytest.raises(RuntimeError, match="forward failed"):
        get_explainer("saliency")(model, torch.rand(2, 1, 6, 6), 0)
    assert flags(model) == before
    with pytest.raises(RuntimeError, match="inside the block"), evaluation_mode(model):
        raise RuntimeError("inside the block")
    assert flags(model) == before
