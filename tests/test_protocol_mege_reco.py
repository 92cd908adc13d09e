"""The mege-reco protocol end to end on the smoke profile: run folder contents, score ranges, report, resumption, every
family's trainings in one call to the runner."""


import html
import json
import shutil
import tomllib
import warnings

import pandas as pd
import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.metrics.distances import DISTANCES
from xaitrust.protocols import common, mege_reco, run_protocol
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.mege_reco import (
    LIPSCHITZ_TAU,
    MEGE_EXPLAINERS,
    SPEC,
    FamilyScores,
    family_config,
    separation_table,
    train_config,
)
from xaitrust.report.mege_reco import QUESTION, findings, headline, sanity_findings
from xaitrust.training import SequentialRunner
from xaitrust.training.kfold import train_k_folds

#: The trainings of the smoke profile: k = 3 models of the clean and of the label-shuffled family.
SMOKE_TRAININGS = [f"{family}/fold-{i}" for family in ("cnn", "cnn+shuffle-0.3") for i in range(3)]


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    out, report, _ = run_smoke("mege-reco")
    return out, report


class RecordingRunner(SequentialRunner):
    """The local runner of the smoke profile (one thread), noting each call's jobs and whether each was reused."""

    def __init__(self):
        super().__init__(threads=1)
        self.calls = []

    def run(self, jobs):
        jobs = list(jobs)
        results = super().run(jobs)
        self.calls.append([(job.name, result.reused) for job, result in zip(jobs, results)])
        return results


@pytest.fixture
def recording_runner(monkeypatch):
    """The runner every protocol run of the test gets."""
    runner = RecordingRunner()
    monkeypatch.setattr(common, "runner_for", lambda config: runner)
    return runner


def test_smoke_run_writes_tidy_scores_and_report(smoke_run):
    out, report = smoke_run
    config = tomllib.loads((out / "config.toml").read_text())
    assert config["protocol"] == "mege-reco" and config["profile"] == "smoke"

    results = pd.read_csv(out / "results.csv")
    assert list(results.columns[:5]) == ["metric", "method", "model", "sample", "value"]
    assert {"degradation", "level"} <= set(results.columns)
    assert set(results["method"]) == set(MEGE_EXPLAINERS)
    assert set(results["model"]) == {"cnn", "cnn+noise-0.3", "cnn+shuffle-0.3"}
    # one mu_fidelity row per explained image, one row (sample -1) per set-level score
    fidelity = results[results["metric"] == "mu_fidelity"]
    assert len(fidelity) == config["n_samples"] * len(MEGE_EXPLAINERS) * 3
    scores = results[results["metric"].isin(["mege", "reco", "reco_as_written", "reco_auc"])]
    assert (scores["sample"] == -1).all()
    assert len(scores) == 4 * len(MEGE_EXPLAINERS) * 3

    # MeGe and ReCo lie in [0, 1]; NaN only where the set they need is empty (documented in the module)
    separation = pd.read_csv(out / "separation.csv").set_index(["model", "method"])
    for row in scores[scores["metric"].isin(["mege", "reco", "reco_as_written"])].itertuples():
        sizes = separation.loc[(row.model, row.method)]
        needed = sizes["n_s_eq"] if row.metric == "mege" else min(sizes["n_s_eq"], sizes["n_s_neq"])
        if needed and row.metric != "reco_as_written":  # eq. 6 as printed can go below 0
            assert 0 <= row.value <= 1, row
        elif needed:
            assert row.value <= 1, row
        else:
            assert pd.isna(row.value), row
    clean = scores[scores["model"] == "cnn"]
    assert clean["value"].notna().all()  # the clean models get some images right and some wrong

    summary = pd.read_csv(out / "summary.csv")
    assert {"metric", "method", "model", "mean", "n"} <= set(summary.columns)
    page = report.read_text()
    assert report == out / "report.html"
    assert "What this shows" in page and "Highest mege on cnn" in page and "under label shuffling" in page
    assert (out / "figures" / "separation-cnn-gradcam.png").is_file()
    assert (out / "figures" / "sanity-mege-noise.png").is_file()


