"""The faithfulness metrics of Quantus's family: closed-form values on oracle models, agreement with Quantus 0.6 on the
same model, images, maps and perturbations, and, where Quantus departs from the paper, a test showing how."""

import itertools
import warnings

import numpy as np
import pytest
import quantus
import torch
from quantus.helpers import utils as quantus_utils
from torch import nn

import xaitrust
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import get_metric
from xaitrust.metrics import faithfulness_peers as peers
from xaitrust.metrics import faithfulness_regions as regions
from xaitrust.metrics.mu_fidelity import mu_fidelity
from xaitrust.perturb.orders import random_permutations
from xaitrust.perturb.segments import patches
from xaitrust.testing.oracles import LinearModel, PatchModel

SIZE = 8
NAMES = ("faithfulness_correlation", "faithfulness_estimate", "monotonicity", "monotonicity_correlation",
         "infidelity", "sensitivity_n", "region_perturbation", "selectivity", "irof", "road_morf", "road_lerf",
         "average_drop", "increase_in_confidence")


def linear_case(seed=0, size=SIZE, batch=3, positive=False):
    """A linear model, images whose smallest value is 0, and the exact contributions ``w * x`` of each pixel."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, size, size, generator=generator) + (2.0 if positive else 0.5)
    weight = weight.abs() if positive else weight
    x = torch.rand(batch, 1, size, size, generator=generator)
    x[:, 0, 0, 0] = 0.0
    return LinearModel(weight).eval(), x, (weight * x)[:, 0]


@pytest.fixture(scope="module")
def cnn_case():
    """A small nonlinear CNN with three classes, three single-channel images holding a 0, maps without ties, the
    model's predicted classes, and the same as Quantus's NumPy inputs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * SIZE * SIZE, 3))
    model.eval()
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, SIZE, SIZE, generator=generator)
    x[:, 0, 0, 0] = 0.0  # Quantus's "black" is the smallest value: 0 for every image, as xaitrust's "zero"
    maps = torch.randn(3, SIZE, SIZE, generator=generator)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    quantus_inputs = {"model": model, "x_batch": x.numpy(), "y_batch": target.numpy(),
                      "a_batch": maps[:, None].numpy(), "device": "cpu"}
    return model, x, maps, target, quantus_inputs


def assert_matches(ours, theirs, atol=1e-5):
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64), atol=atol)


def quiet(metric_class, **kwargs):
    """A Quantus metric without its warnings, attributions used as given (no normalisation)."""
    return metric_class(normalise=False, disable_warnings=True, **kwargs)


# Closed-form values on oracle models.

def test_correlation_metrics_are_one_for_the_exact_contributions_of_a_linear_model():
    model, x, contributions = linear_case()
    # with the zero baseline, removing any set S of pixels lowers the logit by exactly sum_{i in S} w_i x_i
    estimate = peers.faithfulness_estimate(model, x, contributions, 0, output="logit")
    correlation = peers.faithfulness_correlation(model, x, contributions, 0, subset_size=10, n_runs=20,
                                                 baseline="zero", output="logit")
    sensitivity = peers.sensitivity_n(model, x, contributions, 0, fractions=(0.05, 0.3, 0.7), n_subsets=20,
                                      output="logit")
    for values in (estimate, correlation, sensitivity.flatten()):
        torch.testing.assert_close(values, torch.ones_like(values))
    assert sensitivity.shape == (3, 3)


