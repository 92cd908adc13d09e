"""The benchmark's verdict, scorecard grid and glossary on tidy results whose answer is known by construction: a
method equal to the random maps is never declared better, a clearly better one is, Holm's correction keeps many
noisy copies of random from being declared better, a method failing the sanity check is never recommended; the grid
ranks with statistical ties and colours by rank in the metric's direction."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from xaitrust.errors import XaitrustError
from xaitrust.evaluation import get_metric
from xaitrust.report.glossary import glossary_html
from xaitrust.report.scorecard import (
    UNRESOLVED,
    rank_colour,
    scorecard_html,
    scorecard_table,
)
from xaitrust.report.summary import write_summary
from xaitrust.report.verdict import (
    FAITHFULNESS,
    SANITY,
    STABILITY,
    benchmark_verdict,
    verdict_html,
)

N = 30


def rows(metric: str, method: str, values, model: str = "uncalibrated") -> pd.DataFrame:
    values = np.asarray(values, dtype=float)
    return pd.DataFrame({"metric": metric, "method": method, "model": model, "sample": 100 + np.arange(len(values)),
                         "value": values})


def random_scores(generator) -> dict[str, np.ndarray]:
    """Per-image scores of the random maps on every faithfulness metric."""
    return {metric: generator.uniform(0.2, 0.8, N) for metric in FAITHFULNESS}


def shifted(scores: dict, amount: float, generator, noise: float = 0.02) -> dict[str, np.ndarray]:
    """Scores ``amount`` better than ``scores`` on every metric, in each metric's direction, plus a little noise."""
    return {metric: values + (amount if get_metric(metric).higher_is_better else -amount)
            + generator.normal(0, noise, N) for metric, values in scores.items()}


def results_of(faithfulness: dict, similarity: dict | None = None, lipschitz: dict | None = None) -> pd.DataFrame:
    """Tidy results: ``faithfulness[method][metric]`` per-image values, ``similarity[method]`` randomisation
    similarities, ``lipschitz[method]`` local Lipschitz estimates."""
    parts = [rows(metric, method, values) for method, scores in faithfulness.items()
             for metric, values in scores.items()]
    parts += [rows(SANITY, method, values) for method, values in (similarity or {}).items()]
    parts += [rows(STABILITY, method, values) for method, values in (lipschitz or {}).items()]
    return pd.concat(parts, ignore_index=True)


def low_similarity(generator) -> np.ndarray:
    return generator.uniform(0.0, 0.2, N)


def by_method(verdict):
    return {v.method: v for v in verdict.methods}


def test_a_method_equal_to_random_is_not_better_and_a_clearly_better_one_is():
    generator = np.random.default_rng(0)
    random = random_scores(generator)
    faithfulness = {"random": random, "copy": dict(random), "good": shifted(random, 0.2, generator),
                    "bad": shifted(random, -0.2, generator)}
    similarity = {method: low_similarity(generator) for method in ("copy", "good", "bad")}
    verdict = benchmark_verdict(results_of(faithfulness, similarity | {"random": np.ones(N)}))
    methods = by_method(verdict)
    assert set(methods["copy"].outcomes.values()) == {"indistinguishable"}
    assert set(methods["good"].outcomes.values()) == {"better"}
    assert set(methods["bad"].outcomes.values()) == {"worse"}
    comparisons = verdict.comparisons.set_index(["method", "metric"])
    # Direction-aware: the good method's deletion area is lower (better), its insertion area higher.
    assert comparisons.loc[("good", "deletion_area"), "difference"] < 0 < comparisons.loc[("good", "insertion_area"),
                                                                                          "difference"]
    assert (comparisons.loc["copy", "p_value"] == 1).all()
    assert [v.method for v in verdict.methods if v.trusted] == ["good"]
    assert verdict.methods[0].method == "good" and verdict.methods[-1].control  # trusted first, the control last
    assert methods["random"].sanity == "fails" and not methods["random"].trusted
    assert verdict.recommendation[0].startswith("Trust on this model and data: good (better than random on 5 of 5)")
    assert any(line.startswith("No better than the random maps on any faithfulness metric: copy, bad (worse on "
                               "deletion area") for line in verdict.recommendation)
    assert verdict.n_images == N and len(verdict.comparisons) == 3 * len(FAITHFULNESS)


def test_holm_keeps_noisy_copies_of_random_from_being_declared_better():
    generator = np.random.default_rng(8)
    random = random_scores(generator)
    faithfulness = {"random": random}
    for k in range(15):  # each method: fresh draws from the random maps' distribution, no real difference
        faithfulness[f"noise-{k}"] = {metric: generator.uniform(0.2, 0.8, N) for metric in FAITHFULNESS}
    verdict = benchmark_verdict(results_of(faithfulness))
    comparisons = verdict.comparisons
    assert len(comparisons) == 75
    assert (comparisons["p_value"] < 0.05).sum() == 5  # uncorrected, five would be declared different
    assert (comparisons["outcome"] == "indistinguishable").all()
    assert (comparisons["p_adjusted"] >= comparisons["p_value"]).all()
    assert "0 of the 75 comparisons with the random maps are resolved" in " ".join(verdict.recommendation)


