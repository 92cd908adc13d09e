"""The model preflight: output and class checks, input-convention verdicts, eval-mode determinism, the torch.fx graph
check behind the propagation explainers, ``make_explainable``, the CAM layer, explainer support and the cost."""

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from captum.attr import DeepLift, GuidedBackprop
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import available_explainers, get_explainer
from xaitrust.models import build_model
from xaitrust.models.preflight import (
    Preflight,
    check_explainers,
    inspect_graph,
    make_explainable,
    preflight,
)

PROPAGATION = ["guided-backprop", "deeplift", "lrp"]


class Block(nn.Module):
    """A residual block, ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``, with functional ReLUs unless
    ``functional`` is False (then each ReLU is its own module)."""

    def __init__(self, c_in, c_out, stride, functional=True):
        super().__init__()
        self.functional = functional
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        if not functional:
            self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()

    def forward(self, x):
        act1, act2 = (F.relu, F.relu) if self.functional else (self.relu1, self.relu2)
        out = act1(self.bn1(self.conv1(x)))
        return act2(self.bn2(self.conv2(out)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """A user's model: it normalises its [0, 1] RGB input itself, has batch norm and residual blocks, applies its
    ReLUs and its max pool as functions (``functional=False``: the same network built from modules) and returns the
    logits of 5 classes for 3x32x32 images."""

    def __init__(self, classes=5, functional=True):
        super().__init__()
        self.functional = functional
        self.register_buffer("mean", torch.tensor([0.49, 0.48, 0.45]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.24, 0.26]).reshape(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8, 8, 1, functional))
        self.layer2 = nn.Sequential(Block(8, 16, 2, functional))
        self.fc = nn.Linear(16, classes)
        if not functional:
            self.relu, self.pool = nn.ReLU(), nn.MaxPool2d(2)

    def features(self, x):
        x = self.bn(self.stem((x - self.mean) / self.std))
        x = F.max_pool2d(F.relu(x), 2) if self.functional else self.pool(self.relu(x))
        return self.layer2(self.layer1(x))

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def twin(model: TinyResNet) -> TinyResNet:
    """The same network as ``model`` (same weights and statistics) with every ReLU and max pool a module."""
    modules = TinyResNet(functional=False)
    modules.load_state_dict(model.state_dict())
    return modules.eval()


def trained_statistics(model: nn.Module) -> nn.Module:
    """``model`` with random batch-norm statistics, as after training, in eval mode."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture
def net():
    return trained_statistics(TinyResNet())


@pytest.fixture
def data():
    """96 random 3x32x32 images in [0, 1] with labels of 5 classes."""
    return torch.rand(96, 3, 32, 32), torch.arange(96) % 5


# ------------------------------------------------------------------------------------------------- outputs, classes


class TupleOutput(TinyResNet):
    def forward(self, x):
        features = self.features(x)
        return self.fc(features.mean(dim=(2, 3))), features


class DictOutput(TinyResNet):
    def forward(self, x):
        return {"logits": super().forward(x)}


def test_outputs_other_than_a_logits_tensor_are_refused(data):
    x, y = data
    with pytest.raises(XaitrustError, match=r"must return a tensor of logits .* a tuple of 2 items.*output\[0\]"):
        preflight(TupleOutput().eval(), x, y, 5)
    with pytest.raises(XaitrustError, match=r"a dict with keys \['logits'\].*output\['logits'\]"):
        preflight(DictOutput().eval(), x, y, 5)


def test_the_class_count_must_match_unless_extra_classes_are_allowed(data):
    x, y = data
    with pytest.raises(XaitrustError, match="returns 4 logits per image but the data has 5 classes"):
        preflight(TinyResNet(classes=4).eval(), x, y, 5)
    with pytest.raises(XaitrustError, match=r"returns 6 logits .*\(allow_extra_classes=True\)"):
        preflight(TinyResNet(classes=6).eval(), x, y, 5, explainers=[])
    result = preflight(TinyResNet(classes=6).eval(), x, y, 5, explainers=[], allow_extra_classes=True)
    assert result.num_classes == 6
    assert any("6 logits per image for the data's 5 classes: a prediction among the other 1 counts as wrong" in warning
               for warning in result.warnings)


class ProbabilityOutput(TinyResNet):
    def forward(self, x):
        return torch.softmax(super().forward(x), dim=1)


def test_probabilities_instead_of_logits_are_a_warning(data):
    result = preflight(ProbabilityOutput().eval(), *data, 5, explainers=[])
    assert any("look like probabilities" in warning for warning in result.warnings)
    plain = preflight(TinyResNet().eval(), *data, 5, explainers=[])
    assert not any("probabilities" in warning for warning in plain.warnings)


# ---------------------------------------------------------------------------------------------- input convention


class ChannelMeans(nn.Module):
    """Logit ``c`` is the mean of channel ``c`` of what it receives: right only when the images come normalised."""

    def __init__(self, mean=None, std=None):
        super().__init__()
        self.mean, self.std = mean, std
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        if self.mean is not None:
            x = (x - self.mean.reshape(1, -1, 1, 1)) / self.std.reshape(1, -1, 1, 1)
        return x.mean(dim=(2, 3)) + self.anchor


def channel_data(offset=0.3, spreads=(1.0, 1.0, 1.0), n=256):
    """Channels centred on 0.5 - offset, 0.5 and 0.5 + offset, each image's levels spread around them; the label is
    the channel whose mean lies furthest above the data's mean of that channel, in units of its std. With the
    default offset, channel 2 has the largest raw mean in every image."""
    generator = torch.Generator().manual_seed(1)
    centres = torch.tensor([0.5 - offset, 0.5, 0.5 + offset]).reshape(1, 3, 1, 1)
    spread = 0.1 * torch.tensor(spreads).reshape(1, 3, 1, 1) * (torch.rand(n, 3, 1, 1, generator=generator) - 0.5)
    x = (centres + spread + 0.02 * torch.randn(n, 3, 8, 8, generator=generator)).clamp(0, 1)
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3))
    y = ((x.mean(dim=(2, 3)) - mean) / std).argmax(dim=1)
    return x, y, mean, std


def test_a_model_expecting_normalised_inputs_is_refused_with_the_statistics_to_set():
    x, y, mean, std = channel_data()
    with pytest.raises(XaitrustError, match=r"as given \(chance .*\) but 100.0% on images normalised") as error:
        preflight(ChannelMeans(), x, y, 3, explainers=[])
    message = str(error.value)
    assert f"input_mean=[{', '.join(f'{v:.6g}' for v in mean.tolist())}]" in message
    assert f"input_std=[{', '.join(f'{v:.6g}' for v in std.tolist())}]" in message
    result = preflight(ChannelMeans(mean, std), x, y, 3, explainers=[])
    assert result.accuracy == result.accuracy_by_convention["[0, 1]"] == 1.0
    assert result.accuracy_by_convention["[0, 255]"] < 0.5
    assert result.data_mean == pytest.approx(mean.tolist())


def test_a_clearly_better_convention_is_a_warning_when_the_given_one_works_well():
    # raw channel means still pick the right channel for about 3 images in 4
    x, y, _, _ = channel_data(offset=0.02, spreads=(1.0, 1.5, 2.0))
    result = preflight(ChannelMeans(), x, y, 3, explainers=[])
    assert 0.7 < result.accuracy < 0.8 and result.accuracy_by_convention["normalised"] == 1.0
    assert any("but 100.0% on images normalised" in warning and "check which inputs it expects" in warning
               for warning in result.warnings)


class Brightness(nn.Module):
    """Class 1 when the mean pixel exceeds 127.5: a model for 8-bit values."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        score = x.mean(dim=(1, 2, 3)) - 127.5 + self.anchor
        return torch.stack([torch.zeros_like(score), score], dim=1)


def test_a_model_expecting_8_bit_values_is_refused_with_the_rescaling():
    brightness = torch.rand(200, 1, 1, 1)
    x = (brightness + 0.05 * torch.randn(200, 1, 6, 6)).clamp(0, 1)
    y = (x.mean(dim=(1, 2, 3)) > 0.5).long()
    with pytest.raises(XaitrustError, match=r"% on 8-bit values in \[0, 255\]: .* "
                                            r"input_mean=\[0\] and input_std=\[0.00392157\]"):
        preflight(Brightness(), x, y, 2, explainers=[])
    few = preflight(Brightness(), x[:40], y[:40], 2, explainers=[])  # too few images for a verdict
    assert any("40 labelled images are too few" in warning for warning in few.warnings)


def test_an_untrained_model_is_near_chance_without_a_convention_error(net, data):
    result = preflight(net, *data, 5, explainers=[])
    assert result.sample_size == 96 and result.chance == pytest.approx(20 / 96)
    assert set(result.accuracy_by_convention) == {"[0, 1]", "normalised", "[-1, 1]", "[0, 255]"}
    assert any("near chance" in warning for warning in result.warnings)


# ----------------------------------------------------------------------------------------------------- eval mode


class ActiveDropout(TinyResNet):
    def forward(self, x):
        return self.fc(F.dropout(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1), 0.5, training=True))


