"""``evaluate``: explain images with several explainers, score every explanation with several metrics, one tidy table.

For each explainer: attributions ``explainer(model, x, target, output)`` ``(N, C, H, W)``, maps
``reduce_attributions(attributions, reduction)`` ``(N, H, W)``, then every metric of the registry
(``xaitrust.evaluation.registry``) on them. Everything a user can get wrong (names, parameters, shapes, missing
masks or reference maps, duplicated explainers or metrics) is checked before the first explanation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..chunks import batched_logits
from ..errors import XaitrustError
from ..explainers.base import Explainer, as_explainer
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..outputs import check_output
from ..perturb.engine import model_device
from ..perturb.orders import TIES
from ..sources import is_file_reference, split_file_reference
from ..validation import check_count, check_finite_model, check_images, check_maps, check_masks, check_target
from .registry import Metric, MetricInputs, available_metrics, get_metric
from .work import SharedWork

DEFAULT_EXPLAINERS = ("saliency", "integrated-gradients")
DEFAULT_METRICS = ("deletion_area", "insertion_area", "mif_lif_area", "better_than_random", "mu_fidelity")
#: The columns of ``evaluate``'s table, in order.
COLUMNS = ("sample", "label", "prediction", "confidence", "target", "method", "metric", "value")


def evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    target=None,
    explainers=DEFAULT_EXPLAINERS,
    metrics=DEFAULT_METRICS,
    output: str = "probability",
    masks: torch.Tensor | None = None,
    seed: int = 0,
    *,
    reduction: str = "abs-sum",
    indices=None,
    labels=None,
    metric_params: Mapping[str, Mapping] | None = None,
    explainer_params: Mapping[str, Mapping] | None = None,
    batch_size: int | None = None,
    ties: str = "random",
    reference_maps: Mapping[str, torch.Tensor] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Explain ``x`` ``(N, C, H, W)`` with every explainer and score each explanation with every metric.

    Args:
        target: the explained classes, an int or ``(N,)``; ``None``: the model's predicted classes.
        explainers: one or a list of: a registered name, ``path/to/file.py:Name``, an ``Explainer`` (class or
            instance), a Captum attribution class (e.g. ``captum.attr.IntegratedGradients``) or a callable
            ``(model, x, target) -> attributions (N, C, H, W)`` (``xaitrust.explainers.base``); a dict
            ``{label: explainer}`` names them in the table (otherwise: the name, the file's ``Name``, the class or
            function name). Explainers draw from their own ``seed`` parameter.
        metrics: one or a list of registered names (``available_metrics()``), ``path/to/file.py:Name`` or ``Metric``.
        output: the score the explainers explain, and that every metric with an ``output`` parameter measures
            (``Metric.output == "explained"``); metrics whose definition fixes a score keep it.
        masks: ground-truth masks ``(N, H, W)``, needed by the localisation metrics.
        seed: the seed of every metric's randomness (random tie breaks, random orders and subsets, neighbours).
        reduction: how attributions become maps (``xaitrust.explainers.reduce``).
        indices: the dataset index of each image (the ``sample`` column; default ``0..N-1``).
        labels: the true class of each image (the ``label`` column; default NaN).
        metric_params: ``{metric: {parameter: value}}`` overriding a metric's defaults (``Metric.params``) or the
            settings it reads (e.g. ``{"deletion_area": {"steps": 50, "output": "logit"}}``).
        explainer_params: ``{label: {parameter: value}}`` for the explainers built here (not instances).
        batch_size: masked images per forward pass of the perturbation metrics (``None``: automatic).
        ties: order of equal map values in the perturbation curves (``"random"`` from ``seed``, or ``"stable"``).
        reference_maps: ``{label: maps (N, H, W)}`` of the same images by another model, for the metrics that compare
            with them (``ssim_to_uncalibrated``).
        progress: show a progress bar.

    Returns:
        One row per sample x method x metric, columns ``COLUMNS``: ``sample``, ``label``, ``prediction`` (the model's
        class), ``confidence`` (its softmax probability), ``target``, ``method``, ``metric``, ``value``.

    Metrics run in registry order, so that metrics reading the same computation share it (``SharedWork``), and the
    work that does not depend on the explanation (BTR's random baseline) is done once for all explainers.
    """
    x = check_images(x)
    check_finite_model(model, "model")
    n = len(x)
    check_output(output)
    if reduction not in REDUCTIONS:
        raise XaitrustError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if ties not in TIES:
        raise XaitrustError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise XaitrustError(f"seed must be an integer; got {seed!r}")
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size")
    chosen = _resolve_metrics(metrics, metric_params)
    explaining = _resolve_explainers(explainers, explainer_params)
    for explainer in explaining.values():
        explainer.check_model(model)
    masks = _check_masks(chosen, masks, x)
    references = _check_references(chosen, reference_maps, explaining, x)
    samples = _column(indices, n, "indices", np.arange(n))
    true_labels = _column(labels, n, "labels", np.full(n, np.nan))

    logits = batched_logits(model, x, device=model_device(model))
    confidence, prediction = torch.softmax(logits.double(), dim=1).max(dim=1)
    target = prediction if target is None else check_target(target, n, logits.shape[1], device=prediction.device)
    work = SharedWork()
    frames = []
    bar = tqdm(total=len(explaining) * (1 + len(chosen)), desc="evaluate", unit="step", disable=not progress)
    with bar:
        for label, explainer in explaining.items():
            bar.set_postfix_str(f"{label}: explain")
            attributions = explainer(model, x, target, output)
            bar.update()
            inputs = MetricInputs(
                model, x, target, output, int(seed), ties, batch_size, reduction,
                maps=reduce_attributions(attributions, reduction, inputs=x.to(attributions.device)),
                attributions=attributions, explainer=explainer, masks=masks, reference_maps=references.get(label),
                work=work,
            )
            values = {}
            for metric, value in metric_values(chosen.values(), inputs, metric_params):
                values[metric.name] = value
                bar.set_postfix_str(f"{label}: {metric.name}")
                bar.update()
            for name in chosen:
                frames.append(pd.DataFrame({
                    "sample": samples, "label": true_labels, "prediction": prediction.cpu().numpy(),
                    "confidence": confidence.cpu().numpy(), "target": target.cpu().numpy(), "method": label,
                    "metric": name, "value": values[name].detach().cpu().double().numpy(),
                }))
    return pd.concat(frames, ignore_index=True)


