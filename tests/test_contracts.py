"""The contract suite (``xaitrust.testing``) over every registered explainer and metric, and the checks' own teeth:
deliberately broken explainers and metrics are reported as failing the check they break."""

import functools

import pytest
import torch
from captum.attr import Saliency

from xaitrust.errors import XaitrustError
from xaitrust.evaluation import available_metrics, define_metric
from xaitrust.explainers import Explainer, available_explainers
from xaitrust.explainers._autograd import score_gradients
from xaitrust.metrics import deletion
from xaitrust.testing import ContractError, ExplainerContract, MetricContract, check_explainer, check_metric
from xaitrust.testing.results import CheckResult

EXPLAINER_CHECKS = ("output", "batch_invariance", "determinism", "side_effects", "direction", "target")
METRIC_CHECKS = ("output", "batch_invariance", "determinism", "side_effects", "direction")
#: Meaningful Perturbation's 600 Adam steps would take 7 s here; 60 find the oracle's pixel. Every other explainer runs
#: with its defaults.
EXPLAINER_PARAMS = {"meaningful-perturbation": {"steps": 60}}


@functools.cache
def explainer_results(name: str) -> dict[str, CheckResult]:
    return {result.check: result for result in check_explainer(name, **EXPLAINER_PARAMS.get(name, {}))}


@functools.cache
def metric_results(name: str) -> dict[str, CheckResult]:
    return {result.check: result for result in check_metric(name)}


@pytest.mark.parametrize("name, check", [
    pytest.param(info.name, check, id=f"{info.name}-{check}")
    for info in available_explainers() for check in EXPLAINER_CHECKS
])
@pytest.mark.filterwarnings("ignore:deeplift. the attributions miss summation-to-delta")  # documented for probabilities
def test_every_registered_explainer_meets_its_contract(name, check):
    result = explainer_results(name)[check]
    assert not result.failed, str(result)


@pytest.mark.parametrize("name, check", [
    pytest.param(metric.name, check, id=f"{metric.name}-{check}")
    for metric in available_metrics() for check in METRIC_CHECKS
])
def test_every_registered_metric_meets_its_contract(name, check):
    result = metric_results(name)[check]
    assert not result.failed, str(result)


def test_exemptions_are_explicit_and_justified():
    skipped = {(name, check): result.message for name in ("gradcam", "random")
               for check, result in explainer_results(name).items() if result.status == "skipped"}
    assert set(skipped) == {("gradcam", "direction"), ("random", "target")}
    assert "CAM layer" in skipped["gradcam", "direction"] and "never calls the model" in skipped["random", "target"]
    assert "mean percentile" in explainer_results("random")["direction"].message  # its contract: uncorrelated


# Explainers and metrics written by a user, correct and broken.

def gradient_times_input(model, x, target):
    """The gradient of the target's logit times the input."""
    x = x.detach().requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(x).gather(1, target[:, None]).sum(), x)
    return gradient * x


class WrongShape(Explainer):
    name = "wrong-shape"

    def attribute(self, model, x, target, output):
        return score_gradients(model, x, target, output).sum(dim=1)  # (B, H, W): channels dropped


class BatchNormalised(Explainer):
    name = "batch-normalised"

    def attribute(self, model, x, target, output):
        gradient = score_gradients(model, x, target, output)
        return gradient / gradient.abs().max()  # one scale for the whole batch


class Unseeded(Explainer):
    name = "unseeded"

    def __init__(self) -> None:
        self.noise = torch.Generator().manual_seed(0)  # one stream for all calls: each call draws new noise

    def attribute(self, model, x, target, output):
        noise = torch.rand(x.shape, generator=self.noise)
        return score_gradients(model, x, target, output) + 1e-3 * noise


class LeavesGradients(Explainer):
    name = "leaves-gradients"

    def attribute(self, model, x, target, output):
        x = x.detach().requires_grad_(True)
        model(x).gather(1, target[:, None]).sum().backward()  # fills .grad of every parameter too
        return x.grad


class ForgetsModes(Explainer):
    name = "forgets-modes"

    def __call__(self, model, x, target, output="logit"):
        model.eval()  # and never gives the modules their flags back
        return score_gradients(model, x, torch.as_tensor(target).expand(len(x)), output)


class IgnoresTarget(Explainer):
    name = "ignores-target"

    def attribute(self, model, x, target, output):
        return score_gradients(model, x, torch.zeros_like(target), output)


