"""End to end: the benchmark protocol's smoke profile writes a complete run folder (results, the verdict in
summary.json, a report that opens with it), resumes, and its report renders in headless Chromium without errors."""

import html
import json
import shutil

import pandas as pd
import pytest

from xaitrust.data import load_dataset
from xaitrust.errors import XaitrustError
from xaitrust.protocols import run_protocol
from xaitrust.protocols.benchmark import SPEC
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.scoring import ALL_METHODS, RANDOM_SUPERPIXELS
from xaitrust.report.benchmark import deletion_change, meta_evaluation_table, outcome_changes
from xaitrust.report.gallery import image_titles
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


def test_the_gallery_shows_the_reference_models_maps_of_labelled_images(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    page = report.read_text()
    assert "<h2>Image gallery (uncalibrated model)</h2>" in page and "maps-uncalibrated.png" not in page
    figures = {path.name for path in (out / "figures").iterdir()}
    assert {"gallery-uncalibrated-1-4.png", "gallery-uncalibrated-5-6.png"} <= figures  # 6 images, 4 per figure
    assert not any(name.startswith(("maps-", "gallery-calibrated")) for name in figures)
    assert "Images 1-4 of 6: the maps of every method" in page and "Images 5-6 of 6" in page
    # Each image is titled with its dataset index, true and predicted class and confidence, as results.csv has them.
    results = pd.read_csv(out / "results.csv")
    images = results[(results["metric"] == "deletion_area") & (results["method"] == "saliency")
                     & (results["model"] == "uncalibrated")]
    assert len(images) == config["n_images"] and images["sample"].is_unique
    classes = load_dataset(config["dataset"], split="test").classes
    titles = image_titles(images, classes)
    for title, row in zip(titles, images.itertuples()):
        assert title.startswith(f"#{row.sample} true {classes[row.label]}\npred {classes[row.prediction]} (")


def test_calibration_at_a_glance_replaces_the_bare_calibration_table(smoke_run):
    out, report, _ = smoke_run
    page = report.read_text()
    assert "<h2>Calibration at a glance</h2>" in page and "<h2>Calibration</h2>" not in page
    assert "Calibration errors on the held-out images (estimate [95% bootstrap interval])" in page
    assert "(200 resamples, seed 0)" in page  # the smoke profile's calibration_bootstrap
    assert "uncalibrated -&gt; calibrated: is the move beyond the random maps&#x27; resolved?" in page
    assert "Calibrator: temperature, fitted on 300 held-out test images" in page
    assert (out / "figures" / "calibration-reliability.png").is_file()


def test_the_meta_evaluation_says_which_metrics_to_believe_and_is_cached(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    cached = out / "cache" / "meta_evaluation" / "scores.csv"
    assert cached.is_file() and cached.with_name("scores.csv.sha256").is_file()
    scores = pd.read_csv(cached)
    assert set(scores["metric"]) == set(config["meta_metrics"])
    assert set(scores["perturbation"]) == set(range(config["meta_perturbations"]))
    assert scores["images"].max() <= config["meta_images"]
    table = pd.read_csv(out / "meta_evaluation.csv")
    pd.testing.assert_frame_equal(table, meta_evaluation_table(scores))
    assert table["metric"].tolist() == config["meta_metrics"]
    assert table[["IAC_NR", "IEC_NR", "IAC_AR", "IEC_AR"]].stack().between(0, 1).all()
    assert (table["low"] <= table["MC"]).all() and (table["MC"] <= table["high"]).all()
    assert set(table["verdict"]) <= {"believe", "be careful"}
    summary = json.loads((out / "summary.json").read_text())
    assert [row["metric"] for row in summary["meta_evaluation"]] == config["meta_metrics"]
    assert [row["MC"] for row in summary["meta_evaluation"]] == pytest.approx(table["MC"].tolist())
    page = report.read_text()
    assert page.index("<h2>Glossary") < page.index("<h2>Which metrics to believe (meta-evaluation)</h2>") < page.index(
        "<h2>Image gallery")
    assert "Meta-evaluation on the uncalibrated model" in page
    for sentence in table["sentence"]:
        assert html.escape(sentence) in page


def test_an_empty_meta_metrics_list_leaves_the_meta_evaluation_out(smoke_run, tmp_path):
    out, _, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(out, run)  # the same run but for its meta-evaluation: every other piece is reused
    for name in ("config.toml", "meta_evaluation.csv", "meta_evaluation.parquet"):
        (run / name).unlink(missing_ok=True)
    shutil.rmtree(run / "cache" / "meta_evaluation")
    page = run_protocol("benchmark", profile="smoke", out=run, overrides={"meta_metrics": []}).read_text()
    assert "meta-evaluation" not in page.lower() and "<h2>Calibration at a glance</h2>" in page
    assert "meta_evaluation" not in json.loads((run / "summary.json").read_text())
    assert not (run / "meta_evaluation.csv").exists() and not (run / "cache" / "meta_evaluation").exists()


def test_rerun_resumes_without_recomputing(smoke_run):
    out, _, _ = smoke_run
    finished = [out / "models" / "model" / "model.safetensors", *sorted((out / "cache").rglob("*.*"))]
    assert len(finished) > 40  # the model, every method's attributions, curves and score tables
    stamps = [path.stat().st_mtime_ns for path in finished]
    written = {name: (out / name).read_bytes() for name in ("summary.json", "meta_evaluation.csv", "scorecard.csv")}
    run_protocol("benchmark", profile="smoke", out=out)
    assert [path.stat().st_mtime_ns for path in finished] == stamps
    # The pieces read back from the cache give the same bytes as when they were computed.
    assert {name: (out / name).read_bytes() for name in written} == written


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


def test_meta_evaluation_keys_are_checked_before_any_work():
    assert resolve_config(SPEC, "smoke", {"meta_metrics": [], "meta_explainers": []})["meta_metrics"] == []
    for profile, images in (("quick", 16), ("paper", 64)):
        config = resolve_config(SPEC, profile)
        assert config["meta_metrics"] == ["deletion_area", "insertion_area", "better_than_random", "mif_lif_area",
                                          "mu_fidelity"]
        assert config["meta_images"] == images <= config["n_images"]
    with pytest.raises(XaitrustError, match="'meta_images' must be a finite number > 0"):
        resolve_config(SPEC, "smoke", {"meta_images": 0})
    with pytest.raises(XaitrustError, match="'meta_perturbations' must be a finite number >= 2"):
        resolve_config(SPEC, "smoke", {"meta_perturbations": 1})
    with pytest.raises(XaitrustError, match="'calibration_bootstrap' must be a finite number > 0"):
        resolve_config(SPEC, "smoke", {"calibration_bootstrap": 0})
    with pytest.raises(XaitrustError, match="config key 'meta_metrics': .*'deletion_aera'"):
        resolve_config(SPEC, "smoke", {"meta_metrics": ["deletion_aera"]})
    with pytest.raises(XaitrustError, match="'meta_metrics' lists deletion_area twice"):
        resolve_config(SPEC, "smoke", {"meta_metrics": ["deletion_area", "deletion_area"]})
    with pytest.raises(XaitrustError, match="'meta_metrics' lists ssim_to_uncalibrated, which compare the maps"):
        resolve_config(SPEC, "smoke", {"meta_metrics": ["ssim_to_uncalibrated"]})
    with pytest.raises(XaitrustError, match="'meta_explainers' must name at least two explainers.*meta_metrics = "):
        resolve_config(SPEC, "smoke", {"meta_explainers": ["saliency"]})
    with pytest.raises(XaitrustError, match="'meta_explainers' must name at least two explainers"):
        resolve_config(SPEC, "smoke", {"meta_explainers": ["saliency", "saliency"]})
    with pytest.raises(XaitrustError, match=r"'meta_explainers'.*'gradcam\+'"):
        resolve_config(SPEC, "smoke", {"meta_explainers": ["saliency", "gradcam+"]})


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
