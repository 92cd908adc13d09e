"""End to end: the ReCalX protocol's smoke profile on the shapes dataset (ground-truth masks)."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xaitrust.calibration import Calibrator
from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.protocols import run_protocol
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.recalx import (
    SPEC,
    evaluated_features,
    explainer_params,
    fitted_features,
    segmentation_of,
)
from xaitrust.report.recalx import (
    QUESTION,
    calibration_changes,
    explanation_changes,
    headline,
)


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    out, report, _ = run_smoke("recalx")
    return out, report


def test_calibration_is_measured_at_every_level_for_both_models_under_both_families(smoke_run):
    out, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    levels = pd.read_csv(out / "calibration_by_level.csv")
    assert set(levels["model"]) == {"uncalibrated", "recalx"}
    # The explainers' superpixels (the fitted family) and single pixels (the paper's Fig. 1 axis), both models.
    assert levels["grouping"].drop_duplicates().tolist() == ["superpixels", "pixels"]
    for _, part in levels.groupby(["grouping", "model"]):
        assert part["perturbation_level"].tolist() == pytest.approx(config["levels"])
    assert {"kl_calibration_error_canonical", "kl_calibration_error_top_label", "pixel_level"} <= set(levels)
    # Temperature scaling per level never changes the predicted class, so accuracy is the same before and after.
    accuracy = levels.pivot_table(index=["grouping", "perturbation_level"], columns="model", values="accuracy")
    assert (accuracy["uncalibrated"] == accuracy["recalx"]).all()
    recalx = Calibrator.load(out / "calibrators" / "recalx")
    assert len(recalx.temperatures_) == config["n_bins"]


def test_recalx_is_fitted_on_the_explainers_superpixels(smoke_run):
    out, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    recalx = Calibrator.load(out / "calibrators" / "recalx")
    for method in config["explainers"]:
        features, options = segmentation_of(get_explainer(method, **explainer_params(config, method)))
        assert recalx.grouping == features == "superpixels"
        assert {name: recalx.segmentation()[name] for name in options} == options


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
    assert "<img" in text
    for mode in ("canonical", "top-label"):
        for grouping in ("superpixels", "pixels"):
            assert f"KL calibration error ({mode}) with random {grouping} replaced" in text
    assert "Explainer settings" in text and "kernel_width" in text


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


def test_fitted_feature_groups_follow_the_explainers_settings():
    default = resolve_config(SPEC, "paper")
    assert fitted_features(default) == ("superpixels", {"n_segments": 50, "compactness": None, "sigma": None,
                                                        "min_segments": None})
    assert list(evaluated_features(default)) == ["superpixels", "pixels"]
    options = {"n_samples": 100, "n_segments": 30, "sigma": 0.5}
    both = resolve_config(SPEC, "smoke", {"explainer_params": {"kernelshap": options, "lime": options}})
    assert fitted_features(both)[1] == {"n_segments": 30, "compactness": None, "sigma": 0.5, "min_segments": None}
    patches = {"features": "patches", "patch_size": 8}
    tiled = resolve_config(SPEC, "smoke", {"grouping": "patches",
                                           "explainer_params": {"kernelshap": patches, "lime": patches}})
    assert fitted_features(tiled) == ("patches", {"patch_size": 8})
    pixels = resolve_config(SPEC, "smoke", {"grouping": "pixels"})
    assert fitted_features(pixels) == ("pixels", {})
    assert list(evaluated_features(pixels)) == ["pixels", "superpixels"]


@pytest.mark.parametrize("user, message", [
    ({"explainer_params": {"kernelshap": {"n_segments": 30}, "lime": {"n_segments": 50}}},
     "the explainers switch different feature groups"),
    ({"grouping": "patches"}, "config key 'grouping' is 'patches' but the explainers switch superpixels"),
    ({"kl_modes": ["top-label", "top-label"]}, "config key 'kl_modes' must name each KL mode once"),
    ({"kl_modes": []}, "config key 'kl_modes' must name each KL mode once"),
    ({"kl_modes": ["full"]}, "config key 'kl_modes' has value"),
])
def test_feature_groups_recalx_cannot_match_are_refused(user, message):
    with pytest.raises(XaitrustError, match=message):
        resolve_config(SPEC, "smoke", user)


def test_explainer_settings_are_written_out_as_captum_defaults_where_xaitrust_has_them():
    for profile in ("paper", "quick"):
        params = resolve_config(SPEC, profile)["explainer_params"]
        assert params["kernelshap"] == {"n_samples": 200, "features": "superpixels", "n_segments": 50}
        # Captum's exponential kernel width on the cosine distance; a ridge instead of Captum's Lasso(alpha=0.01).
        assert params["lime"] == {"n_samples": 200, "features": "superpixels", "n_segments": 50, "kernel_width": 1.0,
                                  "ridge": 1.0}


def _levels(before, after):
    """A calibration_by_level table of the superpixel family with the top-label KL errors and ECE of both models."""
    rows = [{"grouping": "superpixels", "model": model, "perturbation_level": level,
             "kl_calibration_error_top_label": error, "ece": error / 2}
            for model, errors in (("uncalibrated", before), ("recalx", after))
            for level, error in zip(np.linspace(0.1, 0.9, len(errors)), errors)]
    return pd.DataFrame(rows)


def _results(changes: dict, n: int, metric="localization", seed=0):
    """Per-image scores of both models: uncalibrated ~ U(0.3, 0.5), ReCalX = uncalibrated + change + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for method, change in changes.items():
        before = rng.uniform(0.3, 0.5, n)
        after = before + change + rng.normal(0, 0.02, n)
        rows += [{"metric": metric, "method": method, "model": model, "sample": i, "value": value}
                 for model, values in (("uncalibrated", before), ("recalx", after)) for i, value in enumerate(values)]
    return pd.DataFrame(rows)


