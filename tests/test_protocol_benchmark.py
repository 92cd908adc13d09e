"""End to end: the benchmark protocol's smoke profile writes a complete run folder (results, the verdict in
summary.json, a report that opens with it), resumes, and its report renders in headless Chromium without errors."""

import json
import shutil

import pandas as pd
import pytest

from xaitrust.errors import XaitrustError
from xaitrust.protocols import run_protocol
from xaitrust.protocols.benchmark import SPEC
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.scoring import ALL_METHODS, RANDOM_SUPERPIXELS
from xaitrust.report.benchmark import deletion_change, outcome_changes
from xaitrust.report.verdict import benchmark_verdict

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    return run_smoke("benchmark")


def test_run_folder_holds_config_results_and_report(smoke_run):
    out, report, _ = smoke_run
    assert report == out / "report.html"
    for name in ("config.toml", "versions.json", "results.csv", "summary.csv", "scorecard.csv", "calibration.csv",
                 "summary.json"):
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    config = resolve_config(SPEC, "smoke")
    assert set(results["method"]) == set(config["explainers"]) | {ALL_METHODS, RANDOM_SUPERPIXELS}
    scorecard = pd.read_csv(out / "scorecard.csv", header=[0, 1], index_col=0)
    assert set(scorecard.index) == set(config["explainers"]) | {RANDOM_SUPERPIXELS}  # its deletion area only
    assert set(results["model"]) == {"uncalibrated", "calibrated"}
    per_sample = results[results["metric"] == "deletion_area"].groupby(["method", "model"])["sample"].nunique()
    assert (per_sample == config["n_images"]).all()
    # Curves are divided by the clean score, so areas are positive; deletion rarely ends above the clean score.
    areas = results.loc[results["metric"].isin(["deletion_area", "insertion_area"]), "value"]
    assert (areas > 0).all() and areas.lt(5).all()
    assert results.loc[results["metric"] == "deletion_area", "value"].median() < 1
    btr = results.loc[results["metric"] == "better_than_random", "value"]
    assert set(btr.unique()) <= {0.0, 1.0}
    calibration = pd.read_csv(out / "calibration.csv")
    # Temperature scaling keeps the argmax: accuracy is unchanged.
    assert calibration["accuracy"].iloc[0] == pytest.approx(calibration["accuracy"].iloc[1])


def test_the_sanity_check_runs_once_per_method_on_the_reference_model(smoke_run):
    out, _, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    results = pd.read_csv(out / "results.csv")
    sanity = results[results["metric"] == "randomisation_similarity"]
    assert set(sanity["model"]) == {"uncalibrated"}
    assert set(sanity["method"]) == set(config["explainers"])
    assert sanity.groupby("method")["sample"].nunique().eq(config["n_images"]).all()
    # The random maps ignore the model: identical on its randomised copy.
    assert sanity.loc[sanity["method"] == "random", "value"].tolist() == pytest.approx([1.0] * config["n_images"])
    finite = sanity["value"].dropna()
    assert finite.between(-1 - 1e-6, 1 + 1e-6).all() and finite[sanity["method"] != "random"].lt(0.999).any()


