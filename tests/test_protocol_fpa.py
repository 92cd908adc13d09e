"""The FPA protocol: the smoke profile writes a complete run folder (three training regimes, the fidelity A with its
95% CI per regime and estimator, a report with findings) and resumes without retraining; estimators follow the
paper's definitions; bad config values are named; removed pixels take the configured value in training and in the
curves alike; the findings call a difference only when the 95% CIs are disjoint."""

import json
import math
import re

import pandas as pd
import pytest
import torch

from xaitrust.data import ImageDataset
from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.protocols import PROFILES, RunFolder, run_protocol
from xaitrust.protocols.common import load_splits
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.fpa import (
    ESTIMATORS,
    SPEC,
    augmentation,
    estimator_maps,
    explainer_params,
    reference_point,
    regime_curves,
    regime_recipe,
    removal_fill,
    removal_value,
)
from xaitrust.protocols.results import RESULT_COLUMNS
from xaitrust.report.fpa import QUESTION, findings, group_order, headline, peak_text
from xaitrust.statistics import normal_interval
from xaitrust.testing.oracles import LinearModel


@pytest.fixture(scope="module")
def smoke_run(run_smoke):
    return run_smoke("fpa")


def test_run_folder_holds_areas_per_regime_and_estimator(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    assert (out / "config.toml").is_file() and report == out / "report.html"
    results = pd.read_csv(out / "results.csv")
    assert tuple(results.columns) == RESULT_COLUMNS
    areas = results[results["metric"] == "mif_lif_area"]
    assert areas.groupby(["model", "method"])["sample"].nunique().to_dict() == {
        (regime, name): config["n_images"] for regime in config["regimes"] for name in config["estimators"]}
    # Per sample, A_i = AUC(LIF_i) - AUC(MIF_i).
    wide = results.pivot_table(index=["model", "method", "sample"], columns="metric", values="value").dropna()
    assert (wide["lif_area"] - wide["mif_area"]).to_numpy() == pytest.approx(wide["mif_lif_area"].to_numpy())
    accuracy = results[results["metric"] == "accuracy"]
    assert list(accuracy["model"]) == config["regimes"] and (accuracy["sample"] == -1).all()
    assert accuracy["value"].between(0.2, 1).all()  # 1 epoch on 1000 images is well above chance (0.1)

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(config["regimes"]) * len(config["estimators"])
    assert ((summary["ci_low"] <= summary["A"]) & (summary["A"] <= summary["ci_high"])).all()
    means = areas.groupby(["model", "method"])["value"].mean()
    per_estimator = summary.set_index(["model", "method"])["A"].sort_index()
    assert per_estimator.to_numpy() == pytest.approx(means.sort_index().to_numpy())
    assert set(summary.loc[summary["method"] == "IG_sum", "kind"]) == {"signed"}

    # The page opens with the paper's question and the answer summary.json holds, computed from summary.csv.
    stored = json.loads((out / "summary.json").read_text())
    assert stored["question"] == QUESTION and stored["answer"] == headline(summary).answer
    assert [row["A"] for row in stored["summary"]] == pytest.approx(summary["A"].tolist())
    assert set(stored["regime_changes"]) == {"fpa", "erasing"}
    page = report.read_text()
    box = re.search(r"<div class='headline'>(.*?)</div>", page, re.DOTALL).group(1)
    assert page.index("<div class='headline'>") < page.index("What this shows")
    assert QUESTION in box and box.count("<li>") == len(stored["answer"]) == 3
    findings = re.search(r"<ul class='findings'>(.*?)</ul>", page, re.DOTALL).group(1)
    assert findings.count("<li>") >= 5
    assert all(f"{regime}: largest A" in findings for regime in config["regimes"])
    assert "fpa vs no augmentation" in findings and "Importance scores in LIF order (IG_sum)" in page


def test_rerun_resumes_without_retraining(smoke_run, one_torch_thread):
    out, _, _ = smoke_run
    stored = sorted((out / "models").glob("*/model.safetensors")) + sorted((out / "cache").rglob("*.safetensors"))
    assert len(stored) > 3
    stamps = [path.stat().st_mtime_ns for path in stored]
    with one_torch_thread():
        run_protocol("fpa", profile="smoke", out=out)
    assert [path.stat().st_mtime_ns for path in stored] == stamps


def test_estimators_follow_the_paper():
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 4, 4, generator=generator)
    gradient = torch.randn(2, 3, 4, 4, generator=generator)
    black = torch.zeros(1, 3, 1, 1)
    assert torch.equal(estimator_maps(gradient, x, ESTIMATORS["VG_abs"], black), gradient.abs().sum(dim=1))
    assert torch.allclose(estimator_maps(gradient, x, ESTIMATORS["VG'_sum"], black),
                          reduce_attributions(gradient, "input-sum", inputs=x))
    assert torch.allclose(estimator_maps(gradient, x, ESTIMATORS["SG'_abs"], black), (gradient * x).abs().sum(dim=1))
    grey = torch.full((1, 3, 1, 1), 0.4)
    assert torch.allclose(estimator_maps(gradient, x, ESTIMATORS["VG'_sum"], grey), (gradient * (x - 0.4)).sum(dim=1))
    assert {name for name, e in ESTIMATORS.items() if e.kind == "signed"} == {"IG_sum", "VG'_sum", "SG'_sum"}
    config = resolve_config(SPEC, "paper")
    assert [augmentation(config, regime) for regime in config["regimes"]] == ["flip", "flip+fpa", "flip+erasing"]


