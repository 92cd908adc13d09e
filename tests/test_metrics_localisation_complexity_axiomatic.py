"""Localisation, complexity and axiomatic metrics: hand-computed answers, their contracts, Quantus 0.6 on the same
inputs, and one evaluation on the shapes data set."""

import math

import numpy as np
import pytest
import quantus
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from xaitrust.data.shapes import make_shapes
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import define_metric, evaluate, get_metric
from xaitrust.explainers import get_explainer
from xaitrust.metrics.axiomatic import _shifted_input, completeness_gap, input_invariance, non_sensitivity
from xaitrust.metrics.complexity import complexity, effective_complexity, sparseness
from xaitrust.metrics.localisation_peers import (
    make_mosaics,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roc_auc,
    top_k_intersection,
)
from xaitrust.metrics.localization import localization
from xaitrust.models import build_model
from xaitrust.testing import MetricContract, check_metric
from xaitrust.testing.oracles import LinearModel

REGISTERED = ("top_k_intersection", "relevance_rank_accuracy", "relevance_mass_accuracy", "roc_auc", "focus",
              "sparseness", "complexity", "effective_complexity", "completeness_axiom", "input_invariance")


def square_mask(n=1, size=8):
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    masks[:, 2:4, 2:4] = True  # 4 of 64 pixels
    return masks


def random_maps_and_masks(n=5, size=10, seed=0):
    """Maps without ties (Quantus orders ties arbitrarily) and masks of varied sizes and places."""
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(n, size, size, generator=generator)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        masks[i, i : i + 3 + i % 3, 1 + i : 5 + i] = True
    return maps, masks


def quantus_scores(metric, maps, masks, x=None, model=None, **call):
    """Quantus's values on channel-first numpy copies of ``maps``, ``masks`` and the one-channel images ``x`` (random
    ones by default: metrics of the maps alone do not read them)."""
    x = np.random.default_rng(0).random((len(maps), 1, *maps.shape[1:]), dtype=np.float32) if x is None else x.numpy()
    return np.asarray(metric(model=model, x_batch=x, y_batch=np.zeros(len(maps), dtype=int),
                             a_batch=maps[:, None].numpy(), s_batch=masks[:, None].numpy().astype(float),
                             device="cpu", **call), dtype=float)


# Localisation: hand-computed cases.

def test_top_k_intersection_is_the_share_of_the_top_pixels_in_the_mask():
    maps = torch.zeros(1, 8, 8)
    maps[0, 2, 2], maps[0, 3, 3], maps[0, 7, 7] = 3.0, 2.5, 2.8  # top-3: two inside, one outside
    torch.testing.assert_close(top_k_intersection(maps, square_mask(), k=3), torch.tensor([2 / 3]))
    torch.testing.assert_close(top_k_intersection(maps, square_mask(), k=0.05), torch.tensor([2 / 3]))  # 3 pixels
    torch.testing.assert_close(top_k_intersection(maps, square_mask(), k=1), torch.tensor([1.0]))
    for k in (0, 65, 1.0, True, "3"):
        with pytest.raises(XaitrustError, match="k must be a number of pixels in \\[1, 64\\]"):
            top_k_intersection(maps, square_mask(), k=k)


def test_relevance_rank_accuracy_counts_the_mask_among_its_size_of_top_pixels():
    maps = torch.zeros(2, 8, 8)
    maps[0, 2:4, 2:4] = 1.0  # all of the mask first
    maps[1, 2, 2], maps[1, 2, 3], maps[1, 3, 2], maps[1, 0, 0] = 4.0, 3.0, 2.0, 5.0  # 3 of the top 4 inside
    torch.testing.assert_close(relevance_rank_accuracy(maps, square_mask(2)), torch.tensor([1.0, 0.75]))


def test_relevance_mass_accuracy_is_the_share_of_the_mass_in_the_mask():
    maps = torch.zeros(3, 8, 8)
    maps[0, 2:4, 2:4] = 1.0
    maps[1, 2, 2], maps[1, 7, 7] = 3.0, 1.0
    maps[2, 2, 2], maps[2, 7, 7] = 1.0, -1.0  # no mass: undefined
    with pytest.warns(UserWarning, match="1 map\\(s\\) have a total relevance <= 0"):
        scores = relevance_mass_accuracy(maps, square_mask(3))
    torch.testing.assert_close(scores[:2], torch.tensor([1.0, 0.75]))
    assert torch.isnan(scores[2])


