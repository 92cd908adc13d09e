"""End to end: the ReCalX protocol's smoke profile on the shapes dataset (ground-truth masks)."""

import pandas as pd
import pytest

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