@pytest.mark.parametrize("reference, complete", [("removal", True), ("black", False)])
def test_signed_maps_add_up_to_the_change_removal_makes_only_from_the_removal_value(reference, complete):
    # "VG' gives the correct sign in the linear case": for s(x) = w.x + b, removing every pixel (setting it to the
    # removal value r) changes the score by w.(x - r). VG'_sum and IG_sum add up to that change when they are measured
    # from r, the default; from black they do not.
    generator = torch.Generator().manual_seed(2)
    weight = torch.randn(1, 3, 5, 5, generator=generator)
    model = LinearModel(weight)
    x = torch.rand(4, 3, 5, 5, generator=generator)
    fill = (0.3, 0.5, 0.6)
    removed = torch.tensor(fill).reshape(1, 3, 1, 1).expand_as(x)
    target = torch.zeros(4, dtype=torch.long)
    change = (model(x) - model(removed))[:, 0]
    config = resolve_config(SPEC, "smoke", {"reference": reference})
    point = reference_point(config, fill)
    gradient = weight.expand_as(x)
    ig = get_explainer("integrated-gradients", **explainer_params(config, "integrated-gradients", point))
    maps = {"VG'_sum": estimator_maps(gradient, x, ESTIMATORS["VG'_sum"], point),
            "IG_sum": estimator_maps(ig(model, x, target, "logit"), x, ESTIMATORS["IG_sum"], point)}
    for name, map_ in maps.items():
        assert torch.allclose(map_.sum(dim=(1, 2)), change, atol=1e-4) is complete, name
    assert resolve_config(SPEC, "paper")["reference"] == "removal"


def test_the_lif_peak_interval_is_the_normal_approximation_at_the_peak_fraction():
    from xaitrust.protocols.fpa import fidelity_rows

    lif = torch.full((4, 20), 0.5, dtype=torch.float64)
    lif[:, 5] = torch.tensor([1.0, 2.0, 3.0, 4.0])  # the mean LIF curve peaks at 25% removed
    part = {"mif": torch.zeros(4, 20, dtype=torch.float64), "lif": lif, "maps": torch.rand(4, 4, 4),
            "clean": torch.ones(4)}
    (row,) = fidelity_rows({"IG_sum": part}, "fpa")[1].to_dict("records")
    half = 1.959964 * 1.290994 / 2  # z_0.975 * sd([1, 2, 3, 4]) / sqrt(4)
    assert (row["lif_peak"], row["lif_peak_percent"]) == pytest.approx((2.5, 25.0))
    assert (row["lif_peak_ci_low"], row["lif_peak_ci_high"]) == pytest.approx((2.5 - half, 2.5 + half))
    at_peak = normal_interval(lif[:, 5].numpy())
    assert (row["lif_peak_ci_low"], row["lif_peak_ci_high"]) == (at_peak.low, at_peak.high)


