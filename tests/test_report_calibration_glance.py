"""Calibration at a glance: the reliability diagrams side by side; the calibration table's errors with bootstrap
intervals over the images (the same resamples from the same seed, each measure's own estimator); and each method's
move under calibration beyond the random maps' move, per image on the same images, with its t interval."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from xaitrust.calibration.binned import ece, reliability_bins
from xaitrust.calibration.plots import RELIABILITY_COLOURS, draw_reliability
from xaitrust.calibration.scores import accuracy, nll
from xaitrust.calibration.summary import calibration_summary
from xaitrust.errors import XaitrustError
from xaitrust.report import calibration_glance
from xaitrust.report.calibration_glance import (
    calibration_errors,
    calibration_moves,
    calibration_section,
    errors_table,
    moves_tables,
    reliability_figure,
)
from xaitrust.report.html import write_report
from xaitrust.statistics import bootstrap_indices, percentile_interval

T_975_5 = 2.5705818366147395  # t quantile 0.975 with 5 degrees of freedom

SAMPLES = np.array([11, 12, 13, 14, 15, 16])  # dataset indices, not positions
RANDOM_MOVE = np.array([0.1, 0.3, 0.2, 0.4, 0.0, 0.2])  # the random maps' move under calibration, per image
NOISE = np.array([0.02, -0.02, 0.01, -0.01, 0.03, -0.03])  # mean 0


def predictions(n=60):
    """Held-out probabilities of an over-confident model (logits x 3) and of the model the labels were drawn from."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(n, 3, generator=g, dtype=torch.float64) * 2
    labels = torch.multinomial(torch.softmax(logits, dim=1), 1, generator=g).squeeze(1)
    return {"uncalibrated": torch.softmax(3 * logits, dim=1), "calibrated": torch.softmax(logits, dim=1)}, labels


def table_of(probabilities, labels):
    return pd.DataFrame([{"model": model, **calibration_summary(probs, labels)} for model, probs in
                         probabilities.items()])


def results_table():
    """Per image: "same" moves as the random maps plus zero-mean noise, "better" moves 0.2 lower than them, on
    deletion and insertion areas; an otsu_tv row that is not a faithfulness metric; rows in a shuffled order, the
    calibrated model's images reversed."""
    base = np.array([0.5, 0.4, 0.6, 0.3, 0.5, 0.4])
    moves = {"random": RANDOM_MOVE, "same": RANDOM_MOVE + NOISE, "better": RANDOM_MOVE - 0.2 + NOISE}
    parts = []
    for metric in ("deletion_area", "insertion_area", "otsu_tv"):
        for method, move in moves.items():
            parts.append(pd.DataFrame({"metric": metric, "method": method, "model": "uncalibrated",
                                       "sample": SAMPLES, "value": base}))
            parts.append(pd.DataFrame({"metric": metric, "method": method, "model": "calibrated",
                                       "sample": SAMPLES[::-1], "value": (base + move)[::-1]}))
    table = pd.concat(parts, ignore_index=True)
    return table.iloc[np.random.default_rng(0).permutation(len(table))].reset_index(drop=True)


def t_interval(values):
    half = T_975_5 * np.std(values, ddof=1) / math.sqrt(len(values))
    return values.mean(), values.mean() - half, values.mean() + half


def test_a_method_moving_like_random_is_unresolved_and_one_moving_beyond_is_resolved():
    results = results_table()
    moves = calibration_moves(results, "uncalibrated", "calibrated").set_index(["metric", "method"])
    assert list(moves.index.get_level_values("metric").unique()) == ["deletion_area", "insertion_area"]
    first_seen = [method for method in dict.fromkeys(results["method"]) if method != "random"]
    assert list(moves.loc["deletion_area"].index) == ["random", *first_seen]  # the control first
    for metric in ("deletion_area", "insertion_area"):
        for method, expected in (("random", RANDOM_MOVE), ("same", NOISE), ("better", NOISE - 0.2)):
            row = moves.loc[(metric, method)]
            np.testing.assert_allclose([row["mean"], row["low"], row["high"]], t_interval(expected), atol=1e-12)
            assert row["n"] == 6
        assert moves.loc[(metric, "random"), "resolved"] and moves.loc[(metric, "better"), "resolved"]
        assert not moves.loc[(metric, "same"), "resolved"]


