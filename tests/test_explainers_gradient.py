"""Gradient-family explainers: closed-form oracles on a linear model, completeness, and agreement with Captum."""

import copy
import warnings

import numpy as np
import pytest
import torch
from captum.attr import DeepLift, GuidedBackprop, InputXGradient, IntegratedGradients, Saliency
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.explainers.integrated_gradients import RULES
from xaitrust.explainers.propagation import ScoreModel
from xaitrust.models import build_model
from xaitrust.models.base import ImageClassifier

CAPTUM_RULES = {"riemann-left": "riemann_left", "riemann-right": "riemann_right", "riemann-middle": "riemann_middle"}


class LinearModel(ImageClassifier):
    """logits = W flatten(x) + b: every input gradient is a row of W."""

    def __init__(self, channels=2, classes=3, size=(4, 4)):
        super().__init__("linear", channels, classes, size)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(channels * size[0] * size[1], classes))

    def weight_maps(self, target):
        return self.body[1].weight[target].reshape(len(target), self.in_channels, *self.image_size).detach()


class SmallNet(ImageClassifier):
    """A CNN with in-place ReLUs (or another activation), max (or average) pooling and input normalisation."""

    cam_layer_name = "body.3"

    def __init__(self, channels=2, classes=3, size=(8, 8), pool=nn.MaxPool2d, activation=lambda: nn.ReLU(inplace=True)):
        super().__init__("small", channels, classes, size, mean=[0.4] * channels, std=[0.3] * channels)
        self.body = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            activation(),
            nn.Conv2d(4, 6, 3, padding=1),
            activation(),
            pool(2),
            nn.Flatten(),
            nn.Linear(6 * size[0] * size[1] // 4, 16),
            nn.ReLU(),
            nn.Linear(16, classes),
        )


@pytest.fixture
def linear():
    return LinearModel()


@pytest.fixture(scope="module")
def net():
    """Shared by the tests that do not change it (its chunk size is probed once); others change a deep copy."""
    torch.manual_seed(0)
    return SmallNet()


@pytest.fixture
def x():
    return torch.rand(5, 2, 4, 4)


@pytest.fixture
def images():
    return torch.rand(4, 2, 8, 8)


TARGET = torch.tensor([0, 1, 2, 1, 0])


def test_plain_gradients_equal_the_weights_of_a_linear_model(linear, x):
    weights = linear.weight_maps(TARGET)
    torch.testing.assert_close(get_explainer("sensitivity")(linear, x, TARGET), weights)
    torch.testing.assert_close(get_explainer("saliency")(linear, x, TARGET), weights.abs())
    torch.testing.assert_close(get_explainer("gradient-input")(linear, x, TARGET), weights * x)
    assert (weights < 0).any()  # so that the MeGe form x * |w| differs from x * w
    torch.testing.assert_close(get_explainer("gradient-input", gradient="absolute")(linear, x, TARGET), weights.abs() * x)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize(
    "baseline, reference", [("zero", 0.0), ("black", 0.0), ("white", 1.0), ("black+white", 0.5), (0.3, 0.3)]
)
def test_integrated_gradients_is_exact_and_complete_on_a_linear_model(linear, x, rule, baseline, reference):
    attributions = get_explainer("integrated-gradients", steps=7, rule=rule, baseline=baseline)(linear, x, TARGET)
    torch.testing.assert_close(attributions, (x - reference) * linear.weight_maps(TARGET))
    logits = linear(x).gather(1, TARGET[:, None]).squeeze(1)
    reference_logits = linear(torch.full_like(x, reference)).gather(1, TARGET[:, None]).squeeze(1)
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), (logits - reference_logits).detach())


def test_black_and_white_mean_abs_averages_the_magnitudes_of_both_references(linear, x):
    """Linear model: IG_black = x w and IG_white = (x - 1) w, so mean-abs = (|x| + |x - 1|) / 2 * |w| = |w| / 2."""
    attributions = get_explainer("integrated-gradients", steps=5, baseline="black+white", combine="mean-abs")(
        linear, x, TARGET
    )
    torch.testing.assert_close(attributions, linear.weight_maps(TARGET).abs() / 2)


