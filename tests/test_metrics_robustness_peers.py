"""Robustness and randomisation metrics (Yeh et al., Montavon et al., Agarwal et al., Dasgupta et al., Adebayo et al.,
Hedström et al., Sixt et al.): known values on oracle models, the user's mistakes, and agreement with Quantus 0.6 on
the same model, images, explanation function and random draws."""

import numpy as np
import pytest
import quantus
import scipy.stats
import torch
from torch import nn

import xaitrust
from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.metrics.randomisation import (
    discrete_entropy,
    efficient_mprt,
    fully_randomised,
    model_parameter_randomisation,
    random_logit,
    smooth_mprt,
)
from xaitrust.metrics.robustness import (
    consistency,
    continuity,
    layer_activations,
    relative_stability,
    sensitivity,
    top_pixels,
    translations,
    uniform_neighbours,
)
from xaitrust.metrics.sanity import SIMILARITIES
from xaitrust.metrics.stability import map_ssim
from xaitrust.testing.oracles import LinearModel, TwoPixelNet
from xaitrust.training.degrade import reinitialize_layers
from xaitrust.validation import outside_unit_range_allowed

SALIENCY = get_explainer("saliency")


def identity(model, x, target, output="logit"):
    """An explanation equal to the image: its changes are the input's changes."""
    return x.clone()


@pytest.fixture
def linear():
    generator = torch.Generator().manual_seed(3)
    weight = 0.2 + 0.1 * torch.randn(1, 1, 8, 8, generator=generator)[0]
    return LinearModel(weight), 0.2 + 0.6 * torch.rand(3, 1, 8, 8, generator=generator)


# Robustness: oracles.

def test_a_gradient_constant_in_x_is_perfectly_robust(linear):
    model, x = linear
    settings = {"output": "logit", "n_neighbours": 4, "radius": 0.1}
    for statistic in ("max", "mean"):
        assert torch.equal(sensitivity(SALIENCY, model, x, 0, statistic=statistic, **settings), torch.zeros(3))
    assert torch.equal(continuity(SALIENCY, model, x, 0, output="logit"), torch.zeros(3))
    for against in ("input", "output", "representation"):
        assert torch.equal(relative_stability(SALIENCY, model, x, 0, against=against, **settings), torch.zeros(3))


def test_sensitivity_of_the_image_itself_is_the_neighbours_relative_distance(linear):
    model, x = linear
    neighbours = uniform_neighbours(x, 6, 0.05, seed=2)
    offsets = neighbours - x.unsqueeze(1)
    assert offsets.abs().max() <= 0.05 and offsets.abs().max() > 0.045  # uniform in the L-infinity ball
    distance = offsets.flatten(2).norm(dim=2) / x.flatten(1).norm(dim=1, keepdim=True)
    common = {"n_neighbours": 6, "radius": 0.05, "seed": 2, "reduction": None}
    torch.testing.assert_close(sensitivity(identity, model, x, 0, **common), distance.amax(dim=1))
    torch.testing.assert_close(sensitivity(identity, model, x, 0, statistic="mean", **common), distance.mean(dim=1))
    absolute = sensitivity(identity, model, x, 0, relative=False, **common)
    torch.testing.assert_close(absolute, offsets.flatten(2).norm(dim=2).amax(dim=1))
    # each image draws its own neighbours: the same values alone, and in another explainer batching
    torch.testing.assert_close(sensitivity(identity, model, x[1:], 0, batch_size=1, **common), distance[1:].amax(dim=1))


def test_relative_input_stability_of_the_image_itself_is_one(linear):
    model, x = linear
    ris = relative_stability(identity, model, x, 0, n_neighbours=5, radius=0.02, reduction=None)
    torch.testing.assert_close(ris, torch.ones(3))


def test_relative_output_stability_divides_by_the_logit_change(linear):
    model, x = linear
    neighbours = uniform_neighbours(x, 5, 0.02, seed=0)
    logit_change = (model.weight * (neighbours - x.unsqueeze(1))).flatten(2).sum(dim=2).abs()
    relative_image_change = ((neighbours - x.unsqueeze(1)) / x.unsqueeze(1)).flatten(2).norm(dim=2)
    expected = (relative_image_change / logit_change).amax(dim=1)
    ros = relative_stability(identity, model, x, 0, against="output", n_neighbours=5, radius=0.02, reduction=None)
    torch.testing.assert_close(ros, expected, rtol=2e-3, atol=0)  # float32 logits: their difference loses digits


