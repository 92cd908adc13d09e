"""End to end: the Calibrate-to-Interpret protocol's smoke profile."""

import pandas as pd
import pytest

from xaitrust.errors import XaitrustError
from xaitrust.protocols.calibrate_to_interpret import SPEC, sweep_correlations
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.scoring import ALL_METHODS, RANDOM_SUPERPIXELS


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    out, report, _ = run_smoke("calibrate-to-interpret")
    return out, report


def test_every_method_is_scored_on_every_model(smoke_run):
    out, report = smoke_run
    config = resolve_config(SPEC, "smoke")
    results = pd.read_csv(out / "results.csv")
    assert set(results["model"]) == {"uncalibrated", "temperature", "dirichlet"}
    assert set(results["method"]) == set(config["explainers"]) | {ALL_METHODS, RANDOM_SUPERPIXELS}
    changed = results[results["metric"] == "explained_class_changed"].groupby("model")["value"]
    assert changed.count().to_dict() == {"dirichlet": config["n_images"], "temperature": config["n_images"]}
    assert changed.max()["temperature"] == 0  # a temperature never changes the arg max
    ssim = results[results["metric"] == "ssim_to_uncalibrated"]
    assert set(ssim["model"]) == {"temperature", "dirichlet"} and ssim["value"].between(-1, 1 + 1e-5).all()
    calibration = pd.read_csv(out / "calibration.csv").set_index("model")
    assert calibration.loc["temperature", "accuracy"] == pytest.approx(calibration.loc["uncalibrated", "accuracy"])
    assert "Temperature sweep" in report.read_text()


def test_sweep_covers_every_factor_and_reports_the_temperature_of_its_minimum(smoke_run):
    out, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    sweep = pd.read_csv(out / "temperature_sweep.csv")
    assert sweep["factor"].tolist() == config["sweep_factors"]
    # ECE at the fitted temperature (factor 1) is the lowest of the sweep on held-out data only if fitting helped;
    # what always holds: temperatures scale with the factor.
    ratios = sweep["temperature"] / sweep["factor"]
    assert ratios.max() == pytest.approx(ratios.min())
    correlations = sweep_correlations(sweep)
    assert (correlations["factor_of_min"] == sweep.loc[sweep["deletion_area"].idxmin(), "factor"]).all()
    assert correlations["temperatures"].tolist() == [2, 2]  # 0.5 and 1; 1 and 2: too few for a correlation
    assert correlations["pearson"].isna().all()


def test_sweep_correlations_are_computed_on_each_side_of_the_reference_temperature():
    factors = [0.25, 0.5, 1.0, 2.0, 4.0]
    sweep = pd.DataFrame({
        "method": "m", "factor": factors, "temperature": factors,
        "density_ece": [0.30, 0.20, 0.05, 0.10, 0.25],
        "deletion_area": [0.50, 0.40, 0.30, 0.20, 0.10],  # falls all along: follows ECE on one side only
    })
    over, under = sweep_correlations(sweep).itertuples()
    assert over.side.startswith("over-confident") and over.temperatures == 3 and over.spearman == pytest.approx(1)
    assert under.side.startswith("under-confident") and under.temperatures == 3 and under.spearman == pytest.approx(-1)
    assert over.factor_of_min == under.factor_of_min == 4.0


def test_unknown_calibrator_names_the_key():
    with pytest.raises(XaitrustError, match="'calibrators'.*allowed: temperature, dirichlet"):
        resolve_config(SPEC, "smoke", {"calibrators": ["platt"]})
