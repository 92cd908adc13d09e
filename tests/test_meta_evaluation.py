"""Meta-evaluation after MetaQuantus (``xaitrust.evaluation.meta``, ``xaitrust meta-evaluate``): the scores by hand,
a constant metric never reacts, a random one is not resilient, a faithful one on an oracle beats both, determinism
and batch independence, user mistakes, the command end to end on a user's model and on the default model."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from scipy import stats
from user_data import (
    CLASSES,
    MODEL_REFERENCE,
    rgb_images,
    save_weights,
    to_tensor,
    train_tiny_resnet,
)

from xaitrust.cli import cli
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import define_metric
from xaitrust.evaluation.meta import (
    CRITERIA,
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    TESTS,
    VALUE_COLUMNS,
    by_perturbation,
    inter_consistency,
    intra_consistency,
    meta_evaluate,
    summarise,
    verdicts,
    wilcoxon_p,
)
from xaitrust.report.meta_evaluation import QUESTION, consistency_table, headline
from xaitrust.seeding import image_seed
from xaitrust.testing.oracles import LinearModel


@define_metric(higher_is_better=True, description="1 for every explanation: reads nothing.")
def constant(x):
    return torch.ones(len(x))


@define_metric(higher_is_better=True, description="Uniform noise drawn from the bytes of the image and the map.")
def noise(x, maps):
    return torch.tensor([
        torch.rand(1, generator=torch.Generator().manual_seed(image_seed(0, torch.cat([i.flatten(), m.flatten()]))),
                   dtype=torch.float64).item()
        for i, m in zip(x, maps)
    ])


EXPLAINERS = ["gradient-input", "saliency", "random"]
METRICS = [constant, noise, "deletion_area"]
SETTINGS = {"metric_params": {"deletion_area": {"steps": 16}}, "progress": False}


@pytest.fixture(scope="module")
def oracle():
    """A linear oracle whose evidence ``w * x`` gradient times input gives exactly, and 24 images."""
    generator = torch.Generator().manual_seed(0)
    model = LinearModel(torch.randn(1, 1, 8, 8, generator=generator))
    return model, torch.rand(24, 1, 8, 8, generator=generator)


@pytest.fixture(scope="module")
def result(oracle):
    model, x = oracle
    return meta_evaluate(model, x, EXPLAINERS, METRICS, perturbations=3, **SETTINGS)


def scores_of(result, metric: str) -> pd.DataFrame:
    return result.summary[result.summary["metric"] == metric].set_index("test")


def test_the_scores_follow_metaquantus_by_hand():
    clean = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 5.0, np.nan]])  # 2 explainers x 4 images
    perturbed = np.array([[[0.5, 2.7, 2.0, 3.0], [1.0, 3.0, 4.0, 1.0]]])  # 1 perturbation
    subset = np.array([[True, True, True, False]])
    # IEC_NR: images 0-2 compared; the ranking (explainers by value) is kept on images 0 and 2, reversed on 1.
    nr, images = inter_consistency(clean, perturbed, subset, True, disruptive=False)
    assert images.tolist() == [3] and nr.tolist() == [pytest.approx(4 / 6)]
    # IEC_AR, of the 6 pairs (explainer, image) of images 0-2: higher is better, lower after on 4 of them; lower is
    # better, higher after on the other 2.
    ar, _ = inter_consistency(clean, perturbed, subset, True, disruptive=True)
    assert ar.tolist() == [pytest.approx(4 / 6)]
    lower, _ = inter_consistency(clean, perturbed, subset, False, disruptive=True)
    assert lower.tolist() == [pytest.approx(2 / 6)]
    # IAC: Wilcoxon's p over the subset (NaN values left out), 1 - p for AR.
    p, counted = intra_consistency(clean, perturbed, subset, disruptive=False)
    assert counted.tolist() == [[3, 3]]
    expected = stats.wilcoxon(perturbed[0, 0, :3] - clean[0, :3], zero_method="zsplit", method="exact").pvalue
    assert p[0, 0] == pytest.approx(expected)
    assert intra_consistency(clean, perturbed, subset, disruptive=True)[0][0, 0] == pytest.approx(1 - expected)
    # No image to compare: NaN; no change at all: p = 1.
    none = np.zeros_like(subset)
    assert np.isnan(intra_consistency(clean, perturbed, none, False)[0]).all()
    assert np.isnan(inter_consistency(clean, perturbed, none, True, False)[0]).all()
    assert wilcoxon_p(np.zeros(5)) == 1.0
    assert wilcoxon_p(np.array([0.1, -0.2, 0.0, 0.3] * 20)) == pytest.approx(
        stats.wilcoxon(np.array([0.1, -0.2, 0.0, 0.3] * 20), zero_method="zsplit", method="asymptotic").pvalue)


def test_tables_have_their_columns_and_one_row_per_case(result):
    assert list(result.values.columns) == list(VALUE_COLUMNS)
    assert list(result.scores.columns) == list(SCORE_COLUMNS)
    assert list(result.summary.columns) == list(SUMMARY_COLUMNS)
    # 3 metrics x 3 explainers x 2 tests x 2 kinds x 3 perturbations x 24 images
    assert len(result.values) == 3 * 3 * 2 * 2 * 3 * 24
    # per metric, test, kind, perturbation: one IAC per explainer and one IEC
    assert len(result.scores) == 3 * 2 * 2 * 3 * (3 + 1)
    assert result.summary["test"].tolist() == ["IPT", "MPT", "both"] * 3


def test_a_metric_that_ignores_the_problem_never_reacts(result):
    constant_scores = scores_of(result, "constant")
    assert (constant_scores[["IAC_AR", "IEC_AR"]] == 0).all().all()
    assert (constant_scores[["IAC_NR", "IEC_NR"]] == 1).all().all()
    assert constant_scores.loc["both", "MC"] == pytest.approx(0.5)
    verdict = verdicts(result.summary).set_index("metric").loc["constant"]
    assert verdict["verdict"] == "be careful" and "barely move under disruptive" in verdict["sentence"]


def test_a_metric_of_pure_noise_is_not_resilient(result):
    noise_scores, good = scores_of(result, "noise"), scores_of(result, "deletion_area")
    assert (noise_scores.loc[["IPT", "MPT"], "IEC_NR"] < 0.6).all()  # chance: 1/3 of the ranking kept
    resilience = noise_scores[["IAC_NR", "IEC_NR"]].mean(axis=1)
    assert (resilience < good[["IAC_NR", "IEC_NR"]].mean(axis=1)).all()
    assert "reorder the explainers" in verdicts(result.summary).set_index("metric").loc["noise", "sentence"]


def test_a_faithful_metric_on_an_oracle_beats_both(result):
    mc = result.summary[result.summary["test"] == "both"].set_index("metric")["MC"]
    assert mc["deletion_area"] > mc["constant"] + 0.1 and mc["deletion_area"] > mc["noise"] + 0.1
    good = scores_of(result, "deletion_area")
    assert (good.loc[["IPT", "MPT"], "IEC_NR"] == 1).all()  # the oracle's ranking survives minor noise


def test_results_are_deterministic_and_independent_of_the_batch(oracle, result):
    model, x = oracle
    again = meta_evaluate(model, x, EXPLAINERS, METRICS, perturbations=3, **SETTINGS)
    pd.testing.assert_frame_equal(again.values, result.values)
    pd.testing.assert_frame_equal(again.summary, result.summary)
    # The first 12 images alone, and 2 perturbations: the same noise and values for them.
    part = meta_evaluate(model, x[:12], EXPLAINERS, METRICS, perturbations=2, **SETTINGS).values
    full = result.values[(result.values["sample"] < 12) & (result.values["perturbation"] < 2)]
    pd.testing.assert_frame_equal(part.reset_index(drop=True), full.reset_index(drop=True))


@pytest.mark.parametrize("change, message", [
    ({"metrics": ["no_such_metric"]}, "unknown metric 'no_such_metric'"),
    ({"perturbations": 0}, "perturbations must be a positive integer"),
    ({"explainers": ["saliency"]}, "at least two explainers"),
    ({"metrics": ["ssim_to_uncalibrated"]}, "compare the maps with those of another model"),
    ({"input_noise": (5.0, 0.001)}, "the minor one smaller"),
    ({"weight_noise": 2.0}, "two numbers"),
])
def test_mistakes_are_clear_errors(oracle, change, message):
    model, x = oracle
    arguments = {"explainers": EXPLAINERS, "metrics": ["deletion_area"], **change}
    with pytest.raises(XaitrustError, match=message):
        meta_evaluate(model, x, progress=False, **arguments)


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """A user's TinyResNet trained briefly outside xaitrust, its weights and its data as an .npz file."""
    folder = tmp_path_factory.mktemp("meta-user")
    images, labels = rgb_images(400, seed=0)
    model = train_tiny_resnet(to_tensor(images[:300]), torch.from_numpy(labels[:300]), epochs=1)
    np.savez(folder / "data.npz", x=images, y=labels, classes=np.array(CLASSES))
    return {"weights": save_weights(model, folder / "weights.safetensors"), "npz": folder / "data.npz"}