def test_faithfulness_correlation_is_mu_fidelity_with_an_absolute_subset_size():
    model, x, _ = linear_case()
    attributions = torch.randn(3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    ours = peers.faithfulness_correlation(model, x, attributions, 0, subset_size=16, n_runs=30, output="probability")
    black = x.amin(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(ours, mu_fidelity(model, x, attributions, 0, 16 / 64, 30, black, output="probability"))


def test_faithfulness_correlation_defaults_to_quantus_subset_of_224_pixels_capped_at_half_the_image():
    model, x, contributions = linear_case(size=16)  # 256 pixels: 128 per subset
    explicit = peers.faithfulness_correlation(model, x, contributions, 0, subset_size=128, n_runs=10)
    torch.testing.assert_close(peers.faithfulness_correlation(model, x, contributions, 0, n_runs=10), explicit)
    with pytest.raises(XaitrustError, match="subset_size must be smaller than the 256 pixels"):
        peers.faithfulness_correlation(model, x, contributions, 0, subset_size=256)
    with pytest.raises(XaitrustError, match="n_runs must be at least 2"):
        peers.faithfulness_correlation(model, x, contributions, 0, subset_size=10, n_runs=1)


def test_infidelity_of_a_linear_model_is_zero_for_its_contributions_and_exact_for_twice_them():
    model, x, contributions = linear_case()
    exact = peers.infidelity(model, x, contributions, 0, n_squares=50, max_side=4, output="logit")
    torch.testing.assert_close(exact, torch.zeros(3), atol=1e-9, rtol=0)
    doubled = peers.infidelity(model, x, 2 * contributions, 0, n_squares=50, max_side=4, output="logit")
    squares = peers.random_squares((SIZE, SIZE), 50, 4, seed=0)
    removed = 1 - squares.keep(torch.zeros(50, dtype=torch.long), torch.arange(50))[:, 0]
    mass = torch.einsum("bhw,mhw->bm", contributions.double(), removed.double())
    torch.testing.assert_close(doubled.double(), (mass**2).mean(dim=1), rtol=1e-5, atol=1e-7)  # (2s - s)^2
    scaled = peers.infidelity(model, x, 2 * contributions, 0, n_squares=50, max_side=4, optimal_scaling=True,
                              output="logit")
    torch.testing.assert_close(scaled, torch.zeros(3), atol=1e-9, rtol=0)


def test_monotonicity_holds_when_every_put_back_pixel_raises_the_score():
    model, x, contributions = linear_case(positive=True)
    assert peers.monotonicity_arya(model, x, contributions, 0, output="logit").tolist() == [1.0, 1.0, 1.0]
    with torch.no_grad():
        model.weight[0, 3, 3] = -5.0  # a pixel of counter-evidence: putting it back lowers the score
    assert peers.monotonicity_arya(model, x, contributions, 0, output="logit").tolist() == [0.0, 0.0, 0.0]


def test_monotonicity_correlation_is_one_when_the_changes_grow_with_the_attributions():
    model, x, _ = linear_case()
    # replaced by 0.3, pixel i changes the logit by w_i (x_i - 0.3): its square grows with |w_i (x_i - 0.3)|
    attributions = (model.weight.detach() * (x - 0.3))[:, 0]
    values = peers.monotonicity_correlation(model, x, attributions, 0, replacement=0.3, output="logit")
    torch.testing.assert_close(values, torch.ones(3))


def test_region_perturbation_and_selectivity_of_a_linear_model_follow_its_patch_contributions():
    model, x, contributions = linear_case()
    patch_mass = torch.zeros(3, 4).index_add_(1, patches((SIZE, SIZE), 4).flatten(), contributions.flatten(1))
    removed = torch.cat([torch.zeros(3, 1), patch_mass.sort(dim=1, descending=True).values.cumsum(dim=1)], dim=1)
    logit = contributions.flatten(1).sum(dim=1, keepdim=True)
    region = regions.region_perturbation(model, x, contributions, 0, patch_size=4, steps=2, replacement="zero",
                                         output="logit")
    torch.testing.assert_close(region.value, removed[:, :3].mean(dim=1))  # AOPC over k = 0, 1, 2
    chosen = regions.selectivity(model, x, contributions, 0, patch_size=4, output="logit")
    torch.testing.assert_close(chosen.scores, logit - removed)
    curve = logit - removed
    torch.testing.assert_close(chosen.value, ((curve[:, 1:] + curve[:, :-1]) / 2).sum(dim=1) / 4)


def test_irof_is_the_area_over_the_normalised_curve_of_its_segments():
    model, x, contributions = linear_case(positive=True)
    segments = patches((SIZE, SIZE), 4).expand(3, -1, -1)  # four segments of 16 pixels: mean order = sum order
    result = regions.irof(model, x, contributions, 0, replacement="zero", output="logit", segments=segments)
    patch_mass = torch.zeros(3, 4).index_add_(1, segments[0].flatten(), contributions.flatten(1))
    logit = contributions.flatten(1).sum(dim=1, keepdim=True)
    curve = torch.cat([logit, logit - patch_mass.sort(dim=1, descending=True).values.cumsum(dim=1)], dim=1) / logit
    expected = 1 - ((curve[:, 1:] + curve[:, :-1]) / 2).sum(dim=1) / 4
    torch.testing.assert_close(result.value, expected)
    assert result.n_regions.tolist() == [4, 4, 4] and result.fractions[0].tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_noisy_linear_imputation_reproduces_a_linear_ramp_and_is_seeded_per_image():
    rows = torch.arange(SIZE, dtype=torch.float32)[:, None]
    ramp = (0.1 + 0.8 * (2 * rows + torch.arange(SIZE)[None, :]) / (3 * SIZE)).expand(2, 1, SIZE, SIZE).clone()
    removed = torch.zeros(2, SIZE, SIZE, dtype=torch.bool)
    removed[:, 2:6, 1:5] = True  # an interior hole: the weighted neighbour mean of a linear function is its value
    removed[1, 6, 6] = True
    filled = regions.noisy_linear_imputation(ramp, removed, noise=0.0)
    torch.testing.assert_close(filled, ramp)
    noisy = regions.noisy_linear_imputation(ramp, removed, noise=0.01, seed=3)
    kept = ~removed[:, None]
    assert torch.equal(noisy[kept], ramp[kept])
    assert 0 < (noisy - ramp).abs().max() < 0.06
    alone = regions.noisy_linear_imputation(ramp[1:], removed[1:], noise=0.01, seed=3)
    assert torch.equal(alone, noisy[1:])
    with pytest.raises(XaitrustError, match="at least one kept pixel"):
        regions.noisy_linear_imputation(ramp, torch.ones_like(removed))


def test_noisy_linear_imputation_equals_quantus_without_noise(cnn_case):
    _, x, maps, _, _ = cnn_case
    removed = maps > 0.3
    ours = regions.noisy_linear_imputation(x, removed, noise=0.0)
    for image, mask, filled in zip(x.numpy(), removed.numpy(), ours.numpy()):
        theirs = quantus.functions.perturb_func.noisy_linear_imputation(image, np.flatnonzero(mask), noise=0.0)
        assert_matches(filled, theirs, atol=1e-6)


def test_road_ranks_the_evidence_of_a_patch_model():
    model, x = PatchModel(slice(2, 5), slice(3, 6), scale=10.0, bias=-5.0), torch.full((2, 1, SIZE, SIZE), 0.2)
    x[:, :, 2:5, 3:6] = 0.9  # logit 4; about -3 once the patch is filled from its surroundings
    evidence = torch.zeros(2, SIZE, SIZE)
    evidence[:, 2:5, 3:6] = torch.rand(2, 3, 3, generator=torch.Generator().manual_seed(0)) + 1
    fractions = (0.1, 0.3, 0.6, 0.9)
    morf = regions.road(model, x, evidence, 0, fractions=fractions)
    assert morf.correct.tolist() == [[True, False, False, False]] * 2  # 6 of the 9 patch pixels removed at 10%
    # LeRF keeps the patch to the end, and fills the rest from it: the model keeps its class
    assert regions.road(model, x, evidence, 0, "least-important-first", fractions=fractions).accuracy.tolist() == [1, 1]
    negated = regions.road(model, x, -evidence, 0, "least-important-first", fractions=fractions)
    assert negated.correct.tolist() == morf.correct.tolist() and morf.accuracy.tolist() == [0.25, 0.25]


def test_average_drop_and_increase_in_confidence_of_a_linear_model():
    model, x, contributions = linear_case()
    maps = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    low, high = maps.amin(dim=(1, 2), keepdim=True), maps.amax(dim=(1, 2), keepdim=True)
    masked_logit = (model.weight.detach() * x * ((maps - low) / (high - low))[:, None]).sum(dim=(1, 2, 3))
    clean, masked = torch.sigmoid(contributions.sum(dim=(1, 2))), torch.sigmoid(masked_logit)  # two classes: sigmoid
    torch.testing.assert_close(peers.average_drop(model, x, maps, 0), 100 * (clean - masked).clamp(min=0) / clean)
    torch.testing.assert_close(peers.increase_in_confidence(model, x, maps, 0), 100 * (masked > clean).float())
    negative = LinearModel(-model.weight.detach())  # masking now raises the confidence of class 0
    assert peers.increase_in_confidence(negative, x, maps, 0).tolist() == [100.0] * 3
    assert peers.average_drop(negative, x, maps, 0).tolist() == [0.0] * 3


# Agreement with Quantus 0.6 (single-channel images: Quantus takes every channel of a pixel as its own feature).

def test_faithfulness_estimate_equals_quantus(cnn_case):
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.FaithfulnessEstimate)(**inputs, softmax=False)
    assert_matches(peers.faithfulness_estimate(model, x, maps, target, "black", output="logit"), theirs)


def test_faithfulness_correlation_equals_quantus_on_the_same_subsets(cnn_case, monkeypatch):
    model, x, maps, target, inputs = cnn_case
    subset_size, n_runs = 20, 30
    subsets = random_permutations(n_runs, SIZE * SIZE, 0) < subset_size  # xaitrust's subsets, shared by the images
    draws = iter([np.flatnonzero(subset) for subset in subsets.numpy() for _ in range(len(x))])  # Quantus: run-major
    monkeypatch.setattr(np.random, "choice", lambda n, size, replace=False: next(draws))
    theirs = quiet(quantus.FaithfulnessCorrelation, nr_runs=n_runs, subset_size=subset_size,
                   return_aggregate=False)(**inputs, softmax=False)
    ours = peers.faithfulness_correlation(model, x, maps, target, subset_size, n_runs, "black", "logit", 0)
    assert_matches(ours, theirs)


def test_monotonicity_correlation_equals_quantus_with_a_constant_baseline(cnn_case):
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.MonotonicityCorrelation, nr_samples=2, perturb_baseline=0.3)(**inputs, softmax=True)
    ours = peers.monotonicity_correlation(model, x, maps, target, 0.3, n_samples=2, output="probability")
    assert_matches(ours, theirs)