def test_integrated_gradients_takes_a_baseline_tensor(linear, x):
    baseline = torch.rand(2, 4, 4)
    attributions = get_explainer("integrated-gradients", steps=3, baseline=baseline)(linear, x, TARGET)
    torch.testing.assert_close(attributions, (x - baseline) * linear.weight_maps(TARGET))


def test_integrated_gradients_is_nearly_complete_on_a_smooth_network(images):
    net = SmallNet(pool=nn.AvgPool2d, activation=nn.Softplus)
    target = torch.tensor([0, 1, 2, 0])
    attributions = get_explainer("integrated-gradients", steps=32, rule="riemann-middle")(net, images, target)
    gap = (net(images) - net(torch.zeros_like(images))).gather(1, target[:, None]).squeeze(1).detach()
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), gap, atol=1e-5, rtol=1e-3)


@pytest.mark.parametrize("rule", RULES)
def test_integrated_gradients_agrees_with_captum(net, images, rule):
    target = torch.tensor([2, 1, 0, 1])
    ours = get_explainer("integrated-gradients", steps=16, rule=rule, baseline="white", batch_size=24)(net, images, target)
    method = CAPTUM_RULES.get(rule, "riemann_trapezoid" if rule == "trapezoid" else "gausslegendre")
    theirs = IntegratedGradients(net).attribute(images, torch.ones_like(images), target=target, n_steps=16, method=method)
    # Captum's trapezoid weights sum to (m-1)/m instead of 1 (see integrated_gradients.py).
    scale = 16 / 15 if rule == "trapezoid" else 1.0
    torch.testing.assert_close(ours, theirs * scale, atol=1e-5, rtol=1e-4)


def test_plain_gradients_agree_with_captum(net, images):
    target = torch.tensor([1, 1, 0, 2])
    torch.testing.assert_close(
        get_explainer("saliency")(net, images, target), Saliency(net).attribute(images, target=target, abs=True)
    )
    torch.testing.assert_close(
        get_explainer("gradient-input")(net, images, target), InputXGradient(net).attribute(images, target=target)
    )


def test_output_kinds_give_the_softmax_gradients(linear, x):
    weights = linear.body[1].weight.reshape(3, 2, 4, 4).detach()
    probabilities = torch.softmax(linear(x), dim=1).detach()
    expected_log = linear.weight_maps(TARGET) - torch.einsum("bk,kchw->bchw", probabilities, weights)
    p_target = probabilities.gather(1, TARGET[:, None]).reshape(-1, 1, 1, 1)
    sensitivity = get_explainer("sensitivity")
    torch.testing.assert_close(sensitivity(linear, x, TARGET, output="log-probability"), expected_log)
    torch.testing.assert_close(sensitivity(linear, x, TARGET, output="probability"), p_target * expected_log)


def noisy_copies(x, samples, sigma, seed):
    """The noisy inputs SmoothGrad uses, image-major: one set of ``samples`` noise images shared by every image,
    scaled by sd = sigma * (max - min) of each image."""
    noise = torch.randn((samples, *x.shape[1:]), generator=torch.Generator().manual_seed(seed))
    spread = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).reshape(-1, 1, 1, 1)
    return x.repeat_interleave(samples, 0) + sigma * spread.repeat_interleave(samples, 0) * noise.repeat(len(x), 1, 1, 1)


