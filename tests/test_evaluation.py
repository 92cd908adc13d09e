"""The metric registry and ``xaitrust.evaluate``: one name per metric, user metrics and explainers (files, Captum
classes, callables), the tidy table, validation before the work, the same numbers as the metric functions, shared
work and seed determinism."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

import xaitrust
from xaitrust.errors import XaitrustError
from xaitrust.evaluation import COLUMNS, EXPLAINED, available_metrics, define_metric, evaluate, get_metric, registry
from xaitrust.explainers import base, get_explainer
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.metrics import (
    area_between,
    better_than_random,
    completeness_soundness,
    deletion,
    insertion,
    local_lipschitz,
    localization,
    mif_lif,
    mu_fidelity,
    otsu_tv,
)
from xaitrust.testing.oracles import LinearModel

DIRECTIONS = {
    "better_than_random": True, "deletion_area": False, "insertion_area": True, "mif_lif_area": True,
    "mu_fidelity": True, "completeness": True, "soundness": True, "otsu_tv": False, "local_lipschitz": False,
    "ssim_to_uncalibrated": True, "localization": True, "gt_alignment": True, "pointing_game": True,
    "max_sensitivity": False, "avg_sensitivity": False, "continuity": False, "relative_input_stability": False,
    "relative_output_stability": False, "relative_representation_stability": False, "prediction_consistency": True,
    "mprt_cascading": False, "mprt_independent": False, "smooth_mprt": False, "efficient_mprt": True,
    "random_logit": False, "data_randomisation": False, "randomisation_similarity": False,
    "faithfulness_correlation": True, "faithfulness_estimate": True, "monotonicity": True,
    "monotonicity_correlation": True, "infidelity": False, "sensitivity_n": True, "region_perturbation": True,
    "selectivity": False, "irof": True, "road_morf": False, "road_lerf": True, "average_drop": False,
    "increase_in_confidence": True,
    "top_k_intersection": True, "relevance_rank_accuracy": True, "relevance_mass_accuracy": True, "roc_auc": True,
    "focus": True, "sparseness": True, "complexity": False, "effective_complexity": False,
    "completeness_axiom": False, "input_invariance": False, "non_sensitivity": False, "sufficiency": True,
}
#: Small settings for every metric that runs without masks or reference maps.
PARAMS = {
    "better_than_random": {"steps": 10, "n_superpixels": 8, "n_orders": 2},
    "deletion_area": {"steps": 10},
    "insertion_area": {"steps": 10},
    "mu_fidelity": {"n_subsets": 16},
    "completeness": {"steps": 12},
    "soundness": {"steps": 12},
    "local_lipschitz": {"n_neighbours": 3},
}
METRICS = [*PARAMS, "mif_lif_area", "otsu_tv"]


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(64, 3))


@pytest.fixture(scope="module")
def model_and_images():
    model = small_cnn()
    x = torch.rand(5, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    return model, x


@pytest.fixture
def own_registries(monkeypatch):
    """Registrations made by a test vanish after it (the registries are shared by every test of the session)."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def run(model, x, explainers=("saliency",), metrics=("otsu_tv",), **options):
    options.setdefault("progress", False)
    params = {name: PARAMS[name] for name in metrics if isinstance(name, str) and name in PARAMS}
    return evaluate(model, x, None, list(explainers), list(metrics), metric_params=options.pop("metric_params", params),
                    **options)


# ------------------------------------------------------------------------------------------------------- registry


def test_every_metric_is_registered_once_with_its_direction():
    metrics = available_metrics()
    names = [metric.name for metric in metrics]
    assert len(names) == len(set(names))
    assert {metric.name: metric.higher_is_better for metric in metrics} == DIRECTIONS
    for metric in metrics:
        assert metric.description and metric.source, metric.name
    assert get_metric("mif_lif_area").output == "logit" and get_metric("completeness").output == "probability"
    assert get_metric("deletion_area").output == EXPLAINED and get_metric("otsu_tv").output is None
    assert get_metric("local_lipschitz").needs == {"explainer"}
    assert get_metric("localization").needs == {"maps", "masks"}
    assert get_metric("ssim_to_uncalibrated").needs == {"maps", "reference_maps"}
    assert dict(get_metric("better_than_random").params) == {
        "steps": 100, "replacement": "blur", "n_superpixels": 100, "n_orders": 5, "baseline": None}


