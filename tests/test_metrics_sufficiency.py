"""Sufficiency (Dasgupta, Frost & Moshkovitz 2022): hand-computed shares on a linear model, both readings of "the
explanation applies to x'", Quantus 0.6's Sufficiency on the same maps, the user's mistakes and the registry."""

import numpy as np
import pytest
import quantus
import torch
from torch import nn

import xaitrust
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import get_metric
from xaitrust.metrics import sufficiency as module
from xaitrust.metrics.sufficiency import (
    applies_by_map_distance,
    applies_by_pixels,
    sufficiency,
)
from xaitrust.testing.oracles import LinearModel


@pytest.fixture
def case():
    """Five 4x4 images and a linear model predicting class 1 for image 1 only. Images 0-4 explain themselves by their
    two pixels (0, 0) and (0, 1), whose values images 0-2 share, image 3 nearly shares and image 4 does not; image 4
    explains itself by pixels (2, 2) and (2, 3), where every image holds the same values."""
    weight = torch.ones(1, 4, 4)
    weight[0, 3, 3] = -100.0
    x = torch.full((5, 1, 4, 4), 0.2)
    x[:, 0, 0, :2] = torch.tensor([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.6], [0.9, 0.9]])
    x[:, 0, 3, 3] = 0.0
    x[1, 0, 3, 3] = 1.0  # class 1: its logit 0 beats sum(w x) < 0
    maps = torch.zeros(5, 4, 4)
    maps[:4, 0, 0], maps[:4, 0, 1] = 2.0, 1.0
    maps[4, 2, 2], maps[4, 2, 3] = 2.0, 1.0
    return LinearModel(weight).eval(), x, maps