class BatchStatistics(TinyResNet):
    def forward(self, x):
        features = F.batch_norm(self.features(x), None, None, training=True)
        return self.fc(F.adaptive_avg_pool2d(features, 1).flatten(1))


class StubbornBatchNorm(nn.BatchNorm2d):
    """A batch norm that stays in training mode whatever it is told."""

    def train(self, mode=True):
        return super().train(True)


def test_randomness_and_batch_statistics_in_eval_mode_are_refused(data):
    with pytest.raises(XaitrustError, match=r"two forward passes of the same 8 images give logits differing "
                                            r".* F\.dropout"):
        preflight(ActiveDropout().eval(), *data, 5)
    with pytest.raises(XaitrustError, match="logits depend on the rest of its batch .* running statistics"):
        preflight(BatchStatistics().eval(), *data, 5)


def test_the_model_gets_its_flags_buffers_and_random_state_back(data):
    model = TinyResNet()
    model.train()
    model.layer1[0].bn1.eval()
    flags = {name: module.training for name, module in model.named_modules()}
    preflight(model, *data, 5, explainers=["saliency"])
    assert {name: module.training for name, module in model.named_modules()} == flags

    stubborn = TinyResNet().eval()
    stubborn.bn = StubbornBatchNorm(8)
    statistics = copy.deepcopy(stubborn.bn.state_dict())
    with pytest.raises(XaitrustError, match="depend on the rest of its batch"):
        preflight(stubborn, *data, 5)
    assert all(torch.equal(value, statistics[key]) for key, value in stubborn.bn.state_dict().items())

    dropping = ActiveDropout().eval()
    state = torch.random.get_rng_state()
    with pytest.raises(XaitrustError, match="differing"):
        preflight(dropping, *data, 5)
    assert torch.equal(torch.random.get_rng_state(), state)