def test_infidelity_equals_quantus_given_its_cumulative_patches_and_the_removed_amount(cnn_case):
    model, x, maps, target, inputs = cnn_case
    ids = patches((SIZE, SIZE), 4)
    cumulative = torch.stack([(ids > m).float() for m in range(int(ids.max()) + 1)]).unsqueeze(1)
    theirs = quiet(quantus.Infidelity, n_perturb_samples=1, perturb_patch_sizes=[4])(**inputs, softmax=False)
    ours = peers.infidelity(model, x, maps[:, None] * x, target, replacement=0.0, output="logit", masks=cumulative)
    assert_matches(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_equals_quantus(cnn_case, order):
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.RegionPerturbation, patch_size=4, regions_evaluation=3, order=order)(**inputs, softmax=True)
    ours = regions.region_perturbation(model, x, maps, target, patch_size=4, steps=3, replacement="black",
                                       order={"morf": "most-important-first", "lerf": "least-important-first"}[order])
    assert_matches(ours.scores[:, :1] - ours.scores[:, 1:], theirs)  # Quantus's curve: k = 1..L
    assert_matches(ours.value, np.asarray(theirs).sum(axis=1) / 4)  # AOPC: its mean over k = 0..L


def test_selectivity_equals_quantus(cnn_case):
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.Selectivity, patch_size=4)(**inputs, softmax=True)
    ours = regions.selectivity(model, x, maps, target, patch_size=4, replacement="black")
    assert_matches(ours.scores[:, 1:], theirs)  # Quantus's curve leaves out the clean image


