"""End to end: the Calibrate-to-Interpret protocol's smoke profile."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from xaitrust.errors import XaitrustError
from xaitrust.metrics.binarize import otsu_masks
from xaitrust.metrics.coherence import binary_total_variation, otsu_tv
from xaitrust.protocols.calibrate_to_interpret import (
    SPEC,
    deletion_comparison,
    sweep_correlations,
)
from xaitrust.protocols.config import PROFILES, resolve_config
from xaitrust.protocols.scoring import ALL_METHODS, RANDOM_SUPERPIXELS, ScoringSettings
from xaitrust.report import calibrate_to_interpret as c2i
from xaitrust.report.calibrate_to_interpret import OWN_MODEL, QUESTION, headline


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
    assert set(results["metric"]) - {"explained_class_changed", "segmentation_fallback"} == set(config["metrics"])
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


@pytest.mark.parametrize("profile", PROFILES)
def test_the_benchmarks_sanity_check_and_meta_evaluation_are_left_out(profile):
    config = resolve_config(SPEC, profile)
    assert "randomisation_similarity" not in config["metrics"] and "deletion_area" in config["metrics"]
    assert not {"calibrator", "calibration_bootstrap", "meta_metrics", "meta_explainers", "meta_perturbations",
                "meta_images"} & set(config)
    with pytest.raises(XaitrustError, match="unknown config key 'meta_metrics'"):
        resolve_config(SPEC, profile, {"meta_metrics": []})


def test_unknown_calibrator_names_the_key():
    with pytest.raises(XaitrustError, match="'calibrators'.*allowed: temperature, dirichlet"):
        resolve_config(SPEC, "smoke", {"calibrators": ["platt"]})


@pytest.mark.parametrize("profile", PROFILES)
def test_sensitivity_maps_are_the_gradient_magnitude_summed_over_channels(profile):
    # Appendix A: "the sensitivity of the output to infinitesimal changes"; the authors' code sums |gradient|.
    assert ScoringSettings.from_config(resolve_config(SPEC, profile)).reduction_of("sensitivity") == "abs-sum"


def test_the_signed_sensitivity_map_of_eq_3_is_an_option():
    config = resolve_config(SPEC, "smoke", {"method_reductions": {"sensitivity": "sum"}})
    assert ScoringSettings.from_config(config).reduction_of("sensitivity") == "sum"


def test_an_unknown_method_reduction_names_the_key_and_the_choices():
    with pytest.raises(XaitrustError, match="'method_reductions'.*sensitivity = 'signed'.*allowed: abs-sum, input-sum"):
        resolve_config(SPEC, "smoke", {"method_reductions": {"sensitivity": "signed"}})


def _areas(metric_rows, extra=None):
    """Tidy ``deletion_area`` rows from ``{(method, model): values}`` (``extra``: further columns)."""
    return pd.concat([pd.DataFrame({"metric": "deletion_area", "method": method, "model": model, **(extra or {}),
                                    "sample": np.arange(len(values)), "value": values})
                      for (method, model), values in metric_rows.items()], ignore_index=True)


def test_deletion_comparison_pairs_each_image_on_its_own_and_on_a_common_model():
    u, t = "uncalibrated", "temperature"
    results = pd.concat([_areas({
        ("m", u): [0.5, 0.6, 0.7, 0.8], ("m", t): [0.4, 0.4, 0.6, 0.7],
        ("random", u): [0.9, 0.9, 0.9, 0.9], ("random", t): [0.85, 0.8, 0.9, 0.85],
        (RANDOM_SUPERPIXELS, u): [1.0, 1.0, 1.0, 1.0], (RANDOM_SUPERPIXELS, t): [0.9, 0.9, 0.8, 0.9],
    }), pd.DataFrame({"metric": "otsu_tv", "method": "m", "model": u, "sample": [0], "value": [7.0]})])
    cross = pd.concat([
        _areas({("m", t): [0.45, 0.6, 0.65, np.nan], ("random", t): [0.9, 0.9, 0.9, 0.9]}, {"scored_on": u}),
        _areas({("m", u): [0.5, 0.5, 0.6, 0.8], ("random", u): [0.85, 0.8, 0.9, 0.85]}, {"scored_on": t}),
    ])
    targets = {u: torch.tensor([0, 1, 2, 3]), t: torch.tensor([0, 1, 2, 4])}
    table = deletion_comparison(results, cross, {u: None, t: None}, targets, ["m", "random", RANDOM_SUPERPIXELS])
    assert table[["scored_on", "method"]].values.tolist() == [
        [OWN_MODEL, "m"], [OWN_MODEL, "random"], [OWN_MODEL, RANDOM_SUPERPIXELS],
        [u, "m"], [u, "random"], [t, "m"], [t, "random"]]
    rows = table.set_index(["scored_on", "method"])

    def t_interval(values):
        return np.mean(values), stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))

    own = rows.loc[(OWN_MODEL, "m")]
    assert (own["difference"], own["ci95"]) == pytest.approx(t_interval([-0.1, -0.2, -0.1, -0.1]))
    assert (own["minus_random"], own["minus_random_ci95"]) == pytest.approx(t_interval([-0.05, -0.1, -0.1, -0.05]))
    assert (own["uncalibrated_maps"], own["calibrated_maps"], own["n"], own["class_changed"]) == pytest.approx(
        (0.65, 0.525, 4, 1))
    assert rows.loc[(OWN_MODEL, RANDOM_SUPERPIXELS), "difference"] == pytest.approx(-0.125)
    common = rows.loc[(u, "m")]  # the NaN area of image 3 drops that pair, and with it the changed class
    assert (common["difference"], common["ci95"]) == pytest.approx(t_interval([-0.05, 0.0, -0.05]))
    assert (common["uncalibrated_maps"], common["calibrated_maps"], common["n"], common["class_changed"]) == (
        pytest.approx(0.6), pytest.approx(0.5666667), 3, 0)
    assert common["minus_random"] == pytest.approx(common["difference"])  # the same random maps on both sides
    assert rows.loc[(u, "random"), ["difference", "ci95"]].tolist() == [0, 0]
    converse = rows.loc[(t, "m")]
    assert (converse["difference"], converse["ci95"]) == pytest.approx(t_interval([-0.1, -0.1, 0.0, -0.1]))


def test_deletion_comparison_without_random_maps_leaves_the_beyond_random_columns_empty():
    u, t = "uncalibrated", "dirichlet"
    results = _areas({("m", u): [0.5, 0.6], ("m", t): [0.4, 0.4]})
    cross = pd.concat([_areas({("m", t): [0.45, 0.6]}, {"scored_on": u}),
                       _areas({("m", u): [0.5, 0.5]}, {"scored_on": t})])
    targets = {u: torch.tensor([0, 1]), t: torch.tensor([0, 1])}
    table = deletion_comparison(results, cross, {u: None, t: None}, targets, ["m", "random", RANDOM_SUPERPIXELS])
    assert table["method"].tolist() == ["m"] * 3 and table["minus_random"].isna().all()
    assert table["difference"].tolist() == pytest.approx([-0.15, -0.025, -0.1])


def test_otsu_figures_show_each_map_above_the_mask_whose_total_variation_is_otsu_tv(monkeypatch, tmp_path):
    drawn = {}
    monkeypatch.setattr(c2i, "plot_map_grid", lambda path, images, rows, title: drawn.setdefault(title, rows))
    maps = {name: {"m": torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(seed))}
            for seed, name in enumerate(["uncalibrated", "dirichlet"])}
    c2i.otsu_figures(tmp_path, torch.rand(3, 1, 6, 6), maps, ["m"], n=2)
    rows = drawn["m"]
    assert list(rows) == ["uncalibrated", "uncalibrated\nOtsu", "dirichlet", "dirichlet\nOtsu"]
    for name in maps:
        assert torch.equal(rows[name], maps[name]["m"][:2])
        assert torch.equal(rows[f"{name}\nOtsu"], otsu_masks(rows[name]).float())
        assert torch.equal(binary_total_variation(rows[f"{name}\nOtsu"].bool()), otsu_tv(rows[name]))


def test_smoke_report_compares_the_maps_on_a_common_model_and_draws_the_papers_figures(smoke_run):
    out, report = smoke_run
    config = resolve_config(SPEC, "smoke")
    comparison = pd.read_csv(out / "deletion_comparison.csv")
    for calibrator in config["calibrators"]:
        part = comparison[comparison["calibrator"] == calibrator].set_index(["scored_on", "method"])
        assert set(part.index.get_level_values(0)) == {OWN_MODEL, "uncalibrated", calibrator}
        assert part["n"].eq(config["n_images"]).all()
        # The random maps do not read the model: scored across models they give the scorecard's own areas.
        for common in ("uncalibrated", calibrator):
            assert part.loc[(common, "random"), "difference"] == 0
            assert part.loc[(common, "random"), "uncalibrated_maps"] == part.loc[(common, "random"), "calibrated_maps"]
        own = part.loc[(OWN_MODEL, "rise"), "uncalibrated_maps"]
        assert part.loc[("uncalibrated", "rise"), "uncalibrated_maps"] == own
    assert (comparison.loc[comparison["calibrator"] == "temperature", "class_changed"] == 0).all()
    figures = {path.name for path in (out / "figures").iterdir()}
    assert {f"reliability-{name}.png" for name in ("uncalibrated", *config["calibrators"])} <= figures
    assert {f"otsu-{method}.png" for method in config["explainers"]} <= figures
    assert {"lipschitz.png", *(f"deletion-difference-{name}.png" for name in config["calibrators"])} <= figures
    text = report.read_text()
    assert "both models&#x27; maps on the uncalibrated model" in text and "Reliability diagram (dirichlet)" in text

    # The page opens with the paper's question; summary.json holds the answer, computed from the run's tables.
    stored = json.loads((out / "summary.json").read_text())
    summary, calibration = pd.read_csv(out / "summary.csv"), pd.read_csv(out / "calibration.csv")
    assert stored["question"] == QUESTION
    assert stored["answer"] == headline(calibration, summary, comparison).answer
    assert len(stored["answer"]) == 2 * len(config["calibrators"])
    assert [row["difference"] for row in stored["deletion_comparison"]] == pytest.approx(
        comparison["difference"].tolist(), nan_ok=True)
    assert text.index("<div class='headline'>") < text.index("What this shows")


def test_comparison_findings_give_each_interval_the_random_change_and_the_methods_beyond_it():
    row = {"calibrator": "dirichlet", "n": 10, "uncalibrated_maps": 0.5, "calibrated_maps": 0.4}
    comparison = pd.DataFrame([
        {**row, "scored_on": OWN_MODEL, "method": "mp", "class_changed": 2, "difference": -0.1, "ci95": 0.05,
         "minus_random": -0.06, "minus_random_ci95": 0.05},
        {**row, "scored_on": OWN_MODEL, "method": "random", "class_changed": 2, "difference": -0.04, "ci95": 0.01,
         "minus_random": 0.0, "minus_random_ci95": 0.0},
        {**row, "scored_on": "uncalibrated", "method": "mp", "class_changed": 2, "difference": 0.02, "ci95": 0.03,
         "minus_random": 0.02, "minus_random_ci95": 0.03},
        {**row, "scored_on": "uncalibrated", "method": "random", "class_changed": 2, "difference": 0.0, "ci95": 0.0,
         "minus_random": 0.0, "minus_random_ci95": 0.0},
    ])
    own, common = c2i.comparison_findings(comparison)
    assert "each model's maps on that model" in own and "mp -0.1000 [-0.1500, -0.0500]" in own
    assert "Random: random -0.0400 [-0.0500, -0.0300]" in own and "lower for 1 and higher for 0 of 1 methods" in own
    assert "both models' maps on the uncalibrated model" in common and "different classes on 2 of 10 images" in common
    assert "mp +0.0200 [-0.0100, +0.0500]" in common and "lower for 0 and higher for 0 of 1 methods" in common


def _comparison(calibrator, differences, minus_random=(0.0, 0.0)):
    """``deletion_comparison`` rows of ``calibrator``: ``differences[method] = (difference, ci95)`` on the uncalibrated
    model and, for the paper's comparison, every method at ``minus_random`` (value, ci95)."""
    rows = []
    for scored_on in ("uncalibrated", OWN_MODEL):
        for method, (difference, ci95) in {**differences, "random": (0.0, 0.0)}.items():
            rows.append({"calibrator": calibrator, "scored_on": scored_on, "method": method, "n": 10,
                         "class_changed": 0, "uncalibrated_maps": 0.5, "calibrated_maps": 0.5 + difference,
                         "difference": difference, "ci95": ci95, "minus_random": minus_random[0],
                         "minus_random_ci95": minus_random[1]})
    return pd.DataFrame(rows)