def test_roc_auc_ranks_mask_pixels_against_the_background():
    maps = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1))
    maps[0] = square_mask()[0].float()  # the mask itself: perfect
    maps[1] = -maps[0]  # the mask last
    maps[2] = 1.0  # constant: every pair tied, chance
    expected = roc_auc_score(square_mask()[0].flatten().numpy(), maps[3].flatten().numpy())
    scores = roc_auc(maps, square_mask(4))
    torch.testing.assert_close(scores[:3], torch.tensor([1.0, 0.0, 0.5]))
    assert scores[3].item() == pytest.approx(expected, abs=1e-6)
    with pytest.warns(UserWarning, match="cover the whole image"):
        assert torch.isnan(roc_auc(maps[:1], torch.ones(1, 8, 8, dtype=torch.bool))).all()


def test_an_empty_mask_leaves_every_localisation_score_undefined():
    masks = torch.cat([square_mask(), torch.zeros(1, 8, 8, dtype=torch.bool)])
    for score in (top_k_intersection, relevance_rank_accuracy, relevance_mass_accuracy, roc_auc):
        with pytest.warns(UserWarning, match="1 mask\\(s\\) are empty"):
            values = score(torch.rand(2, 8, 8), masks)
        assert torch.isfinite(values[0]) and torch.isnan(values[1]), score.__name__


# Focus and its mosaics.

@pytest.fixture(scope="module")
def shapes():
    return make_shapes(n=24, size=16, seed=0)


def test_mosaics_hold_two_target_tiles_and_two_others_with_matching_masks(shapes):
    mosaics = make_mosaics(shapes, per_class=3, seed=5)
    assert mosaics.x.shape == (18, 1, 32, 32) and mosaics.masks.shape == (18, 32, 32)
    tiles, labels = mosaics.info["tiles"], mosaics.info["tile_labels"]
    assert torch.equal(labels, shapes.y[tiles])
    assert torch.equal((labels == mosaics.y[:, None]).sum(dim=1), torch.full((18,), 2))  # two target tiles each
    for place, (rows, cols) in enumerate([(slice(0, 16), slice(0, 16)), (slice(0, 16), slice(16, 32)),
                                          (slice(16, 32), slice(0, 16)), (slice(16, 32), slice(16, 32))]):
        assert torch.equal(mosaics.x[:, :, rows, cols], shapes.x[tiles[:, place]])  # the tiles, in TILES order
        target = labels[:, place] == mosaics.y
        assert torch.equal(mosaics.masks[:, rows, cols].all(dim=(1, 2)), target)
        assert not mosaics.masks[~target][:, rows, cols].any()
    assert (tiles[:, :, None] != tiles[:, None, :]).sum() == 18 * 12  # four different images per mosaic
    assert torch.equal(make_mosaics(shapes, per_class=3, seed=5).x, mosaics.x)
    assert not torch.equal(make_mosaics(shapes, per_class=3, seed=6).x, mosaics.x)


def test_mosaics_need_two_images_of_each_class(shapes):
    with pytest.raises(XaitrustError, match="needs two images of that class"):
        make_mosaics(shapes.subset(torch.tensor([0, 1, 2, 3, 4, 5])), per_class=1)
    with pytest.raises(XaitrustError, match="per_class must be a positive integer"):
        make_mosaics(shapes, per_class=0)