# --------------------------------------------------------------------------------------------------------- graph


def test_the_graph_check_names_functional_relus_and_max_pools(net):
    graph = inspect_graph(net)
    assert graph.traced and graph.reused == {}
    found = {(call.node, call.op, call.kind, call.module, call.rewritable) for call in graph.functional}
    assert found == {
        ("relu", "relu", "relu", "", True),
        ("max_pool2d", "max_pool2d", "max-pool", "", True),
        ("relu_1", "relu", "relu", "layer1.0", True),
        ("relu_2", "relu", "relu", "layer1.0", True),
        ("relu_3", "relu", "relu", "layer2.0", True),
        ("relu_4", "relu", "relu", "layer2.0", True),
    }
    assert inspect_graph(twin(net)).functional == ()


@pytest.mark.parametrize("name", ["cnn", "mnist-cnn", "resnet18"])
def test_the_library_models_apply_every_non_linearity_as_a_module_once(name):
    model = build_model(name, 3, 4, 16, **({"base_filters": 4} if name == "resnet18" else {}))
    graph = inspect_graph(model)
    assert graph.traced and graph.functional == () and graph.reused == {} and graph.in_place_rereads == ()
    for method in PROPAGATION:
        get_explainer(method).check_model(model)


def test_lipschitz_cnn_is_still_refused_for_its_activation():
    model = build_model("lipschitz-cnn", 1, 10, (28, 28))
    for method in PROPAGATION:
        with pytest.raises(XaitrustError, match=rf"^{method} has no rule for MaxMin"):
            get_explainer(method).check_model(model)