def test_noise_methods_equal_captum_gradients_at_the_same_noisy_inputs(net, images):
    target = torch.tensor([0, 2, 1, 1])
    samples, sigma, seed = 6, 0.15, 3
    noisy = noisy_copies(images, samples, sigma, seed)
    gradients = Saliency(net).attribute(noisy, target=target.repeat_interleave(samples), abs=False)
    gradients = gradients.reshape(len(images), samples, *images.shape[1:])
    expected = {
        "smoothgrad": gradients.mean(1),
        "smoothgrad-squared": gradients.square().mean(1),
        "vargrad": gradients.var(1, unbiased=False),
    }
    for name, value in expected.items():
        explainer = get_explainer(name, samples=samples, sigma=sigma, seed=seed, batch_size=len(noisy))
        torch.testing.assert_close(explainer(net, images, target), value, atol=1e-6, rtol=1e-4)


def test_noise_methods_are_seeded(net, images):
    explain = lambda seed: get_explainer("smoothgrad", samples=4, seed=seed)(net, images, 1)  # noqa: E731
    torch.testing.assert_close(explain(5), explain(5), rtol=0, atol=0)
    assert not torch.allclose(explain(5), explain(6))


def test_noise_free_smoothgrad_is_the_gradient(net, images):
    gradient = get_explainer("sensitivity")(net, images, 2)
    torch.testing.assert_close(get_explainer("smoothgrad", samples=3, sigma=0.0)(net, images, 2), gradient)
    torch.testing.assert_close(get_explainer("vargrad", samples=3, sigma=0.0)(net, images, 2), torch.zeros_like(gradient))


@pytest.mark.filterwarnings("ignore:deeplift.*summation-to-delta")  # the max pooling of net
def test_propagation_methods_agree_with_captum_and_restore_in_place_relus(net, images):
    net = copy.deepcopy(net)
    target = torch.tensor([0, 1, 2, 2])
    ours = get_explainer("guided-backprop")(net, images, target)
    deeplift = get_explainer("deeplift")(net, images, target, output="probability")
    assert all(module.inplace for module in net.modules() if isinstance(module, nn.ReLU) and module is not net.body[7])
    for module in net.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    torch.testing.assert_close(ours, GuidedBackprop(net).attribute(images, target=target))
    theirs = DeepLift(ScoreModel(net, "probability")).attribute(images, torch.zeros_like(images), target=target)
    torch.testing.assert_close(deeplift, theirs)


