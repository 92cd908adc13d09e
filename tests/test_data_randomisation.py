"""The data randomisation test: labels permuted for training, the metric comparing maps across the two models."""

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from xaitrust.cli import cli
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import evaluate, get_metric
from xaitrust.training import permute_labels, shuffle_labels


def test_permuted_labels_are_a_seeded_permutation():
    y = torch.arange(100) % 10
    permuted = permute_labels(y, seed=3)
    assert torch.equal(permuted.sort().values, y.sort().values)  # every class keeps its count
    assert torch.equal(permuted, permute_labels(y, seed=3)) and not torch.equal(permuted, permute_labels(y, seed=4))
    assert (permuted == y).float().mean() < 0.3  # about 1/10 stay by chance ...
    assert (shuffle_labels(y, 1.0) == y).sum() == 0  # ... where switching every label leaves none: a trace of y
    with pytest.raises(XaitrustError, match="1-D integer"):
        permute_labels(torch.zeros(3))


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    """Checkpoint folders of the cnn trained 3 epochs on the digits with true and with permuted labels."""
    root = tmp_path_factory.mktemp("drt")
    folders = {}
    for name, extra in (("true", []), ("permuted", ["--permute-labels"])):
        folders[name] = root / name
        result = CliRunner().invoke(cli, ["train", "--dataset", "digits", "--epochs", "3", "--batch-size", "32",
                                          "--quiet", "--threads", "1", *extra, "--out", str(folders[name])])
        assert result.exit_code == 0, result.output
        folders[f"{name}-accuracy"] = float(result.output.split("test accuracy: ")[1].split()[0])
    return folders


def test_a_model_trained_on_permuted_labels_learns_nothing_about_the_test_set(trained_pair):
    assert trained_pair["true-accuracy"] > 0.6
    assert trained_pair["permuted-accuracy"] < 0.25  # chance is 0.1


def _evaluate(model, x, randomised, explainers):
    return evaluate(model, x, None, explainers, ["data_randomisation"], "logit",
                    metric_params={"data_randomisation": {"randomised_model": str(randomised)}})


def test_maps_of_the_same_model_are_identical_and_of_the_permuted_one_differ(trained_pair, digits_data):
    from xaitrust.training.checkpoint import load_model

    model = load_model(trained_pair["true"]).eval()
    x = digits_data[1].x[:24]
    same = _evaluate(model, x, trained_pair["true"], ["saliency", "random"])
    assert same["value"].to_numpy() == pytest.approx(1.0)
    table = _evaluate(model, x, trained_pair["permuted"], ["saliency", "gradient-input", "random"])
    means = table.groupby("method")["value"].mean()
    assert means["random"] == pytest.approx(1.0)  # a map that ignores the model fails the test
    assert means["saliency"] < 0.8 and means["gradient-input"] < means["random"]


def test_the_randomised_model_is_required_and_checked_before_any_work(digits_data, tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = digits_data[1].x[:2]
    with pytest.raises(XaitrustError, match="xaitrust train --permute-labels"):
        evaluate(model, x, None, ["saliency"], ["data_randomisation"], "logit")
    with pytest.raises(XaitrustError):
        get_metric("data_randomisation").check_params({"randomised_model": str(tmp_path / "missing")})


def test_evaluate_command_takes_the_randomised_model_as_a_metric_parameter(trained_pair, tmp_path):
    out = tmp_path / "drt.csv"
    args = ["evaluate", "--model", str(trained_pair["true"]), "--dataset", "digits", "--n-images", "8",
            "--explainers", "saliency", "--metrics", "data_randomisation,deletion_area", "--steps", "10",
            "--metric-params", f"data_randomisation = {{randomised_model = '{trained_pair['permuted']}'}}",
            "--threads", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert set(table["metric"]) == {"data_randomisation", "deletion_area"}
    bad = CliRunner().invoke(cli, [*args[:-4], "--metric-params", "data_randomisation = 3", "--out", str(out)])
    assert bad.exit_code != 0 and "must be a table" in bad.output and "Traceback" not in bad.output
