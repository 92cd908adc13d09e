"""``xaitrust evaluate`` end to end on a small model trained for one epoch on the scikit-learn digits."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from xaitrust.cli import cli
from xaitrust.training import TrainConfig, train_on_dataset


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits-cnn")
    train_on_dataset("digits", "cnn", TrainConfig(epochs=1, batch_size=32, seed=0), folder, train_limit=300, progress=False)
    return folder


def test_evaluate_writes_tidy_rows_and_a_summary(digits_checkpoint, tmp_path):
    from xaitrust.evaluation import COLUMNS

    out = tmp_path / "results.csv"
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--checkpoint", str(digits_checkpoint), "--explainers", "saliency,random",
         "--metrics", "deletion_area,mif_lif_area,better_than_random,mu_fidelity,otsu_tv", "--n-images", "6",
         "--steps", "16", "--out", str(out), "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns) == [*COLUMNS, "model"]
    expected_metrics = {"deletion_area", "mif_lif_area", "better_than_random", "mu_fidelity", "otsu_tv"}
    assert set(table.metric) == expected_metrics
    assert len(table) == 6 * 2 * len(expected_metrics)
    assert table.groupby(["method", "metric"]).size().eq(6).all()
    assert table["sample"].nunique() == 6 and table["sample"].max() < 1797  # positions among the 1797 digits
    assert table["label"].between(0, 9).all() and table["confidence"].between(0, 1).all()
    assert (table["target"] == table["prediction"]).all()
    deletion = table[table.metric == "deletion_area"]["value"]
    assert deletion.between(0, 1.5).all()
    assert set(table[table.metric == "better_than_random"]["value"]) <= {0.0, 1.0}
    assert "saliency" in result.output and "±" in result.output
    settings = json.loads((tmp_path / "results.json").read_text())
    assert settings["ties"] == "random" and settings["metrics"][0] == "deletion_area"


def test_evaluate_refuses_an_output_file_that_is_not_csv(digits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(digits_checkpoint), "--out", str(tmp_path / "r.json")]
    )
    assert result.exit_code == 2
    assert "--out must name a .csv file" in result.output
    assert not (tmp_path / "r.json").exists()


def test_evaluate_local_lipschitz_compares_normalised_maps_as_the_protocols_do(digits_checkpoint, tmp_path):
    import torch

    from xaitrust.cli._inputs import chosen_images
    from xaitrust.data import load_dataset
    from xaitrust.explainers import get_explainer
    from xaitrust.metrics import local_lipschitz
    from xaitrust.training import load_model

    out = tmp_path / "results.csv"
    args = ["evaluate", "--checkpoint", str(digits_checkpoint), "--explainers", "saliency", "--metrics",
            "local_lipschitz", "--n-images", "3", "--out", str(out), "--seed", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    test = load_dataset("digits", split="test")
    x = test.x[chosen_images(test, 3, 2)]
    model = load_model(digits_checkpoint)
    expected = local_lipschitz(get_explainer("saliency"), model, x, model(x).argmax(dim=1), seed=2,
                               output="probability", reduction="abs-sum", normalize=True)
    values = torch.tensor(pd.read_csv(out)["value"].to_numpy(), dtype=expected.dtype)
    torch.testing.assert_close(values, expected)


def test_evaluate_rejects_an_unknown_metric(digits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(digits_checkpoint), "--metrics", "deletion_area,accuracy",
              "--out", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2
    assert "unknown metric 'accuracy'" in result.output and "better_than_random" in result.output
