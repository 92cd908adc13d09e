"""`xaitrust train` and `xaitrust demo` through click's test runner."""

import pytest
from click.testing import CliRunner
from PIL import Image

from xaitrust.cli import cli
from xaitrust.training import load_metadata, load_model


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_torch_thread):
    with one_torch_thread():
        yield


def test_train_on_digits_saves_a_checkpoint_and_resumes_as_a_no_op(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--dataset", "digits", "--epochs", "2", "--batch-size", "32", "--augmentation", "erasing",
            "--lr", "0.003", "--seed", "1", "--out", str(out), "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    metadata = load_metadata(out)
    accuracy = metadata["metrics"]["test_accuracy"]
    assert f"test accuracy: {accuracy:.4f}" in result.output and str(out) in result.output
    assert accuracy > 0.75  # chance is 0.1
    assert metadata["dataset"] == "digits" and metadata["train_config"]["augmentation"] == "erasing"
    assert metadata["seed"] == 1 and metadata["spec"]["name"] == "cnn" and len(metadata["history"]) == 2
    assert load_model(out).spec["image_size"] == [8, 8]

    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "nothing trained" in again.output
    assert f"test accuracy: {accuracy:.4f}" in again.output


def test_train_reports_user_mistakes_in_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--dataset", "cifar", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "error: unknown dataset 'cifar'" in result.output
    args = ["train", "--dataset", "digits", "--augmentation", "mixup", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "augmentation must be" in result.output


def test_demo_reuses_the_cached_model_and_plots_each_method(fashion_quick_model, fashion_quick_cache, tmp_path):
    args = ["demo", "--profile", "quick", "--cache-dir", str(fashion_quick_cache), "--out", str(tmp_path),
            "--explainers", "saliency,no-such-method", "--images", "3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "reusing the cached model" in result.output
    accuracy = float(result.output.split("test accuracy: ")[1].split()[0])
    assert accuracy > 0.78
    assert "warning: explainer no-such-method failed" in result.output
    assert "with 1 of 2 methods" in result.output
    with Image.open(tmp_path / "explanations.png") as image:
        width, height = image.size
        assert width > 1.5 * height  # three image columns, two rows (the images, then the one method that worked)