def test_calibration_change_is_paired_over_the_levels():
    before, after = [0.10, 0.12, 0.15, 0.16], [0.02, 0.03, 0.03, 0.05]
    table = calibration_changes(_levels(before, after), ["top-label"])
    assert table["measure"].tolist() == ["kl_calibration_error_top_label", "ece"]
    row = table.iloc[0]
    d = np.subtract(after, before)
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert (row["levels"], row["lower_at"]) == (4, 4)
    assert row["difference"] == pytest.approx(d.mean())
    assert (row["low"], row["high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert row["uncalibrated"] == pytest.approx(np.mean(before)) and row["max_recalx"] == pytest.approx(0.05)
    explanations = explanation_changes(_results({"kernelshap": 0.1}, 30))
    line = headline(table, explanations, ["top-label"], "superpixels").answer[0]
    assert "0.1325 [" in line and "-> 0.0325 [" in line and "lower with ReCalX at these levels" in line
    mixed = calibration_changes(_levels(before, [0.05, 0.20, 0.10, 0.20]), ["top-label"])
    assert "not resolved across these levels" in headline(mixed, explanations, ["top-label"], "superpixels").answer[0]


def test_explanation_changes_call_a_change_only_when_the_holm_corrected_test_does():
    results = pd.concat([_results({"kernelshap": 0.1, "lime": 0.0}, 30),
                         _results({"kernelshap": -0.1, "lime": 0.0}, 30, metric="gt_alignment", seed=1)])
    table = explanation_changes(results).set_index(["metric", "method"])
    assert table.loc[("localization", "kernelshap"), "outcome"] == "better with ReCalX"
    assert table.loc[("gt_alignment", "kernelshap"), "outcome"] == "worse with ReCalX"
    assert table.loc[("localization", "lime"), "outcome"] == "not resolved"
    assert (table["p_holm"] >= table["p_value"]).all() and (table["n"] == 30).all()
    calibration = calibration_changes(_levels([0.1, 0.2], [0.1, 0.1]), ["top-label"])
    answer = headline(calibration, explanation_changes(results), ["top-label"], "superpixels")
    assert answer.question == QUESTION and len(answer.answer) == 4
    kernelshap = table.loc[("localization", "kernelshap")]
    assert answer.answer[1].startswith("Localisation (share of positive attribution inside the object mask), "
                                       "paired over 30 images: kernelshap ")
    assert (f"change {kernelshap['difference']:+.3f} [{kernelshap['low']:+.3f}, {kernelshap['high']:+.3f}], better "
            "with ReCalX") in answer.answer[1]
    assert answer.answer[3] == ("Over all 4 paired comparisons of the explanations (30 images, Holm-corrected): "
                                "better with ReCalX in 1, worse with ReCalX in 1, not resolved in 2.")
    # Deletion area, lower is better, when there are no masks; too few images resolve nothing.
    deletion = explanation_changes(_results({"lime": 0.1}, 30, metric="deletion_area"))
    answer = headline(calibration, deletion, ["top-label"], "superpixels").answer
    assert answer[1].startswith("Deletion area (lower is better), paired over 30 images: lime")
    assert "worse with ReCalX" in answer[1]
    few = explanation_changes(_results({"lime": 0.1}, 1, metric="deletion_area"))
    assert headline(calibration, few, ["top-label"], "superpixels").answer[2].startswith(
        "With 1 explained image none of the 1 paired comparison of the explanations")


def test_headline_and_summary_json_match_the_tables(smoke_run):
    out, report = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["question"] == QUESTION and 2 <= len(summary["answer"]) <= 4
    assert {"calibration_changes", "explanation_changes", "summary", "calibration_by_level"} <= set(summary)
    levels = pd.read_csv(out / "calibration_by_level.csv")
    fitted = levels[levels["grouping"] == "superpixels"].groupby("model")["kl_calibration_error_top_label"].mean()
    assert f"{fitted['uncalibrated']:.4f} [" in summary["answer"][0]
    assert f"-> {fitted['recalx']:.4f} [" in summary["answer"][0]
    means = pd.read_csv(out / "summary.csv").set_index(["metric", "method", "model"])["mean"]
    for method in ("kernelshap", "lime"):
        change = (f"{method} {means['localization', method, 'uncalibrated']:.3f} -> "
                  f"{means['localization', method, 'recalx']:.3f}")
        assert change in summary["answer"][1]
    assert "<div class='headline'>" in report.read_text()
