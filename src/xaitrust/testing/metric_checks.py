"""``check_metric``: the contract every metric must meet, checked on oracle models and maps.

A metric (``xaitrust.evaluation.Metric``) runs with the settings of ``xaitrust.evaluate`` (``output="probability"``,
``seed=0``, ``ties="random"``, automatic ``batch_size``, ``reduction="abs-sum"``) on inputs holding everything a
metric may read: a ``LinearModel`` oracle, three 3-channel 12x12 images explained for class 0, its evidence ``w * x``
as attributions, maps with ties (the evidence summed over channels and rounded to five levels, as flat regions of
real maps tie), square masks, reference maps and the ``sensitivity`` explainer. The checks:

- ``output``: one real value per image, ``(B,)``, finite (the inputs avoid every case where a built-in metric is
  documented to give NaN: constant maps, empty masks, clean scores <= 0).
- ``batch_invariance``: each image's value in the batch equals its value computed alone, to ``BATCH_TOLERANCE``
  times ``max(1, |value|)``: otherwise a table's numbers change with how many images were evaluated together.
- ``determinism``: two computations give identical values, whatever the state of torch's global generator.
- ``side_effects``: the computation leaves the model (train/eval flags, parameters, ``.grad``), the images, maps,
  attributions, masks and reference maps, and torch's global generator as it found them.
- ``direction``: on an oracle whose answer is known, the better explanation scores better (higher or lower as the
  metric's ``higher_is_better`` says) on every image. The oracles (``DIRECTION_ORACLES``):

  - ``faithfulness``: a model reading one patch; the map of its evidence (gradient times input, zero off the patch)
    against the same map negated (the evidence ranked last);
  - ``soundness``: a linear model with a supporting and a counter-evidence patch; a map ranking the counter-evidence
    first (its kept pixels never make the model more confident than the whole image) against the evidence map,
    which ranks the support first and hides the counter-evidence until the end (over-confident);
  - ``complexity``: one smooth blob against the same values scattered at random over the pixels;
  - ``localisation``: a blob inside the mask against the same blob outside it;
  - ``reference``: the reference map plus faint noise against the reference's values scattered at random;
  - ``stability``: an explainer whose maps do not move near the image (``sensitivity`` on a linear model: a
    constant gradient) against one whose maps are new noise for every input (``random``).

  A metric's oracle is its ``MetricContract.direction``; when not given it follows from what the metric reads:
  masks -> ``localisation``, reference maps -> ``reference``, an explainer -> ``stability``, the model and maps or
  attributions -> ``faithfulness``. A metric of the maps alone has no such default (a complexity and a
  centre-of-mass score read the same input): its direction is checked once named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..errors import XaitrustError
from ..evaluation.registry import Metric, MetricInputs, available_metrics, get_metric
from ..evaluation.work import SharedWork
from ..explainers.base import get_explainer
from ..metrics._explain import explain_maps
from .oracles import LinearModel, PatchModel
from .results import CheckFailure, CheckResult, SideEffects, finish, largest_difference, run_check, skipped

N_IMAGES, SIZE = 3, (12, 12)
#: Largest difference between an image's value in a batch and alone, times ``max(1, |value alone|)``.
BATCH_TOLERANCE = 1e-5


@dataclass(frozen=True)
class MetricContract:
    """What a metric promises, and so what ``check_metric`` asserts; the default is the full contract.

    Attributes:
        direction: the oracle of its ``direction`` check: a key of ``DIRECTION_ORACLES``, ``"exempt"`` (say why),
            or ``None``: the oracle that follows from what the metric reads (module docstring).
        batch_invariant: an image's value does not depend on the other images of its batch.
        why: why the metric does not promise the full contract, shown in the checks it skips.
        params: parameters every check passes (those the metric cannot do without, e.g. a second model).
    """

    direction: str | None = None
    batch_invariant: bool = True
    why: str = ""
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in (None, "exempt", *DIRECTION_ORACLES):
            raise XaitrustError(f"direction must be one of {', '.join(DIRECTION_ORACLES)}, 'exempt' or None; "
                                f"got {self.direction!r}")
        if not self.why and (not self.batch_invariant or self.direction == "exempt"):
            raise XaitrustError("a metric that does not promise the full contract must say why (why=...)")


def _blobs(centres, width: float = 2.0) -> torch.Tensor:
    """One Gaussian blob per centre, ``(len(centres), H, W)``, peak 1."""
    rows = torch.arange(SIZE[0], dtype=torch.float32).reshape(-1, 1)
    cols = torch.arange(SIZE[1], dtype=torch.float32).reshape(1, -1)
    return torch.stack([torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * width**2)) for r, c in centres])


def _scattered(maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each map's values at random places: the same values, no spatial structure."""
    flat = maps.flatten(1)
    order = torch.rand(flat.shape, generator=generator).argsort(dim=1)
    return flat.gather(1, order).reshape(maps.shape)