def test_focus_is_the_positive_share_on_the_target_tiles(shapes):
    mosaics = make_mosaics(shapes, per_class=1, seed=0)
    focus = get_metric("focus")
    inside = mosaics.masks.float() * torch.rand(mosaics.masks.shape, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(focus(inside - 0.5 * (~mosaics.masks).float(), mosaics.masks), torch.ones(6))
    torch.testing.assert_close(focus(torch.ones(6, 32, 32), mosaics.masks), torch.full((6,), 0.5))  # chance


def test_quantus_focus_scores_the_tiles_where_its_mosaics_put_them():
    # non-square mosaics: a map on one tile scores 1 exactly when that tile is the target
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 10, 2))
    for place in range(4):
        maps = torch.zeros(1, 6, 10)
        maps[0, 3 * (place // 2) : 3 * (place // 2) + 3, 5 * (place % 2) : 5 * (place % 2) + 5] = 1.0
        for target in range(4):
            positions = tuple(int(p == target) for p in range(4))
            got = quantus.Focus(disable_warnings=True)(
                model=model, x_batch=np.random.default_rng(0).random((1, 3, 6, 10), dtype=np.float32),
                y_batch=np.zeros(1, dtype=int), a_batch=maps[:, None].numpy(), custom_batch=[positions],
                device="cpu")
            assert got[0] == pytest.approx(float(place == target), abs=1e-6)


def test_focus_equals_quantus_on_mosaics(shapes):
    mosaics = make_mosaics(shapes, per_class=1, seed=3)
    maps = torch.randn(len(mosaics), 32, 32, generator=torch.Generator().manual_seed(0))
    tile_is_target = (mosaics.info["tile_labels"] == mosaics.y[:, None]).int().tolist()
    model = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 6))
    expected = quantus.Focus(disable_warnings=True, normalise=False)(
        model=model, x_batch=mosaics.x.numpy(), y_batch=mosaics.y.numpy(), a_batch=maps[:, None].numpy(),
        custom_batch=[tuple(row) for row in tile_is_target], device="cpu")
    np.testing.assert_allclose(get_metric("focus")(maps, mosaics.masks).numpy(), expected, rtol=1e-5)


# Localisation against Quantus.

def test_localisation_scores_equal_quantus():
    maps, masks = random_maps_and_masks()
    pairs = [
        (top_k_intersection(maps, masks, k=7), quantus.TopKIntersection(k=7, disable_warnings=True)),
        (relevance_rank_accuracy(maps, masks), quantus.RelevanceRankAccuracy(disable_warnings=True)),
        (relevance_mass_accuracy(maps, masks), quantus.RelevanceMassAccuracy(disable_warnings=True)),
        (roc_auc(maps, masks), quantus.AUC(disable_warnings=True)),
        # Kohlbrenner et al.'s share of positive relevance: Quantus with positive_attributions and without abs
        (localization(maps - 0.5, masks), quantus.AttributionLocalisation(abs=False, positive_attributions=True,
                                                                          disable_warnings=True)),
    ]
    for ours, metric in pairs:
        shifted = type(metric).__name__ == "AttributionLocalisation"
        theirs = quantus_scores(metric, maps - 0.5 if shifted else maps, masks)
        np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-5, err_msg=type(metric).__name__)


def test_quantus_default_attribution_localisation_measures_magnitudes_not_positive_relevance():
    maps, masks = random_maps_and_masks()
    signed = maps - 0.5
    theirs = quantus_scores(quantus.AttributionLocalisation(disable_warnings=True), signed, masks)  # abs=True
    np.testing.assert_allclose(relevance_mass_accuracy(signed.abs(), masks).numpy(), theirs, rtol=1e-5)
    assert not np.allclose(localization(signed, masks).numpy(), theirs, rtol=1e-3)
    # its weighted variant divides the mask's size by the size of the batch from its third image on (3 of 5 here)
    weighted = quantus_scores(quantus.AttributionLocalisation(weighted=True, abs=False, positive_attributions=True,
                                                              disable_warnings=True), maps, masks)
    sizes = masks.flatten(1).sum(dim=1).numpy()
    np.testing.assert_allclose(weighted, localization(maps, masks).numpy() * sizes / (3 * 100), rtol=1e-5)


# Complexity.

def test_sparseness_is_the_gini_index_of_the_magnitudes():
    maps = torch.zeros(3, 4, 4)
    maps[0] = 2.0  # uniform
    maps[1, 1, 2] = -3.0  # a single pixel
    maps[2] = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    v = maps[2].abs().flatten().double()
    mean_difference = (v[:, None] - v[None, :]).abs().sum() / (2 * 16 * v.sum())  # Gini's mean-difference form
    torch.testing.assert_close(sparseness(maps), torch.tensor([0.0, 15 / 16, float(mean_difference)]))
    with pytest.warns(UserWarning, match="1 map\\(s\\) are all zero"):
        assert torch.isnan(sparseness(torch.zeros(1, 4, 4))).all()


