"""The FPA protocol: the smoke profile writes a complete run folder (three training regimes, the fidelity A with its
95% CI per regime and estimator, a report with findings) and resumes without retraining; estimators follow the
paper's definitions; bad config values are named."""

import re

import pandas as pd
import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.protocols import run_protocol
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.fpa import ESTIMATORS, SPEC, augmentation, estimator_maps
from xaitrust.protocols.results import RESULT_COLUMNS


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

    page = report.read_text()
    findings = re.search(r"<ul class='findings'>(.*?)</ul>", page, re.S).group(1)
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
    assert torch.equal(estimator_maps(gradient, x, ESTIMATORS["VG_abs"]), gradient.abs().sum(dim=1))
    assert torch.allclose(estimator_maps(gradient, x, ESTIMATORS["VG'_sum"]),
                          reduce_attributions(gradient, "input-sum", inputs=x))
    assert torch.allclose(estimator_maps(gradient, x, ESTIMATORS["SG'_abs"]), (gradient * x).abs().sum(dim=1))
    assert {name for name, e in ESTIMATORS.items() if e.kind == "signed"} == {"IG_sum", "VG'_sum", "SG'_sum"}
    config = resolve_config(SPEC, "paper")
    assert [augmentation(config, regime) for regime in config["regimes"]] == ["flip", "flip+fpa", "flip+erasing"]


def test_bad_config_values_name_the_key_and_the_allowed_values():
    with pytest.raises(XaitrustError, match=r"'regimes' has value\(s\) 'mixup'; allowed: none, fpa, erasing"):
        resolve_config(SPEC, "smoke", {"regimes": ["none", "mixup"]})
    with pytest.raises(XaitrustError, match=r"'estimators' has value\(s\) 'VG_sum'; allowed: random, IG_sum, .*SQ-SG"):
        resolve_config(SPEC, "smoke", {"estimators": ["VG_sum"]})
    with pytest.raises(XaitrustError, match="'target'.*allowed: predicted, label"):
        resolve_config(SPEC, "smoke", {"target": "true"})