def _inputs(model, x, maps, *, attributions=None, explainer=None, masks=None, reference_maps=None) -> MetricInputs:
    """Inputs for class 0 holding every need, defaults filled in: attributions from the maps, the ``sensitivity``
    explainer, a square mask, the maps as their own reference."""
    if masks is None:
        masks = torch.zeros(len(x), *SIZE, dtype=torch.bool)
        masks[:, 2:7, 5:10] = True
    return MetricInputs(
        model, x, torch.zeros(len(x), dtype=torch.long), maps=maps,
        attributions=maps.unsqueeze(1) if attributions is None else attributions,
        explainer=explainer or get_explainer("sensitivity"), masks=masks,
        reference_maps=maps if reference_maps is None else reference_maps,
    )


def general_inputs() -> MetricInputs:
    """The inputs of the ``output``, ``batch_invariance``, ``determinism`` and ``side_effects`` checks."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(N_IMAGES, 3, *SIZE, generator=generator)
    weight = 0.02 + 0.05 * torch.randn(3, *SIZE, generator=generator)  # clean logits about 4, all > 0
    evidence = weight * x
    signed = evidence.sum(dim=1)
    tied = (2 * signed / signed.abs().amax(dim=(1, 2), keepdim=True)).round()  # five levels: many ties
    reference = signed + 0.01 * torch.randn(signed.shape, generator=generator)
    return _inputs(LinearModel(weight), x, tied, attributions=evidence, reference_maps=reference)


def _faithfulness() -> tuple[MetricInputs, MetricInputs]:
    generator = torch.Generator().manual_seed(1)
    patch = (slice(2, 6), slice(6, 10))
    model = PatchModel(*patch, scale=10.0, bias=-7.0)  # clean logit about 2; about -1.5 once the patch is blurred
    x = torch.rand(N_IMAGES, 1, *SIZE, generator=generator)
    x[:, 0, patch[0], patch[1]] = 0.8 + 0.2 * torch.rand(N_IMAGES, 4, 4, generator=generator)
    evidence = torch.zeros(N_IMAGES, *SIZE)
    evidence[:, patch[0], patch[1]] = model.scale / 16 * x[:, 0, patch[0], patch[1]]  # gradient times input
    return _inputs(model, x, evidence), _inputs(model, x, -evidence)


def _soundness() -> tuple[MetricInputs, MetricInputs]:
    generator = torch.Generator().manual_seed(2)
    support, counter = (slice(2, 6), slice(6, 10)), (slice(7, 11), slice(1, 5))
    weight = torch.zeros(1, *SIZE)
    weight[:, support[0], support[1]], weight[:, counter[0], counter[1]] = 0.3, -0.3
    x = torch.rand(N_IMAGES, 1, *SIZE, generator=generator)
    x[:, 0, support[0], support[1]] = 0.8 + 0.2 * torch.rand(N_IMAGES, 4, 4, generator=generator)
    x[:, 0, counter[0], counter[1]] = 0.4 + 0.2 * torch.rand(N_IMAGES, 4, 4, generator=generator)
    evidence = (weight * x)[:, 0]  # support first, counter-evidence last
    model = LinearModel(weight)
    return _inputs(model, x, -evidence), _inputs(model, x, evidence)


def _oracle_images(seed: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Generator]:
    generator = torch.Generator().manual_seed(seed)
    model = LinearModel(0.05 + 0.1 * torch.randn(1, *SIZE, generator=generator))
    return model, torch.rand(N_IMAGES, 1, *SIZE, generator=generator), generator


def _complexity() -> tuple[MetricInputs, MetricInputs]:
    model, x, generator = _oracle_images(3)
    blobs = _blobs([(4, 4), (6, 7), (8, 5)])
    return _inputs(model, x, blobs), _inputs(model, x, _scattered(blobs, generator))


def _localisation() -> tuple[MetricInputs, MetricInputs]:
    model, x, generator = _oracle_images(4)
    masks = torch.zeros(N_IMAGES, *SIZE, dtype=torch.bool)
    masks[:, 1:6, 1:6] = True
    noise = 0.05 * torch.rand(N_IMAGES, *SIZE, generator=generator)
    inside, outside = _blobs([(3, 3), (2, 3), (3, 2)]) + noise, _blobs([(9, 9), (8, 9), (9, 8)]) + noise
    return _inputs(model, x, inside, masks=masks), _inputs(model, x, outside, masks=masks)


def _reference() -> tuple[MetricInputs, MetricInputs]:
    model, x, generator = _oracle_images(5)
    reference = _blobs([(4, 4), (6, 7), (8, 5)])
    close = reference + 0.05 * torch.rand(reference.shape, generator=generator)
    return (_inputs(model, x, close, reference_maps=reference),
            _inputs(model, x, _scattered(reference, generator), reference_maps=reference))


def _randomisation() -> tuple[MetricInputs, MetricInputs]:
    model, x, _ = _oracle_images(7)
    target = torch.zeros(len(x), dtype=torch.long)

    def own_maps(name: str) -> MetricInputs:
        explainer = get_explainer(name)
        maps = explain_maps(explainer, model, x, target, output="logit", reduction="abs-sum")
        return _inputs(model, x, maps, explainer=explainer)

    return own_maps("sensitivity"), own_maps("random")


def _stability() -> tuple[MetricInputs, MetricInputs]:
    model, x, _ = _oracle_images(6)
    maps = x.sum(dim=1)
    return (_inputs(model, x, maps, explainer=get_explainer("sensitivity")),
            _inputs(model, x, maps, explainer=get_explainer("random")))


#: The direction oracles: name -> ``() -> (inputs of the better explanation, inputs of the worse one)``.
DIRECTION_ORACLES: dict[str, Callable[[], tuple[MetricInputs, MetricInputs]]] = {
    "faithfulness": _faithfulness,
    "soundness": _soundness,
    "complexity": _complexity,
    "localisation": _localisation,
    "reference": _reference,
    "stability": _stability,
    "randomisation": _randomisation,
}
DESCRIPTIONS = {
    "faithfulness": ("the oracle's evidence map", "the same map negated (evidence last)"),
    "soundness": ("the map ranking the counter-evidence first", "the evidence map (counter-evidence last)"),
    "complexity": ("a smooth blob", "the same values scattered"),
    "localisation": ("a blob inside the mask", "the same blob outside it"),
    "reference": ("the reference plus faint noise", "the reference's values scattered"),
    "stability": ("sensitivity on a linear model (constant maps)", "the random explainer"),
    "randomisation": ("sensitivity's maps of a linear model (its weight)", "the random explainer's maps, which "
                      "ignore the model"),
}
#: The built-in metrics whose oracle does not follow from what they read.
CONTRACTS = {
    "soundness": MetricContract(direction="soundness"),
    "otsu_tv": MetricContract(direction="complexity"),
    "prediction_consistency": MetricContract(
        direction="exempt", batch_invariant=False,
        why="an image's consistency is a share of the images evaluated with it; the oracles' images all get one class"),
    "sufficiency": MetricContract(
        direction="exempt", batch_invariant=False,
        why="an image's sufficiency is a share of the images evaluated with it; the oracles' images all get one class"),
    "efficient_mprt": MetricContract(
        direction="exempt", why="a linear model's gradient map is its weight: random before and after randomisation"),
    "random_logit": MetricContract(
        direction="exempt", why="the two probabilities of a two-class model have the same gradient map up to sign"),
    "monotonicity": MetricContract(
        direction="exempt", why="putting back any pixel of the patch oracle raises its score, whatever the order: "
        "every map is monotone there"),
    "monotonicity_correlation": MetricContract(
        direction="exempt", why="it correlates |map| with the score's changes: a map and its negation score the same"),
    "non_sensitivity": MetricContract(direction="exempt", why="a map and its negation have the same zero set"),
    "randomisation_similarity": MetricContract(direction="randomisation"),
    "data_randomisation": MetricContract(
        direction="randomisation",
        params={"randomised_model": LinearModel(0.05 + 0.1 * torch.randn(1, *SIZE,
                                                generator=torch.Generator().manual_seed(8)))}),
    "increase_in_confidence": MetricContract(
        direction="exempt", why="dimming the patch oracle's evidence never raises its confidence: every map scores 0"),
}


def contract_of(metric: Metric) -> MetricContract:
    """The contract of a registered built-in metric in ``CONTRACTS``, else the full contract."""
    registered = {m.name: m for m in available_metrics()}.get(metric.name)
    return CONTRACTS.get(metric.name, MetricContract()) if registered is metric else MetricContract()


def direction_oracle(metric: Metric, contract: MetricContract) -> str | None:
    """The name of the oracle of ``metric``'s direction check (module docstring), or None if there is none."""
    if contract.direction is not None:
        return contract.direction
    if "masks" in metric.needs:
        return "localisation"
    if "reference_maps" in metric.needs:
        return "reference"
    if "explainer" in metric.needs:
        return "stability"
    if "model" in metric.reads and metric.needs & {"maps", "attributions"}:
        return "faithfulness"
    return None


