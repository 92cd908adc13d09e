"""The masked-evaluation engine: chunking, replacements, per-image counts, the automatic batch size."""

import pytest
import torch
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.perturb import batching
from xaitrust.perturb.engine import RankedMasks, masked_logits, masked_scores
from xaitrust.perturb.replacement import gaussian_blur, make_replacement
from xaitrust.testing.oracles import LinearModel, PixelModel


def test_scores_equal_the_closed_form_of_a_linear_model_for_any_chunk_size():
    weight = torch.randn(2, 3, 3)
    x = torch.rand(4, 2, 3, 3)
    keep = (torch.rand(4, 7, 1, 3, 3) > 0.5).float()
    expected = (x[:, None] * keep * weight).sum(dim=(2, 3, 4))
    model = LinearModel(weight)
    for batch_size in (1, 3, 1000):
        scores = masked_scores(model, x, keep, 0, batch_size=batch_size)
        torch.testing.assert_close(scores, expected)


@pytest.mark.parametrize("replacement", ["zero", 0.25, "blur", "mean"])
def test_removed_pixel_takes_the_replacement_value(replacement):
    x = torch.rand(2, 1, 5, 5)
    model = PixelModel(2, 3)
    keep = torch.ones(2, 1, 5, 5)
    keep[1, 0, 2, 3] = 0
    scores = masked_scores(model, x, keep, 0, replacement=replacement)
    expected = {
        "zero": torch.zeros(2),
        0.25: torch.full((2,), 0.25),
        "blur": gaussian_blur(x)[:, 0, 2, 3],
        "mean": x.mean(dim=(0, 2, 3)).expand(2),
    }[replacement]
    torch.testing.assert_close(scores[:, 0], x[:, 0, 2, 3])
    torch.testing.assert_close(scores[:, 1], expected)


def test_masked_logits_hold_every_class_and_match_masked_scores():
    x = torch.rand(3, 1, 4, 4)
    model = LinearModel(torch.randn(1, 4, 4))
    ranks = torch.randperm(16).reshape(1, 1, 4, 4).expand(3, -1, -1, -1)
    masks = RankedMasks(ranks, torch.tensor([[0, 4], [8, 12], [16, 2]]))
    logits = masked_logits(model, x, masks, batch_size=2)
    assert logits.shape == (3, 2, 2)
    torch.testing.assert_close(logits[..., 0], masked_scores(model, x, masks, 0))
    assert torch.all(logits[..., 1] == 0)
    assert logits[2, 0, 0] == 0  # all 16 pixels removed


def test_model_is_evaluated_in_eval_mode_and_left_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(4, 2))
    model.train()
    x = torch.rand(2, 1, 2, 2)
    first = masked_scores(model, x, torch.ones(5, 1, 2, 2), 0)
    assert torch.allclose(first, first[:, :1].expand(-1, 5))
    assert model.training


def test_automatic_batch_size_is_small_for_large_images_and_large_for_small_ones():
    conv = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 2))
    large = batching.memory_bound(conv, (3, 512, 512), torch.device("cpu"))
    per_sample = 4 * 3 * 512 * 512 + 2 * 4 * 32 * 512 * 512
    assert large == batching.MEMORY_BUDGET_BYTES // per_sample < 4
    assert batching.memory_bound(conv, (3, 8, 8), torch.device("cpu")) == batching.MAX_BATCH


def test_automatic_batch_size_is_probed_once_and_cached(monkeypatch):
    model = LinearModel(torch.randn(1, 6, 6))
    calls = []
    per_sample = 2**20 - 4 * 36  # with the 1 x 6 x 6 input: 1 MiB a sample
    monkeypatch.setattr(batching, "activation_bytes_per_sample", lambda *args: calls.append(args) or per_sample)
    assert batching.auto_batch_size(model, (1, 6, 6)) == batching.CHUNK_BYTES // 2**20
    assert batching.auto_batch_size(model, (1, 6, 6)) == batching.CHUNK_BYTES // 2**20
    assert len(calls) == 1


def test_chunk_size_is_the_largest_power_of_two_fitting_the_chunk_budget():
    budget = batching.CHUNK_BYTES
    assert batching.chunk_size(budget // 256) == 256
    assert batching.chunk_size(budget // 300) == 256
    assert batching.chunk_size(budget // 255) == 128
    assert batching.chunk_size(4 * budget) == 1  # a sample larger than the budget still goes through, alone
    assert batching.chunk_size(1) == batching.MAX_BATCH
    assert batching.chunk_size(1, max_batch=700) == 700


def test_bad_batch_size_is_rejected():
    with pytest.raises(XaitrustError, match="batch_size"):
        masked_scores(LinearModel(torch.ones(1, 2, 2)), torch.rand(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 0, batch_size=0)


def test_per_image_counts_must_match_the_batch():
    with pytest.raises(XaitrustError, match="per-image counts"):
        RankedMasks(torch.zeros(2, 1, 2, 2, dtype=torch.long), torch.zeros(3, 4, dtype=torch.long))


def test_uniform_noise_is_one_image_shared_by_the_batch():
    x = torch.rand(3, 2, 4, 4)
    noise = make_replacement(x, "uniform", generator=torch.Generator().manual_seed(0))
    alone = make_replacement(x[1:2], "uniform", generator=torch.Generator().manual_seed(0))
    assert noise.shape == x.shape and 0 <= noise.min() and noise.max() < 1
    torch.testing.assert_close(noise, alone.expand_as(x), rtol=0, atol=0)


UNIFORM = [
    ("rise", {"n_masks": 50, "grid_size": 3}),
    ("occlusion", {"window": 3, "stride": 2}),
    ("kernelshap", {"n_samples": 40, "features": "patches", "patch_size": 4}),
    ("lime", {"n_samples": 40, "features": "patches", "patch_size": 4}),
    ("meaningful-perturbation", {"steps": 10, "mask_size": 6}),
]


@pytest.mark.parametrize("name, params", UNIFORM, ids=[name for name, _ in UNIFORM])
def test_uniform_replacement_gives_an_image_the_same_map_alone_and_in_a_batch(name, params):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)
    )
    model.num_classes = 3
    x = torch.rand(3, 1, 12, 12)
    target = torch.tensor([0, 2, 1])
    explainer = get_explainer(name, replacement="uniform", **params)
    batch = explainer(model, x, target, output="probability")
    alone = torch.cat([explainer(model, x[b : b + 1], target[b : b + 1], output="probability") for b in range(3)])
    assert batch.abs().max() > 0
    torch.testing.assert_close(batch, alone, rtol=0, atol=1e-5)


def test_noise_replacement_is_drawn_apart_from_the_random_orders_of_the_same_seed():
    from xaitrust.perturb.orders import random_permutations
    from xaitrust.perturb.replacement import seeded_replacement

    x = torch.rand(1, 1, 6, 6)
    for seed in (0, 3):
        noise = seeded_replacement(x, "uniform", seed)[0, 0].flatten()
        order = random_permutations(1, 36, seed)[0]
        assert not torch.equal(noise.argsort(), order)  # else the least noisy pixels would always go first
