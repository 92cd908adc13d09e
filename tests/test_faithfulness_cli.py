"""``xaitrust evaluate`` end to end on a small model trained for one epoch on the scikit-learn digits."""

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
    assert (tmp_path / "results.json").is_file()


def test_evaluate_rejects_an_unknown_metric(digits_checkpoint, tmp_path):
    result = CliRunner().invoke(
        cli, ["evaluate", "--checkpoint", str(digits_checkpoint), "--metrics", "deletion,accuracy", "--out", str(tmp_path / "r.csv")]
    )
    assert result.exit_code == 2
    assert "unknown metric 'accuracy'" in result.output
