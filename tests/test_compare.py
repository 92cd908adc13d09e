"""``xaitrust compare``: runs side by side, paired differences only where the images are the same."""

import json

import numpy as np
import pandas as pd
import pytest
import tomli_w
from click.testing import CliRunner

from xaitrust.cli import cli
from xaitrust.errors import XaitrustError
from xaitrust.report.compare import paired_differences, read_run

N = 40


def _write_run(folder, shift: dict, dataset="digits", protocol="benchmark", seed=0):
    """A finished run folder: config.toml and results.csv of methods random / good / same on two metrics; ``shift``
    adds a constant to a method's deletion area (lower is better) on the uncalibrated model."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, size=N)
    rows = []
    for method, offset in (("random", 0.0), ("good", -0.2), ("same", 0.0)):
        noise = rng.normal(scale=0.01, size=N)
        for model in ("uncalibrated", "calibrated"):
            deletion = base + offset + noise + shift.get(method, 0.0)
            similarity = np.full(N, 1.0 if method == "random" else 0.1) + rng.normal(scale=0.01, size=N)
            for metric, values in (("deletion_area", deletion), ("randomisation_similarity", similarity),
                                   ("insertion_area", 1 - deletion)):
                rows += [{"metric": metric, "method": method, "model": model, "sample": 100 + i, "value": v,
                          "label": i % 10, "prediction": i % 10, "confidence": 0.9} for i, v in enumerate(values)]
    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "results.csv", index=False)
    config = {"protocol": protocol, "profile": "smoke", "dataset": dataset, "data_root": "", "dataset_options": {},
              "test_size": 0, "calibration_size": 300, "n_images": N, "seed": 0}
    (folder / "config.toml").write_text(tomli_w.dumps(config))
    return folder


def test_paired_differences_find_the_method_that_moved_and_only_it(tmp_path):
    reference = read_run(_write_run(tmp_path / "a", {}), "uncalibrated")
    other = read_run(_write_run(tmp_path / "b", {"good": -0.1}), "uncalibrated")
    table = paired_differences(reference, other).set_index(["metric", "method"])
    assert table.loc[("deletion_area", "good"), "outcome"] == "better"  # lower deletion area
    assert table.loc[("insertion_area", "good"), "outcome"] == "better"  # higher insertion area
    assert table.loc[("deletion_area", "good"), "difference"] == pytest.approx(-0.1, abs=0.01)
    assert table.loc[("deletion_area", "same"), "outcome"] == "not resolved"  # equal by construction
    assert (table["n"] == N).all()
    worse = paired_differences(other, reference).set_index(["metric", "method"])
    assert worse.loc[("deletion_area", "good"), "outcome"] == "worse"


def test_runs_on_different_images_are_not_paired(tmp_path):
    reference = read_run(_write_run(tmp_path / "a", {}), "uncalibrated")
    other = read_run(_write_run(tmp_path / "b", {"good": -0.1}, dataset="fashion-mnist"), "uncalibrated")
    assert paired_differences(reference, other).empty


def test_compare_command_writes_report_differences_and_summary(tmp_path):
    first, second = _write_run(tmp_path / "a", {}), _write_run(tmp_path / "b", {"good": -0.1})
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", str(first), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    differences = pd.read_csv(out / "differences.csv")
    assert set(differences["outcome"]) <= {"better", "worse", "not resolved"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["verdicts"]) == {"a", "b"} and "better" in summary["answer"][0]
    page = (out / "report.html").read_text()
    assert "class='headline'" in page and "Run a" in page and "Run b" in page


def test_compare_refuses_what_it_cannot_compare(tmp_path):
    run = _write_run(tmp_path / "a", {})
    roar = _write_run(tmp_path / "r", {}, protocol="roar")
    other = _write_run(tmp_path / "b", {})
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        "at least two": ["compare", str(run), "--out", str(tmp_path / "o")],
        "not a run folder": ["compare", str(run), str(empty), "--out", str(tmp_path / "o")],
        "compare takes runs of": ["compare", str(run), str(roar), "--out", str(tmp_path / "o")],
        "no model 'tempered'": ["compare", str(run), str(run), "--labels", "x,y", "--model", "tempered",
                                "--out", str(tmp_path / "o")],
        "same name": ["compare", str(run), str(run), "--out", str(tmp_path / "o")],
        "inside the run folder": ["compare", str(run), str(other), "--out", str(run / "cmp")],
    }
    for message, args in cases.items():
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and message in result.output, (message, result.output)
        assert "Traceback" not in result.output
    (run / "results.csv").unlink()
    with pytest.raises(XaitrustError, match="has not finished"):
        read_run(run, "uncalibrated")