def test_images_with_a_non_positive_clean_logit_are_left_out_of_the_summaries():
    from xaitrust.protocols.fpa import fidelity_rows

    mif = torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64)[:, None].expand(3, 20)
    part = {"mif": mif, "lif": torch.full((3, 20), 0.8, dtype=torch.float64), "maps": torch.rand(3, 4, 4),
            "clean": torch.tensor([1.0, 2.0, -0.5])}
    with pytest.warns(UserWarning, match="1 of 3 samples have a clean score <= 0"):
        rows, summary = fidelity_rows({"IG_sum": part}, "none")
    (row,) = summary.to_dict("records")
    assert row["n"] == 2 and row["A"] == pytest.approx(0.5 * 95)
    assert row["mif_area"] == pytest.approx(0.3 * 95) and row["lif_area"] == pytest.approx(0.8 * 95)
    areas = rows[rows["metric"] == "mif_lif_area"]["value"]
    assert areas.isna().tolist() == [False, False, True]


def test_bad_config_values_name_the_key_and_the_allowed_values():
    with pytest.raises(XaitrustError, match=r"'regimes' has value\(s\) 'mixup'; allowed: none, fpa, erasing"):
        resolve_config(SPEC, "smoke", {"regimes": ["none", "mixup"]})
    with pytest.raises(XaitrustError, match=r"'estimators' has value\(s\) 'VG_sum'; allowed: random, IG_sum, .*SQ-SG"):
        resolve_config(SPEC, "smoke", {"estimators": ["VG_sum"]})
    with pytest.raises(XaitrustError, match="'target'.*allowed: predicted, label"):
        resolve_config(SPEC, "smoke", {"target": "true"})
    with pytest.raises(XaitrustError, match=r"config key 'removal_value' must be 'mean' .*or a number in \[0, 1\]"):
        resolve_config(SPEC, "smoke", {"removal_value": "grey"})


def test_smoke_run_removes_pixels_with_the_training_mean(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    train, _ = load_splits(config)
    for regime in config["regimes"]:
        recipe = json.loads((out / "models" / regime / "model.json").read_text())["train_config"]
        assert recipe["fpa_value"] == recipe["erasing_value"] == pytest.approx(train.mean.tolist())
    assert f"per-channel mean ({train.mean.item():.3f})" in report.read_text()
    summary = pd.read_csv(out / "summary.csv")
    peak = summary["lif_peak"]
    assert ((summary["lif_peak_ci_low"] <= peak) & (peak <= summary["lif_peak_ci_high"])).all()
    page = report.read_text()
    findings = re.search(r"<ul class='findings'>(.*?)</ul>", page, re.DOTALL).group(1)
    assert "Accuracy on the 8 explained images: none" in findings and "on the test split (500 images)" in findings


def test_removal_value_is_mean_or_a_number_in_the_unit_interval():
    assert {resolve_config(SPEC, profile)["removal_value"] for profile in PROFILES} == {"mean"}
    assert removal_value(resolve_config(SPEC, "smoke", {"removal_value": 0.5})) == 0.5
    assert removal_value(resolve_config(SPEC, "smoke", {"removal_value": 0})) == 0
    for bad in ("grey", "0.5", 1.5, -0.1, float("nan"), True, [0.5]):
        with pytest.raises(XaitrustError, match=r"'removal_value' must be 'mean' .*number in \[0, 1\].*0.5"):
            resolve_config(SPEC, "smoke", {"removal_value": bad})

    x = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    train = ImageDataset(x, torch.zeros(5, dtype=torch.long), ["a"])
    mean = removal_fill({"removal_value": "mean"}, train.mean)
    assert mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist())
    assert removal_fill({"removal_value": 0.5}, train.mean) == (0.5, 0.5, 0.5)
    config = resolve_config(SPEC, "smoke")
    for regime in ("fpa", "erasing"):
        recipe = regime_recipe(config, regime, mean)
        assert recipe.fpa_value == recipe.erasing_value == mean