def test_neighbours_of_another_class_are_left_out(linear):
    model, x = linear
    x = x.clone()
    model.weight.data.fill_(1.0)
    model.weight.data[0, :4] = -1.0
    x[0] = 0.5  # class 0's logit exactly 0: about half the neighbours change class, and none of image 1's
    x[1, 0, :4] = 0.0
    ris = relative_stability(identity, model, x[:2], 0, n_neighbours=20, radius=0.05, reduction=None)
    torch.testing.assert_close(ris[0], torch.tensor(1.0))  # the maximum over the neighbours of the same class
    # every neighbour of another class: NaN
    assert relative_stability(identity, OnGrid(), x[2:].mul(4).round().div(4), 0, n_neighbours=3, radius=0.01,
                              reduction=None).isnan().all()


class OnGrid(nn.Module):
    """Class 0 for images whose values are all multiples of 1/4, class 1 otherwise."""

    num_classes = 2

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        off_grid = (4 * x - (4 * x).round()).abs().flatten(1).amax(dim=1)
        return torch.stack([1 - 1000 * off_grid, self.anchor.expand(len(x))], dim=1)


def test_continuity_of_the_image_itself_is_its_l1_over_l2_change(linear):
    model, x = linear
    moved = translations(x, (-2, 1, 3))
    assert torch.equal(moved[:, 1, ..., 1:], x[..., :-1]) and torch.equal(moved[:, 1, ..., 0], torch.zeros(3, 1, 8))
    assert torch.equal(moved[:, 0, ..., :-2], x[..., 2:]) and not moved[:, 0, ..., -2:].any()
    change = moved - x.unsqueeze(1)
    expected = (change.flatten(2).abs().sum(dim=2) / change.flatten(2).norm(dim=2)).amax(dim=1)
    torch.testing.assert_close(continuity(identity, model, x, 0, shifts=(-2, 1, 3), reduction=None), expected)
    # a translation that leaves the image as it was is no neighbour: none left, NaN
    flat = torch.zeros(1, 1, 8, 8)
    assert continuity(identity, model, flat, 0, shifts=(1,), reduction=None).isnan().all()


def test_the_representation_is_the_penultimate_layer_or_the_named_one():
    net = TwoPixelNet(1, (10, 10))
    x = net.images(3)
    logits, penultimate = layer_activations(net, x)
    assert net.training  # run in eval mode, the flag given back
    torch.testing.assert_close(logits, net.eval()(x))
    torch.testing.assert_close(penultimate, net.features(x).flatten(1))  # input of the last weight layer
    _, named = layer_activations(net, x, "features.0")
    torch.testing.assert_close(named, net.features[0](x).flatten(1))


# Consistency.

def test_consistency_is_the_share_of_same_explained_images_with_the_same_prediction():
    model = LinearModel(torch.ones(1, 4, 4))
    x = torch.full((5, 1, 4, 4), 0.5)
    maps = torch.zeros(5, 4, 4)
    maps[:3, 0, :2] = 1.0  # images 0-2 share their top-2 pixels; 3 and 4 their own
    maps[3, 3, :2] = 1.0
    maps[4, 2, 2:] = 1.0
    model.weight.data[0, 0, 0] = -100.0  # class 1 (logit 0 beats sum(w x) < 0) for image 0 only
    x[1:, 0, 0, 0] = 0.0
    torch.testing.assert_close(consistency(model, x, maps, k=2), torch.tensor([1 / 3, 2 / 3, 2 / 3, 1.0, 1.0]))
    torch.testing.assert_close(top_pixels(maps, 2)[0], torch.tensor([0, 1]))


# Randomisation: oracles.

def test_randomising_a_linear_model_gives_the_map_of_its_new_weight(linear):
    model, x = linear
    randomised = reinitialize_layers(model, [""], seed=5).weight.detach()
    original = model.weight.detach().abs().expand(3, 1, 8, 8)[:, 0]
    expected = SIMILARITIES["spearman"](original, randomised.abs().expand(3, 1, 8, 8)[:, 0])
    for variant in ("cascading", "independent"):  # one layer: both variants randomise it
        value = model_parameter_randomisation(model, SALIENCY, x, 0, variant=variant, seed=5)
        torch.testing.assert_close(value, expected)
    # the gradient does not depend on x, so smoothing changes nothing
    torch.testing.assert_close(smooth_mprt(model, SALIENCY, x, 0, n_samples=3, seed=5), expected)
    rise = discrete_entropy(randomised.abs()[None], 10) / discrete_entropy(original[:1], 10) - 1
    torch.testing.assert_close(efficient_mprt(model, SALIENCY, x, 0, n_bins=10, seed=5), rise.expand(3))
    assert torch.equal(model.weight.detach().abs()[0], original[0])  # the model is untouched