def check_metric(metric, *, contract: MetricContract | None = None, raise_on_failure: bool = False,
                 **params) -> list[CheckResult]:
    """Run every contract check on ``metric`` and return one ``CheckResult`` per check.

    Args:
        metric: a registered name, ``path/to/file.py:Name`` or a ``Metric`` (``xaitrust.evaluation.define_metric``).
        contract: what the metric promises; default: its entry in ``CONTRACTS`` (built-in metrics), else the full
            contract with the direction oracle that follows from what it reads.
        raise_on_failure: raise a ``ContractError`` listing the failed checks instead of returning them.
        params: the metric's parameters (e.g. fewer steps, to check it quickly) and settings it reads.
    """
    metric = get_metric(metric)
    contract = contract or contract_of(metric)
    params = {**contract.params, **params}
    metric.check_params(params)
    subject = f"metric {metric.name!r}"
    checks = _Checks(metric, params)
    oracle = direction_oracle(metric, contract)
    results = [
        run_check(subject, "output", checks.check_output),
        run_check(subject, "batch_invariance", checks.check_batch_invariance) if contract.batch_invariant
        else skipped(subject, "batch_invariance", contract.why),
        run_check(subject, "determinism", checks.check_determinism),
        run_check(subject, "side_effects", checks.check_side_effects),
    ]
    if oracle == "exempt":
        results.append(skipped(subject, "direction", contract.why))
    elif oracle is None:
        results.append(skipped(subject, "direction", "a metric of the maps alone has no default oracle: name one with "
                               f"contract=MetricContract(direction=...), one of {', '.join(DIRECTION_ORACLES)}"))
    else:
        results.append(run_check(subject, "direction", lambda: checks.check_direction(oracle)))
    return finish(results, raise_on_failure)


