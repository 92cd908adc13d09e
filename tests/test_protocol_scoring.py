"""The scorecard's per-sample rows: an image whose clean logit is not positive has an undefined MIF/LIF area; the
curves kept for figures are those the areas measured, read back without measuring them again; the sanity check
(full-model randomisation) scores 1 for maps that ignore the model and equals the cascading MPRT on a one-layer
model."""

import math
import warnings

import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.evaluation import MetricInputs, get_metric, metric_values
from xaitrust.evaluation.builtin import game_curves
from xaitrust.explainers import get_explainer
from xaitrust.metrics.faithfulness import random_superpixel_deletion
from xaitrust.metrics.randomisation import (
    model_parameter_randomisation,
    randomisation_similarity,
)
from xaitrust.metrics.sanity import SIMILARITIES
from xaitrust.protocols import protocol_config
from xaitrust.protocols.scoring import FAITHFULNESS_METRICS, ScoringSettings, faithfulness_rows
from xaitrust.testing.oracles import LinearModel
from xaitrust.training.degrade import reinitialize_layers

CONFIG = {"n_superpixels": 8, "n_orders": 2, "seed": 0, "deletion_steps": 10, "replacement": "zero", "ties": "random",
          "output": "probability", "mu_fidelity_subsets": 8, "metrics": list(FAITHFULNESS_METRICS)}


def settings(**overrides) -> ScoringSettings:
    """The benchmark smoke profile's scoring settings with ``CONFIG`` and ``overrides`` on top."""
    return ScoringSettings.from_config({**protocol_config("benchmark", "smoke"), **CONFIG, **overrides})


def test_mif_lif_area_is_nan_where_the_clean_logit_is_not_positive():
    weight = torch.rand(1, 1, 8, 8) - 0.5
    x = torch.rand(3, 1, 8, 8) * (weight > 0)
    x[1] = torch.rand(1, 8, 8) * (weight[0] < 0)  # class 0's logit sum(w * x) < 0 for this image only
    model, target, maps = LinearModel(weight), torch.zeros(3, dtype=torch.long), (weight * x)[:, 0]
    baseline = random_superpixel_deletion(model, x, target, 8, 2, 0, steps=10, replacement="zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the clean score <= 0 warning is expected
        rows, _ = faithfulness_rows(model, x, target, weight * x, maps, settings(), baseline, "m", "linear", (0.0,))
    area = rows[rows["metric"] == "mif_lif_area"]["value"].tolist()
    assert math.isnan(area[1]) and not math.isnan(area[0]) and not math.isnan(area[2])


def test_tied_map_values_are_removed_in_the_configured_order():
    # The map ties every pixel of the top half; the model reads the first row only. Row by row ("stable") removes
    # that row first, so the score falls to 0 within 1/8 of the pixels; a random tie break spreads the row over the
    # first half of the removals, so the deletion area is larger.
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., 0, :] = 1.0
    x = 0.1 + 0.9 * torch.rand(2, 1, 8, 8)
    model, target = LinearModel(weight), torch.zeros(2, dtype=torch.long)
    maps = torch.full((2, 8, 8), 0.5)
    maps[:, :4] = 1.0
    baseline = random_superpixel_deletion(model, x, target, 8, 2, 0, steps=16, replacement="zero", output="logit")
    areas = {}
    for ties in ("stable", "random"):
        scoring = settings(ties=ties, output="logit", deletion_steps=16)
        rows, _ = faithfulness_rows(model, x, target, weight * x, maps, scoring, baseline, "m", "linear", (0.0,))
        areas[ties] = rows[rows["metric"] == "deletion_area"]["value"].to_numpy()
    assert (areas["stable"] < 0.1).all() and (areas["random"] > 0.15).all()