def test_explanations_blind_to_the_model_fail_every_randomisation_test(linear):
    model, x = linear
    blind = get_explainer("random")
    torch.testing.assert_close(model_parameter_randomisation(model, blind, x, 0), torch.ones(3))
    torch.testing.assert_close(smooth_mprt(model, blind, x, 0, n_samples=2), torch.ones(3))
    assert torch.equal(efficient_mprt(model, blind, x, 0), torch.zeros(3))
    torch.testing.assert_close(random_logit(model, blind, x, 0), torch.ones(3))


def test_cascading_and_independent_randomisation_average_their_own_steps():
    net = TwoPixelNet(1, (10, 10))
    x = net.images(3)
    layers = ["head.2", "features.0"]
    maps = lambda network: SALIENCY(network, x, torch.zeros(3, dtype=torch.long)).abs().sum(dim=1)
    spearman = SIMILARITIES["spearman"]
    steps = {"cascading": [layers, layers[:1]], "independent": [layers[:1], layers[1:]]}
    for variant, randomised in steps.items():
        expected = torch.stack([spearman(maps(net), maps(reinitialize_layers(net, names, seed=1)))
                                for names in randomised]).mean(dim=0)
        value = model_parameter_randomisation(net, SALIENCY, x, 0, variant=variant, seed=1, output="logit")
        torch.testing.assert_close(value, expected)


def test_a_class_specific_map_passes_the_random_logit_test():
    net = TwoPixelNet(1, (10, 10))
    x = net.images(3)
    maps = SALIENCY(net, torch.cat([x, x]), torch.tensor([0, 0, 0, 1, 1, 1]), "logit").sum(dim=1)
    # two classes: the other class is class 1 for every image
    torch.testing.assert_close(random_logit(net, SALIENCY, x, 0, output="logit"), map_ssim(maps[:3], maps[3:]))
    assert (random_logit(net, SALIENCY, x, 0, output="logit") < 0.5).all()
    assert torch.equal(random_logit(net, get_explainer("random"), x, 0), torch.ones(3))


def test_discrete_entropy_is_scipys_of_numpys_histogram():
    maps = torch.rand(4, 6, 6, dtype=torch.float64)
    maps[3] = 0.25  # constant: one bin, entropy 0
    expected = [scipy.stats.entropy(np.histogram(m.numpy(), bins=7)[0]) for m in maps]
    torch.testing.assert_close(discrete_entropy(maps, 7), torch.tensor(expected, dtype=torch.float64))


# The user's mistakes.

def test_mistakes_raise_errors_saying_what_to_fix(linear):
    model, x = linear
    cases = [
        (lambda: sensitivity(SALIENCY, model, x, 0, statistic="median"), "statistic must be one of max, mean"),
        (lambda: sensitivity(SALIENCY, model, x, 0, radius=0), "radius must be a positive finite number"),
        (lambda: continuity(SALIENCY, model, x, 0, shifts=(0, 2)), "shifts must be a non-empty sequence"),
        (lambda: continuity(SALIENCY, model, x, 0, shifts=(9,)), "within the image width"),
        (lambda: continuity(SALIENCY, model, x, 0, fill=2), "fill must be a number in"),
        (lambda: relative_stability(SALIENCY, model, x, 0, against="logits"), "against must be one of"),
        (lambda: relative_stability(SALIENCY, model, x, 0, layer="fc"), "remove it for 'input'"),
        (lambda: relative_stability(SALIENCY, model, x, 0, against="representation", layer="fc"), "no layer named"),
        (lambda: consistency(model, x, torch.rand(3, 8, 8), k=65), "k must be at most the number of pixels"),
        (lambda: model_parameter_randomisation(model, SALIENCY, x, 0, variant="bottom-up"), "variant must be one"),
        (lambda: model_parameter_randomisation(model, SALIENCY, x, 0, similarity="cosine"), "similarity must be"),
        (lambda: model_parameter_randomisation(model, SALIENCY, x, 0, layers=["head"]), "no layer named 'head'"),
        (lambda: model_parameter_randomisation(model, SALIENCY, x, 0, layers="fc"), "layers must be a list"),
        (lambda: smooth_mprt(model, SALIENCY, x, 0, noise=-1), "noise must be a non-negative number"),
        (lambda: efficient_mprt(model, SALIENCY, x, 0, n_bins=0), "n_bins must be a positive integer"),
        (lambda: fully_randomised(nn.ReLU()), "no layer with weights"),
    ]
    for call, words in cases:
        with pytest.raises(XaitrustError, match=words.replace("(", r"\(")):
            call()


# Agreement with Quantus 0.6: the same model, images, explanation function and random draws.