def invoke(*args):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


USER_RUN = ["--explainers", "saliency,gradient-input", "--metrics", "average_drop,sparseness",
            "--perturbations", 2, "--images", 8, "--threads", 1]


def test_the_command_meta_evaluates_a_users_model_byte_identically(user_model, tmp_path):
    model = ["--model", MODEL_REFERENCE, "--model-options", "width = 8", "--weights", user_model["weights"],
             "--dataset", "npz", "--data-root", user_model["npz"]]
    runs = []
    for name in ("first", "second"):
        result = invoke("meta-evaluate", *model, *USER_RUN, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        runs.append(tmp_path / name)
    assert "Be careful with sparseness" in result.output  # a metric of the maps cannot react to input noise
    files = ["meta_values.csv", "meta_evaluation.csv", "meta_summary.csv", "meta_evaluation.html", "settings.json",
             "summary.json"]
    for name in files:
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    summary = pd.read_csv(runs[0] / "meta_summary.csv")
    assert summary["metric"].tolist() == ["average_drop"] * 3 + ["sparseness"] * 3
    assert set(summary["verdict"]) <= {"believe", "be careful"}
    page = (runs[0] / "meta_evaluation.html").read_text()
    assert "Scores and verdict" in page and "Be careful with sparseness" in page
    written = json.loads((runs[0] / "summary.json").read_text())
    assert written["question"] == QUESTION and "<div class='headline'>" in page
    assert written["answer"][0] == ("No metric reaches every threshold in both tests: be careful with all 2 "
                                    "(average_drop, sparseness); the reasons are below.")
    assert [row["metric"] for row in written["meta_consistency"]] == ["average_drop", "sparseness"]
    assert len(written["summary"]) == len(summary)


@pytest.mark.parametrize("args, message", [
    (["--metrics", "no_such_metric"], "error: unknown metric 'no_such_metric'"),
    (["--perturbations", 0], "0 is not in the range x>=1"),
    (["--explainers", "saliency"], "at least two explainers"),
    (["--weights", "w.safetensors"], "--weights describes the model of --model"),
])
def test_command_mistakes_are_one_line_without_a_traceback(tmp_path, args, message):
    result = invoke("meta-evaluate", *args, "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_without_a_model_the_command_uses_the_default_model(fashion_quick_model, fashion_quick_cache, tmp_path):
    result = invoke("meta-evaluate", "--profile", "quick", "--cache-dir", fashion_quick_cache, "--explainers",
                    "saliency,gradcam", "--metrics", "sparseness", "--perturbations", 1, "--images", 4,
                    "--threads", 1, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "reusing the default model (cnn on fashion-mnist, profile quick)" in result.output
    assert '"dataset": "fashion-mnist"' in (tmp_path / "out" / "settings.json").read_text()


def test_per_perturbation_mc_averages_to_the_metrics_mc(result):
    table = by_perturbation(result.scores)
    assert list(table.columns) == ["metric", "perturbation", *TESTS, "MC"]
    assert table["metric"].drop_duplicates().tolist() == ["constant", "noise", "deletion_area"]
    mc = result.summary[result.summary["test"] == "both"].set_index("metric")["MC"]
    pd.testing.assert_series_equal(table.groupby("metric", sort=False)["MC"].mean(), mc, check_names=False)


def _scores(mc: dict) -> pd.DataFrame:
    """A scores table whose every criterion of perturbation ``k`` of both tests is ``mc[metric][k]``."""
    rows = [(metric, test, criterion, "", k, 10, value) for metric, values in mc.items() for test in TESTS
            for criterion in CRITERIA for k, value in enumerate(values)]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def _answer(mc: dict) -> list[str]:
    scores = _scores(mc)
    return headline(verdicts(summarise(scores)), consistency_table(scores)).answer


def test_headline_names_the_best_metric_only_when_the_perturbations_separate_it():
    apart = {"steady": [0.90, 0.91, 0.89, 0.90, 0.92], "flaky": [0.50, 0.52, 0.47, 0.50, 0.51]}
    table = consistency_table(_scores(apart)).set_index("metric")
    assert table["rank"].to_dict() == {"steady": 1, "flaky": 2}
    interval = stats.t.ppf(0.975, 4) * np.std(apart["steady"], ddof=1) / np.sqrt(5)
    assert table.loc["steady", "high"] - table.loc["steady", "MC"] == pytest.approx(interval)
    verdict, best, informative = _answer(apart)
    assert verdict == ("Believe steady on this model: every criterion reaches its threshold under minor and "
                       "disruptive perturbations of both the inputs and the model. Be careful with flaky (the reasons "
                       "are below).")
    steady = table.loc["steady"]
    assert best == (f"Highest meta-consistency: steady {steady['MC']:.2f} [{steady['low']:.2f}, {steady['high']:.2f}] "
                    "(95% t interval over the 5 perturbations of each kind), higher than every other metric (paired "
                    "t-tests over the perturbations, Holm-corrected).")
    assert informative.startswith("1 of 2 metrics has an MC interval above 0.5") and informative.endswith(": steady.")


def test_headline_says_when_the_perturbations_cannot_tell_the_metrics_apart():
    _, best, informative = _answer({"a": [0.9, 0.5, 0.7], "b": [0.6, 0.65, 0.55]})
    assert "Highest meta-consistency: a 0.70 [" in best and "cannot tell it apart from b 0.60 [" in best
    assert informative.startswith("No metric's MC interval lies above 0.5")
    (_, single) = _answer({"a": [0.9], "b": [0.6]})
    assert single.startswith("Highest meta-consistency: a, MC 0.90, from 1 perturbation of each kind, which gives no "
                             "interval")