def test_the_curves_kept_for_figures_are_those_the_areas_measured():
    weight = torch.rand(1, 1, 8, 8)
    x = torch.rand(3, 1, 8, 8)
    model, target, maps = LinearModel(weight), torch.zeros(3, dtype=torch.long), (weight * x)[:, 0]
    baseline = random_superpixel_deletion(model, x, target, 8, 2, 0, steps=10, replacement="zero")
    rows, curves = faithfulness_rows(model, x, target, weight * x, maps, settings(), baseline, "m", "linear", (0.0,))
    assert set(curves) == {"fractions", "deletion", "insertion"} and curves["insertion"].shape == (3, 11)
    for game in ("deletion", "insertion"):
        area = torch.trapezoid(curves[game], curves["fractions"], dim=1).double()
        measured = torch.tensor(rows[rows["metric"] == f"{game}_area"]["value"].to_numpy())
        torch.testing.assert_close(area, measured)
    assert not torch.equal(curves["deletion"], curves["insertion"])


def test_game_curves_reads_the_curves_an_area_measured_instead_of_measuring_them_again():
    weight = torch.rand(1, 1, 8, 8)
    x = torch.rand(3, 1, 8, 8)
    model, forwards = LinearModel(weight), []
    model.register_forward_hook(lambda *_: forwards.append(1))
    inputs = MetricInputs(model, x, torch.zeros(3, dtype=torch.long), "probability", maps=(weight * x)[:, 0])
    game = {"steps": 10, "replacement": "zero"}
    [(_, area)] = metric_values([get_metric("deletion_area")], inputs, {"deletion_area": game})
    measured = len(forwards)
    curves = game_curves(inputs, "deletion", **game)
    assert len(forwards) == measured and curves.curves.shape == (3, 11)
    torch.testing.assert_close(torch.trapezoid(curves.curves, curves.fractions, dim=1).double(), area.double())
    game_curves(inputs, "insertion", **game)  # not measured yet
    assert len(forwards) > measured
    with pytest.raises(XaitrustError, match="game must be one of deletion, insertion; got 'deletoin'"):
        game_curves(inputs, "deletoin")


def input_map(model, x, target, output="logit"):
    """A map of the image alone: the model plays no part."""
    return x.clone()


def test_maps_that_ignore_the_model_have_randomisation_similarity_one():
    model = LinearModel(0.2 + 0.1 * torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3))[0])
    x = 0.2 + 0.6 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    for explainer in (get_explainer("random"), input_map):
        maps = explainer(model, x, torch.zeros(3, dtype=torch.long), "logit").abs().sum(dim=1)
        torch.testing.assert_close(randomisation_similarity(model, explainer, x, 0, maps), torch.ones(3))


def test_gradient_maps_of_a_learned_weight_are_far_from_those_of_the_randomised_model():
    weight = torch.full((1, 1, 8, 8), 0.01)
    weight[..., 2:5, 2:5] = 1.0  # the learned evidence: one patch
    weight += 0.001 * torch.arange(64.0).reshape(1, 1, 8, 8)  # distinct values, so ranks are defined
    model, x = LinearModel(weight[0]), 0.2 + 0.6 * torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    saliency = get_explainer("saliency")
    maps = saliency(model, x, torch.zeros(3, dtype=torch.long), "logit").abs().sum(dim=1)
    value = randomisation_similarity(model, saliency, x, 0, maps, seed=2)
    randomised = reinitialize_layers(model, [""], seed=2).weight.detach().abs()[0]
    torch.testing.assert_close(value, SIMILARITIES["spearman"](maps, randomised.expand(3, 8, 8)))
    # One weight layer: the full randomisation is the cascading test's only step.
    torch.testing.assert_close(value, model_parameter_randomisation(model, saliency, x, 0, seed=2))
    assert (value.abs() < 0.5).all()
    registered = get_metric("randomisation_similarity")
    inputs = MetricInputs(model, x, torch.zeros(3, dtype=torch.long), "logit", seed=2, maps=maps, explainer=saliency)
    assert not registered.higher_is_better and registered.needs == {"maps", "explainer"}
    torch.testing.assert_close(registered.compute(inputs), value)