def test_the_report_and_summary_open_with_the_verdict(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["question"] == "Which explanations of this model can be trusted?"
    assert summary["answer"] == summary["verdict"]["recommendation"] and summary["answer"]
    methods = {entry["method"]: entry for entry in summary["verdict"]["methods"]}
    assert set(methods) == set(config["explainers"])
    assert methods["random"]["control"] and methods["random"]["sanity"] == "fails"
    assert all(entry["sentence"].startswith(name) for name, entry in methods.items())
    comparisons = summary["verdict"]["comparisons"]
    assert len(comparisons) == 5 * (len(config["explainers"]) - 1)
    assert {row["outcome"] for row in comparisons} <= {"better", "worse", "indistinguishable"}
    assert all(0 <= row["p_value"] <= row["p_adjusted"] <= 1 for row in comparisons)
    means = pd.DataFrame(summary["means"])
    assert set(means["model"]) == {"uncalibrated", "calibrated"} and (means["rank"].dropna() >= 1).all()
    page = report.read_text()
    assert page.index("Which explanations of this model can be trusted?") < page.index("<h2>Verdict") < page.index(
        "<h2>Scorecard") < page.index("<h2>Glossary")
    assert "<details><summary>Scorecard of the calibrated model</summary>" in page
    for metric in config["metrics"]:
        assert f"<dt><b>{metric}</b>" in page


def test_rerun_resumes_without_recomputing(smoke_run):
    out, _, _ = smoke_run
    finished = [out / "models" / "model" / "model.safetensors", *sorted((out / "cache").rglob("*.*"))]
    assert len(finished) > 40  # the model, every method's attributions, curves and score tables
    stamps = [path.stat().st_mtime_ns for path in finished]
    run_protocol("benchmark", profile="smoke", out=out)
    assert [path.stat().st_mtime_ns for path in finished] == stamps


def test_different_config_in_same_folder_is_refused(smoke_run, tmp_path):
    out, _, _ = smoke_run
    config_file = tmp_path / "other.toml"
    config_file.write_text("n_images = 3\n")
    with pytest.raises(XaitrustError, match="different config"):
        run_protocol("benchmark", profile="smoke", config_file=config_file, out=out)


def test_bad_config_names_the_key():
    with pytest.raises(XaitrustError, match="unknown config key 'n_imgs'"):
        resolve_config(SPEC, "smoke", {"n_imgs": 3})
    with pytest.raises(XaitrustError, match=r"'explainers'.*'gradcam\+'"):
        resolve_config(SPEC, "smoke", {"explainers": ["gradcam+"]})
    with pytest.raises(XaitrustError, match="'n_images' must be an integer"):
        resolve_config(SPEC, "smoke", {"n_images": "many"})


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make test installs it)")
def test_report_renders_in_headless_chromium(smoke_run):
    from playwright.sync_api import sync_playwright

    _, report, _ = smoke_run
    errors = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri())
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
        headings = page.evaluate("Array.from(document.querySelectorAll('h2')).map(h => h.textContent)")
        findings = page.evaluate("document.querySelectorAll('.findings li').length")
        browser.close()
    assert errors == []
    assert len(images) >= 3
    assert all(complete and width > 100 for complete, width, _ in images), images
    assert "What this shows" in headings and "Scorecard" in headings
    assert findings >= 3


def test_removal_value_of_the_mif_lif_curves_is_checked():
    assert resolve_config(SPEC, "smoke", {"removal_value": 0.5})["removal_value"] == 0.5
    with pytest.raises(XaitrustError, match="'removal_value' must be 'mean'"):
        resolve_config(SPEC, "smoke", {"removal_value": "grey"})


def test_deletion_change_counts_methods_apart_from_the_random_control():
    rows = [("deletion_area", method, model, value)
            for method, before, after in [("ig", 0.50, 0.48), ("mp", 0.30, 0.31), ("sal", 0.70, 0.695),
                                          ("random", 0.72, 0.71)]
            for model, value in [("uncalibrated", before), ("temperature", after)]]
    summary = pd.DataFrame(rows, columns=["metric", "method", "model", "mean"])
    line = deletion_change(summary, "temperature")
    assert line.startswith("The temperature model lowered the mean deletion area (more faithful) for 2 of 3 methods")
    assert "the random maps' area moved by -0.0100, and 1 of 3 methods moved lower than that" in line


def test_an_explainer_that_cannot_explain_the_model_stops_the_run_before_training(tmp_path):
    config = tmp_path / "lipschitz.toml"
    config.write_text('model = "lipschitz-cnn"\nexplainers = ["saliency", "guided-backprop"]\n'
                      'unsupported_explainers = "refuse"\n')
    with pytest.raises(XaitrustError, match="guided-backprop has no rule for MaxMin"):
        run_protocol("benchmark", profile="smoke", config_file=config, out=tmp_path / "run")
    assert not (tmp_path / "run" / "models").exists()


def test_outcome_changes_name_the_comparisons_calibration_turned():
    values = {"random": [0.5, 0.6, 0.4, 0.55, 0.45, 0.5], "ig": [0.1, 0.2, 0.15, 0.12, 0.18, 0.11]}
    rows = [("deletion_area", method, model, sample, value + (0.4 if model == "calibrated" and method == "ig" else 0))
            for model in ("uncalibrated", "calibrated") for method, scores in values.items()
            for sample, value in enumerate(scores)]
    results = pd.DataFrame(rows, columns=["metric", "method", "model", "sample", "value"])
    line = outcome_changes(benchmark_verdict(results), benchmark_verdict(results, "calibrated"))
    assert line == ("On the calibrated model, 1 of the 1 comparisons with the random maps have another outcome than on "
                    "the uncalibrated model: ig on deletion area (better -> indistinguishable).")
