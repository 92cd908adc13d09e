"""End to end on a model and data of the user's own making: ``tests/assets/tiny_resnet.py:TinyResNet`` (BatchNorm,
residual blocks, functional ReLUs, its own normalisation) trained outside xaitrust and saved as safetensors, and RGB
images as an ``.npz`` file and as class folders. Each way a model comes in (file + weights, ``.pt2``, ``.onnx``,
checkpoint folder, a Python object) and each data kind gets a scored run; each user mistake a clear message."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from user_data import CLASSES, MODEL_REFERENCE, rgb_images, save_weights, to_tensor, train_tiny_resnet

from xaitrust.cli import cli
from xaitrust.data import ImageDataset
from xaitrust.errors import XaitrustError

#: A benchmark small enough for CI: three explainers that work on functional ReLUs, six images, two metrics' worth of
#: steps.
SMALL_BENCHMARK = [
    "--profile", "smoke", "--config",
]
SMALL_CONFIG = """
explainers = ["saliency", "integrated-gradients", "gradcam", "random"]
lipschitz_explainers = ["saliency"]
calibration_size = 100
n_images = 6
"""


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """The user's weights, data as .npz and as class folders, the test images, and the trained model object."""
    folder = tmp_path_factory.mktemp("user")
    images, labels = rgb_images(1500, seed=0)
    model = train_tiny_resnet(to_tensor(images[:1000]), torch.from_numpy(labels[:1000]), epochs=2)
    weights = save_weights(model, folder / "weights.safetensors")
    npz = folder / "data.npz"
    np.savez(npz, x=images, y=labels, classes=np.array(CLASSES))
    images_folder = folder / "images"
    for i, (image, label) in enumerate(zip(images[:400], labels[:400])):  # folders sort in the model's class order
        (images_folder / f"{label}-{CLASSES[label]}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(images_folder / f"{label}-{CLASSES[label]}" / f"{i:04d}.png")
    (folder / "config.toml").write_text(SMALL_CONFIG)
    return {"folder": folder, "weights": weights, "npz": npz, "images": images_folder, "model": model,
            "config": folder / "config.toml", "x": to_tensor(images[1000:]), "y": torch.from_numpy(labels[1000:])}


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_benchmark_scores_the_users_model_from_a_file_and_weights_without_training(user_files, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "benchmark", "--model", f"{MODEL_REFERENCE}", "--model-options", "width = 8",
                    "--weights", user_files["weights"], "--dataset", "npz", "--data-root", user_files["npz"],
                    *SMALL_BENCHMARK, user_files["config"], "--out", out)
    assert result.exit_code == 0, result.output
    assert not (out / "models").exists()  # nothing trained
    report = (out / "report.html").read_text()
    assert "tiny_resnet.py:TinyResNet" in report and "given trained" in report
    accuracy = float(report.split("test accuracy ")[1][:6])
    assert accuracy > 0.9
    results = pd.read_csv(out / "results.csv")
    assert {"saliency", "integrated-gradients", "gradcam"} <= set(results["method"])


def test_python_api_writes_the_same_run_folder_for_a_model_object(user_files, tmp_path):
    import xaitrust

    test = ImageDataset(user_files["x"], user_files["y"], CLASSES, name="my-rgb")
    report = xaitrust.benchmark(user_files["model"], test, out=tmp_path / "run", profile="smoke",
                                explainers=["saliency", "gradcam", "random"], lipschitz_explainers=["saliency"],
                                calibration_size=100, n_images=4)
    assert report.name == "report.html" and "TinyResNet" in report.read_text()
    config = (tmp_path / "run" / "config.toml").read_text()
    assert 'model = "python:TinyResNet@' in config
    # Same objects: resumes; another model object: refused.
    xaitrust.benchmark(user_files["model"], test, out=tmp_path / "run", profile="smoke",
                       explainers=["saliency", "gradcam", "random"], lipschitz_explainers=["saliency"],
                       calibration_size=100, n_images=4)
    other = train_tiny_resnet(user_files["x"][:64], user_files["y"][:64], epochs=1, seed=1)
    with pytest.raises(XaitrustError, match="different config"):
        xaitrust.benchmark(other, test, out=tmp_path / "run", profile="smoke",
                           explainers=["saliency", "gradcam", "random"], lipschitz_explainers=["saliency"],
                           calibration_size=100, n_images=4)


def test_image_folder_data_and_checkpoint_recorded_data(user_files, tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "benchmark", "--model", MODEL_REFERENCE, "--model-options", "width = 8",
                    "--weights", user_files["weights"], "--dataset", "folder", "--data-root", user_files["images"],
                    "--dataset-options", "test_fraction = 0.5", *SMALL_BENCHMARK, user_files["config"],
                    "--out", out)
    assert result.exit_code == 0, result.output


def test_exported_and_onnx_models_run_gradient_and_perturbation_methods(user_files, tmp_path):
    model = user_files["model"]
    example = user_files["x"][:2]
    pt2 = tmp_path / "model.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}}), pt2)
    onnx_file = tmp_path / "model.onnx"
    torch.onnx.export(model, (example,), onnx_file, input_names=["x"], dynamic_axes={"x": {0: "batch"}},
                      dynamo=False, opset_version=17)
    for path in (pt2, onnx_file):
        out = tmp_path / path.suffix[1:]
        result = invoke("explain", "--model", path, "--dataset", "npz", "--data-root", user_files["npz"],
                        "--methods", "saliency,integrated-gradients,occlusion", "--n-images", 3, "--out", out)
        assert result.exit_code == 0, result.output
        assert (out / "maps.png").is_file()


@pytest.mark.parametrize("protocol, settings", [
    ("roar", 'methods = ["saliency", "random"]\nfractions = [0.5]\nmodes = ["roar"]\ntest_size = 100\n'),
    ("fpa", 'test_size = 100\nn_images = 4\nestimators = ["random", "IG_sum", "VG_abs"]\n'),
    ("mege-reco", 'n_samples = 6\nexplainers = ["saliency", "random"]\nnoise_levels = []\nshuffle_levels = []\n'),
])
def test_retraining_protocols_train_the_users_architecture(user_files, tmp_path, protocol, settings):
    config = tmp_path / "config.toml"
    config.write_text(settings + "train_size = 300\nmodel_options = { width = 4 }\n")
    result = invoke("run", protocol, "--profile", "smoke", "--config", config, "--model", MODEL_REFERENCE,
                    "--dataset", "npz", "--data-root", user_files["npz"], "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "report.html").is_file()
    specs = [json.loads(path.read_text())["spec"] for path in (tmp_path / "run" / "models").rglob("model.json")]
    assert specs and all(spec["name"].endswith("tiny_resnet.py:TinyResNet") for spec in specs)


def test_retraining_protocols_refuse_a_trained_model(user_files, tmp_path):
    result = CliRunner().invoke(cli, ["run", "roar", "--profile", "smoke", "--model", MODEL_REFERENCE, "--weights",
                                      str(user_files["weights"]), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "trains its models itself" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model-options", "width = 8, num_classes = 3"], "(5,) in the file, (3,) in the model"),
        (["--model-options", "width = 16"], "do not fit the model"),
        (["--model-options", "depth = 3"], "check model_options"),
        (["--model", "tests/assets/tiny_resnet.py:NoSuchNet"], "defines no model named 'NoSuchNet'"),
        (["--model", "tests/assets/missing.py:TinyResNet"], "does not exist"),
    ],
)
def test_user_mistakes_get_a_clear_message_before_any_work(user_files, tmp_path, args, message):
    base = {"--model": MODEL_REFERENCE, "--model-options": "width = 8", "--weights": str(user_files["weights"])}
    base.update(dict(zip(args[::2], args[1::2])))
    result = CliRunner().invoke(cli, ["run", "benchmark", *[v for kv in base.items() for v in kv], "--dataset", "npz",
                                      "--data-root", str(user_files["npz"]), *SMALL_BENCHMARK,
                                      str(user_files["config"]), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_pickled_weights_are_refused_with_the_safetensors_recipe(user_files, tmp_path):
    pickled = tmp_path / "weights.pt"
    torch.save(user_files["model"].state_dict(), pickled)
    raw = tmp_path / "weights.safetensors"
    raw.write_bytes(pickle.dumps({"a": 1}))
    for path in (pickled, raw):
        result = CliRunner().invoke(cli, ["explain", "--model", MODEL_REFERENCE, "--model-options", "width = 8",
                                          "--weights", str(path), "--dataset", "npz", "--data-root",
                                          str(user_files["npz"]), "--out", str(tmp_path / "maps")])
        assert result.exit_code == 2, result.output
        assert "safetensors" in result.output and "save_file" in result.output


def test_model_expecting_normalised_inputs_without_input_statistics_is_caught(user_files, tmp_path):
    """A model trained on normalised inputs, given [0, 1] images: the preflight measures accuracy under both
    conventions and names the fix."""

    class ExpectsNormalised(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):  # the user's model without its normalisation: expects (x - 0.5) / 0.25
            return self.inner(x * 0.25 + 0.5)

    import xaitrust

    test = ImageDataset(user_files["x"], user_files["y"], CLASSES, name="my-rgb")
    with pytest.raises(XaitrustError, match="input_mean"):
        xaitrust.benchmark(ExpectsNormalised(user_files["model"]), test, out=tmp_path / "run", profile="smoke",
                           explainers=["saliency"], lipschitz_explainers=["saliency"], calibration_size=100,
                           n_images=4)


def test_a_model_whose_outputs_do_not_match_the_classes_is_refused(user_files, tmp_path):
    images, labels = rgb_images(1000, seed=3)
    keep = labels < 4  # the user's data has four of the model's five classes
    np.savez(tmp_path / "four.npz", x=images[keep], y=labels[keep], classes=np.array(CLASSES[:4]))
    result = CliRunner().invoke(cli, ["run", "benchmark", "--model", MODEL_REFERENCE, "--model-options", "width = 8",
                                      "--weights", str(user_files["weights"]), "--dataset", "npz", "--data-root",
                                      str(tmp_path / "four.npz"), *SMALL_BENCHMARK, str(user_files["config"]),
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "5 logits" in result.output and "4 classes" in result.output


def test_train_a_user_architecture_then_later_commands_find_its_data_from_the_checkpoint(user_files, tmp_path):
    checkpoint = tmp_path / "ckpt"
    result = invoke("train", "--model", MODEL_REFERENCE, "--model-options", "width = 4", "--dataset", "npz",
                    "--data-root", user_files["npz"], "--dataset-options", "test_fraction = 0.3", "--epochs", 1,
                    "--limit", 300, "--out", checkpoint, "--quiet", "--device", "cpu")
    assert result.exit_code == 0, result.output
    out = tmp_path / "maps"
    result = invoke("explain", "--model", checkpoint, "--methods", "saliency,gradcam", "--n-images", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "maps.png").is_file()
    result = invoke("calibrate", "--model", checkpoint, "--calibration-size", 100)
    assert result.exit_code == 0, result.output
    assert (checkpoint / "calibration-temperature-summary.json").is_file()
    result = invoke("evaluate", "--model", checkpoint, "--explainers", "saliency", "--metrics", "deletion_area",
                    "--n-images", 3, "--out", tmp_path / "scores.csv")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "scores.csv")
    assert table["sample"].max() < 1500 and set(table.columns) >= {"label", "prediction", "confidence"}


def test_benchmark_trains_a_user_architecture_and_drops_explainers_it_cannot_support(user_files, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text(SMALL_CONFIG.replace('"random"]', '"random", "guided-backprop"]')
                      + "train_size = 300\nmodel_options = { width = 4 }\n")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="leaving out explainer guided-backprop"):
        result = invoke("run", "benchmark", "--profile", "smoke", "--config", config, "--model", MODEL_REFERENCE,
                        "--dataset", "npz", "--data-root", user_files["npz"], "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "models" / "model" / "model.json").is_file()  # trained here, from the user's class
    assert "guided-backprop" not in set(pd.read_csv(out / "results.csv")["method"])
    assert "trained here" in (out / "report.html").read_text()


def test_configs_take_the_users_own_explainer_and_metric_from_files(user_files, tmp_path):
    (tmp_path / "mine.py").write_text(
        "import torch\n"
        "from xaitrust.evaluation import define_metric\n\n"
        "def edges(model, x, target):\n"
        "    '''A user's explainer: a plain callable returning (B, C, H, W).'''\n"
        "    return (x - x.mean(dim=(2, 3), keepdim=True)).abs()\n\n"
        "@define_metric(higher_is_better=True, description='Share of each map in its centre.')\n"
        "def centre_mass(maps, *, margin: int = 4):\n"
        "    inner = maps[:, margin:-margin, margin:-margin].abs()\n"
        "    return inner.flatten(1).sum(1) / maps.abs().flatten(1).sum(1).clamp_min(1e-12)\n"
    )
    mine = tmp_path / "mine.py"
    config = tmp_path / "config.toml"
    config.write_text(f'explainers = ["saliency", "{mine}:edges"]\nlipschitz_explainers = ["saliency"]\n'
                      f'metrics = ["deletion_area", "{mine}:centre_mass"]\nmetric_params = {{ centre_mass = '
                      '{ margin = 6 } }\ncalibration_size = 100\nn_images = 4\n')
    out = tmp_path / "run"
    result = invoke("run", "benchmark", "--profile", "smoke", "--config", config, "--model", MODEL_REFERENCE,
                    "--model-options", "width = 8", "--weights", user_files["weights"], "--dataset", "npz",
                    "--data-root", user_files["npz"], "--out", out)
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert f"{mine}:edges" in set(results["method"])
    centre = results[results["metric"] == "centre_mass"]
    assert len(centre) == 2 * 2 * 4 and centre["value"].between(0, 1).all()  # 2 methods x 2 models x 4 images