def test_rerun_reuses_the_run_folder_and_sends_every_familys_trainings_in_one_call(smoke_run, recording_runner,
                                                                                   one_torch_thread):
    out, _ = smoke_run
    models = sorted((out / "models").rglob("model.safetensors"))
    assert len(models) == 2 * 3  # clean and label-shuffled families, k = 3
    cached = sorted((out / "cache").rglob("*.safetensors"))
    before = {path: path.stat().st_mtime_ns for path in models + cached}
    with one_torch_thread():
        run_protocol("mege-reco", profile="smoke", out=out)
    assert {path: path.stat().st_mtime_ns for path in before} == before
    assert recording_runner.calls == [[(name, True) for name in SMOKE_TRAININGS]]


def test_an_interrupted_run_trains_only_its_unfinished_models(smoke_run, recording_runner, tmp_path, one_torch_thread):
    # A run stopped before its last training: the rerun reuses the five finished models in the same one call.
    out, _ = smoke_run
    shutil.copytree(out, tmp_path / "run", ignore=shutil.ignore_patterns("fold-2"))
    shutil.copytree(out / "models" / "cnn" / "fold-2", tmp_path / "run" / "models" / "cnn" / "fold-2")
    with one_torch_thread():
        run_protocol("mege-reco", profile="smoke", out=tmp_path / "run")
    assert recording_runner.calls == [[(name, name != "cnn+shuffle-0.3/fold-2") for name in SMOKE_TRAININGS]]
    model = "models/cnn+shuffle-0.3/fold-2/model.safetensors"
    assert (tmp_path / "run" / model).read_bytes() == (out / model).read_bytes()


def test_families_trained_one_after_another_give_the_same_models(smoke_run, recording_runner, monkeypatch, tmp_path,
                                                                  one_torch_thread):
    # The run before the families' trainings went to the runner together: one call per family. Its models and folds
    # are byte for byte those of the smoke run (its explanations and tables come from the copied cache).
    out, _ = smoke_run
    shutil.copytree(out, tmp_path / "run", ignore=shutil.ignore_patterns("models"))
    monkeypatch.setattr(mege_reco, "train_k_folds",
                        lambda plans, runner: [train_k_folds([plan], runner)[0] for plan in plans])
    with one_torch_thread():
        run_protocol("mege-reco", profile="smoke", out=tmp_path / "run")
    assert recording_runner.calls == [[(name, False) for name in SMOKE_TRAININGS[:3]],
                                      [(name, False) for name in SMOKE_TRAININGS[3:]]]
    files = sorted(path.relative_to(out) for path in (out / "models").rglob("*")
                   if path.name in ("folds.json", "folds.safetensors", "model.safetensors"))
    assert len(files) == 2 * (2 + 3)
    for file in files:
        assert (tmp_path / "run" / file).read_bytes() == (out / file).read_bytes(), file


def test_unknown_config_key_is_named(tmp_path):
    config = tmp_path / "mege.toml"
    config.write_text("n_sample = 5\n")
    with pytest.raises(XaitrustError, match="n_sample"):
        run_protocol("mege-reco", profile="smoke", config_file=config, out=tmp_path / "run")


def test_label_shuffled_family_shares_the_clean_familys_folds(smoke_run):
    from xaitrust.io import read_tensors

    out, _ = smoke_run
    clean = read_tensors(out / "models" / "cnn" / "folds.safetensors")["fold"]
    shuffled = read_tensors(out / "models" / "cnn+shuffle-0.3" / "folds.safetensors")["fold"]
    assert torch.equal(clean, shuffled)


def test_separation_table_counts_the_pairs_left_out_for_an_undefined_distance():
    nan = float("nan")
    scored = FamilyScores(rows=pd.DataFrame(), examples={},
                          separation={"gradcam": (torch.tensor([0.1, nan, 0.3]), torch.tensor([nan, nan, 0.9]))})
    (row,) = separation_table({"cnn": scored}).to_dict("records")
    assert (row["n_s_eq"], row["undefined_s_eq"], row["n_s_neq"], row["undefined_s_neq"]) == (2, 1, 1, 2)
    assert row["mean_s_eq"] == pytest.approx(0.2) and row["mean_s_neq"] == pytest.approx(0.9)