def test_the_scorecard_directions_come_from_the_registry():
    from xaitrust.protocols.scoring import HIGHER_IS_BETTER

    assert HIGHER_IS_BETTER == {name: DIRECTIONS[name] for name in HIGHER_IS_BETTER}
    assert list(HIGHER_IS_BETTER)[:3] == ["deletion_area", "insertion_area", "better_than_random"]


def test_an_unknown_metric_names_the_available_ones():
    with pytest.raises(XaitrustError, match=r"unknown metric 'mif-lif'; available: better_than_random, .*otsu_tv"):
        get_metric("mif-lif")


def test_a_metric_name_is_registered_once(own_registries):
    @xaitrust.register_metric(higher_is_better=True, description="Mean of the map.")
    def map_mean(maps):
        return maps.mean(dim=(1, 2))

    assert get_metric("map_mean") is map_mean and map_mean(torch.ones(2, 3, 3)).tolist() == [1.0, 1.0]
    with pytest.raises(XaitrustError, match="'map_mean' is already registered"):
        xaitrust.register_metric(map_mean)
    with pytest.raises(XaitrustError, match="'otsu_tv' is already registered"):
        xaitrust.register_metric(lambda maps: maps.sum((1, 2)), name="otsu_tv", higher_is_better=False,
                                 description="twin")


def test_a_metric_parameter_must_be_an_input_or_have_a_default():
    with pytest.raises(XaitrustError, match="parameter 'k' is neither an input"):
        define_metric(lambda maps, k: maps.sum((1, 2)), name="bad", higher_is_better=True, description="")


# ------------------------------------------------------------------------------------------------ the tidy table


def test_table_has_one_row_per_sample_method_and_metric(model_and_images):
    model, x = model_and_images
    indices, labels = np.array([7, 3, 11, 40, 2]), np.array([0, 1, 2, 1, 0])
    table = run(model, x, ("saliency", "random"), ("deletion_area", "otsu_tv"), indices=indices, labels=labels)
    assert tuple(table.columns) == COLUMNS
    assert len(table) == 5 * 2 * 2
    assert table.groupby(["method", "metric"]).size().eq(5).all()
    assert (table.groupby(["method", "metric"])["sample"].apply(list) == [indices.tolist()] * 4).all()
    assert (table.groupby(["method", "metric"])["label"].apply(list) == [labels.tolist()] * 4).all()
    probabilities = torch.softmax(model(x).double(), dim=1)
    assert np.allclose(table["confidence"][:5], probabilities.max(dim=1).values.detach().numpy())
    assert (table["prediction"][:5] == probabilities.argmax(dim=1).numpy()).all()
    assert (table["target"] == table["prediction"]).all()  # target=None explains the predicted class


def test_samples_default_to_positions_and_labels_to_nan(model_and_images):
    model, x = model_and_images
    table = run(model, x)
    assert table["sample"].tolist() == list(range(5)) and table["label"].isna().all()