def test_an_image_without_a_score_is_left_out_of_its_mean():
    results = results_table()
    gone = (results["method"] == "same") & (results["model"] == "calibrated") & (results["sample"] == 13)
    results.loc[gone & (results["metric"] == "deletion_area"), "value"] = np.nan
    moves = calibration_moves(results, "uncalibrated", "calibrated").set_index(["metric", "method"])
    row = moves.loc[("deletion_area", "same")]
    kept = np.delete(NOISE, 2)
    half = 2.7764451051977987 * np.std(kept, ddof=1) / math.sqrt(5)  # t quantile 0.975, 4 degrees of freedom
    assert row["n"] == 5
    np.testing.assert_allclose([row["mean"], row["low"], row["high"]],
                               [kept.mean(), kept.mean() - half, kept.mean() + half], atol=1e-12)
    assert moves.loc[("insertion_area", "same"), "n"] == 6


def test_a_metric_without_the_random_control_on_both_models_has_no_moves():
    results = results_table()
    results = results[~((results["metric"] == "insertion_area") & (results["method"] == "random")
                        & (results["model"] == "calibrated"))]
    moves = calibration_moves(results, "uncalibrated", "calibrated")
    assert list(moves["metric"].unique()) == ["deletion_area"]


def test_duplicated_scores_are_refused():
    results = results_table()
    with pytest.raises(XaitrustError, match="more than one value"):
        calibration_moves(pd.concat([results, results.iloc[:1]]), "uncalibrated", "calibrated")
    with pytest.raises(XaitrustError, match="columns metric, method, model, sample, value"):
        calibration_moves(results.drop(columns="sample"), "uncalibrated", "calibrated")


def test_the_move_tables_give_the_verdict_in_the_metric_direction_and_the_numbers():
    moves = calibration_moves(results_table(), "uncalibrated", "calibrated")
    resolved, numbers = moves_tables(moves)
    columns = ["deletion_area (lower is better)", "insertion_area (higher is better)"]
    rows = ["random (its own move)", "same", "better"]
    assert list(resolved.columns) == columns and list(numbers.columns) == columns
    assert resolved.index[0] == rows[0] and list(numbers.index) == list(resolved.index)
    # Random's scores rose: a worse deletion area, a better insertion area; "better" fell 0.2 beyond random.
    assert resolved.loc[rows].values.tolist() == [["worse", "better"], ["no", "no"], ["better", "worse"]]
    mean, low, high = t_interval(NOISE - 0.2)
    assert numbers.loc["better", columns[0]] == f"{mean:+.2g} [{low:+.2g}, {high:+.2g}]"
    assert numbers.loc["better", columns[0]].startswith("-0.2 [-0.2")


def test_calibration_errors_are_the_table_s_with_the_bootstrap_of_each_estimator():
    probabilities, labels = predictions()
    table = table_of(probabilities, labels)
    errors = calibration_errors(probabilities, labels, table, seed=3, n_bootstrap=40)
    assert list(errors["model"].unique()) == ["uncalibrated", "calibrated"]
    assert list(errors["measure"].unique()) == ["accuracy", "ece", "density_ece", "kl_calibration_error", "nll"]
    indices = bootstrap_indices(60, 40, seed=3)
    for row in errors.itertuples():
        assert row.estimate == table.set_index("model").loc[row.model, row.measure] and row.n == 60
        estimator = {"accuracy": accuracy, "ece": ece, "nll": nll}.get(row.measure)
        if estimator is None:  # the kernel estimators keep their estimate alone
            assert math.isnan(row.low) and math.isnan(row.high)
            continue
        probs = probabilities[row.model]
        draws = [estimator(probs[torch.from_numpy(i)], labels[torch.from_numpy(i)]) for i in indices]
        assert (row.low, row.high) == percentile_interval(draws)
        assert row.low < row.high


def test_the_bootstrap_is_deterministic_and_follows_the_seed():
    probabilities, labels = predictions()
    table = table_of(probabilities, labels)
    first = calibration_errors(probabilities, labels, table, seed=1, n_bootstrap=30)
    pd.testing.assert_frame_equal(first, calibration_errors(probabilities, labels, table, seed=1, n_bootstrap=30))
    other = calibration_errors(probabilities, labels, table, seed=2, n_bootstrap=30)
    assert not np.allclose(first["low"].dropna(), other["low"].dropna())


