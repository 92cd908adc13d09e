"""Grad-CAM and Grad-CAM++: agreement with Captum, localisation, and the Grad-CAM++ formula by brute-force autograd."""

import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.explainers.propagation import ScoreModel
from xaitrust.models.base import ImageClassifier


class ConvNet(ImageClassifier):
    """conv - ReLU (the CAM layer) - max pool - linear, on 2-channel 8x8 images."""

    cam_layer_name = "body.1"

    def __init__(self):
        super().__init__("conv", 2, 3, (8, 8), mean=[0.5, 0.4], std=[0.2, 0.3])
        self.body = nn.Sequential(
            nn.Conv2d(2, 5, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(80, 3)
        )


class CellFeatures(nn.Module):
    """Feature channel ``k`` responds only in cell ``k`` (row-major) of a 2x2 grid of 4x4 cells of an 8x8 image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 4, stride=4, bias=False)
        nn.init.constant_(self.conv.weight, 1 / 16)
        self.register_buffer("cells", torch.eye(4).reshape(1, 4, 2, 2))

    def forward(self, x):
        return torch.relu(self.conv(x)) * self.cells


class OnePatchModel(ImageClassifier):
    """Class 0's logit reads only the bottom-left 4x4 patch, through feature channel 2."""

    cam_layer_name = "body.0"

    def __init__(self):
        super().__init__("patch", 1, 2, (8, 8))
        head = nn.Linear(16, 2)
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.weight[0, 2 * 4 + 2] = 3.0  # channel 2, cell (1, 0)
        self.body = nn.Sequential(CellFeatures(), nn.Flatten(), head)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return ConvNet()


@pytest.fixture
def images():
    return torch.rand(4, 2, 8, 8)


def captum_gradcam(model, images, target, layer, output="logit"):
    maps = LayerGradCam(ScoreModel(model, output), layer).attribute(images, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(maps, images.shape[-2:], interpolate_mode="bilinear")


@pytest.mark.parametrize("output", ["logit", "probability"])
def test_gradcam_agrees_with_captum_and_sums_to_the_map_over_channels(net, images, output):
    target = torch.tensor([0, 2, 1, 1])
    ours = get_explainer("gradcam")(net, images, target, output=output)
    expected = captum_gradcam(net, images, target, net.cam_layer, output)
    torch.testing.assert_close(ours.sum(dim=1, keepdim=True), expected)
    torch.testing.assert_close(ours[:, 0], ours[:, 1])
    assert expected.amax() > 0


def test_cam_layer_can_be_named(net, images):
    ours = get_explainer("gradcam", layer="body.0")(net, images, 1)
    torch.testing.assert_close(ours.sum(dim=1, keepdim=True), captum_gradcam(net, images, 1, net.body[0]))


@pytest.mark.parametrize("name", ["gradcam", "gradcam++"])
def test_cam_puts_the_mass_on_the_patch_the_model_reads(name):
    images = 0.1 + 0.9 * torch.rand(3, 1, 8, 8)
    maps = get_explainer(name)(OnePatchModel(), images, 0)[:, 0]
    patch = torch.zeros(8, 8, dtype=torch.bool)
    patch[4:, :4] = True
    share = maps[:, patch].sum(1) / maps.flatten(1).sum(1)
    assert (share > 0.75).all()
    assert (maps[:, patch].amax(1) == maps.flatten(1).amax(1)).all()


class TinyHead(ImageClassifier):
    """conv - ReLU (CAM layer) on 3x3 images, then a piecewise-linear head: Grad-CAM++'s closed form is exact."""

    cam_layer_name = "body.1"

    def __init__(self):
        super().__init__("tiny", 1, 2, (3, 3))
        self.body = nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(18, 6), nn.ReLU(), nn.Linear(6, 2)
        )


def brute_force_gradcam_plus_plus(model, image, target):
    """Chattopadhyay et al.'s weights from autograd derivatives of Y = exp(logit), element by element."""
    features = model.body[:2](image)
    leaf = features.detach().requires_grad_(True)
    y = torch.exp(model.body[2:](leaf)[0, target])
    (first,) = torch.autograd.grad(y, leaf, create_graph=True)
    second, third = torch.zeros(leaf.numel()), torch.zeros(leaf.numel())
    for index in range(leaf.numel()):
        (row,) = torch.autograd.grad(first.flatten()[index], leaf, create_graph=True)
        second[index] = row.flatten()[index]
        (row3,) = torch.autograd.grad(row.flatten()[index], leaf, retain_graph=True, allow_unused=True)
        third[index] = 0.0 if row3 is None else row3.flatten()[index]
    second, third = second.reshape(leaf.shape), third.reshape(leaf.shape)
    sums = leaf.detach().sum(dim=(2, 3), keepdim=True)
    denominator = 2 * second + sums * third
    alpha = torch.where(denominator != 0, second / torch.where(denominator != 0, denominator, 1), 0.0)
    weights = (alpha * torch.relu(first.detach())).sum(dim=(2, 3), keepdim=True)
    return torch.relu((weights * leaf.detach()).sum(dim=1)), y.detach()


def test_gradcam_plus_plus_matches_the_paper_formula_by_brute_force():
    torch.manual_seed(3)
    model = TinyHead().double()
    images = torch.rand(2, 1, 3, 3, dtype=torch.float64)
    ours = get_explainer("gradcam++")(model, images, 1)
    assert ours.dtype == torch.float64
    for index in range(len(images)):
        expected, y = brute_force_gradcam_plus_plus(model, images[index : index + 1], 1)
        assert expected.amax() > 0
        # The paper's relu(dY/dA) = Y relu(dS/dA): our map drops the positive factor Y.
        torch.testing.assert_close(ours[index] * y, expected)


@pytest.mark.parametrize("name", ["gradcam", "gradcam++"])
def test_cam_batch_equals_items_one_by_one(net, images, name):
    explainer = get_explainer(name)
    together = explainer(net, images, torch.tensor([0, 1, 2, 0]))
    alone = torch.cat([explainer(net, images[i : i + 1], [0, 1, 2, 0][i]) for i in range(4)])
    torch.testing.assert_close(together, alone)
    assert (together >= 0).all() and together.amax() > 0


def test_cam_errors():
    images = torch.rand(2, 2, 8, 8)
    plain = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(108, 3))
    with pytest.raises(XaitrustError, match="does not name a CAM layer"):
        get_explainer("gradcam")(plain, images, 0)
    with pytest.raises(XaitrustError, match="no module named 'body.9'"):
        get_explainer("gradcam", layer="body.9")(ConvNet(), images, 0)
    with pytest.raises(XaitrustError, match=r"output feature maps \(B, K, h, w\)"):
        get_explainer("gradcam++", layer="body.4")(ConvNet(), images, 0)
    with pytest.raises(XaitrustError, match=r"target must lie in \[0, 2\]"):
        get_explainer("gradcam")(ConvNet(), images, -1)