def test_a_method_failing_the_sanity_check_is_never_recommended():
    generator = np.random.default_rng(1)
    random = random_scores(generator)
    faithfulness = {"random": random, "faithful-but-blind": shifted(random, 0.3, generator),
                    "uncertain": shifted(random, 0.3, generator), "sane": shifted(random, 0.3, generator),
                    "unchecked": shifted(random, 0.3, generator)}
    uncertain = np.where(np.arange(N) % 2 == 0, -0.35, 1.15)  # mean 0.4 below 0.5, but its interval reaches 0.5
    similarity = {"faithful-but-blind": generator.uniform(0.85, 0.95, N), "uncertain": uncertain,
                  "sane": low_similarity(generator)}
    verdict = benchmark_verdict(results_of(faithfulness, similarity))
    methods = by_method(verdict)
    assert methods["faithful-but-blind"].sanity == "fails" and methods["uncertain"].sanity == "fails"
    assert methods["uncertain"].similarity.mean < 0.5 <= methods["uncertain"].similarity.high
    assert methods["unchecked"].sanity == "not measured"
    assert [v.method for v in verdict.methods if v.trusted] == ["sane"]
    assert "faithful-but-blind" not in verdict.recommendation[0] and "unchecked" not in verdict.recommendation[0]
    assert verdict.recommendation[1].startswith("Fail the sanity check")
    assert "faithful-but-blind (0.90: its maps barely change), uncertain (0.40 [" in verdict.recommendation[1]
    assert "its maps change little" in methods["faithful-but-blind"].sentence
    assert "the images do not bound it below 0.5" in methods["uncertain"].sentence
    # A looser threshold lets the uncertain method pass.
    assert by_method(benchmark_verdict(results_of(faithfulness, similarity), sanity_threshold=0.9))[
        "uncertain"].trusted


def test_stability_ranks_share_ranks_the_sample_cannot_separate():
    generator = np.random.default_rng(2)
    random = random_scores(generator)
    faithfulness = {"random": random, **{m: shifted(random, 0.2, generator) for m in ("a", "b", "c")}}
    lipschitz = {"a": 1 + generator.normal(0, 0.01, N), "b": 1 + generator.normal(0, 0.01, N),
                 "c": 5 + generator.normal(0, 0.01, N)}
    verdict = benchmark_verdict(results_of(faithfulness, lipschitz=lipschitz))
    ranks = {v.method: v.stability_rank for v in verdict.methods}
    assert ranks == {"a": 1, "b": 1, "c": 3, "random": None}
    assert "(local Lipschitz, 30 images; '=' marks methods the sample does not tell apart): =1: a, b; 3: c." in \
        verdict.recommendation[-1]
    assert "stability rank =1" in by_method(verdict)["a"].sentence


def test_a_verdict_without_the_random_control_says_faithfulness_is_not_tested():
    generator = np.random.default_rng(3)
    verdict = benchmark_verdict(results_of({"a": random_scores(generator)}, {"a": low_similarity(generator)}))
    assert verdict.comparisons.empty and not verdict.methods[0].trusted
    assert "no 'random' control" in " ".join(verdict.recommendation)


def test_mistakes_in_the_results_say_what_to_fix():
    generator = np.random.default_rng(4)
    results = results_of({"random": random_scores(generator)})
    with pytest.raises(XaitrustError, match="lack the columns sample"):
        benchmark_verdict(results.drop(columns="sample"))
    with pytest.raises(XaitrustError, match="no rows of model 'calibrated'; their models: uncalibrated"):
        benchmark_verdict(results, "calibrated")
    with pytest.raises(XaitrustError, match="several values of metric 'deletion_area', method 'random'"):
        benchmark_verdict(pd.concat([results, results.iloc[:1]]))
    with pytest.raises(XaitrustError, match="alpha must lie in"):
        benchmark_verdict(results, alpha=5)


