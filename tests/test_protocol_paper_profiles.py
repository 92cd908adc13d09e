"""The long ``paper`` profiles end to end, shrunk: mege-reco, fpa, roar and calibrate-to-interpret run their paper
configuration with only the sizes cut (training images, epochs, explained images, masks, steps, seeds), so the paper's
models, recipes, methods, levels and families all go through the whole run. Their full runs take hours to weeks on 2
CPU cores (docs/findings.md; the benchmark's and ReCalX's paper profiles ran there in full); these runs catch what
would otherwise only break at their end (a key only the paper profile sets, a family only it trains, a report table
that only its shape produces)."""

import pandas as pd
import pytest
import tomli_w
import tomllib

from xaitrust.protocols import protocol_module, run_protocol
from xaitrust.protocols.config import resolve_config, without_execution_keys

#: Per protocol: the only keys overridden in its paper profile.
SIZES = {
    "mege-reco": {
        "train_size": 200, "epochs": 1, "n_samples": 10, "mu_fidelity_subsets": 8,
        "explainer_params": {"gradient-input": {"gradient": "absolute"},
                             "integrated-gradients": {"steps": 6, "rule": "trapezoid", "baseline": "zero"},
                             "smoothgrad": {"samples": 3, "sigma": 0.2},
                             "rise": {"n_masks": 20, "interpolation": "bilinear"}},
    },
    "fpa": {"train_size": 500, "test_size": 200, "epochs": 2, "milestones": [1], "n_images": 8, "ig_steps": 6,
            "sg_samples": 3},
    "roar": {"train_size": 300, "test_size": 100, "epochs": 1, "seeds": 2},
    "calibrate-to-interpret": {
        "train_size": 1000, "test_size": 400, "epochs": 1, "calibration_size": 200, "n_images": 4,
        "deletion_steps": 10, "n_superpixels": 20, "n_orders": 2, "mu_fidelity_subsets": 8, "lipschitz_images": 2,
        "lipschitz_neighbours": 2, "sweep_images": 4,
        "explainer_params": {"integrated-gradients": {"steps": 6, "baseline": "black+white", "rule": "riemann-right",
                                                      "combine": "mean-abs"},
                             "rise": {"n_masks": 50}, "meaningful-perturbation": {"steps": 10}},
    },
}


@pytest.fixture(scope="module", params=sorted(SIZES))
def shrunk_paper_run(request, tmp_path_factory, one_torch_thread):
    protocol = request.param
    folder = tmp_path_factory.mktemp(protocol)
    config_file = folder / "sizes.toml"
    config_file.write_text(tomli_w.dumps(SIZES[protocol]))
    with one_torch_thread():
        report = run_protocol(protocol, profile="paper", config_file=config_file, out=folder / "run")
    return protocol, folder / "run", report


def test_only_the_sizes_differ_from_the_paper_profile(shrunk_paper_run):
    protocol, out, report = shrunk_paper_run
    paper = without_execution_keys(resolve_config(protocol_module(protocol).SPEC, "paper"))  # not in the run folder
    ran = tomllib.loads((out / "config.toml").read_text())
    differing = {key for key in paper if ran[key] != paper[key]}
    assert differing <= set(SIZES[protocol]) and ran["profile"] == "paper"
    assert report.is_file() and "What this shows" in report.read_text()


def test_every_method_and_model_of_the_paper_profile_is_scored(shrunk_paper_run):
    protocol, out, _ = shrunk_paper_run
    paper = resolve_config(protocol_module(protocol).SPEC, "paper")
    results = pd.read_csv(out / "results.csv")
    if protocol == "mege-reco":
        families = {"resnet18", "lipschitz-cnn"} | {f"resnet18+noise-{level:g}" for level in paper["noise_levels"]} \
            | {f"resnet18+shuffle-{level:g}" for level in paper["shuffle_levels"]}
        assert set(results["model"]) == families
        assert set(results["method"]) == set(paper["explainers"])
    elif protocol == "fpa":
        assert set(results["model"]) == set(paper["regimes"])
        assert set(results["method"].dropna()) == set(paper["estimators"])
    elif protocol == "roar":
        retrained = results[results["fraction"] > 0]
        assert set(retrained["method"]) == set(paper["methods"]) and set(retrained["mode"]) == set(paper["modes"])
        assert sorted(retrained["fraction"].unique()) == pytest.approx(paper["fractions"])
        assert retrained.groupby(["method", "mode", "fraction"]).size().eq(SIZES["roar"]["seeds"]).all()
    else:
        assert set(results["model"]) == {"uncalibrated", *paper["calibrators"]}
        assert set(paper["explainers"]) <= set(results["method"])
        lipschitz = results[results["metric"] == "local_lipschitz"]
        assert set(lipschitz["method"]) == set(paper["lipschitz_explainers"])
