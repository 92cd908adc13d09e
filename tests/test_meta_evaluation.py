"""Meta-evaluation after MetaQuantus (``xaitrust.evaluation.meta``, ``xaitrust meta-evaluate``): the scores by hand,
a constant metric never reacts, a random one is not resilient, a faithful one on an oracle beats both, determinism
and batch independence, user mistakes, the command end to end on a user's model and on the default model."""

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
    SCORE_COLUMNS,
    SUMMARY_COLUMNS,
    VALUE_COLUMNS,
    inter_consistency,
    intra_consistency,
    meta_evaluate,
    verdicts,
    wilcoxon_p,
)
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
    files = ["meta_values.csv", "meta_evaluation.csv", "meta_summary.csv", "meta_evaluation.html", "settings.json"]
    for name in files:
        assert (runs[0] / name).read_bytes() == (runs[1] / name).read_bytes(), name
    summary = pd.read_csv(runs[0] / "meta_summary.csv")
    assert summary["metric"].tolist() == ["average_drop"] * 3 + ["sparseness"] * 3
    assert set(summary["verdict"]) <= {"believe", "be careful"}
    page = (runs[0] / "meta_evaluation.html").read_text()
    assert "Scores and verdict" in page and "Be careful with sparseness" in page


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