def test_complexity_is_the_entropy_of_the_fractional_contributions():
    maps = torch.zeros(3, 4, 4)
    maps[0] = -1.0
    maps[1, 0, 0] = 5.0
    maps[2, 0, 0], maps[2, 3, 3] = 2.0, -2.0
    torch.testing.assert_close(complexity(maps), torch.tensor([math.log(16), 0.0, math.log(2)]))
    with pytest.warns(UserWarning, match="1 map\\(s\\) are all zero"):
        assert torch.isnan(complexity(torch.zeros(1, 4, 4))).all()


def test_sparseness_and_complexity_equal_quantus():
    maps = torch.randn(4, 9, 9, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(sparseness(maps).numpy(),
                               quantus_scores(quantus.Sparseness(disable_warnings=True), maps, maps > 0), rtol=1e-5)
    np.testing.assert_allclose(complexity(maps).numpy(),
                               quantus_scores(quantus.Complexity(disable_warnings=True), maps, maps > 0), rtol=1e-5)


def support_model(support, size=6, scale=4.0, seed=0):
    """A linear model whose logit reads only the pixels ``support`` (a boolean ``(H, W)``), and images for it."""
    generator = torch.Generator().manual_seed(seed)
    weight = scale * (0.5 + torch.rand(1, size, size, generator=generator)) * support
    x = 0.2 + 0.8 * torch.rand(3, 1, size, size, generator=generator)
    return LinearModel(weight).eval(), x


def test_effective_complexity_counts_the_top_pixels_the_prediction_needs():
    support = torch.zeros(6, 6, dtype=torch.bool)
    support[1:3, 2:5] = True  # the model reads 6 of 36 pixels
    model, x = support_model(support)
    evidence = (model.weight.detach() * x)[:, 0]  # its evidence, ranked first
    settings = {"tolerance": 1e-4, "steps": None, "output": "logit"}
    torch.testing.assert_close(effective_complexity(model, x, evidence, 0, **settings), torch.full((3,), 6.0))
    reversed_ = effective_complexity(model, x, -evidence, 0, **settings)  # support last
    assert (reversed_ == 36).all()
    # faint attributions all over: Quantus counts every pixel, the paper's definition only those the model needs
    faint = evidence + 1e-3 * evidence.amax() * (~support)
    torch.testing.assert_close(effective_complexity(model, x, faint, 0, **settings), torch.full((3,), 6.0))
    theirs = quantus_scores(quantus.EffectiveComplexity(disable_warnings=True), faint, faint > 0)
    np.testing.assert_array_equal(theirs, 36)
    np.testing.assert_array_equal(quantus_scores(quantus.EffectiveComplexity(disable_warnings=True), evidence,
                                                 evidence > 0), 6)  # non-zero exactly on the support: they agree
    with pytest.raises(XaitrustError, match="tolerance must be a positive number"):
        effective_complexity(model, x, evidence, 0, tolerance=0)
    for steps in (0, 37, 2.0):
        with pytest.raises(XaitrustError, match="steps must be an integer in \\[1, 36\\]"):
            effective_complexity(model, x, evidence, 0, steps=steps)


# Axiomatic.

def dyadic_linear_model():
    """A linear model and images whose values are multiples of 1/8: sums of products are exact in float32."""
    generator = torch.Generator().manual_seed(3)
    weight = torch.randint(-8, 9, (1, 4, 4), generator=generator) / 8
    x = torch.randint(0, 9, (3, 1, 4, 4), generator=generator) / 8
    return LinearModel(weight).eval(), x


def test_completeness_gap_is_zero_for_evidence_and_measures_the_violation():
    model, x = dyadic_linear_model()
    evidence = model.weight.detach() * x  # gradient times input: complete for a linear model and a black baseline
    torch.testing.assert_close(completeness_gap(model, x, evidence, 0), torch.zeros(3))
    halved = completeness_gap(model, x, evidence / 2, 0)
    torch.testing.assert_close(halved, evidence.flatten(1).sum(dim=1).abs() / 2)
    with torch.no_grad():
        logit = model(x)[:, 0]
        expected = (evidence.flatten(1).sum(1) - (torch.softmax(model(x), 1)[:, 0] - 0.5)).abs()
    torch.testing.assert_close(completeness_gap(model, x, evidence, 0, output="probability"), expected)
    white = completeness_gap(model, x, evidence, 0, baseline=1.0)  # f(x) - f(1) against the black-baseline sum
    torch.testing.assert_close(white, (evidence.flatten(1).sum(1) - (logit - model.weight.detach().sum())).abs())


def test_completeness_gap_is_zero_exactly_where_quantus_finds_completeness():
    model, x = dyadic_linear_model()
    evidence = model.weight.detach() * x
    attributions = torch.cat([evidence[:2], evidence[2:] + 1 / 8])  # the last image's sum is off by 2
    theirs = quantus.Completeness(normalise=False, perturb_baseline=0.0, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=np.zeros(3, dtype=int), a_batch=attributions.numpy(), device="cpu")
    ours = completeness_gap(model, x, attributions, 0)
    assert list(theirs) == [True, True, False] and (ours == 0).tolist() == list(theirs)
    normalised = quantus.Completeness(perturb_baseline=0.0, disable_warnings=True)(  # Quantus's default normalise
        model=model, x_batch=x.numpy(), y_batch=np.zeros(3, dtype=int), a_batch=evidence.numpy(), device="cpu")
    assert not any(normalised)


def test_non_sensitivity_counts_the_pixels_where_attribution_and_dependence_disagree():
    support = torch.zeros(6, 6, dtype=torch.bool)
    support[1:3, 2:5] = True
    model, x = support_model(support)
    evidence = (model.weight.detach() * x)[:, 0]
    extra = evidence + support.logical_not().float() * torch.arange(36.0).reshape(6, 6).lt(3)  # 3 pixels too many
    missing = evidence * torch.ones(6, 6).index_put_((torch.tensor([1, 2]), torch.tensor([2, 2])), torch.zeros(2))
    expected = torch.tensor([0.0, 3.0, 2.0]).repeat_interleave(3)
    got = non_sensitivity(model, x.repeat(3, 1, 1, 1), torch.cat([evidence, extra, missing]), 0)
    torch.testing.assert_close(got, expected)


def test_non_sensitivity_equals_quantus_on_one_channel_images():
    support = torch.zeros(6, 6, dtype=torch.bool)
    support[1:3, 2:5] = True
    model, x = support_model(support)
    x[:, :, 5, 5] = 0.1  # the image's minimum lies off the support: Quantus's "black" moves every support pixel
    evidence = (model.weight.detach() * x)[:, 0]
    maps = evidence + support.logical_not().float() * torch.arange(36.0).reshape(6, 6).lt(3)
    theirs = quantus_scores(quantus.NonSensitivity(disable_warnings=True), maps, maps > 0, x, model, softmax=False)
    np.testing.assert_array_equal(non_sensitivity(model, x, maps, 0).numpy(), theirs)
    # a support pixel at the image's minimum: replacing it by the minimum changes nothing, so Quantus misses it
    x[:, :, 1, 2] = 0.05
    blind = quantus_scores(quantus.NonSensitivity(disable_warnings=True), maps, maps > 0, x, model, softmax=False)
    np.testing.assert_array_equal(blind, theirs + 1)
    np.testing.assert_array_equal(non_sensitivity(model, x, maps, 0).numpy(), theirs)


def conv_model(padding: int) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=padding), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * (8 - 2 + 2 * padding) ** 2, 2))
    model.num_classes = 2
    return model.eval()


