"""Models that come in as files: safetensors weights, torch.export archives, ONNX files; pickles refused."""

import contextlib
import copy
import importlib.util
import io
import os
import pickle
import re
import sys
import warnings
import zipfile

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.export import Dim

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.model_mode import evaluation_mode
from xaitrust.models.external import load_exported_program, load_model_file, load_onnx, read_state_dict

PICKLE_MESSAGE = (
    r"is a pickle .* runs any code it names"
    r"(.|\n)*save_file\(model\.state_dict\(\), \"weights\.safetensors\"\)"
)
PROPAGATION = ["guided-backprop", "deeplift", "lrp"]
BATCH_AXIS = {"x": {0: "batch"}}


class ResidualCNN(nn.Module):
    """3 x 32 x 32 images to 5 logits: convolution, batch norm, ReLU, max pooling, a residual block, dropout, adaptive
    average pooling and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        h = self.pool(self.stem(x))
        h = self.relu(h + self.block(h))
        return self.fc(self.drop(torch.flatten(self.gap(h), 1)))


class DetachedInput(ResidualCNN):
    def forward(self, x):
        return super().forward(x.detach())


class FixedBatchReshape(nn.Module):
    """Flattens with the batch size of the export baked in, as ``x.reshape(4, -1)`` does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=4)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).reshape(4, -1))


class MeanPooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