def _image(inputs: MetricInputs, index: int) -> MetricInputs:
    """``inputs`` restricted to image ``index``, with work of its own."""
    part = slice(index, index + 1)
    sliced = {name: getattr(inputs, name)[part]
              for name in ("x", "target", "maps", "attributions", "masks", "reference_maps")}
    return replace(inputs, **sliced, work=SharedWork())


def _values(values: torch.Tensor) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values.tolist()) + "]"


class _Checks:
    """The metric's computations on the general inputs, each made once and shared by the checks."""

    def __init__(self, metric: Metric, params: dict) -> None:
        self.metric, self.params = metric, params
        self.inputs = general_inputs()
        self._done: dict[int, torch.Tensor] = {}

    def compute(self, inputs: MetricInputs, global_seed: int = 0) -> torch.Tensor:
        """The metric's values on ``inputs`` (with fresh shared work), torch's global generator seeded with
        ``global_seed`` for the computation and given back its state afterwards."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(global_seed)
            return self.metric.compute(replace(inputs, work=SharedWork()), self.params)

    def values(self, global_seed: int = 0) -> torch.Tensor:
        if global_seed not in self._done:
            self._done[global_seed] = self.compute(self.inputs, global_seed)
        return self._done[global_seed]

    def check_output(self) -> str:
        values = self.values()
        if not values.dtype.is_floating_point:
            raise CheckFailure(f"values of dtype {values.dtype}; expected real numbers (a float dtype)")
        if not torch.isfinite(values).all():
            raise CheckFailure(f"values {_values(values)}: not finite on inputs where every value is defined")
        return f"{tuple(values.shape)} {values.dtype} values {_values(values)}, finite"

    def check_batch_invariance(self) -> str:
        batch, worst = self.values(), 0.0
        for index in range(N_IMAGES):
            alone = self.compute(_image(self.inputs, index))
            difference = largest_difference(batch[index : index + 1], alone) / max(1.0, float(alone.abs().max()))
            if difference > BATCH_TOLERANCE:
                raise CheckFailure(
                    f"image {index}: {float(batch[index]):.6g} in a batch of {N_IMAGES}, {float(alone[0]):.6g} alone "
                    f"(difference {difference:.3g} of max(1, |value|), tolerance {BATCH_TOLERANCE:g}): its value "
                    "depends on the other images of the batch"
                )
            worst = max(worst, difference)
        return (f"each image's value in a batch of {N_IMAGES} equals its value alone to {worst:.2g} of "
                f"max(1, |value|) (tolerance {BATCH_TOLERANCE:g})")

    def check_determinism(self) -> str:
        first, second = self.values(global_seed=0), self.values(global_seed=1)
        difference = largest_difference(first, second)
        if difference != 0:
            raise CheckFailure(f"two computations differ by up to {difference:.3g}: {_values(first)} then "
                               f"{_values(second)} (torch's global generator seeded 0, then 1)")
        return "two computations (torch's global generator seeded 0, then 1) give identical values"

    def check_side_effects(self) -> str:
        inputs = general_inputs()
        inputs.model.train()  # must stay in train mode: the metric evaluates it in eval mode and gives the flag back
        tensors = {f"the {name.replace('_', ' ')}": getattr(inputs, name)
                   for name in ("x", "target", "maps", "attributions", "masks", "reference_maps")}
        with torch.random.fork_rng(devices=[]):
            snapshot = SideEffects(inputs.model, tensors)
            self.metric.compute(inputs, self.params)
            changes = snapshot.changes()
        if changes:
            raise CheckFailure("; ".join(changes))
        return ("model flags, parameters and gradients, the images, target, maps, attributions, masks, reference maps "
                "and torch's global generator unchanged")

    def check_direction(self, oracle: str) -> str:
        better_inputs, worse_inputs = DIRECTION_ORACLES[oracle]()
        better, worse = self.compute(better_inputs), self.compute(worse_inputs)
        higher = self.metric.higher_is_better
        wins = better > worse if higher else better < worse
        better_name, worse_name = DESCRIPTIONS[oracle]
        report = (f"{oracle} oracle, {'higher' if higher else 'lower'} is better: {better_name} scores "
                  f"{_values(better)}, {worse_name} {_values(worse)}")
        if not bool(wins.all()):
            raise CheckFailure(f"{report}: the better explanation does not score better on images "
                               f"{(~wins).nonzero().flatten().tolist()}")
        return report