def test_evaluate_gives_the_numbers_of_the_metric_functions(model_and_images):
    model, x = model_and_images
    seed = 3
    table = run(model, x, ("saliency",), METRICS, seed=seed)
    target = model(x).argmax(dim=1)
    attributions = get_explainer("saliency")(model, x, target, "probability")
    maps = reduce_attributions(attributions, "abs-sum")
    curves = {"ties": "random", "seed": seed}
    mif, lif = (lambda c: (c.mif, c.lif))(mif_lif(model, x, maps, target, **curves))
    soundness = completeness_soundness(model, x, maps, target, 12, **curves)
    expected = {
        "better_than_random": better_than_random(model, x, maps, target, 8, 2, seed, steps=10, ties="random").better,
        "deletion_area": deletion(model, x, maps, target, 10, **curves).area,
        "insertion_area": insertion(model, x, maps, target, 10, **curves).area,
        "mu_fidelity": mu_fidelity(model, x, attributions, target, n_subsets=16, output="probability", seed=seed),
        "completeness": soundness.alpha,
        "soundness": soundness.beta,
        "local_lipschitz": local_lipschitz(get_explainer("saliency"), model, x, target, n_neighbours=3,
                                           output="probability", reduction="abs-sum", normalize=True, seed=seed),
        "mif_lif_area": area_between(mif, lif).per_sample,
        "otsu_tv": otsu_tv(maps),
    }
    assert list(table["metric"].unique()) == METRICS  # rows in the order asked for
    for name, values in expected.items():
        measured = table.loc[table["metric"] == name, "value"].to_numpy()
        np.testing.assert_array_equal(measured, values.double().numpy(), err_msg=name)


def test_the_same_seed_gives_the_same_table(model_and_images):
    model, x = model_and_images
    metrics = ("better_than_random", "deletion_area", "mu_fidelity", "local_lipschitz")
    first, again = (run(model, x, ("saliency", "random"), metrics, seed=5) for _ in range(2))
    pd.testing.assert_frame_equal(first, again)
    other = run(model, x, ("saliency", "random"), metrics, seed=6)
    assert not first["value"].equals(other["value"])


def test_metrics_reading_one_computation_do_it_once(model_and_images):
    # BTR measures the deletion curves, and its random baseline serves every explainer: asking for the deletion area
    # as well costs no forward pass, and a second explainer adds its curves only.
    model, x = model_and_images

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.model, self.rows = model, 0

        def forward(self, inputs):
            self.rows += len(inputs)
            return self.model(inputs)

    def rows(explainers, metrics):
        counting = Counting()
        run(counting, x, explainers, metrics, batch_size=64)  # no probe of the automatic batch size
        return counting.rows

    both = rows(("saliency", "random"), ("deletion_area", "better_than_random"))
    assert both == rows(("saliency", "random"), ("better_than_random",))
    baseline = rows(("saliency",), ("better_than_random",)) - rows(("saliency",), ("deletion_area",))
    assert baseline == rows(("saliency", "random"), ("better_than_random",)) - rows(("saliency", "random"),
                                                                                   ("deletion_area",))
    completeness = rows(("saliency",), ("completeness",))
    assert rows(("saliency",), ("completeness", "soundness")) == completeness


def test_a_metric_parameter_overrides_its_setting(model_and_images):
    model, x = model_and_images
    params = {"deletion_area": {"steps": 10, "output": "logit"}}
    table = run(model, x, metrics=("deletion_area",), metric_params=params)
    target = model(x).argmax(dim=1)
    maps = reduce_attributions(get_explainer("saliency")(model, x, target, "probability"), "abs-sum")
    expected = deletion(model, x, maps, target, 10, output="logit", ties="random").area
    np.testing.assert_array_equal(table["value"].to_numpy(), expected.double().numpy())


def test_localisation_metrics_read_the_masks_and_say_when_they_are_missing():
    weight = torch.zeros(1, 1, 6, 6)
    weight[..., :3, :3] = 1.0
    model, x = LinearModel(weight), 0.1 + 0.9 * torch.rand(4, 1, 6, 6)
    masks = weight[0, 0].bool().expand(4, 6, 6)
    with pytest.raises(XaitrustError, match="metrics localization, pointing_game compare maps with ground-truth masks"):
        run(model, x, metrics=("localization", "pointing_game", "otsu_tv"))
    with pytest.raises(XaitrustError, match=r"masks must be \(N, H, W\)"):
        run(model, x, metrics=("localization",), masks=masks[:2])
    table = run(model, x, metrics=("localization", "pointing_game"), masks=masks)  # predicted class: 0
    maps = reduce_attributions(get_explainer("saliency")(model, x, torch.zeros(4, dtype=torch.long), "probability"),
                               "abs-sum")
    np.testing.assert_allclose(table.loc[table["metric"] == "localization", "value"], localization(maps, masks))
    assert (table.loc[table["metric"] == "pointing_game", "value"] == 1.0).all()