def test_profiles_keep_the_paper_parameters():
    paper = SPEC.defaults["paper"]
    assert paper["model"] == "resnet18" and paper["model_options"] == {"base_filters": 26, "dropout": 0.4}
    assert paper["k"] == 5 and paper["explainers"] == MEGE_EXPLAINERS
    assert paper["explainer_params"]["integrated-gradients"]["steps"] == 60
    assert paper["noise_levels"] == paper["shuffle_levels"] == [0.05, 0.1, 0.3]


def test_sanity_findings_compare_each_drop_with_the_random_control():
    rows = [
        ("reco", method, "shuffle", level, value)
        for method, clean, degraded in [("saliency", 0.8, 0.5), ("gradcam", 0.8, 0.7), ("random", 0.6, 0.4)]
        for level, value in [(0.0, clean), (0.3, degraded)]
    ]
    sanity = pd.DataFrame(rows, columns=["metric", "method", "degradation", "level", "mean"])
    (line,) = sanity_findings(sanity)
    assert line.startswith("reco under label shuffling (0.3): lower than clean for 2 of 2 methods")
    assert "random control moved 0.600 -> 0.400, and 1 of 2 methods fell relative to it" in line


def test_noise_levels_that_degrade_the_same_layers_are_flagged():
    from xaitrust.models import build_model
    from xaitrust.protocols.mege_reco import warn_identical_noise_levels

    cnn = build_model("cnn", 1, 10, (28, 28))  # 4 weight layers: 5% and 10% both mean ceil(...) = 1 layer
    config = resolve_config(SPEC, "paper", {"model": "cnn", "model_options": {}})  # shares of layers
    with pytest.warns(UserWarning, match=r"0.05 -> 1, 0.1 -> 1, 0.3 -> 2\), so those families are identical"):
        warn_identical_noise_levels(cnn, config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_identical_noise_levels(cnn, resolve_config(SPEC, "quick"))  # shares of parameters
        warn_identical_noise_levels(cnn, dict(config, noise_levels=[0.1, 0.5]))


def test_findings_say_undefined_when_every_model_misclassifies_the_explained_images():
    # Weak fold models (e.g. a first epoch of the paper's ResNet-18 on a few hundred images) classify no explained
    # image correctly: S= is empty and MeGe/ReCo are NaN for every method; only muFidelity is defined.
    rows = [(metric, method, model, "none", value)
            for model in ("resnet18", "lipschitz-cnn") for method in ("saliency", "random")
            for metric, value in [("mege", float("nan")), ("reco", float("nan")), ("reco_as_written", float("nan")),
                                  ("mu_fidelity", 0.2 if method == "saliency" else 0.0)]]
    summary = pd.DataFrame(rows, columns=["metric", "method", "model", "degradation", "mean"])
    accuracy = pd.DataFrame({"model": ["resnet18"], "fold": [0], "held_out_accuracy": [0.1]})
    sanity = pd.DataFrame(columns=["metric", "method", "degradation", "level", "mean"])
    lines = findings(summary, accuracy, sanity, "resnet18")
    assert "mege on resnet18: undefined for every method (S= or S!= is empty, see the S=/S!= sizes)." in lines
    assert ("Highest mu_fidelity on resnet18: saliency (0.200); lowest: saliency (0.200); random 0.000, beaten by 1 "
            "of 1.") in lines
    assert "reco of lipschitz-cnn against resnet18: undefined for every method." in lines


def test_lipschitz_option_scores_a_one_lipschitz_family_beside_the_base_model(tmp_path, one_torch_thread):
    config = tmp_path / "lipschitz.toml"
    config.write_text("lipschitz = true\n")
    with one_torch_thread():
        report = run_protocol("mege-reco", profile="smoke", config_file=config, out=tmp_path / "run")
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    lipschitz = results[results["model"] == "lipschitz-cnn"]
    assert set(lipschitz["method"]) == set(MEGE_EXPLAINERS)
    assert set(lipschitz["metric"]) >= {"mege", "reco", "reco_as_written", "mu_fidelity"}
    recipe = json.loads((tmp_path / "run" / "models" / "lipschitz-cnn" / "folds.json").read_text())["train_config"]
    base = json.loads((tmp_path / "run" / "models" / "cnn" / "folds.json").read_text())["train_config"]
    assert (recipe["loss"], recipe["tau"], recipe["epochs"]) == ("tau-cross-entropy", LIPSCHITZ_TAU, 3 * base["epochs"])
    assert (base["loss"], base["tau"]) == ("cross-entropy", 1.0)
    assert "lipschitz-cnn has a higher mege than cnn" in report.read_text()


def test_intervals_and_noise_floors_are_written_and_reported(smoke_run):
    out, report = smoke_run
    intervals = pd.read_csv(out / "intervals.csv")
    columns = {"model", "method", "metric", "value", "ci_low", "ci_high", "floor_mean", "floor_95"}
    assert columns <= set(intervals.columns)
    assert len(intervals) == 3 * len(MEGE_EXPLAINERS) * 3  # mege, reco, reco_as_written per family and method
    results = pd.read_csv(out / "results.csv").set_index(["model", "method", "metric"])["value"]
    separation = pd.read_csv(out / "separation.csv").set_index(["model", "method"])
    for row in intervals.itertuples():
        assert row.value == pytest.approx(results[(row.model, row.method, row.metric)], nan_ok=True)
        sizes = separation.loc[(row.model, row.method)]
        if row.metric == "mege" or not (sizes["n_s_eq"] and sizes["n_s_neq"]):
            assert pd.isna(row.floor_95), row
        else:
            assert 0 < row.floor_mean < row.floor_95 <= 1, row
        if pd.notna(row.ci_low):
            assert row.ci_low <= row.ci_high, row
    page = report.read_text()
    assert "Uncertainty of MeGe and ReCo, and ReCo&#x27;s noise floor" in page or "ReCo's noise floor" in page
    assert "ReCo as written (eq. 6) [95% CI]" in page and "ReCo: noise floor, mean / 95%" in page
    assert "noise floor of uninformative distances" in page


def test_distance_sanity_tests_are_in_the_run_folder_and_the_report(smoke_run):
    out, report = smoke_run
    tests = pd.read_csv(out / "distance_tests.csv")
    assert list(tests["distance"]) == list(DISTANCES)
    assert set(tests["moving_point"]) <= {"pass", "fail"} and set(tests["noise"]) <= {"pass", "fail"}
    assert tests.loc[tests["distance"] == "spearman", "used"].item()
    assert (tests.loc[tests["distance"] == "l2", ["moving_point", "noise"]] == "pass").all(axis=None)
    assert tests["noise_last"].gt(tests["noise_first"]).all()
    page = report.read_text()
    assert "Distance sanity tests (paper appendix F)" in page and "F.2 noise" in page and "pass (drop " in page


def test_only_lipschitz_families_train_with_the_lipschitz_loss():
    config = resolve_config(SPEC, "paper")
    assert config["lipschitz_loss"] == "tau-cross-entropy"
    lipschitz = train_config(family_config(config, "lipschitz-cnn"))
    assert (lipschitz.loss, lipschitz.tau) == ("tau-cross-entropy", LIPSCHITZ_TAU)
    base = train_config(family_config(config, "resnet18"))
    assert (base.loss, base.tau) == ("cross-entropy", 1.0)
    assert (base.optimizer, base.lr, base.epochs * config["lipschitz_epoch_factor"]) == (
        lipschitz.optimizer, lipschitz.lr, lipschitz.epochs)
    plain_config = dict(config, lipschitz_loss="cross-entropy", lipschitz_tau=1.0)
    plain = train_config(family_config(plain_config, "lipschitz-cnn"))
    assert plain.loss == "cross-entropy"


@pytest.mark.parametrize("key, value, message", [
    ("lipschitz_loss", "hinge", "config key 'lipschitz_loss' has value\\(s\\) 'hinge'"),
    ("lipschitz_tau", 0.0, "config key 'lipschitz_tau' must be a finite number > 0"),
    ("lipschitz_epoch_factor", 0, "config key 'lipschitz_epoch_factor' must be a finite number > 0"),
    ("bootstrap_samples", 0, "config key 'bootstrap_samples' must be a finite number > 0"),
    ("floor_draws", 0, "config key 'floor_draws' must be a finite number > 0"),
    ("distance_test_positions", 1, "config key 'distance_test_positions' must be a finite number >= 2"),
])
def test_new_config_keys_are_checked(key, value, message):
    with pytest.raises(XaitrustError, match=message):
        resolve_config(SPEC, "smoke", {key: value})


def _intervals(rows):
    """An intervals table of the base family ``cnn`` from ``(metric, method, value, ci_low, ci_high, floor_95)``."""
    table = pd.DataFrame(rows, columns=["metric", "method", "value", "ci_low", "ci_high", "floor_95"])
    return table.assign(model="cnn", degradation="none", level=0.0, floor_mean=table["floor_95"] / 2)


def test_headline_names_the_leader_only_when_its_interval_is_clear_of_the_others():
    separated = _intervals([
        ("mege", "saliency", 0.90, 0.85, 0.95, float("nan")), ("mege", "gradcam", 0.70, 0.60, 0.80, float("nan")),
        ("mege", "random", 0.95, 0.90, 0.99, float("nan")),  # the control is never ranked
        ("reco", "saliency", 0.60, 0.50, 0.70, 0.30), ("reco", "gradcam", 0.20, 0.10, 0.30, 0.30),
    ])
    answer = headline(separated, "cnn", 400)
    assert answer.question == QUESTION and len(answer.answer) == 2
    mege_line, reco_line = answer.answer
    assert mege_line.startswith("MeGe (generalisation across folds): saliency leads on cnn with 0.900 [0.850, "
                                "0.950], its 95% bootstrap interval above every other method's (next: gradcam 0.700 "
                                "[0.600, 0.800]).")
    assert "saliency leads on cnn with 0.600 [0.500, 0.700]" in reco_line
    assert reco_line.endswith("1 of 2 methods clear the 95% noise floor of uninformative distances (0.300): "
                              "saliency.")


def test_headline_says_when_the_run_does_not_resolve_the_question():
    overlapping = _intervals([
        ("mege", "saliency", 0.90, 0.70, 0.99, float("nan")), ("mege", "gradcam", 0.85, 0.75, 0.95, float("nan")),
        ("reco", "saliency", 0.40, 0.20, 0.90, 0.45), ("reco", "gradcam", 0.30, 0.10, 0.15, 0.44),
    ])
    mege_line, reco_line, conclusion = headline(overlapping, "cnn", 20).answer
    assert ("saliency scores highest on cnn, 0.900 [0.700, 0.990], but its 95% bootstrap interval overlaps those of "
            "gradcam 0.850 [0.750, 0.950]: this run does not resolve which of them is best.") in mege_line
    # ReCo: the intervals are apart, but no method clears the noise floor
    assert "saliency leads on cnn with 0.400 [0.200, 0.900]" in reco_line
    assert ("No method's ReCo clears the 95% noise floor of uninformative distances (0.440-0.450 for these sizes of "
            "S= and S!=): this run cannot tell their consistency from chance.") in reco_line
    assert conclusion == ("With 20 explained images neither ranking is resolved: more explained images (n_samples) "
                          "narrow the intervals.")
    undefined = overlapping.assign(value=float("nan"))
    assert headline(undefined, "cnn", 20).answer[0].startswith("MeGe is undefined on cnn for every method")


def test_headline_and_summary_json_match_the_tables(smoke_run):
    out, report = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["question"] == QUESTION and 2 <= len(summary["answer"]) <= 4
    intervals = pd.read_csv(out / "intervals.csv")
    assert len(summary["intervals"]) == len(intervals)
    assert {"summary", "accuracy", "separation", "sanity", "distance_tests"} <= set(summary)
    clean = intervals[(intervals["model"] == "cnn") & (intervals["method"] != "random")]
    for line, metric in zip(summary["answer"], ("mege", "reco")):
        top = clean[clean["metric"] == metric].sort_values("value", ascending=False, kind="stable").iloc[0]
        assert f"{top['method']} " in line and f"{top['value']:.3f} [{top['ci_low']:.3f}, {top['ci_high']:.3f}]" in line
    page = report.read_text()
    assert "<div class='headline'>" in page and html.escape(summary["answer"][0]) in page