def test_deeplift_sums_to_the_score_difference_without_warning(images):
    # Captum's max-pooling rule breaks summation-to-delta, so this oracle uses average pooling.
    net = SmallNet(pool=nn.AvgPool2d)
    target = torch.tensor([1, 0, 2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        attributions = get_explainer("deeplift")(net, images, target)
    gap = (net(images) - net(torch.zeros_like(images))).gather(1, target[:, None]).squeeze(1).detach()
    torch.testing.assert_close(attributions.sum(dim=(1, 2, 3)), gap, atol=1e-5, rtol=1e-4)


def test_deeplift_warns_when_max_pooling_breaks_summation_to_delta():
    model = build_model("cnn", 1, 10, (28, 28))
    with pytest.warns(UserWarning, match=r"deeplift: .* miss summation-to-delta by up to .* \(tolerance 1%\)"):
        get_explainer("deeplift")(model, torch.rand(3, 1, 28, 28), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("activation, module", [("maxmin", "MaxMin"), ("prelu", "BoundedPReLU")])
@pytest.mark.parametrize("name", ["guided-backprop", "deeplift", "lrp"])
def test_propagation_methods_refuse_activations_they_have_no_rule_for(name, activation, module):
    # Captum would pass these activations their plain gradient: guided-backprop would silently equal sensitivity and
    # deeplift gradient-input. The spectrally normalised (parametrized) convolutions are layers with a rule.
    model = build_model("lipschitz-cnn", 1, 10, (28, 28), activation=activation)
    with pytest.raises(XaitrustError, match=rf"^{name} has no rule for {module}: .* another explainer") as error:
        get_explainer(name)(model, torch.rand(2, 1, 28, 28), 1)
    assert "UnitOperatorNorm" not in str(error.value)


def test_each_propagation_method_accepts_exactly_the_activations_captum_has_a_rule_for(images):
    class SubclassedReLU(nn.ReLU):
        """Captum's DeepLIFT matches module types exactly, so it would not apply its rule here."""

    elu = SmallNet(pool=nn.AvgPool2d, activation=nn.ELU)
    assert get_explainer("deeplift")(elu, images, 1).abs().sum() > 0
    with pytest.raises(XaitrustError, match="guided-backprop has no rule for ELU"):
        get_explainer("guided-backprop")(elu, images, 1)
    with pytest.raises(XaitrustError, match="deeplift has no rule for SubclassedReLU"):
        get_explainer("deeplift")(SmallNet(activation=SubclassedReLU), images, 1)


def test_lrp_epsilon_zero_is_gradient_times_normalised_input(net, images):
    target = torch.tensor([2, 0, 1, 1])
    gradient = get_explainer("sensitivity")(net, images, target)
    torch.testing.assert_close(get_explainer("lrp", epsilon=0.0)(net, images, target), gradient * (images - 0.4))


def test_lrp_conserves_the_logit_without_biases_and_epsilon_absorbs_relevance(net, images):
    net = copy.deepcopy(net)
    for module in net.modules():
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    target = torch.tensor([0, 1, 2, 0])
    logit = net(images).gather(1, target[:, None]).squeeze(1).detach()
    exact = get_explainer("lrp", epsilon=1e-9)(net, images, target).sum(dim=(1, 2, 3))
    torch.testing.assert_close(exact, logit, atol=1e-5, rtol=1e-4)
    damped = get_explainer("lrp", epsilon=1.0)(net, images, target).sum(dim=(1, 2, 3))
    assert (damped.abs() < exact.abs()).all()


def test_lrp_rejects_layers_without_a_rule(images):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(108, 3))
    with pytest.raises(XaitrustError, match="lrp has no rule for Sigmoid"):
        get_explainer("lrp")(model, images, 0)


BATCH_INVARIANT = [
    "saliency", "sensitivity", "gradient-input", "integrated-gradients", "guided-backprop", "deeplift", "lrp",
    "smoothgrad", "smoothgrad-squared", "vargrad",
]
PARAMS = {"integrated-gradients": {"steps": 8}, "smoothgrad": {"samples": 5}, "smoothgrad-squared": {"samples": 5},
          "vargrad": {"samples": 5}}


@pytest.mark.parametrize("name", BATCH_INVARIANT)
@pytest.mark.filterwarnings("ignore:deeplift.*summation-to-delta")  # the max pooling of net
def test_batch_equals_items_one_by_one(net, images, name):
    target = torch.tensor([0, 1, 2, 1])
    explainer = get_explainer(name, **PARAMS.get(name, {}))
    together = explainer(net, images, target)
    alone = torch.cat([explainer(net, images[i : i + 1], target[i : i + 1]) for i in range(len(images))])
    torch.testing.assert_close(together, alone, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["sensitivity", "integrated-gradients", "smoothgrad", "lrp"])
def test_float64_models_give_float64_attributions(net, images, name):
    explainer = get_explainer(name, steps=4) if name == "integrated-gradients" else get_explainer(name)
    single = explainer(net, images, 1)
    double = explainer(copy.deepcopy(net).double(), images.double(), 1)
    assert double.dtype == torch.float64
    torch.testing.assert_close(double.float(), single, atol=1e-5, rtol=1e-4)


def test_bad_inputs_and_parameters_raise_clear_errors(net, images):
    with pytest.raises(XaitrustError, match="unknown explainer 'gradients'"):
        get_explainer("gradients")
    with pytest.raises(XaitrustError, match=r"target must lie in \[0, 2\]"):
        get_explainer("saliency")(net, images, 3)
    with pytest.raises(XaitrustError, match=r"x must be a tensor of images \(B, C, H, W\)"):
        get_explainer("saliency")(net, images[0], 0)
    with pytest.raises(XaitrustError, match="steps must be a positive integer"):
        get_explainer("integrated-gradients", steps=0)
    with pytest.raises(XaitrustError, match="trapezoid rule needs steps >= 2"):
        get_explainer("integrated-gradients", steps=1)
    with pytest.raises(XaitrustError, match="rule must be one of"):
        get_explainer("integrated-gradients", rule="simpson")
    with pytest.raises(XaitrustError, match="combine must be one of mean, mean-abs"):
        get_explainer("integrated-gradients", combine="max")
    with pytest.raises(XaitrustError, match="baseline must be one of"):
        get_explainer("integrated-gradients", baseline="grey")
    with pytest.raises(XaitrustError, match="must broadcast to the images' shape"):
        get_explainer("integrated-gradients", baseline=torch.zeros(3, 8, 8))(net, images, 0)
    with pytest.raises(XaitrustError, match="sigma must be a finite number >= 0"):
        get_explainer("smoothgrad", sigma=-0.1)
    with pytest.raises(XaitrustError, match="bad parameters for explainer 'saliency'"):
        get_explainer("saliency", steps=3)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("integrated-gradients", {"steps": 10.0}, "integrated-gradients: steps must be a positive integer"),
        ("integrated-gradients", {"steps": True}, "integrated-gradients: steps must be a positive integer"),
        ("integrated-gradients", {"batch_size": 0}, "integrated-gradients: batch_size must be a positive integer"),
        ("integrated-gradients", {"baseline": float("nan")}, "integrated-gradients: baseline must be one of"),
        ("integrated-gradients", {"rule": None}, "integrated-gradients: rule must be one of"),
        ("smoothgrad", {"samples": "60"}, "smoothgrad: samples must be a positive integer"),
        ("vargrad", {"seed": 1.5}, "vargrad: seed must be an integer"),
        ("smoothgrad-squared", {"sigma": float("inf")}, "smoothgrad-squared: sigma must be a finite number >= 0"),
        ("gradient-input", {"gradient": "abs"}, "gradient-input: gradient must be one of signed, absolute"),
        ("lrp", {"epsilon": "1e-6"}, "lrp: epsilon must be a finite number >= 0"),
    ],
)
def test_bad_gradient_parameters_are_refused_when_built(name, params, message):
    with pytest.raises(XaitrustError, match=message):
        get_explainer(name, **params)