def test_reference_maps_are_given_per_method(model_and_images):
    model, x = model_and_images
    with pytest.raises(XaitrustError, match="pass reference_maps=.*missing for saliency"):
        run(model, x, metrics=("ssim_to_uncalibrated",))
    target = model(x).argmax(dim=1)
    maps = reduce_attributions(get_explainer("saliency")(model, x, target, "probability"), "abs-sum")
    table = run(model, x, metrics=("ssim_to_uncalibrated",), reference_maps={"saliency": maps})
    np.testing.assert_allclose(table["value"], 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("explainers", "metrics", "options", "message"),
    [
        (["saliency", "saliency"], ["otsu_tv"], {}, "explainer 'saliency' is listed twice"),
        ({"a": "saliency", "b": "saliency"}, ["otsu_tv"], {}, "'a' and 'b' are the same explainer"),
        ([], ["otsu_tv"], {}, "explainers is empty"),
        (["saliency"], [], {}, "metrics is empty: name at least one of better_than_random"),
        (["saliency"], ["otsu_tv", "otsu_tv"], {}, "metric 'otsu_tv' is listed twice"),
        (["salency"], ["otsu_tv"], {}, "unknown explainer 'salency'"),
        (["saliency"], ["otsu-tv"], {}, "unknown metric 'otsu-tv'"),
        (["saliency"], ["otsu_tv"], {"metric_params": {"otsu_tv": {"bins": 3}}},
         "no parameter 'bins'; its parameters: nbins"),
        (["saliency"], ["otsu_tv"], {"metric_params": {"deletion_area": {}}}, "names metrics that are not evaluated"),
        (["saliency"], ["otsu_tv"], {"explainer_params": {"saliency": {"steps": 3}}}, "bad parameters for explainer"),
        (["saliency"], ["otsu_tv"], {"indices": [1, 2]}, r"indices must hold one value per image, shape \(5,\)"),
        (["saliency"], ["otsu_tv"], {"ties": "first"}, "ties must be one of"),
    ],
)
def test_mistakes_are_reported_before_any_work(model_and_images, explainers, metrics, options, message):
    model, x = model_and_images
    with pytest.raises(XaitrustError, match=message):
        evaluate(model, x, None, explainers, metrics, progress=False, **options)


def test_variants_of_one_explainer_are_told_apart_by_label(model_and_images):
    model, x = model_and_images
    table = evaluate(model, x, None, {"ig-8": "integrated-gradients", "ig-4": "integrated-gradients"}, ["otsu_tv"],
                     explainer_params={"ig-8": {"steps": 8}, "ig-4": {"steps": 4}}, progress=False)
    assert list(table["method"].unique()) == ["ig-8", "ig-4"]


# ------------------------------------------------------------------------------------------------ user objects


def test_a_captum_class_explains_like_the_builtin_method(model_and_images):
    model, x = model_and_images
    table = run(model, x, (Saliency, "saliency"), ("deletion_area",))
    assert list(table["method"].unique()) == ["Saliency", "saliency"]
    ours, captum = (table.loc[table["method"] == m, "value"].to_numpy() for m in ("saliency", "Saliency"))
    np.testing.assert_allclose(captum, ours, rtol=1e-6)
    integrated = evaluate(model, x, None, {"ig": IntegratedGradients}, ["otsu_tv"],
                          explainer_params={"ig": {"n_steps": 8}}, progress=False)
    assert integrated["value"].notna().all()