def test_input_invariance_separates_gradients_from_gradient_times_input():
    model, x = conv_model(padding=1), torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    gradient = input_invariance(get_explainer("saliency"), model, x, 0)
    times_input = input_invariance(get_explainer("gradient-input"), model, x, 0)
    assert (gradient < 1e-5).all() and (times_input > 0.1).all()
    ig = input_invariance(get_explainer("integrated-gradients", steps=8), model, x, 0, shift=0.5)
    assert (ig > 0.1).all()
    assert input_invariance(get_explainer("saliency"), model, x, 0, shift=0.0).eq(0).all()
    with pytest.raises(XaitrustError, match="shift must be a finite number"):
        input_invariance(get_explainer("saliency"), model, x, 0, shift=float("nan"))


def test_input_invariance_agrees_with_quantus_and_keeps_padded_models_exact():
    model, x = conv_model(padding=0), torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for method, name in (("Saliency", "saliency"), ("InputXGradient", "gradient-input")):
        a_batch = quantus.explain(model, x.numpy(), np.zeros(3, dtype=int), method=method, device="cpu")
        theirs = quantus.InputInvariance(disable_warnings=True)(
            model=model, x_batch=x.numpy(), y_batch=np.zeros(3, dtype=int), a_batch=a_batch, device="cpu",
            explain_func=quantus.explain, explain_func_kwargs={"method": method})
        ours = input_invariance(get_explainer(name), model, x, 0)
        assert list(theirs) == (ours < 1e-4).tolist() == [method == "Saliency"] * 3
    # Quantus's shifted first layer with zero padding changes the model near the borders; the pre-hook does not
    padded = conv_model(padding=1)
    wrapped = quantus.helpers.model.pytorch_model.PyTorchModel(padded, channel_first=True)
    shifted = wrapped.add_mean_shift_to_first_layer(-1.0, (1, 1, 8, 8))
    with torch.no_grad(), _shifted_input(conv_model(padding=1), -1.0) as ours:
        assert not torch.allclose(shifted(x - 1.0), padded(x), atol=1e-3)
        torch.testing.assert_close(ours(x - 1.0), padded(x))


