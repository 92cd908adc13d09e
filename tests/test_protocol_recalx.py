"""End to end: the ReCalX protocol's smoke profile on the shapes dataset (ground-truth masks)."""

import pandas as pd
import pytest

from xaitrust.calibration import Calibrator
from xaitrust.errors import XaitrustError
from xaitrust.protocols import run_protocol
from xaitrust.protocols.config import resolve_config
from xaitrust.explainers import get_explainer
from xaitrust.protocols.recalx import SPEC, explainer_params


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    out, report, _ = run_smoke("recalx")
    return out, report


def test_calibration_is_measured_at_every_level_for_both_models(smoke_run):
    out, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    levels = pd.read_csv(out / "calibration_by_level.csv")
    assert set(levels["model"]) == {"uncalibrated", "recalx"}
    for _, part in levels.groupby("model"):
        assert part["perturbation_level"].tolist() == pytest.approx(config["levels"])
    # Temperature scaling per level never changes the predicted class, so accuracy is the same before and after.
    accuracy = levels.pivot_table(index="perturbation_level", columns="model", values="accuracy")
    assert (accuracy["uncalibrated"] == accuracy["recalx"]).all()
    recalx = Calibrator.load(out / "calibrators" / "recalx")
    assert len(recalx.temperatures_) == config["n_bins"]


def test_explanations_are_scored_against_ground_truth(smoke_run):
    out, report = smoke_run
    results = pd.read_csv(out / "results.csv")
    config = resolve_config(SPEC, "smoke")
    expected = {"deletion_area", "localization", "gt_alignment", "pointing_game"}
    for (method, model), part in results.groupby(["method", "model"]):
        assert set(part["metric"]) == expected, (method, model)
        assert part.groupby("metric")["sample"].nunique().eq(config["n_images"]).all()
    assert results.loc[results["metric"] == "localization", "value"].between(0, 1).all()
    assert results.loc[results["metric"] == "gt_alignment", "value"].between(-1, 1).all()
    text = report.read_text()
    assert "KL calibration error, maximum over perturbation levels" in text and "<img" in text


def test_rerun_reuses_the_run_folder(smoke_run):
    out, _ = smoke_run
    files = [out / "models" / "model" / "model.safetensors", out / "calibrators" / "recalx.safetensors"]
    stamps = [f.stat().st_mtime_ns for f in files]
    run_protocol("recalx", profile="smoke", out=out)
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_bad_values_name_the_key():
    with pytest.raises(XaitrustError, match="'grouping'.*allowed: pixels, patches, superpixels"):
        resolve_config(SPEC, "smoke", {"grouping": "segments"})


def test_explainers_replace_features_as_recalx_was_fitted():
    config = resolve_config(SPEC, "smoke", {"replacement": "mean"})
    for method in config["explainers"]:
        params = explainer_params(config, method)
        assert params["replacement"] == "mean" and params["n_samples"] == 40
        assert get_explainer(method, **params).replacement == "mean"
    own = resolve_config(SPEC, "smoke", {"replacement": "mean", "explainer_params": {"lime": {"replacement": "zero"}}})
    assert explainer_params(own, "lime") == {"replacement": "zero"}
