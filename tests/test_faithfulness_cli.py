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
    out = tmp_path / "results.csv"
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--checkpoint", str(digits_checkpoint), "--explainers", "saliency,random",
         "--metrics", "deletion,mif-lif,btr,mu-fidelity,otsu-tv", "--n-images", "6", "--steps", "16",
         "--out", str(out), "--seed", "3"],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert list(table.columns[:5]) == ["metric", "method", "model", "sample", "value"]
    expected_metrics = {"deletion", "mif-lif", "btr", "deletion-random", "mu-fidelity", "otsu-tv"}
    assert set(table.metric) == expected_metrics
    assert len(table) == 6 * 2 * len(expected_metrics)
    assert table.groupby(["method", "metric"]).size().eq(6).all()
    assert table["sample"].nunique() == 6 and table["sample"].max() < 360  # digits test split
    deletion = table[table.metric == "deletion"]["value"]
    assert deletion.between(0, 1.5).all()
    assert set(table[table.metric == "btr"]["value"]) <= {0.0, 1.0}
    assert "saliency" in result.output and "±" in result.output
    assert json.loads((tmp_path / "results.json").read_text())["ties"] == "random"


def test_evaluate_local_lipschitz_compares_normalised_maps_as_the_protocols_do(digits_checkpoint, tmp_path):
    import torch

    from xaitrust.cli._checkpoint import checkpoint_images
    from xaitrust.explainers import get_explainer
    from xaitrust.metrics import local_lipschitz

    out = tmp_path / "results.csv"
    args = ["evaluate", "--checkpoint", str(digits_checkpoint), "--explainers", "saliency", "--metrics",
            "local-lipschitz", "--n-images", "3", "--out", str(out), "--seed", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    chosen = checkpoint_images(digits_checkpoint, None, None, 3, 2)
    expected = local_lipschitz(get_explainer("saliency"), chosen.model, chosen.x, chosen.predicted, seed=2,
                               reduction="abs-sum", normalize=True)
    values = torch.tensor(pd.read_csv(out)["value"].to_numpy(), dtype=expected.dtype)
    torch.testing.assert_close(values, expected)


def test_evaluate_rejects_an_unknown_metric(digits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(digits_checkpoint), "--metrics", "deletion,accuracy", "--out", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2
    assert "unknown metric 'accuracy'" in result.output