def test_curves_set_removed_pixels_to_the_fill_in_every_channel(tmp_path):
    config = resolve_config(SPEC, "smoke", {"estimators": ["IG_sum", "VG_abs"]})
    weight = torch.rand(1, 2, 6, 6, generator=torch.Generator().manual_seed(1)) * torch.tensor([1.0, 0.1])[:, None, None]
    model = LinearModel(0.1 + weight)  # channel 0 weighs far more than channel 1
    fill = (0.2, 0.7)
    x = torch.tensor(fill).reshape(1, 2, 1, 1).expand(3, 2, 6, 6).clone()  # every pixel already equals the fill
    target = torch.zeros(3, dtype=torch.long)

    def curves(name, value):
        return regime_curves(RunFolder(tmp_path / name, config), "none", model, x, target, value)

    for part in curves("fill", fill).values():  # removing a pixel changes nothing: the logit stays at 1x
        assert torch.allclose(part["mif"], torch.ones(3, 20)) and torch.allclose(part["lif"], torch.ones(3, 20))
    for value in ((0.7, 0.2), (0.0, 0.0)):  # channels swapped, or black: the logit moves
        assert all((part["mif"][:, -1] - 1).abs().min() > 0.1 for part in curves(str(value), value).values())


def _row(method, kind, a, low, high, **extra):
    return {"model": "fpa", "method": method, "kind": kind, "n": 8, "A": a, "ci_low": low, "ci_high": high,
            "mif_area": 0.0, "lif_area": 0.0, "lif_peak": 1.0, "lif_peak_ci_low": 1.0, "lif_peak_ci_high": 1.0,
            "lif_peak_percent": 0.0, **extra}


def _intervals(text: str) -> set[tuple[float, float, float]]:
    """Every ``A [low, high]`` the text states."""
    return {tuple(map(float, found)) for found in re.findall(r"(-?\d+\.\d) \[(-?\d+\.\d), (-?\d+\.\d)\]", text)}


def test_headline_names_the_leader_and_the_change_only_when_the_intervals_are_apart():
    def summary(rows):
        return pd.DataFrame([_row(*row[:5], model=row[5]) for row in rows])

    separated = summary([
        ("random", "baseline", 0.1, -1.0, 1.2, "none"), ("IG_sum", "signed", 120, 110, 130, "none"),
        ("SG_abs", "unsigned", 60, 58, 62, "none"),
        ("random", "baseline", -0.2, -1.5, 1.1, "fpa"), ("IG_sum", "signed", 150, 140, 160, "fpa"),
        ("SG_abs", "unsigned", 70, 68, 72, "fpa"),
    ])
    answer = headline(separated)
    assert answer.question == QUESTION and len(answer.answer) == 2
    change, leader = answer.answer
    assert change.startswith("Against no augmentation, FPA raised A for 2 of 2 estimators, 2 with disjoint 95% CIs")
    assert "largest change: IG_sum 120.0 [110.0, 130.0] -> 150.0 [140.0, 160.0]" in change
    assert leader.startswith("Under FPA the signed estimators lead: best signed IG_sum (A = 150.0 [140.0, 160.0])")
    assert "best unsigned SG_abs (A = 70.0 [68.0, 72.0])" in leader and "not resolved" not in " ".join(answer.answer)
    # Every interval the answer states is a row of the table.
    rows = set(zip(separated["A"], separated["ci_low"], separated["ci_high"]))
    assert _intervals(" ".join(answer.answer)) <= rows and len(_intervals(" ".join(answer.answer))) == 3

    overlapping = summary([
        ("IG_sum", "signed", 72, 55, 89, "none"), ("SG_abs", "unsigned", 65, 50, 80, "none"),
        ("IG_sum", "signed", 75, 60, 90, "fpa"), ("SG_abs", "unsigned", 70, 60, 80, "fpa"),
    ])
    change, leader = headline(overlapping).answer
    assert change == ("Against no augmentation, FPA raised A for 2 of 2 estimators; no change is resolved, every 95% "
                      "CI overlapping that of no augmentation (over 8 images; largest change: SG_abs 65.0 [50.0, "
                      "80.0] -> 70.0 [60.0, 80.0]).")
    assert leader.startswith("Under FPA signed and unsigned estimators are not resolved: best signed IG_sum (A = "
                             "75.0 [60.0, 90.0]), best unsigned SG_abs (A = 70.0 [60.0, 80.0])")
    without_fpa = headline(overlapping[overlapping["model"] == "none"]).answer
    assert without_fpa[0] == "The run has no FPA model, so whether FPA changes A is not measured."
    assert without_fpa[1].startswith("Under no augmentation signed and unsigned estimators are not resolved")