def test_propagation_methods_refuse_functional_relus_without_a_rule_for_them(net):
    # Captum's GuidedBackprop hooks ReLU modules only: on this model it silently is the plain gradient.
    x = torch.rand(4, 3, 32, 32)
    target = torch.tensor([0, 1, 2, 3])
    gradient = get_explainer("sensitivity")(net, x, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(GuidedBackprop(net).attribute(x.clone(), target=target), gradient)
    for method in ["guided-backprop", "deeplift"]:
        with pytest.raises(XaitrustError, match=rf"^{method} cannot explain this model as defined: non-linearities "
                                                r"applied as functions .*relu_1 \(relu in layer1.0\).* To fix it: "
                                                r"call xaitrust.models.preflight.make_explainable\(model\)"):
            get_explainer(method).check_model(net)
    # max pools pass their gradient to the maximum under guided backpropagation, so only the ReLUs are named
    with pytest.raises(XaitrustError) as error:
        get_explainer("guided-backprop")(net, x, target)
    assert "max_pool2d" not in str(error.value)
    # LRP passes ReLUs and max pools unchanged: as a function or as a module, the same relevance
    torch.testing.assert_close(get_explainer("lrp")(net, x, target), get_explainer("lrp")(twin(net), x, target))


def test_make_explainable_gives_the_same_outputs_and_true_guided_backprop(net):
    x = torch.rand(6, 3, 32, 32)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    explainable = make_explainable(net)
    torch.testing.assert_close(explainable(x), net(x), rtol=0, atol=0)
    assert inspect_graph(explainable).functional == ()
    assert isinstance(explainable.get_submodule("max_pool2d"), nn.MaxPool2d)
    assert explainable.get_submodule("max_pool2d").kernel_size == 2
    for method in PROPAGATION:
        get_explainer(method).check_model(explainable)
    guided = get_explainer("guided-backprop")(explainable, x, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(guided, GuidedBackprop(twin(net)).attribute(x.clone(), target=target))
    assert not torch.allclose(guided, get_explainer("sensitivity")(net, x, target))
    assert not any(isinstance(module, nn.ReLU) for module in net.modules())  # the model itself is untouched


class ReusedReLU(nn.Module):
    """One ReLU module applied after the first convolution and after the second, itself applied twice (shared
    weights); ``reuse=False``: the second ReLU is a module of its own."""

    def __init__(self, reuse=True):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.relu2 = self.relu if reuse else nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(self.relu2(self.conv2(self.conv2(self.relu(self.conv1(x))))).flatten(1))


def test_a_reused_relu_module_is_refused_by_deeplift_and_copied_by_make_explainable():
    model = ReusedReLU().eval()
    assert inspect_graph(model).reused == {"relu": 2, "conv2": 2}
    with pytest.raises(XaitrustError, match=r"deeplift keeps one state per non-linear module.*relu \(2 calls\).*"
                                            "make_explainable"):
        get_explainer("deeplift").check_model(model)
    get_explainer("guided-backprop").check_model(model)  # its ReLU hooks work per call
    explainable = make_explainable(model)
    assert explainable.get_submodule("relu") is model.relu and explainable.get_submodule("relu_1") is not model.relu
    assert inspect_graph(explainable).reused == {"conv2": 2}  # a module with weights stays shared
    x = torch.rand(3, 3, 8, 8)
    torch.testing.assert_close(explainable(x), model(x), rtol=0, atol=0)
    target = torch.tensor([0, 1, 2])
    separate = ReusedReLU(reuse=False).eval()
    separate.load_state_dict(model.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = DeepLift(separate).attribute(x.clone(), torch.zeros_like(x), target=target)
    torch.testing.assert_close(get_explainer("deeplift")(explainable, x, target), expected)


class InPlaceReread(nn.Module):
    """An in-place functional ReLU whose input is read again: ``x + relu(x)`` computes ``2 relu(x)``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 4 * 4, 2)

    def forward(self, x):
        h = self.conv(x)
        r = F.relu(h, inplace=True)
        return self.fc((h + r).flatten(1))


def test_in_place_relus_keep_their_meaning_and_a_reread_input_is_refused():
    model = InPlaceReread().eval()
    explainable = make_explainable(model)
    x = torch.randn(5, 1, 4, 4)
    torch.testing.assert_close(explainable(x), model(x), rtol=0, atol=0)
    assert explainable.get_submodule("relu").inplace
    assert inspect_graph(explainable).in_place_rereads == ("relu",)
    with pytest.raises(XaitrustError, match="reads the input of these in-place ReLUs again after them.*: relu"):
        get_explainer("guided-backprop").check_model(explainable)
    get_explainer("lrp").check_model(explainable)  # LRP leaves in-place ReLUs in place


class Gated(nn.Module):
    """A squeeze-excitation gate ``x * sigmoid(fc(mean(x)))`` and a division by a sum over channels before the
    classifier: a sigmoid applied as a function, a product and a quotient of two signals, which no propagation rule
    here covers. Its log-softmax comes after the last layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.gate = nn.Linear(4, 4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.conv(x)
        h = h * torch.sigmoid(self.gate(h.mean(dim=(2, 3))))[:, :, None, None]
        h = h / h.sum(dim=1, keepdim=True)
        return torch.log_softmax(self.fc(h.mean(dim=(2, 3))), dim=1)


def test_other_functional_non_linearities_are_refused_but_not_a_score_transform_after_the_last_layer():
    graph = inspect_graph(Gated())
    assert {(call.op, call.kind, call.rewritable) for call in graph.functional} == {
        ("sigmoid", "other", False), ("mul", "product", False), ("truediv", "product", False),
    }  # the final log-softmax, after the last layer with weights, is not listed
    with pytest.raises(XaitrustError, match=r"^lrp cannot explain .*sigmoid \(sigmoid in forward\), mul \(mul in "
                                            r"forward\), truediv .*\. To fix it: change the model's code for sigmoid, "
                                            "mul, truediv, or"):
        get_explainer("lrp").check_model(Gated())


class Branching(ReusedReLU):
    def forward(self, x):
        if x.sum() > 0:
            x = x * 1.0
        return super().forward(x)


def test_an_untraceable_model_is_refused_by_propagation_and_its_module_calls_counted(data):
    model = Branching().eval()
    for method in PROPAGATION:
        with pytest.raises(XaitrustError, match=rf"^{method} cannot check this model: torch.fx could not trace it"):
            get_explainer(method).check_model(model)
    x = torch.rand(80, 3, 8, 8)
    result = preflight(model, x, torch.arange(80) % 3, 3, explainers=["saliency", "lrp"])
    assert not result.graph.traced and result.graph.reused == {"relu": 2, "conv2": 2}
    assert result.supported["saliency"] is None and "could not trace" in result.supported["lrp"]
    assert any("torch.fx could not trace the model" in warning for warning in result.warnings)


# ----------------------------------------------------------------------------------------------------- CAM layer


def test_the_cam_layer_is_the_models_own_else_the_last_feature_map(net, data):
    x, y = data
    assert preflight(net, x, y, 5, explainers=[]).cam_layer == "layer2"
    cnn = build_model("cnn", 3, 5, 32)
    assert preflight(cnn, x, y, 5, explainers=[]).cam_layer == "body.relu2"  # not body.pool2, which comes later
    assert preflight(net, x, y, 5, explainers=[], cam_layer="layer1.0").cam_layer == "layer1.0"


@pytest.mark.parametrize("layer, message", [
    ("nope", "has no module 'nope'"),
    ("fc", r"module 'fc' must run once .* ran 1 time\(s\) with output shape \(2, 5\)"),
    ("stem.weight", "has no module"),
])
def test_a_named_cam_layer_is_validated(net, data, layer, message):
    with pytest.raises(XaitrustError, match=f"cam_layer: .*{message}"):
        preflight(net, *data, 5, explainers=[], cam_layer=layer)


def test_a_reused_module_cannot_be_the_cam_layer():
    x = torch.rand(80, 3, 8, 8)
    with pytest.raises(XaitrustError, match=r"'relu' must run once .* ran 2 time\(s\)"):
        preflight(ReusedReLU().eval(), x, torch.arange(80) % 3, 3, explainers=[], cam_layer="relu")


# ------------------------------------------------------------------------------------------- explainers and cost


def test_support_of_every_explainer_with_reasons(net, data):
    result = preflight(net, *data, 5)
    assert set(result.supported) == {info.name for info in available_explainers()}
    assert "make_explainable" in result.supported["guided-backprop"]
    assert "make_explainable" in result.supported["deeplift"]
    assert result.supported["lrp"] is None and result.supported["saliency"] is None
    assert "give gradcam layer='layer2'" in result.supported["gradcam"]
    configured = preflight(net, *data, 5, explainers=["gradcam"], explainer_params={"gradcam": {"layer": "layer2"}})
    assert configured.supported == {"gradcam": None}
    bad = preflight(net, *data, 5, explainers=["gradcam++"], explainer_params={"gradcam++": {"layer": "fc"}})
    assert "must run once per forward pass and output feature maps" in bad.supported["gradcam++"]
    fixed = preflight(make_explainable(net), *data, 5, explainers=PROPAGATION)
    assert fixed.supported == dict.fromkeys(PROPAGATION)


def test_check_explainers_raises_or_drops_the_unsupported(net, data):
    result = preflight(net, *data, 5, explainers=["saliency", "guided-backprop", "lrp"])
    assert check_explainers(result, ["saliency", "lrp"]) == ["saliency", "lrp"]
    with pytest.raises(XaitrustError, match=r"cannot be explained by guided-backprop: guided-backprop cannot"):
        check_explainers(result, ["saliency", "guided-backprop"])
    with pytest.warns(UserWarning, match="leaving out explainer guided-backprop"):
        assert check_explainers(result, ["guided-backprop", "lrp"], drop=True) == ["lrp"]
    with pytest.raises(XaitrustError, match="did not check deeplift"):
        check_explainers(result, ["deeplift"])


def test_the_cost_and_the_description(net, data):
    result = preflight(net, *data, 5, explainers=["saliency", "deeplift"])
    assert isinstance(result, Preflight)
    assert 0 < result.forward_seconds < 1 and 0 < result.gradient_seconds < 1
    text = result.describe()
    assert "Outputs: 5 logits per image. Accuracy on 96 labelled images" in text
    assert "CAM layer: layer2." in text
    assert "functional non-linearities: relu (relu in forward), max_pool2d" in text
    assert "Explainers: 1 of 2 can explain the model; not: deeplift (deeplift cannot explain" in text
    assert "Warning: the model's accuracy is near chance" in text


def test_bad_data_is_refused(net, data):
    x, y = data
    with pytest.raises(XaitrustError, match=r"x must hold images in \[0, 1\]"):
        preflight(net, x * 255, y, 5)
    with pytest.raises(XaitrustError, match=r"labels must lie in \[0, 3\]"):
        preflight(net, x, y, 4)
    with pytest.raises(XaitrustError, match="at least 2 labelled images"):
        preflight(net, x[:1], y[:1], 5)