def test_irof_equals_quantus_on_its_segments_once_numpy_2_has_trapz(cnn_case, monkeypatch):
    model, x, maps, target, inputs = cnn_case
    with pytest.raises(AttributeError, match="trapz"):  # NumPy 2 removed np.trapz, which Quantus 0.6 calls
        quiet(quantus.IROF, perturb_baseline="black", return_aggregate=False)(**inputs, softmax=True)
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    # Quantus's baselines are statistics of the whole batch of partly replaced images: "black", the batch's smallest
    # value, stays 0 here; its default "mean" moves with every removed segment and with the other images
    theirs = quiet(quantus.IROF, perturb_baseline="black", return_aggregate=False)(**inputs, softmax=True)
    segments = np.stack([quantus_utils.get_superpixel_segments(np.moveaxis(image, 0, -1).astype("double"), "slic")
                         for image in x.numpy()])
    ours = regions.irof(model, x, maps, target, replacement="black", segments=torch.from_numpy(segments).long())
    curve = (ours.scores[:, 1:] / ours.scores[:, :1]).double()  # Quantus: n - sum of unit trapezoids over l = 1..n
    quantus_area = torch.stack([n - torch.trapezoid(row[:n]) for row, n in zip(curve, ours.n_regions.tolist())])
    assert_matches(quantus_area, theirs)


def test_road_equals_quantus_without_noise_on_its_first_batch(cnn_case):
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.ROAD, noise=0.0)(**inputs, softmax=True)  # MoRF accuracy over the batch per percentage
    ours = regions.road(model, x, maps, target, noise=0.0)
    assert list(theirs) == list(range(1, 100, 2))
    assert_matches(ours.correct.float().mean(dim=0), list(theirs.values()))
    first_batch = quiet(quantus.ROAD, noise=0.0)(**inputs, softmax=True, batch_size=2)  # the third image is dropped
    assert_matches(ours.correct[:2].float().mean(dim=0), list(first_batch.values()))
    assert not np.allclose(list(first_batch.values()), list(theirs.values()))