def test_a_callable_explains_with_or_without_the_score(model_and_images):
    model, x = model_and_images
    seen = []

    def input_map(model, x, target):
        return x.clone()

    def scored_input(model, x, target, output):
        seen.append(output)
        return x.clone()

    table = run(model, x, (input_map, scored_input), ("otsu_tv",), output="logit")
    assert list(table["method"].unique()) == ["input_map", "scored_input"] and seen == ["logit"]
    expected = otsu_tv(x[:, 0]).double().numpy()
    for method in ("input_map", "scored_input"):
        np.testing.assert_array_equal(table.loc[table["method"] == method, "value"], expected)
    with pytest.raises(XaitrustError, match="must return attributions of the images' shape"):
        run(model, x, (lambda model, x, target: x[:, 0],), ("otsu_tv",))


USER_FILE = """
import torch
from xaitrust.evaluation import define_metric
from xaitrust.explainers import Explainer


@define_metric(higher_is_better=True, description="Share of the map's mass in a centred square.", source="none")
def centre_mass(maps, *, margin: int = 2):
    inner = maps[:, margin:-margin, margin:-margin]
    return inner.flatten(1).sum(1) / maps.flatten(1).sum(1)


def undeclared(maps):
    return maps.mean(dim=(1, 2))


class InputTimes(Explainer):
    name = "input-times"

    def __init__(self, factor: float = 2.0):
        self.factor = factor

    def attribute(self, model, x, target, output):
        return self.factor * x


def plain_input(model, x, target):
    return x.clone()
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


def test_a_metric_and_an_explainer_from_a_file(model_and_images, user_file):
    model, x = model_and_images
    table = evaluate(model, x, None, [f"{user_file}:plain_input", f"{user_file}:InputTimes"],
                     [f"{user_file}:centre_mass"], metric_params={"centre_mass": {"margin": 3}},
                     explainer_params={"InputTimes": {"factor": 3.0}}, progress=False)
    assert list(table["method"].unique()) == ["plain_input", "InputTimes"]
    assert set(table["metric"]) == {"centre_mass"}
    inner = x[:, 0, 3:-3, 3:-3].flatten(1).sum(1) / x[:, 0].flatten(1).sum(1)
    for method in ("plain_input", "InputTimes"):
        np.testing.assert_allclose(table.loc[table["method"] == method, "value"], inner.double(), rtol=1e-6)
    assert torch.equal(get_explainer(f"{user_file}:InputTimes", factor=3.0)(model, x, 0), 3.0 * x)
    with pytest.raises(XaitrustError, match="not a declared metric: decorate the function with"):
        get_metric(f"{user_file}:undeclared")
    with pytest.raises(XaitrustError, match="defines no metric named 'missing'"):
        get_metric(f"{user_file}:missing")


def test_a_registered_explainer_is_used_by_name(model_and_images, own_registries):
    model, x = model_and_images

    def doubled_input(model, x, target):
        """Twice the input."""
        return 2 * x

    xaitrust.register_explainer("doubled-input", doubled_input)
    xaitrust.register_explainer("captum-saliency", Saliency)
    assert torch.equal(get_explainer("doubled-input")(model, x, 0), 2 * x)
    infos = {info.name: info for info in base.available_explainers()}
    assert infos["doubled-input"].description == "Twice the input." and infos["doubled-input"].parameters == {"seed": 0}
    table = run(model, x, ("doubled-input", "captum-saliency"), ("otsu_tv",))
    assert list(table["method"].unique()) == ["doubled-input", "captum-saliency"]
    with pytest.raises(XaitrustError, match="'saliency' is already registered"):
        xaitrust.register_explainer("saliency", doubled_input)


def test_importing_xaitrust_stays_cheap():
    from xaitrust import evaluation
    from xaitrust.explainers.base import register_explainer

    code = "import sys, xaitrust; assert 'torch' not in sys.modules and 'xaitrust.evaluation' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert xaitrust.evaluate is evaluation.evaluate and xaitrust.get_metric is evaluation.get_metric
    assert xaitrust.available_metrics is available_metrics and xaitrust.register_explainer is register_explainer
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        xaitrust.evaluat