class MakesDirectory:
    """Unpickling it creates ``path``: the proof that a loader ran the pickle."""

    def __init__(self, path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def trained_like(model: nn.Module) -> nn.Module:
    """``model`` with batch-norm statistics of its own (a few training-mode passes), in eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, 3, 32, 32) * 2)
    return model.eval()


def export_pt2(model, path, dynamic_shapes="batch"):
    if dynamic_shapes == "batch":
        dynamic_shapes = {"x": {0: Dim("batch")}}
    torch.export.save(torch.export.export(model, (torch.rand(4, 3, 32, 32),), dynamic_shapes=dynamic_shapes), path)
    return path


def export_onnx(model, path, opset=17, dynamic_axes=BATCH_AXIS, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            model, (torch.rand(4, 3, 32, 32),), str(path), dynamo=False, opset_version=opset, input_names=["x"],
            dynamic_axes=dynamic_axes, **options,
        )
    return path


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return trained_like(ResidualCNN())


@pytest.fixture(scope="module")
def pt2(net, tmp_path_factory):
    return export_pt2(net, tmp_path_factory.mktemp("pt2") / "model.pt2")


@pytest.fixture(scope="module")
def onnx_file(net, tmp_path_factory):
    return export_onnx(net, tmp_path_factory.mktemp("onnx") / "model.onnx")


def assert_same_function(loaded, original, batch_sizes=(1, 3, 7)):
    """Same logits (atol 1e-5) and the same input gradient of one class score, on batches of other sizes than the
    export's example of 4."""
    for batch in batch_sizes:
        x = torch.rand(batch, 3, 32, 32, requires_grad=True)
        ours, theirs = loaded(x), original(x)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
        gradient = torch.autograd.grad(ours[:, 2].sum(), x)[0]
        torch.testing.assert_close(gradient, torch.autograd.grad(theirs[:, 2].sum(), x)[0], atol=1e-6, rtol=0)
        assert gradient.abs().sum() > 0


def leaf_types(model: nn.Module) -> set[str]:
    return {type(m).__name__ for m in model.modules() if not list(m.children())}


# --- safetensors weights ----------------------------------------------------------------------------------------


def test_read_state_dict_returns_the_saved_tensors(net, tmp_path):
    save_file(net.state_dict(), tmp_path / "weights.safetensors")
    state = read_state_dict(tmp_path / "weights.safetensors")
    assert state.keys() == net.state_dict().keys()
    for key, tensor in net.state_dict().items():
        assert torch.equal(state[key], tensor)


def test_safetensors_whose_header_length_starts_with_the_pickle_byte_are_read(tmp_path):
    # The first byte of a safetensors file is the low byte of its header length: 0x80, the opcode that starts a
    # pickle, for one header length in 32 (headers are padded to 8 bytes).
    path = tmp_path / "weights.bin"
    for padding in range(300):
        save_file({"w": torch.ones(2)}, path, metadata={"pad": "x" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))


@pytest.mark.parametrize("form", ["state dict", "whole model", "state dict named .safetensors", "legacy format"])
def test_torch_save_files_are_refused_with_the_safetensors_recipe(net, tmp_path, form):
    name, obj, options = {
        "state dict": ("weights.pt", net.state_dict(), {}),
        "whole model": ("model.pth", net, {}),
        "state dict named .safetensors": ("weights.safetensors", net.state_dict(), {}),
        "legacy format": ("weights.bin", net.state_dict(), {"_use_new_zipfile_serialization": False}),
    }[form]
    torch.save(obj, tmp_path / name, **options)
    with pytest.raises(XaitrustError, match=PICKLE_MESSAGE) as refusal:
        read_state_dict(tmp_path / name)
    assert "v.clone().contiguous()" in str(refusal.value)
    with pytest.raises(XaitrustError, match=PICKLE_MESSAGE):
        load_model_file(tmp_path / name)


@pytest.mark.parametrize(("name", "protocol"), [("weights.safetensors", 2), ("weights.pkl", 0), ("model.pt2", 4)])
def test_a_pickle_is_refused_without_being_opened(tmp_path, name, protocol):
    marker = tmp_path / "ran"
    (tmp_path / name).write_bytes(pickle.dumps(MakesDirectory(marker), protocol=protocol))
    for load in (read_state_dict, load_model_file, load_exported_program, load_onnx):
        with pytest.raises(XaitrustError, match=PICKLE_MESSAGE):
            load(tmp_path / name)
    assert not marker.exists()


@pytest.mark.parametrize("keep", [5, 0.5])
def test_truncated_safetensors_raise_a_clear_error(net, tmp_path, keep):
    path = tmp_path / "weights.safetensors"
    save_file(net.state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(XaitrustError, match=f"{re.escape(str(path))} is not a readable safetensors file"):
        read_state_dict(path)


@pytest.mark.parametrize("load", [read_state_dict, load_exported_program, load_onnx, load_model_file])
def test_missing_file_is_named(tmp_path, load):
    with pytest.raises(XaitrustError, match=f"{re.escape(str(tmp_path / 'absent.pt2'))} does not exist"):
        load(tmp_path / "absent.pt2")


# --- load_model_file ----------------------------------------------------------------------------------------------


def test_load_model_file_dispatches_by_suffix(net, pt2, onnx_file):
    assert_same_function(load_model_file(pt2), net, batch_sizes=(2,))
    assert_same_function(load_model_file(onnx_file), net, batch_sizes=(2,))


@pytest.mark.parametrize("name", ["notes.txt", "weights.safetensors"])
def test_other_files_are_refused_with_the_accepted_forms(net, tmp_path, name):
    if name.endswith(".safetensors"):
        save_file(net.state_dict(), tmp_path / name)  # weights alone are no model
    else:
        (tmp_path / name).write_text("a model")
    with pytest.raises(XaitrustError, match=r"checkpoint folder, path/to/file\.py:Name with \.safetensors weights, "
                                            r"a \.pt2 archive \(torch\.export\.save\) or an \.onnx file"):
        load_model_file(tmp_path / name)


# --- torch.export archives ---------------------------------------------------------------------------------------


def test_exported_program_matches_the_model_on_other_batch_sizes(net, pt2):
    assert_same_function(load_exported_program(pt2), net)


def test_exported_program_runs_in_eval_mode_and_refuses_training(net, pt2):
    # What torch gives: a module whose train() and eval() both raise.
    with pytest.raises(NotImplementedError):
        torch.export.load(pt2).module().eval()
    model = load_exported_program(pt2)
    assert not any(m.training for m in model.modules())
    assert model.eval() is model
    with evaluation_mode(model):
        assert_same_function(model, net, batch_sizes=(2,))
    with pytest.raises(XaitrustError, match="cannot be trained; train the original model, then export it again"):
        model.train()


def test_exported_program_is_a_flat_graph_that_hooks_and_propagation_rules_cannot_see(pt2):
    model = load_exported_program(pt2)
    calls = []
    model.get_submodule("block.0").register_forward_hook(lambda *args: calls.append(args))
    model(torch.rand(2, 3, 32, 32))
    assert calls == []
    for name in PROPAGATION:
        with pytest.raises(XaitrustError, match=f"{name} has no rule for GuardsFn, Module"):
            get_explainer(name).check_model(model)


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # raised inside torch
def test_exported_program_can_be_deep_copied(net, pt2):
    model = load_exported_program(pt2)
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied.get_parameter("fc.weight").add_(1.0)
    assert_same_function(model, net, batch_sizes=(2,))


@pytest.mark.parametrize(
    ("dynamic_shapes", "message"),
    [(None, "exactly 4 images"), ({"x": {0: Dim("batch", max=8)}}, "at most 8 images")],
)
def test_export_with_a_fixed_or_bounded_batch_is_refused(net, tmp_path, dynamic_shapes, message):
    path = export_pt2(net, tmp_path / "model.pt2", dynamic_shapes)
    fix = r"dynamic_shapes=\{\"x\": \{0: torch\.export\.Dim\(\"batch\"\)\}\}"
    with pytest.raises(XaitrustError, match=message + r"(.|\n)*" + fix):
        load_exported_program(path)


def test_export_in_training_mode_is_refused(net, tmp_path):
    path = export_pt2(copy.deepcopy(net).train(), tmp_path / "model.pt2")
    with pytest.raises(XaitrustError, match=r"training mode \(aten\.batch_norm\.default, aten\.dropout\.default "
                                            r"run as in training\)(.|\n)*call model\.eval\(\) before exporting"):
        load_exported_program(path)


def test_export_without_input_gradient_is_refused(tmp_path):
    path = export_pt2(trained_like(DetachedInput()), tmp_path / "model.pt2")
    with pytest.raises(XaitrustError, match="does not depend differentiably on its input"):
        load_exported_program(path)


def test_archive_with_a_pickled_payload_is_refused_before_torch_would_run_it(pt2, tmp_path):
    marker = tmp_path / "ran"
    payload = io.BytesIO()
    torch.save(((MakesDirectory(marker),), {}), payload)
    crafted = tmp_path / "crafted.pt2"
    with zipfile.ZipFile(pt2) as source, zipfile.ZipFile(crafted, "w") as target:
        for name in source.namelist():
            replace = name.endswith("data/sample_inputs/model.pt")
            target.writestr(name, payload.getvalue() if replace else source.read(name))
    with pytest.raises(XaitrustError, match=r"holds data/sample_inputs/model\.pt, which torch\.export\.load would "
                                            r"unpickle with the full unpickler"):
        load_exported_program(crafted)
    assert not marker.exists()
    with contextlib.suppress(Exception):  # torch's warning about its fallback fails to format under pytest's logging
        torch.export.load(crafted)
    assert marker.exists()  # torch.export.load on its own ran the pickle


@pytest.mark.parametrize("content", [b"not an archive", "zip without a program"])
def test_files_that_are_not_export_archives_are_refused(tmp_path, content):
    path = tmp_path / "model.pt2"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("model/readme.txt", content)
    message = re.escape(str(path)) + r" is not a torch\.export archive .*torch\.export\.save"
    with pytest.raises(XaitrustError, match=message):
        load_exported_program(path)


# --- ONNX ---------------------------------------------------------------------------------------------------------


def test_onnx_model_matches_the_model_on_other_batch_sizes(net, onnx_file):
    model = load_onnx(onnx_file)
    assert not any(m.training for m in model.modules())
    assert_same_function(model, net)


def test_onnx_conversion_of_a_residual_cnn_has_these_layer_types(onnx_file):
    assert leaf_types(load_onnx(onnx_file)) == {
        "Conv2d", "ReLU", "MaxPool2d", "OnnxBinaryMathOperation", "OnnxGlobalAveragePoolWithKnownInputShape",
        "Flatten", "Linear",
    }


@pytest.mark.parametrize("name", PROPAGATION)
def test_propagation_explainers_refuse_a_converted_residual_cnn(onnx_file, name):
    with pytest.raises(XaitrustError, match=f"{name} has no rule for OnnxBinaryMathOperation, "
                                            "OnnxGlobalAveragePoolWithKnownInputShape"):
        get_explainer(name)(load_onnx(onnx_file), torch.rand(2, 3, 32, 32), 1)


@pytest.mark.filterwarnings("ignore:deeplift.*summation-to-delta")  # max pooling
@pytest.mark.parametrize("name", PROPAGATION)
def test_propagation_explainers_explain_a_converted_plain_cnn_as_the_original(tmp_path, name):
    torch.manual_seed(0)
    plain = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(4), nn.Flatten(), nn.Linear(6 * 4 * 4, 5),
    ).eval()
    model = load_onnx(export_onnx(plain, tmp_path / "plain.onnx"))
    assert leaf_types(model) == {"Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear"}
    images, target = torch.rand(3, 3, 32, 32), torch.tensor([0, 2, 4])
    explainer = get_explainer(name)
    torch.testing.assert_close(explainer(model, images, target), explainer(plain, images, target), atol=1e-5, rtol=0)


def test_onnx_batch_norms_kept_by_the_export_run_in_eval_mode(net, tmp_path):
    path = export_onnx(net, tmp_path / "model.onnx", training=torch.onnx.TrainingMode.PRESERVE,
                       do_constant_folding=False)
    model = load_onnx(path)
    assert {"BatchNorm2d", "OnnxBatchNorm"} & leaf_types(model)
    assert_same_function(model, net)  # in training mode they would normalise with the batch's statistics


def test_onnx_model_with_free_image_sizes_is_loaded_without_a_trial_run(net, tmp_path):
    path = export_onnx(net, tmp_path / "model.onnx", dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}})
    assert_same_function(load_onnx(path), net, batch_sizes=(2,))