def test_group_verdicts_need_disjoint_confidence_intervals():
    signed = pd.DataFrame([_row("IG_sum", "signed", 55, 50, 60), _row("VG'_sum", "signed", 30, 20, 40)])
    apart = pd.DataFrame([_row("SQ-SG_sum", "unsigned", 45, 42, 48), _row("VG_abs", "unsigned", 20, 10, 30)])
    assert group_order(signed, apart) == ">" and group_order(apart, signed) == "<"
    # Best A is larger (55 > 45) but the CIs overlap: no lead.
    close = pd.DataFrame([_row("SQ-SG_sum", "unsigned", 45, 38, 52)])
    assert group_order(signed, close) == group_order(close, signed) == "~"
    # The best unsigned by A is apart, but another unsigned estimator's wide CI reaches the best signed one.
    wide = pd.DataFrame([_row("SQ-SG_sum", "unsigned", 45, 42, 48), _row("SG_abs", "unsigned", 40, 25, 55)])
    assert group_order(signed, wide) == "~"
    missing = pd.DataFrame([_row("SQ-SG_sum", "unsigned", 10, math.nan, math.nan)])
    assert group_order(signed, missing) == "~"

    accuracy = pd.DataFrame([{"model": "fpa", "test_accuracy": 0.9, "test_images": 500, "explained_accuracy": 0.875,
                              "explained_images": 8}])
    lines = findings(accuracy, pd.concat([signed, close], ignore_index=True))
    assert lines[0].startswith("Accuracy on the 8 explained images: fpa 0.8750 (paper, CIFAR-10, on the images")
    assert "test split (500 images): fpa 0.9000" in lines[0]
    assert "signed and unsigned estimators are indistinguishable (overlapping 95% CIs)" in lines[1]
    assert "largest A IG_sum (A = 55.0 [50.0, 60.0]), indistinguishable from SQ-SG_sum" in lines[1]
    lines = findings(accuracy, pd.concat([signed, apart], ignore_index=True))
    assert "so the signed estimators lead (disjoint 95% CIs)" in lines[1]
    assert "largest A IG_sum (A = 55.0 [50.0, 60.0]), no other 95% CI overlaps it" in lines[1]


def test_lif_peak_is_above_one_only_when_its_interval_is():
    above = pd.Series(_row("IG_sum", "signed", 0, 0, 0, lif_peak=1.2, lif_peak_ci_low=1.05, lif_peak_ci_high=1.35,
                           lif_peak_percent=10.0))
    assert "(above 1: removing negative-evidence pixels raised the logit)" in peak_text(above)
    for low in (0.95, math.nan):
        assert "(not distinguishable from 1)" in peak_text(above.copy().replace({1.05: low}))
    accuracy = pd.DataFrame([{"model": "fpa", "test_accuracy": 0.9, "test_images": 500, "explained_accuracy": 0.9,
                              "explained_images": 8}])
    lines = findings(accuracy, pd.DataFrame([above]))
    assert lines[-1] == ("fpa: the mean LIF curve of the signed estimators peaks at IG_sum 1.20 [1.05, 1.35] times "
                         "the clean logit at 10% removed (above 1: removing negative-evidence pixels raised the logit) "
                         "(95% CI of the mean at the peak; paper: the LIF curves rise first only with FPA).")