class SeededConv(nn.Conv2d):
    """A convolution whose re-initialisation draws fixed values, whoever seeds torch: Quantus and xaitrust
    re-initialise it alike."""

    def reset_parameters(self):
        generator = torch.Generator().manual_seed(11)
        with torch.no_grad():
            self.weight.copy_(0.4 * torch.randn(self.weight.shape, generator=generator))
            self.bias.copy_(0.1 * torch.randn(self.bias.shape, generator=generator))


class SeededLinear(nn.Linear):
    def reset_parameters(self):
        generator = torch.Generator().manual_seed(12)
        with torch.no_grad():
            self.weight.copy_(0.1 * torch.randn(self.weight.shape, generator=generator))
            self.bias.zero_()


class SmallCNN(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.num_classes = classes
        self.conv = SeededConv(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = SeededLinear(4 * 8 * 8, classes)
        generator = torch.Generator().manual_seed(0)  # the "trained" weights
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))

    def forward(self, x):
        return self.fc(self.flatten(self.relu(self.conv(x))))


@pytest.fixture
def cnn():
    model = SmallCNN().eval()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    x[:, 0, 0, 0] = 0.0  # each image's minimum is 0: Quantus's "black" is xaitrust's fill 0
    target = model(x).argmax(dim=1)
    return model, x, target


def explain_func(model, inputs, targets, **kwargs):
    """Quantus's explanation function: xaitrust's saliency of the logit, (B, 1, H, W), also of neighbours outside
    [0, 1]."""
    with outside_unit_range_allowed():
        return SALIENCY(model, torch.as_tensor(inputs), torch.as_tensor(targets), "logit").numpy()


def quantus_call(metric, model, x, target, **kwargs):
    kwargs.setdefault("explain_func", explain_func)
    return np.asarray(metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(), device="cpu", **kwargs),
                      dtype=np.float64)


def shared_neighbours(neighbours):
    """A Quantus perturbation function returning xaitrust's neighbours, one set per call, in order."""
    steps = iter(neighbours.unbind(dim=1))

    def perturb(arr, indices, **kwargs):
        return next(steps).flatten(1).numpy()

    return perturb


def assert_matches(ours, theirs, atol=1e-5):
    np.testing.assert_allclose(ours.double().numpy(), theirs, rtol=1e-4, atol=atol)


@pytest.mark.parametrize("statistic, peer", [("max", "MaxSensitivity"), ("mean", "AvgSensitivity")])
def test_sensitivity_equals_quantus_on_shared_neighbours(cnn, statistic, peer):
    model, x, target = cnn
    ours = sensitivity(SALIENCY, model, x, target, statistic=statistic, n_neighbours=4, radius=0.1, output="logit")
    neighbours = uniform_neighbours(x, 4, 0.1, seed=0)
    metric = getattr(quantus, peer)(nr_samples=4, perturb_func=shared_neighbours(neighbours), disable_warnings=True)
    a_batch = explain_func(model, x, target)
    assert_matches(ours, quantus_call(metric, model, x, target, a_batch=a_batch))


@pytest.mark.parametrize("against, peer", [("input", "RelativeInputStability"), ("output", "RelativeOutputStability"),
                                           ("representation", "RelativeRepresentationStability")])
def test_relative_stability_equals_quantus_on_shared_neighbours(cnn, against, peer):
    model, x, target = cnn
    layer = "relu" if against == "representation" else None
    ours = relative_stability(SALIENCY, model, x, target, against=against, layer=layer, n_neighbours=3, radius=0.02,
                              output="logit")
    neighbours = uniform_neighbours(x, 3, 0.02, seed=0)
    same_class = model(neighbours.flatten(0, 1)).argmax(dim=1).reshape(3, 3) == target.unsqueeze(1)
    assert same_class.all()  # Quantus gives NaN as soon as one neighbour changes class
    options = {"layer_names": ["relu"]} if layer else {}
    metric = getattr(quantus, peer)(nr_samples=3, perturb_func=shared_neighbours(neighbours), disable_warnings=True,
                                    **options)
    assert_matches(ours, quantus_call(metric, model, x, target, a_batch=explain_func(model, x, target)), atol=1e-3)


def test_continuity_equals_quantus_on_its_translations(cnn):
    model, x, target = cnn
    # Quantus slides by -8 + 2, -8 + 4, ..., 6 pixels (nr_steps 7 over a width of 8); its shift 0 scores 0
    metric = quantus.Continuity(nr_steps=7, abs=False, normalise=False, disable_warnings=True)
    ours = continuity(SALIENCY, model, x, target, shifts=(-6, -4, -2, 2, 4, 6), output="logit")
    assert_matches(ours, quantus_call(metric, model, x, target))