def metric_values(metrics, inputs: MetricInputs, params: Mapping[str, Mapping] | None = None
                  ) -> Iterator[tuple[Metric, torch.Tensor]]:
    """``(metric, values (B,))`` of every metric on ``inputs`` (``params``: per metric name), computed in registry
    order (metrics defined elsewhere last), so that a metric reuses what an earlier one left in ``inputs.work``."""
    rank = {metric.name: position for position, metric in enumerate(available_metrics())}
    for metric in sorted(metrics, key=lambda metric: rank.get(metric.name, len(rank))):
        yield metric, metric.compute(inputs, (params or {}).get(metric.name))


def _resolve_metrics(metrics, metric_params) -> dict[str, Metric]:
    """``{name: Metric}`` checked: at least one, each once, ``metric_params`` naming only these with valid keys."""
    specs = [metrics] if isinstance(metrics, (str, Metric)) else list(metrics)
    if not specs:
        raise XaitrustError(f"metrics is empty: name at least one of {', '.join(m.name for m in available_metrics())}")
    _check_tables(metric_params, "metric_params", "each metric's name", "{'deletion_area': {'steps': 50}}")
    chosen: dict[str, Metric] = {}
    for metric in map(get_metric, specs):
        if metric.name in chosen:
            raise XaitrustError(f"metric {metric.name!r} is listed twice; list each metric once")
        chosen[metric.name] = metric
    unknown = sorted(set(metric_params or {}) - set(chosen))
    if unknown:
        raise XaitrustError(f"metric_params names metrics that are not evaluated: {', '.join(unknown)}; "
                            f"evaluated: {', '.join(chosen)}")
    for name, metric in chosen.items():  # every metric, so that one missing a parameter it needs fails here
        metric.check_params((metric_params or {}).get(name, {}))
    return chosen