def test_headline_counts_only_changes_whose_intervals_exclude_zero_and_says_when_none_does():
    calibration = pd.DataFrame([{"model": "uncalibrated", "ece": 0.06, "density_ece": 0.05, "accuracy": 0.8},
                                {"model": "temperature", "ece": 0.02, "density_ece": 0.015, "accuracy": 0.8}])
    summary = pd.DataFrame([
        {"metric": "ssim_to_uncalibrated", "method": "mp", "model": "temperature", "mean": 0.8, "std": 0.1, "n": 10,
         "ci95": 0.05},
        {"metric": "ssim_to_uncalibrated", "method": "sens", "model": "temperature", "mean": 0.99, "std": 0.03,
         "n": 10, "ci95": 0.02},
        {"metric": "ssim_to_uncalibrated", "method": "random", "model": "temperature", "mean": 0.1, "std": 0.1,
         "n": 10, "ci95": 0.05},
    ])
    resolved = _comparison("temperature", {"mp": (-0.1, 0.05), "sens": (0.01, 0.02)}, minus_random=(-0.06, 0.05))
    answer = headline(calibration, summary, resolved)
    assert answer.question == QUESTION
    change, faithful = answer.answer
    assert change == ("temperature: density ECE 0.0500 -> 0.0150 on held-out images; mean SSIM of its maps to the "
                      "uncalibrated ones from 0.800 [0.750, 0.850] (mp) to 0.990 [0.970, 1.010] (sens), below 1 by "
                      "the 95% CI for 1 of 2 methods.")
    assert faithful == ("Scored on the uncalibrated model, the temperature maps' deletion area is lower (more "
                        "faithful) for 1 and higher for 0 of 2 methods (95% CI of the paired difference over 10 "
                        "images; largest: mp -0.1000 [-0.1500, -0.0500]); each on its own model, beyond the random "
                        "maps' change (the paper's comparison): lower for 2 and higher for 0.")

    unresolved = _comparison("temperature", {"mp": (-0.1, 0.15), "sens": (0.01, 0.02)}).assign(class_changed=3)
    faithful = headline(calibration, summary, unresolved).answer[1]
    assert "lower (more faithful) for 0 and higher for 0 of 2 methods" in faithful
    assert "over 10 images, 3 of them with another class explained by the two models;" in faithful
    assert "largest: mp -0.1000 [-0.2500, +0.0500]" in faithful
    assert faithful.endswith("; not resolved: every 95% CI on the common model includes 0.")