def test_consistency_relates_to_quantus_leaving_the_image_out(cnn):
    model, x, target = cnn
    x = torch.cat([x, x[:1] * 0.9, x[:1] * 0.8])  # darker copies of image 0: its explanation, maybe not its class
    maps = SALIENCY(model, x, target[0].expand(5), "logit")[:, 0]
    maps[1:3] = maps[0]  # images 1 and 2 explained as 0, images 3 and 4 otherwise: groups {0, 1, 2}, {3, 4}
    maps[3:] = maps[0].flip(-1)
    ours = consistency(model, x, maps, k=3)
    group = torch.tensor([3, 3, 3, 2, 2])
    metric = quantus.Consistency(abs=False, normalise=False, disable_warnings=True,
                                 discretise_func=lambda a: hash(top_pixels(torch.from_numpy(a)[None, None], 3)
                                                                .numpy().tobytes()))
    theirs = quantus_call(metric, model, x, model(x).argmax(dim=1), a_batch=maps[:, None].numpy(), explain_func=None)
    assert_matches((group * ours - 1) / (group - 1), theirs)


@pytest.mark.parametrize("variant, order", [("cascading", "top_down"), ("independent", "independent")])
def test_mprt_equals_the_mean_of_quantus_layer_similarities(cnn, variant, order):
    model, x, target = cnn
    ours = model_parameter_randomisation(model, SALIENCY, x, target, variant=variant, output="logit")
    metric = quantus.MPRT(layer_order=order, disable_warnings=True)
    scores = metric(model=model, x_batch=x.numpy(), y_batch=target.numpy(), explain_func=explain_func, device="cpu")
    layers = [np.asarray(values) for name, values in scores.items() if name != "original"]
    assert len(layers) == 2
    assert_matches(ours, np.mean(layers, axis=0))


def test_smooth_mprt_without_noise_equals_quantus(cnn):
    model, x, target = cnn
    ours = smooth_mprt(model, SALIENCY, x, target, n_samples=2, noise=0.0, output="logit")
    metric = quantus.SmoothMPRT(nr_samples=2, noise_magnitude=0.0, return_last_correlation=True, disable_warnings=True)
    theirs = quantus_call(metric, model, x, target, explain_func_kwargs={"method": "Saliency"},
                          explain_func=quantus.explain)
    assert_matches(ours, theirs)


def test_efficient_mprt_equals_quantus(cnn):
    model, x, target = cnn
    ours = efficient_mprt(model, SALIENCY, x, target, n_bins=10, output="logit")
    metric = quantus.EfficientMPRT(complexity_func_kwargs={"n_bins": 10}, disable_warnings=True)
    assert_matches(ours, quantus_call(metric, model, x, target))


def test_random_logit_equals_quantus_with_an_image_similarity(cnn):
    model, x, _ = cnn
    model = SmallCNN(classes=2).eval()  # one other class: the same draw for both
    target = model(x).argmax(dim=1)
    ours = random_logit(model, SALIENCY, x, target, output="logit")

    def image_ssim(a, b, batched=True, **kwargs):
        return map_ssim(torch.from_numpy(a).reshape(-1, 8, 8), torch.from_numpy(b).reshape(-1, 8, 8)).tolist()

    metric = quantus.RandomLogit(num_classes=2, similarity_func=image_ssim, normalise=False, disable_warnings=True)
    assert_matches(ours, quantus_call(metric, model, x, target))
    # Quantus's own similarity: SSIM of the flattened maps, a one-dimensional signal, not the paper's image SSIM
    flattened = quantus_call(quantus.RandomLogit(num_classes=2, normalise=False, disable_warnings=True),
                             model, x, target)
    assert not np.allclose(ours.double().numpy(), flattened, atol=1e-3)


def test_evaluate_computes_every_robustness_and_randomisation_metric(cnn):
    model, x, _ = cnn
    names = ["max_sensitivity", "avg_sensitivity", "continuity", "relative_input_stability",
             "relative_output_stability", "relative_representation_stability", "prediction_consistency", "mprt_cascading",
             "mprt_independent", "smooth_mprt", "efficient_mprt", "random_logit"]
    few = {name: {"n_neighbours": 3} for name in names if "sensitivity" in name or "relative" in name}
    table = xaitrust.evaluate(model, x, explainers=["saliency"], metrics=names, progress=False,
                              metric_params={**few, "smooth_mprt": {"n_samples": 3}})
    assert sorted(table.metric.unique()) == sorted(names) and len(table) == 3 * len(names)
    assert table.value.notna().all()