def failures(results) -> dict[str, str]:
    return {result.check: result.message for result in results if result.failed}


def test_a_user_callable_and_a_captum_class_meet_the_contract():
    assert failures(check_explainer(gradient_times_input)) == {}
    assert failures(check_explainer(Saliency)) == {}


@pytest.mark.parametrize("explainer, broken, words", [
    (WrongShape, {"output", "direction", "target"}, "attributions of shape (3, 12, 12) for images (3, 1, 12, 12)"),
    (BatchNormalised, {"batch_invariance"}, "depends on the other images"),
    (Unseeded, {"batch_invariance", "determinism"}, "differ by up to"),
    (LeavesGradients, {"side_effects"}, ".grad left set"),
    (ForgetsModes, {"side_effects"}, "left in eval mode"),
    (IgnoresTarget, {"direction", "target"}, "are equal"),
])
def test_a_broken_explainer_fails_the_check_it_breaks(explainer, broken, words):
    found = failures(check_explainer(explainer))
    assert set(found) == broken
    assert any(words in message for message in found.values()), found


def test_an_explainer_pointing_at_the_brightest_pixel_fails_the_direction_check():
    found = failures(check_explainer(lambda model, x, target: x))
    assert set(found) == {"direction", "target"}
    assert "the pixel driving the score (3, 8) has" in found["direction"]


def test_raise_on_failure_lists_the_failed_checks_by_explainer_and_check():
    with pytest.raises(ContractError, match=r"explainer 'batch-normalised': batch_invariance failed: image \d"):
        check_explainer(BatchNormalised, raise_on_failure=True)
    assert check_explainer("saliency", raise_on_failure=True)  # nothing to raise: the results


def test_an_explainer_checked_against_what_it_promises_skips_the_rest_with_its_reason():
    contract = ExplainerContract(batch_invariant=False, why="scales every map by the batch's largest gradient")
    results = {result.check: result for result in check_explainer(BatchNormalised, contract=contract)}
    assert results["batch_invariance"].status == "skipped"
    assert results["batch_invariance"].message == contract.why
    assert not any(result.failed for result in results.values())
    with pytest.raises(XaitrustError, match="must say why"):
        ExplainerContract(batch_invariant=False)


@define_metric(higher_is_better=True, description="Deletion area (lower is more faithful), declared the wrong way.")
def upside_down(model, x, target, maps, work, *, output, seed, ties, batch_size):
    # stable ties and a fixed batch size keep it clear of the known failures above: only its direction is broken
    return deletion(model, x, maps, target, 20, "blur", output, ties="stable", seed=seed, batch_size=64).area


@define_metric(higher_is_better=True, description="The batch's mean map value, once.")
def one_number(maps):
    return maps.mean()


def _roughness(maps, scale):
    return (maps.diff(dim=1).abs().mean(dim=(1, 2)) + maps.diff(dim=2).abs().mean(dim=(1, 2))) / scale


@define_metric(higher_is_better=False, description="Mean |difference| of 4-neighbours over the map's mean |value|.")
def roughness(maps):
    return _roughness(maps, maps.abs().mean(dim=(1, 2)))


@define_metric(higher_is_better=False, description="Mean |difference| of 4-neighbours over the batch's mean |value|.")
def batch_roughness(maps):
    return _roughness(maps, maps.abs().mean())


def test_a_broken_metric_fails_the_check_it_breaks():
    wrong_way = failures(check_metric(upside_down))
    assert set(wrong_way) == {"direction"}
    assert "faithfulness oracle, higher is better" in wrong_way["direction"]
    batch = failures(check_metric(batch_roughness, contract=MetricContract(direction="complexity")))
    assert set(batch) == {"batch_invariance"} and "alone" in batch["batch_invariance"]
    shape = failures(check_metric(one_number))
    assert set(shape) == {"output", "batch_invariance", "determinism", "side_effects"}
    assert "one value per image" in shape["output"]


def test_a_metric_of_the_maps_alone_is_checked_in_the_direction_it_names():
    unnamed = {result.check: result for result in check_metric(roughness)}
    assert unnamed["direction"].status == "skipped" and "MetricContract(direction=" in unnamed["direction"].message
    named = check_metric(roughness, contract=MetricContract(direction="complexity"))
    assert [result.status for result in named] == ["passed"] * len(METRIC_CHECKS), named