# Contracts and the evaluation.

@pytest.mark.parametrize("name", REGISTERED)
def test_every_new_metric_meets_the_contract(name):
    check_metric(name, raise_on_failure=True)


def test_non_sensitivity_meets_the_contract_but_the_faithfulness_direction():
    metric = define_metric(non_sensitivity, name="non_sensitivity", higher_is_better=False,
                           description="|A_0 Δ F_0|")
    why = "the evidence map and its negation have the same zero set: non-sensitivity cannot tell them apart"
    check_metric(metric, contract=MetricContract(direction="exempt", why=why), raise_on_failure=True)


def test_direction_of_the_complexity_metrics_on_a_concentrated_and_a_spread_map():
    concentrated, spread = torch.zeros(1, 6, 6), torch.rand(1, 6, 6, generator=torch.Generator().manual_seed(0))
    concentrated[0, 2:4, 2:4] = 1.0
    assert sparseness(concentrated) > sparseness(spread) and complexity(concentrated) < complexity(spread)
    assert get_metric("sparseness").higher_is_better and not get_metric("complexity").higher_is_better


def test_evaluate_on_shapes_and_their_mosaics_with_the_localisation_metrics(shapes):
    metrics = ["top_k_intersection", "relevance_rank_accuracy", "relevance_mass_accuracy", "roc_auc", "localization"]
    model = build_model("cnn", 1, 6, 16, channels=(4,), hidden=8)
    table = evaluate(model, shapes.x[:6], shapes.y[:6], explainers=["saliency", "gradient-input"], metrics=metrics,
                     masks=shapes.masks[:6], progress=False)
    assert len(table) == 6 * 2 * len(metrics) and table["value"].notna().all()
    assert table["value"].between(0, 1).all()
    others = ["sparseness", "complexity", "effective_complexity", "completeness_axiom", "input_invariance"]
    table = evaluate(model, shapes.x[:6], shapes.y[:6], explainers="integrated-gradients", metrics=others,
                     metric_params={"effective_complexity": {"steps": 8}}, progress=False)
    assert len(table) == 6 * len(others) and table["value"].notna().all()
    mosaics = make_mosaics(shapes, per_class=1, seed=0)
    mosaic_model = build_model("cnn", 1, 6, 32, channels=(4,), hidden=8)
    focus = evaluate(mosaic_model, mosaics.x, mosaics.y, explainers="saliency", metrics="focus", masks=mosaics.masks,
                     progress=False)
    assert len(focus) == 6 and focus["value"].between(0, 1).all()