def test_sufficiency_is_the_share_of_the_images_the_explanation_applies_to_that_keep_the_prediction(case):
    model, x, maps = case
    assert model(x).argmax(dim=1).tolist() == [0, 1, 0, 0, 0]
    applies = applies_by_pixels(x, maps, k=2)
    expected_applies = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0],
                                     [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(applies, expected_applies)  # not symmetric: image 4's explanation applies to every image
    torch.testing.assert_close(sufficiency(model, x, maps, k=2), torch.tensor([2 / 3, 1 / 3, 2 / 3, 1.0, 4 / 5]))
    # within 0.15, image 3's values are shared: images 0-3 now explain one another
    torch.testing.assert_close(sufficiency(model, x, maps, k=2, tolerance=0.15),
                               torch.tensor([3 / 4, 1 / 4, 3 / 4, 3 / 4, 4 / 5]))


def test_each_image_counts_in_its_own_set_and_the_comparison_blocks_change_nothing(case, monkeypatch):
    _, x, maps = case
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([x, (torch.rand(20, 1, 4, 4, generator=generator) * 2).round() / 2])  # values shared by chance
    maps = torch.cat([maps, torch.rand(20, 4, 4, generator=generator)])
    whole = applies_by_pixels(x, maps, k=3)
    assert whole.diagonal().all() and applies_by_map_distance(maps).diagonal().all()
    assert whole.sum() > len(x) + 20  # many shared explanations
    monkeypatch.setattr(module, "COMPARISON_BLOCK", 2 * 25 * 3)  # two rows at a time
    assert torch.equal(applies_by_pixels(x, maps, k=3), whole)


def test_the_map_distance_rule_standardises_each_pixel_and_normalises_by_the_largest_distance():
    maps = torch.rand(6, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    maps[:, 1, 1] = 0.5  # the same value on every map: no contribution
    flat = maps.flatten(1)
    varies = torch.ones(9, dtype=torch.bool)
    varies[4] = False
    scaled = flat[:, varies] / flat[:, varies].std(dim=0)
    distances = (scaled[:, None] - scaled[None, :]).norm(dim=2)
    for threshold in (0.3, 0.6, 1.0):
        assert torch.equal(applies_by_map_distance(maps, threshold), distances / distances.max() <= threshold)
    assert applies_by_map_distance(maps, 1.0).all() and torch.equal(applies_by_map_distance(maps, 0.0),
                                                                    torch.eye(6, dtype=torch.bool))
    assert torch.equal(applies_by_map_distance(maps[:1]), torch.ones(1, 1, dtype=torch.bool))


def quantus_case():
    """A three-class CNN, eight 8x8 images and non-negative maps in two tight groups plus two loners."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 64, 3)).eval()
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(8, 1, 8, 8, generator=generator)
    centres = torch.rand(4, 8, 8, generator=generator)
    maps = centres[torch.tensor([0, 0, 0, 1, 1, 1, 2, 3])] + 0.02 * torch.rand(8, 8, 8, generator=generator)
    return model, x, maps


def test_the_map_distance_rule_equals_quantus_once_the_image_itself_is_counted():
    model, x, maps = quantus_case()
    ours = sufficiency(model, x, maps, rule="map-distance")
    n = applies_by_map_distance(maps).sum(dim=1)
    assert n.tolist() == [3, 3, 3, 3, 3, 3, 1, 1]
    assert model(x).argmax(dim=1).unique().numel() > 1 and (ours < 1).any()
    theirs = quantus.Sufficiency(disable_warnings=True)(  # its defaults: threshold 0.6, abs, max-normalised maps
        model=model, x_batch=x.numpy(), y_batch=np.zeros(8, dtype=int), a_batch=maps[:, None].numpy(), device="cpu")
    # Quantus leaves x out of mu: (n m - 1) / (n - 1) among the n images sharing the explanation, 0 for a loner
    expected = torch.where(n > 1, (n * ours - 1) / (n - 1).clamp(min=1), 0.0)
    np.testing.assert_allclose(np.asarray(theirs, dtype=np.float64), expected.double().numpy(), atol=1e-6)


def test_quantus_sufficiency_is_zero_everywhere_once_one_pixel_never_varies():
    """SciPy's standardised distance divides 0 by 0 at a pixel whose map value is the same on every image: every
    distance is NaN, no image is close to another, and Quantus's sufficiency is 0 for all; that pixel carries no
    information on which images are explained alike, and here it is left out."""
    model, x, maps = quantus_case()
    maps[:, 0, 0] = 0.0
    theirs = quantus.Sufficiency(disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=np.zeros(8, dtype=int), a_batch=maps[:, None].numpy(), device="cpu")
    assert list(theirs) == [0.0] * 8
    assert applies_by_map_distance(maps).sum(dim=1).tolist() == [3, 3, 3, 3, 3, 3, 1, 1]


def test_mistakes_raise_errors_saying_what_to_fix(case):
    model, x, maps = case
    cases = [
        ({"rule": "distance"}, "rule must be one of pixels, map-distance"),
        ({"tolerance": -0.1}, "tolerance must be a finite number >= 0"),
        ({"tolerance": True}, "tolerance must be a finite number >= 0"),
        ({"rule": "map-distance", "threshold": float("nan")}, "threshold must be a finite number >= 0"),
        ({"k": 0}, "k must be a positive integer"),
        ({"k": 17}, "k must be at most the number of pixels \\(16\\)"),
    ]
    for options, words in cases:
        with pytest.raises(XaitrustError, match=words):
            sufficiency(model, x, maps, **options)
    with pytest.raises(XaitrustError, match="maps"):
        sufficiency(model, x, maps[:, :3])


def test_sufficiency_is_registered_and_evaluates_with_either_rule(case):
    model, x, _ = case
    metric = get_metric("sufficiency")
    assert metric.higher_is_better and metric.needs == {"maps"} and metric.output is None
    assert dict(metric.params) == {"rule": "pixels", "k": 5, "tolerance": 0.0, "threshold": 0.6}
    for params in ({}, {"rule": "map-distance"}):
        table = xaitrust.evaluate(model, x, explainers=["saliency"], metrics=["sufficiency"], progress=False,
                                  metric_params={"sufficiency": params})
        assert len(table) == 5 and table["value"].between(0, 1, inclusive="right").all()