def explainer_label(spec) -> str:
    """The ``method`` label of an explainer given without one: its registered name, the ``Name`` of
    ``path/to/file.py:Name``, or the name of its class or function."""
    if isinstance(spec, str):
        return split_file_reference(spec)[1] if is_file_reference(spec) else spec
    if isinstance(spec, Explainer) or (isinstance(spec, type) and issubclass(spec, Explainer)):
        return spec.name or (spec.__name__ if isinstance(spec, type) else type(spec).__name__)
    return getattr(spec, "__name__", None) or type(spec).__name__


def _resolve_explainers(explainers, explainer_params) -> dict[str, Explainer]:
    """``{label: Explainer}``, built with their params and checked: at least one, distinct labels and explainers."""
    if isinstance(explainers, Mapping):
        specs = [(str(label), spec) for label, spec in explainers.items()]
    else:
        explainers = [explainers] if isinstance(explainers, str) or not isinstance(explainers, Sequence) else explainers
        specs = [(explainer_label(spec), spec) for spec in explainers]
    if not specs:
        raise XaitrustError("explainers is empty: give at least one (a name such as 'saliency', a file reference, "
                            "an Explainer, a Captum class or a callable)")
    _check_tables(explainer_params, "explainer_params", "each explainer's label", "{'rise': {'n_masks': 500}}")
    params = dict(explainer_params or {})
    labels = [label for label, _ in specs]
    unknown = sorted(set(params) - set(labels))
    if unknown:
        raise XaitrustError(f"explainer_params names explainers that are not evaluated: {', '.join(unknown)}; "
                            f"evaluated: {', '.join(labels)}")
    seen: dict[tuple, str] = {}  # (explainer, its parameters) -> label
    for position, (label, spec) in enumerate(specs):
        if label in labels[:position]:
            raise XaitrustError(f"explainer {label!r} is listed twice; list it once, or give each variant its own "
                                "label with a dict {label: explainer} and explainer_params per label")
        key = (spec if isinstance(spec, str) else id(spec), repr(sorted(params.get(label, {}).items())))
        if key in seen:
            raise XaitrustError(f"explainers {seen[key]!r} and {label!r} are the same explainer with the same "
                                "parameters; drop one")
        seen[key] = label
    return {label: as_explainer(spec, name=label, **params.get(label, {})) for label, spec in specs}


def _check_tables(tables, name: str, keys: str, example: str) -> None:
    """``tables`` is None or a mapping of names to parameter mappings, else an error naming the argument ``name``."""
    if tables is not None and not (
        isinstance(tables, Mapping) and all(isinstance(table, Mapping) for table in tables.values())
    ):
        raise XaitrustError(f"{name} must map {keys} to a dict of its parameters, e.g. {example}; got {tables!r}")


def _check_masks(chosen: Mapping[str, Metric], masks, x) -> torch.Tensor | None:
    """``masks`` as ``(N, H, W)`` matching ``x``; an error if a chosen metric needs them and they are missing."""
    needing = [name for name, metric in chosen.items() if "masks" in metric.needs]
    if needing and masks is None:
        raise XaitrustError(f"metrics {', '.join(needing)} compare maps with ground-truth masks: pass masks (N, H, W) "
                            "(e.g. a dataset's masks) or drop these metrics")
    return None if masks is None else check_masks(masks, (len(x), *x.shape[2:]))


def _check_references(chosen: Mapping[str, Metric], reference_maps, explaining: Mapping, x) -> dict:
    """``{label: maps (N, H, W)}`` for every explainer when a chosen metric compares with reference maps, else ``{}``."""
    needing = [name for name, metric in chosen.items() if "reference_maps" in metric.needs]
    if not needing:
        return {}
    missing = [label for label in explaining if not isinstance(reference_maps, Mapping) or label not in reference_maps]
    if missing:
        raise XaitrustError(f"metrics {', '.join(needing)} compare each method's maps with a reference model's maps of "
                            f"the same images: pass reference_maps={{label: maps (N, H, W)}}, missing for "
                            f"{', '.join(missing)}")
    return {label: check_maps(reference_maps[label], x, name=f"reference_maps[{label!r}]") for label in explaining}


def _column(values, n: int, name: str, default: np.ndarray) -> np.ndarray:
    """One value per image (``indices``, ``labels``) as an array, or ``default`` when not given."""
    if values is None:
        return default
    values = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if values.shape != (n,):
        raise XaitrustError(f"{name} must hold one value per image, shape ({n},); got {values.shape}")
    return values