def test_the_errors_table_reads_measures_by_models_with_the_direction():
    probabilities, labels = predictions()
    errors = calibration_errors(probabilities, labels, table_of(probabilities, labels), n_bootstrap=20)
    shown = errors_table(errors)
    assert list(shown.columns) == ["uncalibrated", "calibrated"]
    assert list(shown.index) == ["accuracy (higher is better)", "binned ECE (lower is better)",
                                 "density ECE (lower is better)", "KL calibration error (lower is better)",
                                 "NLL (lower is better)"]
    row = errors.set_index(["model", "measure"]).loc[("calibrated", "ece")]
    assert shown.loc["binned ECE (lower is better)", "calibrated"] == (
        f"{row['estimate']:.3g} [{row['low']:.3g}, {row['high']:.3g}]")
    kl = errors.set_index(["model", "measure"]).loc[("calibrated", "kl_calibration_error"), "estimate"]
    assert shown.loc["KL calibration error (lower is better)", "calibrated"] == f"{kl:.3g} (no interval)"


def test_a_table_from_other_probabilities_or_models_is_refused():
    probabilities, labels = predictions()
    table = table_of(probabilities, labels)
    swapped = table.assign(model=table["model"][::-1].to_numpy())
    with pytest.raises(XaitrustError, match="give the probabilities the table was computed from"):
        calibration_errors(probabilities, labels, swapped, n_bootstrap=10)
    with pytest.raises(XaitrustError, match="same models"):
        calibration_errors({"uncalibrated": probabilities["uncalibrated"]}, labels, table, n_bootstrap=10)


@pytest.fixture
def drawn(monkeypatch):
    """Make ``reliability_figure`` hand back its figure instead of writing and closing it."""
    monkeypatch.setattr(calibration_glance, "save_figure", lambda fig, path: fig)
    figures = []
    yield figures
    for fig in figures:
        calibration_glance.plt.close(fig)


def test_the_reliability_figure_puts_each_model_s_diagram_side_by_side(drawn):
    probabilities, labels = predictions()
    fig = reliability_figure(None, probabilities, labels)
    drawn.append(fig)
    assert len(fig.axes) == 4
    tops, bottoms = fig.axes[:2], fig.axes[2:]  # row by row: the diagrams, then their histograms
    for top, bottom, (model, probs) in zip(tops, bottoms, probabilities.items()):  # uncalibrated on the left
        assert top.get_title() == f"{model}: ECE = {ece(probs, labels):.4f}"
        assert top.get_position().x0 == pytest.approx(bottom.get_position().x0)
        assert top.get_position().y0 > bottom.get_position().y1
        bins = reliability_bins(probs, labels)
        filled = bins.count[:, 0] > 0
        accuracy, confidence = zip(*shown_bins(top).values())
        assert accuracy == pytest.approx(bins.accuracy[filled, 0].tolist())
        assert confidence == pytest.approx(bins.confidence[filled, 0].tolist())
    assert tops[0].get_position().x1 < tops[1].get_position().x0


OVER, UNDER = "gap: confidence above accuracy", "gap: accuracy above confidence"


def shown_bins(ax) -> dict[float, tuple[float, float]]:
    """Per bar (by its left edge, left to right): the accuracy and the confidence a reader sees. The accuracy is where
    the bar ends (its blue or yellow top); the confidence is where the light red top ends, or else where the blue
    ends."""
    tops = {}
    for patch in ax.patches:
        colour = next(label for label, c in RELIABILITY_COLOURS.items() if to_rgba(c) == patch.get_facecolor())
        tops.setdefault(round(patch.get_x(), 9), {})[colour] = patch.get_y() + patch.get_height()
    return {x: (max(top["accuracy"], top.get(UNDER, 0.0)), top.get(OVER, top["accuracy"]))
            for x, top in sorted(tops.items())}


