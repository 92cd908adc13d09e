"""Bad inputs at the public boundary: every mistake a user can make with an explainer, ``xaitrust.evaluate``, a model,
a data set, a protocol config or a command gives a clear ``XaitrustError`` naming what to fix (the command line: one
``error:`` line, exit code 2, no traceback), before any long work."""

import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save_file
from torch import nn

import xaitrust
from xaitrust.cli import cli
from xaitrust.data import ImageDataset, load_dataset
from xaitrust.errors import XaitrustError
from xaitrust.explainers import available_explainers, get_explainer
from xaitrust.models import build_model
from xaitrust.models.loading import ModelSource
from xaitrust.protocols import PROTOCOL_MODULES, protocol_module, resolve_config, run_protocol
from xaitrust.training import save_checkpoint

EXPLAINERS = [info.name for info in available_explainers()]


@pytest.fixture(scope="module")
def digits():
    """``(train, test)``: scikit-learn's 8x8 digits, 10 classes."""
    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


@pytest.fixture(scope="module")
def images(digits):
    return digits[1].x[:2]


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("cnn", 1, 10, 8).eval()


def with_value(x: torch.Tensor, value: float) -> torch.Tensor:
    """A copy of ``x`` whose first pixel holds ``value``."""
    x = x.clone()
    x[0, 0, 0, 0] = value
    return x


def broken(model: nn.Module, name: str, value: float) -> nn.Module:
    """A copy of ``model`` whose parameter or buffer ``name`` holds ``value`` in its first entry."""
    import copy

    model = copy.deepcopy(model)
    tensor = dict(model.named_parameters()).get(name, dict(model.named_buffers()).get(name))
    with torch.no_grad():
        tensor.view(-1)[0] = value
    return model


def save_weights(model: nn.Module, path) -> None:
    """``model``'s state dict as a safetensors file."""
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path)