def test_the_verdict_block_and_summary_show_each_outcome(tmp_path):
    generator = np.random.default_rng(5)
    random = random_scores(generator)
    faithfulness = {"random": random, "good<b>": shifted(random, 0.2, generator), "copy": dict(random)}
    verdict = benchmark_verdict(results_of(faithfulness, {"good<b>": low_similarity(generator),
                                                          "copy": generator.uniform(0.7, 0.9, N)}))
    block = verdict_html(verdict)
    assert "good&lt;b&gt;" in block and "<b>" not in block
    good_row = block.split("<tr>")[2]
    assert "class='good'" in good_row and ">trust<" in good_row and good_row.count(">better<") == 5
    copy_row = block.split("<tr>")[3]
    assert ">do not rely<" in copy_row and copy_row.count(">≈ random<") == 5 and "fails: 0." in copy_row
    assert "random <small>(control)</small>" in block
    path = write_summary(tmp_path / "summary.json", None, verdict=verdict)
    data = json.loads(path.read_text())
    assert data["verdict"]["methods"][0]["method"] == "good<b>" and data["verdict"]["methods"][0]["trusted"]
    assert {row["outcome"] for row in data["verdict"]["comparisons"] if row["method"] == "copy"} == {
        "indistinguishable"}
    again = write_summary(tmp_path / "again.json", None, verdict=benchmark_verdict(results_of(
        faithfulness, {"good<b>": low_similarity(np.random.default_rng(9)), "copy": np.full(N, 0.8)})))
    assert again.read_text() != path.read_text()  # the summary follows the numbers
    same = write_summary(tmp_path / "same.json", None, verdict=verdict)
    assert same.read_bytes() == path.read_bytes()


def test_the_grid_ranks_in_the_metric_direction_and_colours_by_rank():
    generator = np.random.default_rng(6)
    base = generator.uniform(0.4, 0.6, N)

    def near(shift):
        return base + shift + generator.normal(0, 0.01, N)

    results = pd.concat([
        rows("deletion_area", "low", near(-0.2)), rows("deletion_area", "mid", near(0)),
        rows("deletion_area", "mid-twin", near(0)), rows("deletion_area", "high", near(0.2)),
        rows("deletion_area", "random", near(0.3)),
        rows("insertion_area", "low", near(-0.2)), rows("insertion_area", "high", near(0.2)),
        rows("deletion_area", "low", near(0), model="calibrated"),
        rows("segmentation_fallback", "random-superpixels", np.zeros(N)),  # a diagnostic, not a metric
    ])
    table = scorecard_table(results, "uncalibrated", ["deletion_area", "insertion_area", "otsu_tv"])
    deletion = table[table["metric"] == "deletion_area"].set_index("method")
    assert deletion["rank"].to_dict() == {"low": 1, "mid": 2, "mid-twin": 2, "high": 4, "random": 5}
    assert deletion.loc["mid", "label"] == "=2" and deletion.loc["low", "label"] == "1"
    insertion = table[table["metric"] == "insertion_area"].set_index("method")
    assert insertion["rank"].to_dict() == {"low": 2, "high": 1}  # higher is better there
    assert set(table["metric"]) == {"deletion_area", "insertion_area"}  # no otsu_tv values: no column
    assert deletion.loc["low", "low"] < deletion.loc["low", "mean"] < deletion.loc["low", "high"]
    by_default = scorecard_table(results, "uncalibrated")  # the registered metrics present, scorecard order
    assert list(pd.unique(by_default["metric"])) == ["deletion_area", "insertion_area"]

    grid = scorecard_html(results, "uncalibrated", ["deletion_area", "insertion_area"])
    cells = re.findall(r"<td style='background:([^']+)' title='([^']+)'>([^<]+)<br><small>([^<]+)</small>", grid)
    low = next(cell for cell in cells if cell[1].startswith("low, deletion_area"))
    assert low[0] == rank_colour(1, 5) == "hsl(120, 60%, 80%)" and low[3] == "1"
    assert next(c for c in cells if c[1].startswith("random, deletion_area"))[0] == "hsl(0, 60%, 80%)"
    assert (f"mean [95% CI] {deletion.loc['low', 'mean']:.4g} [{deletion.loc['low', 'low']:.4g}, "
            f"{deletion.loc['low', 'high']:.4g}], n = {N}") in low[1]
    assert low[2] == f"{deletion.loc['low', 'mean']:.3g}"
    assert f"n = {N}" in low[1] and "lower is better" in low[1]
    assert "deletion area ↓" in grid and "insertion area ↑" in grid
    assert "random <small>(control)</small>" in grid
    assert grid.index(">mid-twin<") < grid.index("random <small>")  # the control row last
    assert rank_colour(1, 1) == UNRESOLVED


def test_the_glossary_explains_every_metric_shown_with_its_direction_and_source():
    names = ["deletion_area", "mu_fidelity", SANITY, "deletion_area"]
    text = glossary_html(names)
    assert text.count("<dt>") == 3
    for name in set(names):
        metric = get_metric(name)
        direction = "higher is better" if metric.higher_is_better else "lower is better"
        assert f"<b>{name}</b> ({direction})" in text
        assert metric.source.split(",")[0] in text
    assert "<code>steps</code>" in text  # the registry's `steps` parameter as code