def test_quantus_monotonicity_never_puts_the_pixels_back(cnn_case):
    """Arya et al.'s monotonicity puts the features back into the baseline, least important first, and asks that the
    probability never decrease. Quantus 0.6's ``Monotonicity`` sets the chosen features of the baseline image to the
    baseline value again (its perturbation function replaces them), so its input never changes and every map passes.
    xaitrust follows AIX360's loop, written out here."""
    model, x, maps, target, inputs = cnn_case
    theirs = quiet(quantus.Monotonicity, abs=False)(**inputs, softmax=True)
    assert theirs == [True, True, True]
    reference = []
    for image, values, label in zip(x, maps, target):
        put_back, probabilities = torch.zeros_like(image).flatten(), []
        for pixel in values.flatten().argsort():
            put_back[pixel] = image.flatten()[pixel]
            with torch.no_grad():
                probabilities.append(torch.softmax(model(put_back.reshape(1, *image.shape)), dim=1)[0, label])
        reference.append(float(all(b >= a for a, b in itertools.pairwise(probabilities))))
    ours = peers.monotonicity_arya(model, x, maps, target, "black")
    assert ours.tolist() == reference and reference != [1.0, 1.0, 1.0]


def test_quantus_sensitivity_n_correlates_across_images_not_subsets():
    """Ancona et al.'s sensitivity-n correlates, for one image and subset size n, the attribution sums of random
    subsets with the score drops they cause: gradient x input of a linear model with a zero baseline is exact, so it
    is 1 for every n (``test_correlation_metrics_are_one_for_the_exact_contributions_of_a_linear_model``). Quantus 0.6
    removes pixels cumulatively in the map's order and correlates, across the images of the batch, the cumulative
    drop with the attribution of the last pixel removed alone: it returns one value per step, not per image, and
    misses the exact attribution."""
    model, x, contributions = linear_case(batch=4)
    theirs = quiet(quantus.SensitivityN, n_max_percentage=0.5, return_aggregate=False)(
        model=model, x_batch=x.numpy(), y_batch=np.zeros(4, dtype=int), a_batch=contributions[:, None].numpy(),
        device="cpu", softmax=False)
    assert len(theirs) == SIZE * SIZE // 2
    assert np.nanmax(np.abs(np.asarray(theirs) - 1)) > 0.5
    ours = peers.sensitivity_n(model, x, contributions, 0, fractions=(0.1, 0.5), n_subsets=20, output="logit")
    torch.testing.assert_close(ours, torch.ones(4, 2))


# Users' mistakes and the registry.

def test_mistakes_raise_errors_that_say_what_to_fix():
    model, x, contributions = linear_case()
    with pytest.raises(XaitrustError, match="order must be one of"):
        regions.road(model, x, contributions, 0, order="random")
    with pytest.raises(XaitrustError, match="noise must be a number >= 0"):
        regions.road(model, x, contributions, 0, noise=-1)
    with pytest.raises(XaitrustError, match="features_in_step must be a positive integer"):
        peers.monotonicity_arya(model, x, contributions, 0, features_in_step=0)
    with pytest.raises(XaitrustError, match="patch_size must be a positive integer"):
        regions.selectivity(model, x, contributions, 0, patch_size=0)
    with pytest.raises(XaitrustError, match=r"masks are shared by every image: \(M, 1\|C, H, W\)"):
        peers.infidelity(model, x, contributions, 0, masks=torch.ones(3, 2, 1, SIZE, SIZE))
    with pytest.raises(XaitrustError, match="replacement must be one of"):
        peers.faithfulness_estimate(model, x, contributions, 0, replacement="grey")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(XaitrustError, match="fractions must increase strictly"):
            regions.road(model, x, contributions, 0, fractions=(0.5, 0.2))


def test_every_metric_is_registered_with_its_direction_and_evaluates(digits_data):
    directions = {name: get_metric(name).higher_is_better for name in NAMES}
    assert [name for name, higher in directions.items() if not higher] == [
        "infidelity", "selectivity", "road_morf", "average_drop"]
    test = digits_data[1]
    x = test.x[:2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(x[0].numel(), 10)).eval()
    cheap = {"monotonicity_correlation": {"n_samples": 2}, "sensitivity_n": {"n_subsets": 10},
             "irof": {"n_segments": 16}, "road_morf": {"fractions": (0.2, 0.6)}, "road_lerf": {"fractions": (0.2, 0.6)},
             "infidelity": {"n_squares": 20}, "faithfulness_correlation": {"n_runs": 10},
             "selectivity": {"patch_size": 4}, "region_perturbation": {"patch_size": 4}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SLIC on 8 x 8 digits, constant correlations of a linear model
        table = xaitrust.evaluate(model, x, explainers=["saliency"], metrics=list(NAMES), metric_params=cheap,
                                  progress=False)
    assert sorted(table["metric"].unique()) == sorted(NAMES)
    assert len(table) == 2 * len(NAMES)