def test_numpy_numbers_are_taken_as_plain_numbers(net, images):
    explainer = get_explainer(
        "integrated-gradients", steps=np.int64(4), batch_size=np.int32(3), baseline=np.float32(0.5)
    )
    assert (explainer.steps, explainer.batch_size, explainer.baseline) == (4, 3, 0.5)
    assert type(explainer.steps) is int and type(explainer.batch_size) is int and type(explainer.baseline) is float
    smoothgrad = get_explainer("smoothgrad", samples=np.int64(3), sigma=np.float64(0.1), seed=np.int64(2))
    assert type(smoothgrad.samples) is int and type(smoothgrad.seed) is int
    expected = get_explainer("integrated-gradients", steps=4, baseline=0.5)(net, images, 0)
    torch.testing.assert_close(explainer(net, images, 0), expected)


@pytest.mark.parametrize("name, options", [("cnn", {}), ("resnet18", {"base_filters": 4})])
@pytest.mark.filterwarnings("ignore:deeplift.*summation-to-delta")  # the max pooling of cnn
def test_lrp_and_deeplift_handle_the_library_models(name, options):
    model = build_model(name, 3, 4, (16, 16), mean=[0.5, 0.4, 0.3], **options)
    images = torch.rand(2, 3, 16, 16)
    gradient = get_explainer("sensitivity")(model, images, 1)
    mean = torch.tensor([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)
    torch.testing.assert_close(get_explainer("lrp", epsilon=0.0)(model, images, 1), gradient * (images - mean))
    assert get_explainer("deeplift")(model, images, 1).abs().sum() > 0