def test_the_reliability_diagram_explains_every_colour_it_draws_and_blends_none():
    # Bin 0.85: confidence 0.85, accuracy 0.5 (over-confident); bin 0.65: confidence 0.65, accuracy 1 (under).
    probs = torch.tensor([[0.85, 0.15]] * 4 + [[0.65, 0.35]] * 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 0, 0, 0, 0])
    fig = Figure()
    top, bottom = fig.subplots(2, 1)
    draw_reliability(top, bottom, probs, labels, n_bins=10)
    legend = {text.get_text(): handle for text, handle in zip(top.get_legend().get_texts(),
                                                               top.get_legend().legend_handles)}
    assert set(legend) == {*RELIABILITY_COLOURS, "perfect calibration"}
    explained = {to_rgba(RELIABILITY_COLOURS[label]) for label in RELIABILITY_COLOURS}
    assert {legend[label].get_facecolor() for label in RELIABILITY_COLOURS} == explained
    patches = [(p.get_x(), p.get_y(), p.get_height(), p.get_facecolor()) for p in top.patches]
    assert {colour for *_, colour in patches} == explained  # all three colours drawn, and only they
    assert all(colour[3] == 1 for *_, colour in patches)  # opaque: nothing shows through
    for k, (x, y, height, _) in enumerate(patches):  # no two patches overlap: no colour is a blend of two
        for x2, y2, height2, _ in patches[k + 1:]:
            assert x != pytest.approx(x2) or y + height <= y2 + 1e-12 or y2 + height2 <= y + 1e-12
    np.testing.assert_allclose(list(shown_bins(top).values()), [(1.0, 0.65), (0.5, 0.85)])
    over = [(y, y + height) for _, y, height, colour in patches if colour == to_rgba(RELIABILITY_COLOURS[OVER])]
    under = [(y, y + height) for _, y, height, colour in patches if colour == to_rgba(RELIABILITY_COLOURS[UNDER])]
    np.testing.assert_allclose(over, [(0.5, 0.85)])
    np.testing.assert_allclose(under, [(0.65, 1.0)])


def section_inputs():
    probabilities, labels = predictions(n=60)
    return probabilities, labels, table_of(probabilities, labels), results_table()


def test_the_section_holds_the_documented_parts(tmp_path):
    probabilities, labels, table, results = section_inputs()
    section = calibration_section(tmp_path, probabilities, labels, table, results, seed=0, n_bootstrap=20)
    assert section.title == "Calibration at a glance"
    assert list(section.tables) == [
        "Calibration errors on the held-out images (estimate [95% bootstrap interval])",
        "uncalibrated -> calibrated: is the move beyond the random maps' resolved?",
        "uncalibrated -> calibrated: move beyond the random maps' move (mean [95% t interval])",
    ]
    (caption, figure), = section.figures.items()
    assert caption == "Reliability diagrams on the held-out images: uncalibrated, calibrated"
    assert figure == tmp_path / "calibration-reliability.png" and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(section.paragraphs) == 3
    assert "60 held-out images" in section.paragraphs[0] and "20 resamples, seed 0" in section.paragraphs[0]
    assert "No interval for density ECE and KL calibration error" in section.paragraphs[0]
    write_report(tmp_path / "report.html", "calibration", [], [section], "")
    assert "Calibration at a glance" in (tmp_path / "report.html").read_text()


def test_the_section_is_the_same_twice(tmp_path):
    probabilities, labels, table, results = section_inputs()
    first = calibration_section(tmp_path / "a", probabilities, labels, table, results, n_bootstrap=20)
    second = calibration_section(tmp_path / "b", probabilities, labels, table, results, n_bootstrap=20)
    assert first.paragraphs == second.paragraphs
    for name in first.tables:
        pd.testing.assert_frame_equal(first.tables[name], second.tables[name])
    assert [p.read_bytes() for p in first.figures.values()] == [p.read_bytes() for p in second.figures.values()]


def test_without_the_random_control_the_section_says_how_to_get_the_comparison(tmp_path):
    probabilities, labels, table, results = section_inputs()
    section = calibration_section(tmp_path, probabilities, labels, table, results[results["method"] != "random"],
                                  n_bootstrap=10)
    assert list(section.tables) == ["Calibration errors on the held-out images (estimate [95% bootstrap interval])"]
    assert any("add it to the explainers" in paragraph for paragraph in section.paragraphs)


def test_results_of_other_models_are_refused(tmp_path):
    probabilities, labels, table, results = section_inputs()
    with pytest.raises(XaitrustError, match="results hold no rows of the models \\['calibrated'\\]"):
        calibration_section(tmp_path, probabilities, labels, table, results[results["model"] != "calibrated"],
                            n_bootstrap=10)