class TupleModel(nn.Module):
    """A classifier returning ``(logits, features)``: not the logits alone xaitrust expects."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, num_classes)

    def forward(self, x):
        features = torch.relu(self.conv(x)).flatten(1)
        return self.fc(features), features


# --- explainers: every registered one, the same mistakes ----------------------------------------------------------

#: case -> (images from the good ones, target, output, message)
EXPLAINER_INPUTS = {
    "rank-3": (lambda x: x[0], 0, "logit", r"x must be a tensor of images \(B, C, H, W\); got \(1, 8, 8\)"),
    "integer-dtype": (lambda x: (x * 255).to(torch.uint8), 0, "logit",
                      r"x must be a float tensor .* got dtype torch\.uint8 \(convert 8-bit images with x\.float"),
    "empty-batch": (lambda x: x[:0], 0, "logit", r"x holds no pixel values \(shape \(0, 1, 8, 8\)\)"),
    "nan": (lambda x: with_value(x, float("nan")), 0, "logit",
            r"the images x contain NaN or infinite values for 1 sample\(s\) \(first: \[0\]\); fix or drop"),
    "inf": (lambda x: with_value(x, float("inf")), 0, "logit", r"the images x contain NaN or infinite values"),
    "values-0-255": (lambda x: x * 255, 0, "logit",
                     r"x must hold images with values in \[0, 1\]; got values from 0 to 2\d\d.*Divide 8-bit images"),
    "target-out-of-range": (lambda x: x, 10, "logit", r"target must lie in \[0, 9\] for 10 classes; got 10\.\.10"),
    "target-wrong-length": (lambda x: x, torch.tensor([0, 1, 2]), "logit",
                            r"target must hold one class index per image, shape \(2,\); got \(3,\)"),
    "target-float": (lambda x: x, torch.tensor([0.0, 1.0]), "logit", "target must hold integer class indices"),
    "bad-output": (lambda x: x, 0, "logits", "output must be one of logit, probability, log-probability; got 'logits'"),
}


@pytest.mark.parametrize("case", list(EXPLAINER_INPUTS))
@pytest.mark.parametrize("name", EXPLAINERS)
def test_every_explainer_refuses_bad_inputs(net, images, name, case):
    make_images, target, output, message = EXPLAINER_INPUTS[case]
    with pytest.raises(XaitrustError, match=message):
        get_explainer(name)(net, make_images(images), target, output)


@pytest.mark.parametrize("name", EXPLAINERS)
def test_every_explainer_refuses_an_unknown_parameter(name):
    with pytest.raises(XaitrustError, match=rf"bad parameters for explainer '{re.escape(name)}'.*allowed: "):
        get_explainer(name, not_a_parameter=1)


BAD_PARAMETERS = {
    "gradcam": ({"layer": 3}, "gradcam: layer must be a dotted module name"),
    "gradcam++": ({"layer": ""}, r"gradcam\+\+: layer must be a dotted module name"),
    "gradient-input": ({"gradient": "nope"}, "gradient-input: gradient must be one of signed, absolute"),
    "integrated-gradients": ({"steps": 0}, "integrated-gradients: steps must be a positive integer; got 0"),
    "kernelshap": ({"n_samples": 0}, "kernelshap: n_samples must be a positive integer"),
    "lime": ({"kernel_width": -1}, "lime: kernel_width must be a finite number > 0"),
    "lrp": ({"epsilon": -1}, "lrp: epsilon must be a finite number >= 0"),
    "meaningful-perturbation": ({"steps": 0}, "meaningful-perturbation: steps must be a positive integer"),
    "occlusion": ({"window": 0}, "occlusion: window must be a positive integer or a pair of them"),
    "random": ({"distribution": "gauss"}, "random: distribution must be one of uniform, normal"),
    "rise": ({"n_masks": 0}, "rise: n_masks must be a positive integer"),
    "smoothgrad": ({"samples": 0}, "smoothgrad: samples must be a positive integer"),
    "smoothgrad-squared": ({"sigma": -1}, "smoothgrad-squared: sigma must be a finite number >= 0"),
    "vargrad": ({"seed": "a"}, "vargrad: seed must be an integer"),
}


@pytest.mark.parametrize("name", list(BAD_PARAMETERS))
def test_explainers_refuse_bad_parameter_values_when_built(name):
    params, message = BAD_PARAMETERS[name]
    with pytest.raises(XaitrustError, match=message):
        get_explainer(name, **params)


def test_an_unknown_explainer_is_named():
    with pytest.raises(XaitrustError, match="unknown explainer 'salency'; available: .*saliency"):
        get_explainer("salency")


# --- metrics through xaitrust.evaluate ----------------------------------------------------------------------------

#: case -> (keyword arguments of evaluate, message)
EVALUATE_CASES = {
    "unknown-metric": ({"metrics": ["deletion"]}, "unknown metric 'deletion'"),
    "duplicate-metric": ({"metrics": ["deletion_area", "deletion_area"]}, "metric 'deletion_area' is listed twice"),
    "empty-metrics": ({"metrics": []}, "metrics is empty: name at least one of"),
    "masks-missing": ({"metrics": ["localization"]}, "metrics localization compare maps with ground-truth masks"),
    "masks-wrong-size": ({"metrics": ["localization"], "masks": torch.ones(2, 4, 4, dtype=torch.bool)},
                         r"masks must be \(N, H, W\) = \(2, 8, 8\), one mask per image; got \(2, 4, 4\)"),
    "masks-wrong-count": ({"metrics": ["pointing_game"], "masks": torch.ones(3, 8, 8, dtype=torch.bool)},
                          r"masks must be \(N, H, W\) = \(2, 8, 8\)"),
    "metric-params-unknown-parameter": ({"metrics": ["deletion_area"],
                                         "metric_params": {"deletion_area": {"stepz": 3}}},
                                        "metric 'deletion_area' has no parameter 'stepz'; its parameters: steps"),
    "metric-params-other-metric": ({"metrics": ["deletion_area"], "metric_params": {"insertion_area": {"steps": 3}}},
                                   "metric_params names metrics that are not evaluated: insertion_area"),
    "metric-params-not-a-table": ({"metrics": ["deletion_area"], "metric_params": {"deletion_area": 3}},
                                  r"metric_params must map each metric's name to a dict"),
    "metric-params-radius": ({"metrics": ["local_lipschitz"], "metric_params": {"local_lipschitz": {"radius": -1}}},
                             "radius must be a positive finite number; got -1"),
    "metric-params-neighbours": ({"metrics": ["local_lipschitz"],
                                  "metric_params": {"local_lipschitz": {"n_neighbours": 0}}},
                                 "n_neighbours must be a positive integer; got 0"),
    "metric-params-subsets": ({"metrics": ["mu_fidelity"], "metric_params": {"mu_fidelity": {"n_subsets": 1}}},
                              "n_subsets must be at least 2"),
    "metric-params-tolerance": ({"metrics": ["pointing_game"], "masks": torch.ones(2, 8, 8, dtype=torch.bool),
                                 "metric_params": {"pointing_game": {"tolerance": -1}}},
                                "tolerance must be a non-negative number of pixels"),
    "reference-maps-missing": ({"metrics": ["ssim_to_uncalibrated"]},
                               r"pass reference_maps=\{label: maps \(N, H, W\)\}, missing for saliency"),
    "reference-maps-wrong-shape": ({"metrics": ["ssim_to_uncalibrated"],
                                    "reference_maps": {"saliency": torch.rand(2, 4, 4)}},
                                   r"reference_maps\['saliency'\] must have shape \(B, H, W\) = \(2, 8, 8\)"),
    "reference-maps-nan": ({"metrics": ["ssim_to_uncalibrated"],
                            "reference_maps": {"saliency": torch.full((2, 8, 8), float("nan"))}},
                           r"reference_maps\['saliency'\] contain NaN or infinite values"),
    "unknown-explainer": ({"explainers": ["salency"]}, "unknown explainer 'salency'"),
    "duplicate-explainer": ({"explainers": ["saliency", "saliency"]}, "explainer 'saliency' is listed twice"),
    "empty-explainers": ({"explainers": []}, "explainers is empty"),
    "explainer-params-other": ({"explainer_params": {"rise": {"n_masks": 10}}},
                               "explainer_params names explainers that are not evaluated: rise"),
    "explainer-params-bad-value": ({"explainers": ["rise"], "explainer_params": {"rise": {"n_masks": 0}}},
                                   "rise: n_masks must be a positive integer"),
    "explainer-params-not-a-table": ({"explainer_params": [1]}, "explainer_params must map each explainer's label"),
    "unknown-reduction": ({"reduction": "abs"}, "reduction must be one of abs-sum"),
    "unknown-ties": ({"ties": "first"}, "ties must be one of"),
    "bad-output": ({"output": "prob"}, "output must be one of logit, probability, log-probability"),
    "bad-seed": ({"seed": 1.5}, "seed must be an integer"),
    "batch-size-zero": ({"batch_size": 0}, "batch_size must be a positive integer; got 0"),
    "target-out-of-range": ({"target": 12}, r"target must lie in \[0, 9\]"),
    "target-wrong-length": ({"target": torch.tensor([1, 2, 3])}, r"target must hold one class index per image"),
    "indices-wrong-length": ({"indices": [0, 1, 2]}, r"indices must hold one value per image, shape \(2,\)"),
    "labels-wrong-length": ({"labels": [0]}, r"labels must hold one value per image, shape \(2,\)"),
}


@pytest.mark.parametrize("case", list(EVALUATE_CASES))
def test_evaluate_refuses_bad_metrics_explainers_and_settings(net, images, case):
    arguments, message = EVALUATE_CASES[case]
    arguments = {"explainers": ["saliency"], "metrics": ["deletion_area"], "progress": False, **arguments}
    with pytest.raises(XaitrustError, match=message):
        xaitrust.evaluate(net, images, **arguments)


@pytest.mark.parametrize("case", ["rank-3", "integer-dtype", "empty-batch", "nan", "inf", "values-0-255"])
def test_evaluate_refuses_bad_images(net, images, case):
    make_images, _, _, message = EXPLAINER_INPUTS[case]
    with pytest.raises(XaitrustError, match=message):
        xaitrust.evaluate(net, make_images(images), explainers=["saliency"], metrics=["deletion_area"], progress=False)


def test_metrics_called_directly_refuse_images_outside_the_unit_range(net, images):
    from xaitrust.metrics import deletion, mu_fidelity

    maps = torch.rand(2, 8, 8)
    with pytest.raises(XaitrustError, match="x must hold images with values in"):
        deletion(net, images * 255, maps, 0, steps=4)
    with pytest.raises(XaitrustError, match="the images x contain NaN"):
        mu_fidelity(net, with_value(images, float("nan")), maps, 0)


# --- models ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, kind", [("body.conv1.weight", "parameter"), ("input_mean", "buffer")])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_evaluate_refuses_a_model_with_nan_or_infinite_weights(net, images, name, kind, value):
    with pytest.raises(XaitrustError, match=rf"model holds NaN or infinite values in {kind} '{re.escape(name)}'"):
        xaitrust.evaluate(broken(net, name, value), images, explainers=["saliency"], metrics=["otsu_tv"],
                          progress=False)


def test_loading_weights_with_nan_is_refused(net, tmp_path):
    weights = tmp_path / "nan.safetensors"
    save_weights(broken(net, "body.conv1.weight", float("nan")), weights)
    with pytest.raises(XaitrustError, match=rf"weights file {re.escape(str(weights))} holds NaN or infinite values in "
                                            r"parameter 'body\.conv1\.weight'"):
        ModelSource("cnn", str(weights)).load(1, 10, (8, 8))


def test_a_checkpoint_with_an_infinite_buffer_is_refused(net, tmp_path):
    save_checkpoint(broken(net, "input_std", float("inf")), tmp_path / "model", {"dataset": "digits"})
    with pytest.raises(XaitrustError, match="holds NaN or infinite values in buffer 'input_std'"):
        ModelSource(str(tmp_path / "model")).load(1, 10, (8, 8))


@pytest.mark.parametrize("protocol", ["benchmark", "calibrate-to-interpret", "recalx"])
def test_scoring_protocols_refuse_a_model_object_with_nan_weights(net, digits, tmp_path, protocol):
    run = getattr(xaitrust, protocol.replace("-", "_"))
    with pytest.raises(XaitrustError, match="holds NaN or infinite values in parameter 'body.conv1.weight'"):
        run(broken(net, "body.conv1.weight", float("nan")), digits, out=tmp_path / "run", profile="smoke")


@pytest.mark.parametrize("protocol", ["benchmark", "calibrate-to-interpret", "recalx"])
def test_scoring_protocols_refuse_a_model_with_the_wrong_number_of_classes(digits, tmp_path, protocol):
    run = getattr(xaitrust, protocol.replace("-", "_"))
    with pytest.raises(XaitrustError, match="the model returns 3 logits per image but the data has 10 classes"):
        run(build_model("cnn", 1, 3, 8), digits, out=tmp_path / "run", profile="smoke")
    assert not (tmp_path / "run" / "models").exists()


def test_weights_of_another_class_count_are_refused(tmp_path):
    weights = tmp_path / "three.safetensors"
    save_weights(build_model("cnn", 1, 3, 8), weights)
    with pytest.raises(XaitrustError, match=rf"the weights in {re.escape(str(weights))} do not fit the model"):
        run_protocol("benchmark", "smoke", None, tmp_path / "run", {"dataset": "digits", "weights": str(weights)})


def test_a_model_returning_a_tuple_is_refused_by_the_protocols(digits, tmp_path):
    with pytest.raises(XaitrustError, match="the model must return a tensor of logits .*it returned a tuple"):
        xaitrust.benchmark(TupleModel(), digits, out=tmp_path / "run", profile="smoke")


def test_a_model_returning_a_tuple_is_refused_by_evaluate(images):
    with pytest.raises(XaitrustError, match=r"the model must return a tensor of logits \(B, K\); it returned a tuple"):
        xaitrust.evaluate(TupleModel(), images, explainers=["saliency"], metrics=["otsu_tv"], progress=False)


# --- data -----------------------------------------------------------------------------------------------------------

def good_data():
    return torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 1, 0])


#: case -> (ImageDataset keyword arguments from good x, y; message)
DATASET_CASES = {
    "nan": (lambda x, y: {"x": with_value(x, float("nan")), "y": y}, "the images x contain NaN or infinite values"),
    "inf": (lambda x, y: {"x": with_value(x, -float("inf")), "y": y}, "the images x contain NaN or infinite values"),
    "values-0-255": (lambda x, y: {"x": x * 255, "y": y}, r"x must hold images with values in \[0, 1\].*by 255"),
    "negative": (lambda x, y: {"x": x - 0.5, "y": y}, r"x must hold images with values in \[0, 1\]"),
    "uint8": (lambda x, y: {"x": (x * 255).to(torch.uint8), "y": y}, "x must be a float tensor"),
    "rank-3": (lambda x, y: {"x": x[:, 0], "y": y}, r"x must be a tensor of images \(B, C, H, W\)"),
    "labels-out-of-range": (lambda x, y: {"x": x, "y": y + 1}, r"y must lie in \[0, 1\] for 2 classes; got 1\.\.2"),
    "labels-negative": (lambda x, y: {"x": x, "y": y - 1}, r"y must lie in \[0, 1\]"),
    "labels-float": (lambda x, y: {"x": x, "y": y.float()}, "y must hold integer class indices"),
    "labels-wrong-length": (lambda x, y: {"x": x, "y": y[:3]}, r"y must hold one class index per image, shape \(4,\)"),
    "masks-wrong-shape": (lambda x, y: {"x": x, "y": y, "masks": torch.ones(4, 7, 7)},
                          r"masks must be \(N, H, W\) = \(4, 8, 8\)"),
    "masks-wrong-count": (lambda x, y: {"x": x, "y": y, "masks": torch.ones(3, 8, 8)}, r"masks must be \(N, H, W\)"),
    "index-wrong-length": (lambda x, y: {"x": x, "y": y, "index": torch.arange(3)}, r"index must have shape \(4,\)"),
}


@pytest.mark.parametrize("case", list(DATASET_CASES))
def test_image_dataset_refuses_bad_images_labels_and_masks(case):
    make, message = DATASET_CASES[case]
    with pytest.raises(XaitrustError, match=message):
        ImageDataset(classes=["a", "b"], **make(*good_data()))


#: case -> (load_dataset arguments, keyword arguments, message)
LOAD_CASES = {
    "unknown-name": (("mnist-digits",), {}, "unknown dataset 'mnist-digits'; available: "),
    "unknown-option": (("digits",), {"bogus": 1}, r"unknown option\(s\) \['bogus'\] for dataset 'digits'; allowed: "),
    "unknown-split": (("digits", None, "val"), {}, "split must be one of"),
    "limit-zero": (("digits",), {"limit": 0}, "limit must be a positive number of samples"),
    "root-for-builtin": (("digits", "/nowhere"), {}, "dataset 'digits' takes no root"),
    "folder-without-root": (("folder",), {}, "the folder dataset needs root=PATH"),
    "folder-missing": (("folder", "/no/such/folder"), {}, "image folder /no/such/folder does not exist"),
    "npz-without-root": (("npz",), {}, "the npz dataset needs root=FILE.npz"),
    "npz-missing": (("npz", "/no/such/data.npz"), {}, "npz file /no/such/data.npz does not exist"),
}


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_load_dataset_refuses_unknown_names_options_and_roots(case):
    args, options, message = LOAD_CASES[case]
    with pytest.raises(XaitrustError, match=message):
        load_dataset(*args, **options)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 8, 8), np.uint8)}, r"holds arrays \['images'\]; expected x and y"),
    ({"x": np.zeros((4, 8, 8), np.uint8)}, r"holds arrays \['x'\]; expected x and y"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 1])}, "4 images but y holds 3 labels"),
    ({"x": np.full((4, 8, 8), 7.0), "y": np.array([0, 1, 1, 0])}, r"x must hold images with values in \[0, 1\]"),
    ({"x": np.zeros((4, 8, 8), np.uint8), "y": np.array([0, 1, 1, 0]), "masks": np.ones((4, 2, 2))},
     r"masks must be \(N, H, W\) = \(4, 8, 8\)"),
])
def test_npz_files_with_missing_or_bad_arrays_are_refused(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(XaitrustError, match=message):
        load_dataset("npz", tmp_path / "d.npz", test_fraction=0.5)


def test_a_folder_without_images_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(XaitrustError, match="holds no"):
        load_dataset("folder", tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(XaitrustError, match="class folder .*cat holds no images"):
        load_dataset("folder", tmp_path)


def test_a_folder_with_a_broken_image_is_refused(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / label / "a.png")
    (tmp_path / "dog" / "b.png").write_bytes(b"not a png")
    with pytest.raises(XaitrustError, match="cannot read image .*b.png .*remove or replace it"):
        load_dataset("folder", tmp_path).x.sum()


# --- protocol configs -----------------------------------------------------------------------------------------------

#: Mistakes every protocol refuses: (key, value, message).
COMMON_CONFIG_CASES = [
    ("no_such_key", 1, "unknown config key 'no_such_key' for protocol"),
    ("epochs", "3", "config key 'epochs' must be an integer; got '3'"),
    ("epochs", 0, "config key 'epochs' must be a finite number > 0; got 0"),
    ("lr", -1.0, "config key 'lr' must be a finite number > 0; got -1.0"),
    ("lr", float("nan"), "config key 'lr' must be a finite number > 0; got nan"),
    ("batch_size", 0, "config key 'batch_size' must be a finite number > 0"),
    ("explainer_batch_size", -4, "config key 'explainer_batch_size' must be a finite number > 0"),
    ("train_size", -1, "config key 'train_size' must be a finite number >= 0"),
    ("seed", 1.5, "config key 'seed' must be an integer"),
    ("device", "gpu", "device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    ("dataset_options", "image_size = 8",
     r"config key 'dataset_options' must be a table \(key = value pairs\); got 'image_size = 8'"),
]

#: Protocol-specific mistakes: protocol -> [(key, value, message)].
PROTOCOL_CONFIG_CASES = {
    "benchmark": [
        ("n_images", 0, "config key 'n_images' must be a finite number > 0; got 0"),
        ("lipschitz_radius", -1.0, "config key 'lipschitz_radius' must be a finite number > 0; got -1.0"),
        ("lipschitz_neighbours", 0, "config key 'lipschitz_neighbours' must be a finite number > 0"),
        ("lipschitz_images", 0, "config key 'lipschitz_images' must be a finite number > 0"),
        ("deletion_steps", 0, "config key 'deletion_steps' must be a finite number > 0; got 0"),
        ("mu_fidelity_subsets", 0, "config key 'mu_fidelity_subsets' must be a finite number >= 2; got 0"),
        ("mu_fidelity_subsets", 1, "config key 'mu_fidelity_subsets' must be a finite number >= 2; got 1"),
        ("n_superpixels", 0, "config key 'n_superpixels' must be a finite number > 0; got 0"),
        ("n_orders", 0, "config key 'n_orders' must be a finite number > 0"),
        ("calibration_size", 0, "config key 'calibration_size' must be a finite number > 0"),
        ("reduction", "abs", "config key 'reduction' has value\\(s\\) 'abs'; allowed: abs-sum"),
        ("output", "logits", "config key 'output' has value\\(s\\) 'logits'"),
        ("calibrator", "platt", "config key 'calibrator' has value\\(s\\) 'platt'"),
        ("explainers", ["saliency", "saliency"], "must name each explainer once and at least one; listed twice: "),
        ("explainers", [], "must name each explainer once and at least one"),
        ("explainers", ["salency"], "config key 'explainers': unknown explainer 'salency'"),
        ("metrics", ["deletion_area", "deletion_area"], "config key 'metrics' lists deletion_area twice"),
        ("metric_params", {"deletion_area": {"stepz": 1}}, "metric 'deletion_area' has no parameter 'stepz'"),
        ("removal_value", 2.0, "config key 'removal_value' must be 'mean'"),
        ("unsupported_explainers", "ignore", "config key 'unsupported_explainers' must be one of drop, refuse"),
        ("input_mean", [0.5], "give input_mean and input_std together"),
    ],
    "calibrate-to-interpret": [
        ("n_images", -3, "config key 'n_images' must be a finite number > 0"),
        ("lipschitz_radius", 0.0, "config key 'lipschitz_radius' must be a finite number > 0"),
        ("deletion_steps", 0, "config key 'deletion_steps' must be a finite number > 0"),
        ("mu_fidelity_subsets", 0, "config key 'mu_fidelity_subsets' must be a finite number >= 2"),
        ("n_superpixels", 0, "config key 'n_superpixels' must be a finite number > 0"),
        ("sweep_factors", [1.0, 0.0], "config key 'sweep_factors' must be a list of finite numbers, each > 0"),
        ("sweep_images", 0, "config key 'sweep_images' must be a finite number > 0"),
        ("calibrators", ["platt"], "config key 'calibrators' has value\\(s\\) 'platt'"),
        ("reduction", "abs", "config key 'reduction' has value\\(s\\) 'abs'"),
        ("explainers", ["rise", "rise"], "listed twice: rise"),
        ("explainers", [], "must name each explainer once and at least one"),
    ],
    "recalx": [
        ("n_images", 0, "config key 'n_images' must be a finite number > 0"),
        ("deletion_steps", 0, "config key 'deletion_steps' must be a finite number > 0"),
        ("n_bins", 0, "config key 'n_bins' must be a finite number > 0"),
        ("samples_per_bin", 0, "config key 'samples_per_bin' must be a finite number > 0"),
        ("levels", [0.5, 1.5], r"config key 'levels' must be a list of finite numbers, each in \[0, 1\]"),
        ("grouping", "blobs", "config key 'grouping' has value\\(s\\) 'blobs'"),
        ("reduction", "max-abs", "config key 'reduction' has value\\(s\\) 'max-abs'"),
        ("explainers", ["lime", "lime"], "listed twice: lime"),
        ("explainers", [], "must name each explainer once and at least one"),
    ],
    "fpa": [
        ("n_images", 0, "config key 'n_images' must be a finite number > 0"),
        ("ig_steps", 0, "config key 'ig_steps' must be a finite number > 0"),
        ("sg_samples", 0, "config key 'sg_samples' must be a finite number > 0"),
        ("sg_sigma", -0.1, "config key 'sg_sigma' must be a finite number >= 0"),
        ("fpa_p", 1.5, r"config key 'fpa_p' must be a finite number in \[0, 1\]; got 1.5"),
        ("erasing_p", -0.5, r"config key 'erasing_p' must be a finite number in \[0, 1\]"),
        ("momentum", -0.9, "config key 'momentum' must be a finite number >= 0"),
        ("milestones", [0], "config key 'milestones' must be a list of finite numbers, each > 0"),
        ("estimators", ["IG"], "config key 'estimators' has value\\(s\\) 'IG'"),
        ("regimes", ["mixup"], "config key 'regimes' has value\\(s\\) 'mixup'"),
        ("removal_value", -1.0, "config key 'removal_value' must be 'mean'"),
        ("model", "resnet99", "model 'resnet99' is neither a built-in architecture"),
    ],
    "mege-reco": [
        ("k", 1, "config key 'k' must be a finite number >= 2; got 1"),
        ("n_samples", 0, "config key 'n_samples' must be a finite number > 0"),
        ("mu_fidelity_subsets", 0, "config key 'mu_fidelity_subsets' must be a finite number >= 2"),
        ("mu_fidelity_fraction", 1.0, r"config key 'mu_fidelity_fraction' must lie in \(0, 1\)"),
        ("mu_fidelity_fraction", 0.0, r"config key 'mu_fidelity_fraction' must lie in \(0, 1\)"),
        ("noise_levels", [0.1, 2.0], r"config key 'noise_levels' must be a list of finite numbers, each in \[0, 1\]"),
        ("shuffle_levels", [-0.1], r"config key 'shuffle_levels' must be a list of finite numbers, each in \[0, 1\]"),
        ("noise_std", 0.0, "config key 'noise_std' must be a finite number > 0"),
        ("histogram_bins", 0, "config key 'histogram_bins' must be a finite number > 0"),
        ("reduction", "abs", "config key 'reduction' has value\\(s\\) 'abs'"),
        ("distance", "cosine", "config key 'distance' has value\\(s\\) 'cosine'"),
        ("explainers", ["saliency", "saliency"], "listed twice: saliency"),
        ("explainers", [], "must name each explainer once and at least one"),
    ],
    "roar": [
        ("fractions", [0.0, 0.5], "config key 'fractions' must list fractions strictly between 0 and 1"),
        ("seeds", 0, "config key 'seeds' \\(retrainings per setting\\) must be at least 1"),
        ("methods", [], "config keys 'methods' and 'modes' must each name at least one entry"),
        ("modes", ["both"], "config key 'modes' has value\\(s\\) 'both'"),
        ("reduction", "sum", "config key 'reduction' has value\\(s\\) 'sum'"),
    ],
}

CONFIG_CASES = [(protocol, *case) for protocol in PROTOCOL_MODULES for case in COMMON_CONFIG_CASES] + [
    (protocol, *case) for protocol, cases in PROTOCOL_CONFIG_CASES.items() for case in cases
]


@pytest.mark.parametrize("protocol, key, value, message", CONFIG_CASES,
                         ids=[f"{p}-{k}-{v!r}" for p, k, v, _ in CONFIG_CASES])
def test_protocol_configs_refuse_bad_keys_types_choices_and_ranges(protocol, key, value, message):
    with pytest.raises(XaitrustError, match=message):
        resolve_config(protocol_module(protocol).SPEC, "smoke", {key: value})


@pytest.mark.parametrize("protocol, user, message", [
    ("benchmark", {"explainers": ["saliency"], "lipschitz_explainers": ["saliency"],
                   "explainer_params": {"rise": {"n_masks": 0}}}, "rise: n_masks must be a positive integer"),
    ("calibrate-to-interpret", {"explainers": ["saliency"], "lipschitz_explainers": ["saliency"],
                                "sweep_explainers": ["saliency"], "explainer_params": {"lime": {"n_samples": -1}}},
     "lime: n_samples must be a positive integer"),
    ("recalx", {"explainers": ["lime"], "explainer_params": {"occlusion": {"window": 0}}},
     "occlusion: window must be a positive integer"),
    ("mege-reco", {"explainers": ["saliency"], "explainer_params": {"rise": {"n_masks": 0}}},
     "rise: n_masks must be a positive integer"),
])
def test_bad_parameters_of_an_explainer_not_run_are_refused(protocol, user, message):
    with pytest.raises(XaitrustError, match=f"config key 'explainer_params': {message}"):
        resolve_config(protocol_module(protocol).SPEC, "smoke", user)


@pytest.mark.parametrize("protocol", list(PROTOCOL_MODULES))
def test_an_unknown_profile_is_refused(protocol):
    with pytest.raises(XaitrustError, match="profile must be one of smoke, quick, paper; got 'fast'"):
        resolve_config(protocol_module(protocol).SPEC, "fast")


def test_a_calibration_split_larger_than_the_test_data_fails_before_training(tmp_path):
    with pytest.raises(XaitrustError, match=r"calibration_size = 400 leaves no held-out images of the \d+ test images"):
        run_protocol("benchmark", "smoke", None, tmp_path / "run", {"dataset": "digits", "calibration_size": 400})
    assert not (tmp_path / "run" / "models").exists()


# --- the command line -----------------------------------------------------------------------------------------------

def assert_cli_error(args, message):
    """The command fails with one ``error:`` line matching ``message``, exit code 2 and no traceback."""
    result = CliRunner().invoke(cli, [str(arg) for arg in args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert re.search(rf"error: .*{message}", result.output), result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory, net):
    """A checkpoint folder, good and NaN safetensors weights, a pickled weights file, a digits checkpoint whose
    weights hold NaN, a malformed and an unknown-key TOML config, all of the digits ``cnn``."""
    root = tmp_path_factory.mktemp("files")
    save_checkpoint(net, root / "model", {"dataset": "digits"})
    save_weights(net, root / "net.safetensors")
    save_weights(broken(net, "body.conv1.weight", float("nan")), root / "nan.safetensors")
    torch.save(net.state_dict(), root / "net.pt")
    save_checkpoint(broken(net, "body.conv1.weight", float("inf")), root / "inf-model", {"dataset": "digits"})
    (root / "malformed.toml").write_text("n_images = = 3\n")
    (root / "unknown.toml").write_text("n_imagez = 3\n")
    (root / "zero.toml").write_text("n_images = 0\n")
    return root


MODEL = ["--model", "cnn", "--dataset", "digits"]

#: case -> (arguments after the command, with {root} for the files' folder and {out} for a fresh folder; message)
CLI_CASES = {
    "explain-missing-checkpoint": (["explain", "--checkpoint", "{root}/nothing", "--out", "{out}"],
                                   "model '.*nothing' is neither a built-in architecture"),
    "explain-missing-weights": (["explain", *MODEL, "--weights", "{root}/none.safetensors", "--out", "{out}"],
                                "weights file .*none.safetensors does not exist"),
    "explain-pickled-weights": (["explain", *MODEL, "--weights", "{root}/net.pt", "--out", "{out}"],
                                "net.pt is a pickle"),
    "explain-nan-weights": (["explain", *MODEL, "--weights", "{root}/nan.safetensors", "--out", "{out}"],
                            r"weights file .*nan.safetensors holds NaN or infinite values in parameter 'body\.conv1"),
    "explain-inf-checkpoint": (["explain", "--checkpoint", "{root}/inf-model", "--out", "{out}"],
                               "holds NaN or infinite values in parameter 'body.conv1.weight'"),
    "explain-bad-model-options": (["explain", *MODEL, "--weights", "{root}/net.safetensors", "--model-options",
                                   "width =", "--out", "{out}"], "--model-options must be TOML key = value pairs"),
    "explain-unknown-model-option": (["explain", *MODEL, "--weights", "{root}/net.safetensors", "--model-options",
                                      "widthh = 3", "--out", "{out}"], "model 'cnn' has no option widthh"),
    "explain-bad-input-mean": (["explain", *MODEL, "--weights", "{root}/net.safetensors", "--input-mean", "a,b",
                                "--input-std", "1", "--out", "{out}"], "--input-mean must be comma-separated numbers"),
    "explain-input-mean-alone": (["explain", *MODEL, "--weights", "{root}/net.safetensors", "--input-mean", "0.5",
                                  "--out", "{out}"], "give input_mean and input_std together"),
    "explain-bad-device": (["explain", "--checkpoint", "{root}/model", "--device", "gpu", "--out", "{out}"],
                           "device must be auto, cpu, cuda or cuda:N; got 'gpu'"),
    "explain-unknown-method": (["explain", "--checkpoint", "{root}/model", "--methods", "salency", "--out", "{out}"],
                               "unknown explainer 'salency'"),
    "explain-no-dataset": (["explain", "--model", "cnn", "--weights", "{root}/net.safetensors", "--out", "{out}"],
                           "does not record its data set; pass --dataset"),
    "explain-unknown-dataset": (["explain", "--checkpoint", "{root}/model", "--dataset", "digitz", "--out", "{out}"],
                                "unknown dataset 'digitz'"),
    "explain-missing-data-root": (["explain", "--checkpoint", "{root}/model", "--dataset", "folder", "--data-root",
                                   "{root}/no-images", "--out", "{out}"], "image folder .*no-images does not exist"),
    "evaluate-out-not-csv": (["evaluate", "--checkpoint", "{root}/model", "--out", "{out}/table.txt"],
                             "--out must name a .csv file"),
    "evaluate-missing-checkpoint": (["evaluate", "--checkpoint", "{root}/nothing", "--out", "{out}/t.csv"],
                                    "is neither a built-in architecture"),
    "evaluate-pickled-model": (["evaluate", "--model", "{root}/net.pt", "--dataset", "digits", "--out", "{out}/t.csv"],
                               "net.pt is a pickle"),
    "evaluate-nan-weights": (["evaluate", *MODEL, "--weights", "{root}/nan.safetensors", "--out", "{out}/t.csv"],
                             "holds NaN or infinite values"),
    "evaluate-unknown-metric": (["evaluate", "--checkpoint", "{root}/model", "--metrics", "deletion", "--out",
                                 "{out}/t.csv"], "unknown metric 'deletion'"),
    "evaluate-masks-missing": (["evaluate", "--checkpoint", "{root}/model", "--metrics", "localization", "--out",
                                "{out}/t.csv"], "has no ground-truth masks"),
    "evaluate-bad-device": (["evaluate", "--checkpoint", "{root}/model", "--device", "cuda:x", "--out", "{out}/t.csv"],
                            "device must be auto, cpu, cuda or cuda:N; got 'cuda:x'"),
    "evaluate-bad-dataset-options": (["evaluate", "--checkpoint", "{root}/model", "--dataset-options", "limit = ",
                                      "--out", "{out}/t.csv"], "--dataset-options must be TOML key = value pairs"),
    "calibrate-missing-checkpoint": (["calibrate", "--checkpoint", "{root}/nothing"], "is neither a built-in"),
    "calibrate-nan-weights": (["calibrate", *MODEL, "--weights", "{root}/nan.safetensors", "--out", "{out}"],
                              "holds NaN or infinite values"),
    "calibrate-pickled-weights": (["calibrate", *MODEL, "--weights", "{root}/net.pt", "--out", "{out}"],
                                  "net.pt is a pickle"),
    "calibrate-bad-device": (["calibrate", "--checkpoint", "{root}/model", "--device", "tpu", "--out", "{out}"],
                             "device must be auto, cpu, cuda or cuda:N; got 'tpu'"),
    "calibrate-no-out": (["calibrate", *MODEL, "--weights", "{root}/net.safetensors"], "pass --out FOLDER"),
    "run-missing-config": (["run", "benchmark", "--config", "{root}/none.toml", "--out", "{out}"],
                           "config file .*none.toml does not exist"),
    "run-malformed-config": (["run", "benchmark", "--config", "{root}/malformed.toml", "--out", "{out}"],
                             "config file .*malformed.toml is not valid TOML"),
    "run-unknown-key": (["run", "benchmark", "--config", "{root}/unknown.toml", "--out", "{out}"],
                        "unknown config key 'n_imagez'"),
    "run-zero-images": (["run", "recalx", "--config", "{root}/zero.toml", "--out", "{out}"],
                        "config key 'n_images' must be a finite number > 0; got 0"),
    "run-bad-device": (["run", "benchmark", "--device", "gpu", "--out", "{out}"], "device must be auto, cpu, cuda"),
    "run-pickled-model": (["run", "benchmark", "--model", "{root}/net.pt", "--out", "{out}"], "net.pt is a pickle"),
    "run-pickled-weights": (["run", "benchmark", "--model", "cnn", "--weights", "{root}/net.pt", "--out", "{out}"],
                            "net.pt is a pickle"),
    "run-bad-model-options": (["run", "benchmark", "--model-options", "channels = [8", "--out", "{out}"],
                              "--model-options must be TOML key = value pairs"),
    "run-bad-input-mean": (["run", "benchmark", "--input-mean", "x", "--out", "{out}"],
                           "--input-mean must be comma-separated numbers"),
    "run-weights-for-retraining": (["run", "roar", "--weights", "{root}/net.safetensors", "--out", "{out}"],
                                   "roar trains its models itself .* so it takes no --weights"),
    "run-unknown-dataset": (["run", "benchmark", "--dataset", "digitz", "--out", "{out}"], "unknown dataset 'digitz'"),
    "run-check-missing-data": (["run", "benchmark", "--dataset", "npz", "--data-root", "{root}/none.npz", "--check"],
                               "npz file .*none.npz does not exist"),
    "train-unknown-dataset": (["train", "--dataset", "digitz", "--out", "{out}"], "unknown dataset 'digitz'"),
    "train-missing-data-root": (["train", "--dataset", "folder", "--data-root", "{root}/none", "--out", "{out}"],
                                "image folder .*none does not exist"),
    "train-bad-model-options": (["train", "--dataset", "digits", "--model-options", "hidden =", "--out", "{out}"],
                                "--model-options must be TOML key = value pairs"),
    "train-unknown-model": (["train", "--dataset", "digits", "--model", "vgg99", "--out", "{out}"],
                            "unknown model 'vgg99'"),
    "train-zero-epochs": (["train", "--dataset", "digits", "--epochs", "0", "--out", "{out}"],
                          "epochs must be a positive integer; got 0"),
    "train-bad-augmentation": (["train", "--dataset", "digits", "--augmentation", "warp", "--out", "{out}"],
                               "augmentation must be 'none' or distinct names .*; got 'warp'"),
    "train-bad-dataset-options": (["train", "--dataset", "digits", "--dataset-options", "test_fraction = 2.0", "--out",
                                   "{out}"], "test_fraction as a fraction must lie strictly between 0 and 1"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_commands_print_one_error_line_and_exit_2(files, tmp_path, case):
    args, message = CLI_CASES[case]
    assert_cli_error([arg.format(root=files, out=tmp_path / "out") for arg in args], message)
