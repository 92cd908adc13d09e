"""``xaitrust explain`` on a checkpoint of a small digits model."""

import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from xaitrust.cli import cli
from xaitrust.data import load_dataset
from xaitrust.explainers import get_explainer
from xaitrust.models import build_model
from xaitrust.training import save_checkpoint


def test_explain_writes_grid_and_the_attributions_it_plotted(tmp_path):
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10, (8, 8)).eval()
    save_checkpoint(model, tmp_path / "model", {"dataset": "digits"})
    out = tmp_path / "explained"
    result = CliRunner().invoke(
        cli, ["explain", "--checkpoint", str(tmp_path / "model"), "--methods", "saliency,gradcam", "--n-images", "5",
              "--out", str(out), "--output", "logit"],
    )
    assert result.exit_code == 0, result.output
    assert (out / "maps.png").stat().st_size > 5000
    stored = load_file(out / "attributions.safetensors")
    test = load_dataset("digits", split="test")
    position = {int(index): i for i, index in enumerate(test.index)}  # dataset index -> row of the test split
    assert torch.equal(stored["images"], test.x[[position[int(i)] for i in stored["indices"]]])
    predicted = model(stored["images"]).argmax(dim=1)
    expected = get_explainer("saliency")(model, stored["images"], predicted, output="logit")
    torch.testing.assert_close(stored["saliency"], expected)
    assert stored["gradcam"].shape == (5, 1, 8, 8)


def test_unknown_method_is_a_readable_error(tmp_path):
    model = build_model("cnn", 1, 10, (8, 8))
    save_checkpoint(model, tmp_path / "model", {"dataset": "digits"})
    result = CliRunner().invoke(cli, ["explain", "--checkpoint", str(tmp_path / "model"), "--methods", "salency",
                                      "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown explainer 'salency'" in result.output and "Traceback" not in result.output