def test_onnx_operation_onnx2torch_cannot_convert_is_refused_with_the_export_to_use(tmp_path):
    path = export_onnx(MeanPooled().eval(), tmp_path / "model.onnx", opset=18)
    with pytest.raises(XaitrustError, match=r"onnx2torch cannot convert .*ReduceMean(.|\n)*opset_version=17"):
        load_onnx(path)


def test_onnx_export_with_a_fixed_batch_is_refused(tmp_path):
    path = export_onnx(FixedBatchReshape().eval(), tmp_path / "model.onnx", dynamic_axes=None)
    with pytest.raises(XaitrustError, match=r"fails on a batch of 1 image\(s\)(.|\n)*dynamic_axes"):
        load_onnx(path)


def test_files_that_are_not_onnx_are_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("not a model")
    with pytest.raises(XaitrustError, match=f"{re.escape(str(path))} is not a readable ONNX model"):
        load_onnx(path)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_onnx2torch_is_imported_with_a_torchvision_stand_in_that_refuses_its_operations(onnx_file):
    load_onnx(onnx_file)
    assert "torchvision" not in sys.modules and "torchvision.ops" not in sys.modules
    from onnx2torch.node_converters import nms, roialign

    for operation in (nms.torchvision.ops.nms, nms.torchvision.ops.box_convert, roialign.roi_align):
        with pytest.raises(XaitrustError, match="uses NonMaxSuppression/RoiAlign, which need torchvision"):
            operation(torch.zeros(1, 4), torch.zeros(1), 0.5)


def test_missing_onnx2torch_gives_the_install_command(onnx_file, monkeypatch):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "onnx2torch" else find_spec(name, *args)
    )
    with pytest.raises(XaitrustError, match=r"pip install onnx && pip install --no-deps onnx2torch"):
        load_onnx(onnx_file)
