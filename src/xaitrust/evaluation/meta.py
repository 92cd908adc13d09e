"""Meta-evaluation: which metrics to believe on this model, after MetaQuantus (Hedström, Bommer, Wickstrøm, Samek,
Lapuschkin & Höhne, "The Meta-Evaluation Problem in Explainable AI: Identifying Reliable Estimators with
MetaQuantus", TMLR 2023).

A metric ("quality estimator") is worth believing when it is *resilient to noise*: a minor perturbation of the
evaluation problem, one that leaves the model's prediction as it was, should not change its verdict; and *reactive to
adversaries*: a disruptive perturbation, one that changes the prediction, should. Two tests perturb the problem
``K`` times each, minor and disruptive, as MetaQuantus's ``InputPerturbationTest`` and ``ModelPerturbationTest`` do
(their settings for MNIST-like data):

- IPT, input perturbation test: ``x_hat = clip(x + delta, 0, 1)``, ``delta ~ U(-alpha, alpha)`` per pixel, minor
  ``alpha = 0.001``, disruptive ``alpha = 5``; the explanations stay those of the clean images and the metric scores
  them on ``x_hat`` (MetaQuantus clips from below only; here both sides, as images are in [0, 1]).
- MPT, model perturbation test: every parameter entry multiplied by ``nu ~ N(1, sigma^2)``, minor ``sigma = 0.001``
  (the accuracy stays), disruptive ``sigma = 2``; the explanations are recomputed with the perturbed model, which the
  metric then scores them on.

The explained class is the clean model's prediction ``y`` throughout. With ``q_li`` the metric's value for
explainer ``l`` on image ``i`` and ``q_hat_li`` its value after one perturbation, the scores of that perturbation
are computed over ``I``: the images whose prediction the perturbation left at ``y`` for a minor one (noise
resilience, NR), the images whose prediction it changed for a disruptive one (adversary reactivity, AR):

- IAC, intra-consistency: the p-value of Wilcoxon's signed-rank test of ``q_l`` against ``q_hat_l`` over ``I``
  (two-sided, zero differences split between the ranks): ``IAC_NR = p``, ``IAC_AR = 1 - p``; the mean over
  explainers and perturbations.
- IEC, inter-consistency: ``IEC_NR = 1 / (L |I|) sum_i sum_r 1[R_ri = R_hat_ri]``, the share of the explainers'
  ranking of image ``i`` (``R``: explainers sorted by ``q``, ties by their order) the perturbation left in place;
  ``IEC_AR = 1 / (L |I|) sum_l sum_i 1[q_hat_li worse than q_li]`` (lower where higher is better, and conversely);
  the mean over perturbations.
- MC, meta-consistency: ``(IAC_NR + IAC_AR + IEC_NR + IEC_AR) / 4`` of each test, in [0, 1] (1: ideal); a metric's MC
  is the mean of its two tests'.

A value a metric leaves NaN takes its image out of that comparison; a score with no image to compare (no prediction
changed under the disruptive perturbations, say) is NaN, and so is the MC it enters. MetaQuantus also repeats the
``K`` perturbations in several iterations, whose scores it averages: here that is ``K`` times the iterations.

Uncertainty (``by_perturbation``): the ``k``-th perturbation of each kind and test gives its own
``MC_k = (MC_k(IPT) + MC_k(MPT)) / 2``, each criterion averaged over the explainers of that perturbation; without
NaN scores the mean of the ``K`` values ``MC_k`` is the metric's MC. Every metric is scored on the same perturbed
problems, so the ``MC_k`` of two metrics are paired by ``k``: the spread over ``k`` gives MC an interval over the
perturbations and two metrics a paired comparison (``xaitrust.statistics``).

Every perturbation is seeded: image ``i``'s input noise comes from ``seed`` and its bytes
(``xaitrust.seeding.image_seed``), the weight noise from ``seed`` in the order of the perturbations, so an image gets
the same noise in any batch, and the first perturbations of a run with a larger ``K`` are those of a smaller one.
The metrics run with the same ``seed`` on clean and perturbed problems: only the perturbation differs.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm.auto import tqdm

from ..chunks import batched_logits
from ..errors import XaitrustError
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..outputs import check_output
from ..perturb.engine import model_device
from ..perturb.orders import TIES
from ..seeding import image_seed
from ..validation import check_count, check_finite_model, check_images
from .evaluate import (
    _check_masks,
    _resolve_explainers,
    _resolve_metrics,
    metric_values,
)
from .registry import MetricInputs
from .work import SharedWork

#: The explainers meta-evaluated by default: three cheap ones of different families (gradient, gradient times
#: input, class activation map).
DEFAULT_META_EXPLAINERS = ("saliency", "gradient-input", "gradcam")
#: The metrics meta-evaluated by default: fast ones of five kinds that need no ground-truth masks: faithfulness
#: (deletion and insertion areas, faithfulness correlation), complexity (sparseness, complexity), robustness
#: (continuity) and randomisation (random logit).
DEFAULT_META_METRICS = ("deletion_area", "insertion_area", "faithfulness_correlation", "sparseness", "complexity",
                        "continuity", "random_logit")
#: Perturbations of each kind per test by default (MetaQuantus's defaults: 10 in each of 5 iterations; more is
#: steadier and slower).
DEFAULT_PERTURBATIONS = 3
TESTS = ("IPT", "MPT")
KINDS = ("minor", "disruptive")
CRITERIA = ("IAC_NR", "IAC_AR", "IEC_NR", "IEC_AR")
#: MetaQuantus's input noise (half-width of the uniform noise, in [0, 1] image units): minor, disruptive.
INPUT_NOISE = (0.001, 5.0)
#: MetaQuantus's weight noise (standard deviation of the multiplicative Gaussian around 1): minor, disruptive.
WEIGHT_NOISE = (0.001, 2.0)
#: The least score of each criterion, in each test, of a metric to believe. A criterion is failed where the metric
#: does no better than an uninformative one, up to a margin: a metric that ignores the problem (constant) or draws
#: its scores at random gets IAC_AR and IEC_AR of 0 to 0.5 (it never reacts, or reacts by chance half the time), so
#: these must reach 0.6; such a metric keeps 1 / L of the explainers' ranking in place by chance, so IEC_NR must reach
#: 0.75 (three quarters of the ranking survive minor perturbations; halfway from chance to 1 for two explainers);
#: IAC_NR is a mean p-value, about 0.5 when minor perturbations move the scores without a direction, so below the
#: usual significance level 0.05 they shift the scores systematically.
THRESHOLDS = {"IAC_NR": 0.05, "IAC_AR": 0.6, "IEC_NR": 0.75, "IEC_AR": 0.6}
#: What failing each criterion means, for the verdict sentences (``{where}``: which perturbations, with the scores).
FAILURES = {
    "IAC_NR": "minor perturbations {where}, which keep the prediction, shift its scores significantly",
    "IAC_AR": "its scores barely move under disruptive perturbations {where}, which change the prediction",
    "IEC_NR": "minor perturbations {where} reorder the explainers",
    "IEC_AR": "disruptive perturbations {where} do not make the explainers' scores worse",
}
WHERE = {"IPT": "of the inputs", "MPT": "of the model"}
#: The columns of ``MetaEvaluation.values``, ``scores`` and ``summary``.
VALUE_COLUMNS = ("metric", "method", "test", "kind", "perturbation", "sample", "prediction", "perturbed_prediction",
                 "clean", "value")
SCORE_COLUMNS = ("metric", "test", "criterion", "method", "perturbation", "images", "value")
SUMMARY_COLUMNS = ("metric", "test", *CRITERIA, "MC")


@dataclass(frozen=True)
class MetaEvaluation:
    """What ``meta_evaluate`` measured.

    Attributes:
        values: one row per metric x explainer x test x kind x perturbation x image (``VALUE_COLUMNS``): the clean
            prediction, the prediction after the perturbation, the metric's clean value and its value after it.
        scores: one row per metric x test x criterion x perturbation (and explainer, for IAC; ``method`` is empty for
            IEC, which compares the explainers) (``SCORE_COLUMNS``), with the number of images compared.
        summary: one row per metric and test (``IPT``, ``MPT`` and ``both``, their mean) with the four criteria and
            MC (``SUMMARY_COLUMNS``).
    """

    values: pd.DataFrame
    scores: pd.DataFrame
    summary: pd.DataFrame


def meta_evaluate(
    model: torch.nn.Module,
    x: torch.Tensor,
    explainers=DEFAULT_META_EXPLAINERS,
    metrics=DEFAULT_META_METRICS,
    perturbations: int = DEFAULT_PERTURBATIONS,
    seed: int = 0,
    *,
    output: str = "probability",
    masks: torch.Tensor | None = None,
    reduction: str = "abs-sum",
    indices=None,
    metric_params: Mapping[str, Mapping] | None = None,
    explainer_params: Mapping[str, Mapping] | None = None,
    batch_size: int | None = None,
    ties: str = "random",
    input_noise: tuple[float, float] = INPUT_NOISE,
    weight_noise: tuple[float, float] = WEIGHT_NOISE,
    progress: bool = True,
) -> MetaEvaluation:
    """How each metric reacts, on ``model`` and the images ``x`` ``(N, C, H, W)``, to minor and disruptive
    perturbations of the inputs (IPT) and of the model (MPT), ``perturbations`` of each (see the module docstring).

    Args:
        explainers, metrics, output, masks, reduction, metric_params, explainer_params, batch_size, ties: as for
            ``xaitrust.evaluate``; at least two explainers (the inter-consistency compares their ranking).
        seed: the seed of the perturbations and of the metrics' randomness.
        indices: the dataset index of each image (the ``sample`` column; default ``0..N-1``).
        input_noise: the half-widths ``(minor, disruptive)`` of the uniform input noise, in image units.
        weight_noise: the standard deviations ``(minor, disruptive)`` of the multiplicative weight noise.
        progress: show a progress bar.
    """
    x = check_images(x)
    check_finite_model(model, "model")
    check_output(output)
    if reduction not in REDUCTIONS:
        raise XaitrustError(f"reduction must be one of {', '.join(REDUCTIONS)}; got {reduction!r}")
    if ties not in TIES:
        raise XaitrustError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise XaitrustError(f"seed must be an integer; got {seed!r}")
    perturbations = check_count(perturbations, "perturbations")
    if batch_size is not None:
        batch_size = check_count(batch_size, "batch_size")
    input_noise = _check_levels(input_noise, "input_noise")
    weight_noise = _check_levels(weight_noise, "weight_noise")
    if not any(parameter.is_floating_point() for parameter in model.parameters()):
        raise XaitrustError("the model has no floating-point parameters for the model perturbation test to perturb")
    chosen = _resolve_metrics(metrics, metric_params)
    comparing = [name for name, metric in chosen.items() if "reference_maps" in metric.needs]
    if comparing:
        raise XaitrustError(f"metrics {', '.join(comparing)} compare the maps with those of another model, which a "
                            "perturbed problem does not have; drop them")
    explaining = _resolve_explainers(explainers, explainer_params)
    if len(explaining) < 2:
        raise XaitrustError("the meta-evaluation compares how the metrics rank explainers: give at least two "
                            f"explainers; got {', '.join(explaining)}")
    for explainer in explaining.values():
        explainer.check_model(model)
    masks = _check_masks(chosen, masks, x)
    samples = np.arange(len(x)) if indices is None else np.asarray(indices)
    if samples.shape != (len(x),):
        raise XaitrustError(f"indices must hold one value per image, shape ({len(x)},); got {samples.shape}")

    problem = _Problem(chosen, explaining, output, int(seed), ties, batch_size, reduction, metric_params)
    prediction = _predictions(model, x)
    target = torch.as_tensor(prediction, device=model_device(model))
    bar = tqdm(total=len(explaining) * (2 + 2 * perturbations), desc="meta-evaluate", unit="step",
               disable=not progress)
    with bar:
        attributions = problem.explain(model, x, target, bar, "clean")
        clean = problem.score(model, x, target, attributions, x, masks, bar, "clean")
        with _warnings_summarised():
            runs = {"IPT": _input_test(problem, model, x, target, attributions, masks, perturbations, input_noise,
                                       bar),
                    "MPT": _model_test(problem, model, x, target, masks, perturbations, weight_noise, bar)}
    values = _values_table(runs, clean, prediction, samples, list(explaining))
    scores = _scores_table(runs, clean, prediction, chosen, list(explaining))
    return MetaEvaluation(values, scores, summarise(scores))


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """The ``summary`` of a ``scores`` table: per metric and test, each criterion's mean over explainers and
    perturbations (NaN scores left out) and MC, their mean; the ``both`` rows average the two tests."""
    means = scores.groupby(["metric", "test", "criterion"], sort=False)["value"].mean()
    rows = []
    for metric in dict.fromkeys(scores["metric"]):
        per_test = {test: [means.get((metric, test, criterion), np.nan) for criterion in CRITERIA] for test in TESTS}
        per_test = {test: [*row, np.mean(row)] for test, row in per_test.items()}
        per_test["both"] = list(np.mean([per_test[test] for test in TESTS], axis=0))
        rows.extend([metric, test, *row] for test, row in per_test.items())
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def by_perturbation(scores: pd.DataFrame) -> pd.DataFrame:
    """Per metric and perturbation index ``k`` of a ``scores`` table: the MC of the ``k``-th perturbations of each
    test (``IPT``, ``MPT``: the mean of the four criteria, each the mean over explainers of its values at ``k``, NaN
    left out) and ``MC``, their mean (NaN when a criterion is NaN), in the order of the metrics."""
    criteria = scores.groupby(["metric", "perturbation", "test", "criterion"], sort=False)["value"].mean()
    per_test = criteria.unstack("criterion").reindex(columns=list(CRITERIA)).mean(axis=1, skipna=False)
    table = per_test.unstack("test").reindex(columns=list(TESTS))
    table["MC"] = table.mean(axis=1, skipna=False)
    table.columns.name = None
    return table.reset_index("perturbation").loc[list(dict.fromkeys(scores["metric"]))].reset_index()


def verdicts(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per metric of a ``summary``: its MC, ``believe`` when every criterion reaches its ``THRESHOLDS`` in
    both tests, else ``be careful``, and a plain sentence saying which criteria it fails (or could not be measured),
    under which test and by how much."""
    rows = []
    for metric, table in summary.groupby("metric", sort=False):
        by_test = table.set_index("test")
        reasons, unmeasured = [], []
        for criterion, threshold in THRESHOLDS.items():
            failed = [f"{WHERE[test]} ({test} {by_test.loc[test, criterion]:.2f})" for test in TESTS
                      if by_test.loc[test, criterion] < threshold]
            unmeasured += [f"{criterion} of {test}" for test in TESTS if np.isnan(by_test.loc[test, criterion])]
            if failed:
                reasons.append(f"{FAILURES[criterion].format(where=' and '.join(failed))} "
                               f"({criterion} below {threshold:g})")
        if unmeasured:
            reasons.append(f"{', '.join(unmeasured)} could not be measured, no image being left to compare (use more "
                           "images)")
        mc = by_test.loc["both", "MC"]
        if reasons:
            verdict, sentence = "be careful", f"Be careful with {metric}: {'; '.join(reasons)}."
        else:
            verdict, sentence = "believe", (
                f"Believe {metric} on this model: minor perturbations of the inputs and of the model leave its "
                f"scores and its ranking of the explainers in place, disruptive ones make its scores worse (MC "
                f"{mc:.2f}).")
        rows.append({"metric": metric, "MC": mc, "verdict": verdict, "sentence": sentence})
    return pd.DataFrame(rows, columns=["metric", "MC", "verdict", "sentence"])


@contextmanager
def _warnings_summarised() -> Iterator[None]:
    """Collect the warnings of the perturbed problems (constant or all-zero maps of a disrupted model, NaN values: what
    disruptive perturbations are for) into one warning, instead of one per perturbation and explainer."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    if caught:
        warnings.warn(
            f"on the perturbed problems the explainers and metrics gave {len(caught)} warning"
            f"{'s' if len(caught) > 1 else ''} (first: "
            f"{caught[0].message}); a value left NaN takes its image out of that comparison (the 'images' column of "
            "the scores counts the images compared)", UserWarning, stacklevel=3,
        )


@dataclass(frozen=True)
class _Problem:
    """The evaluation problem every perturbation re-poses: explainers, metrics and their settings."""

    metrics: dict
    explainers: dict
    output: str
    seed: int
    ties: str
    batch_size: int | None
    reduction: str
    metric_params: Mapping | None

    def explain(self, model, x, target, bar, stage: str) -> dict[str, torch.Tensor]:
        """``{explainer: attributions (N, C, H, W)}`` of ``model`` for ``x``."""
        explained = {}
        for label, explainer in self.explainers.items():
            bar.set_postfix_str(f"{stage}: explain {label}")
            explained[label] = explainer(model, x, target, self.output)
        return explained

    def score(self, model, x, target, attributions, explained_x, masks, bar, stage: str
              ) -> dict[str, np.ndarray]:
        """``{metric: values (L, B)}`` of every explainer's ``attributions`` (of the images ``explained_x``) scored on
        ``model`` and ``x``."""
        work = SharedWork()
        values = {name: [] for name in self.metrics}
        for label, explainer in self.explainers.items():
            bar.set_postfix_str(f"{stage}: score {label}")
            attribution = attributions[label]
            inputs = MetricInputs(
                model, x, target, self.output, self.seed, self.ties, self.batch_size, self.reduction,
                maps=reduce_attributions(attribution, self.reduction, inputs=explained_x.to(attribution.device)),
                attributions=attribution, explainer=explainer, masks=masks, work=work,
            )
            for metric, value in metric_values(self.metrics.values(), inputs, self.metric_params):
                values[metric.name].append(value.detach().cpu().double().numpy())
            bar.update()
        return {name: np.stack(rows) for name, rows in values.items()}


@dataclass(frozen=True)
class _TestRun:
    """One test's results: ``values[kind][metric]`` ``(K, L, N)`` and ``predictions[kind]`` ``(K, N)``."""

    values: dict
    predictions: dict


def _input_test(problem, model, x, target, attributions, masks, k, noise, bar) -> _TestRun:
    """IPT: the clean explanations scored on ``k`` noisy copies of ``x`` per kind, all copies in one batch."""
    copies = _noisy_inputs(x, k, noise, problem.seed)  # (k, 2, N, C, H, W)
    n = len(x)
    flat = copies.reshape(-1, *x.shape[1:])
    repeat = 2 * k
    scored = problem.score(
        model, flat, target.repeat(repeat), {label: a.repeat(repeat, 1, 1, 1) for label, a in attributions.items()},
        x.repeat(repeat, 1, 1, 1), None if masks is None else masks.repeat(repeat, 1, 1), bar, "IPT",
    )
    predicted = _predictions(model, flat).reshape(k, 2, n)
    values = {kind: {name: value.reshape(len(attributions), k, 2, n)[:, :, j].transpose(1, 0, 2)
                     for name, value in scored.items()} for j, kind in enumerate(KINDS)}
    return _TestRun(values, {kind: predicted[:, j] for j, kind in enumerate(KINDS)})


def _noisy_inputs(x: torch.Tensor, k: int, noise: tuple[float, float], seed: int) -> torch.Tensor:
    """``(k, 2, N, C, H, W)``: ``clip(x + delta, 0, 1)``, ``delta ~ U(-alpha, alpha)`` with ``alpha`` the minor and the
    disruptive ``noise``; image ``i``'s draws come from ``seed`` and its bytes."""
    draws = torch.stack([
        torch.rand((k, 2, *image.shape), generator=torch.Generator().manual_seed(image_seed(seed, image)),
                    dtype=torch.float64)
        for image in x.cpu()
    ], dim=2)
    alpha = torch.tensor(noise, dtype=torch.float64).reshape(1, 2, 1, 1, 1, 1)
    noisy = x.cpu().double() + (2 * draws - 1) * alpha
    return noisy.clamp(0, 1).to(x.dtype).to(x.device)


def _model_test(problem, model, x, target, masks, k, noise, bar) -> _TestRun:
    """MPT: for each of ``k`` perturbations and each kind, a copy of ``model`` with multiplicative weight noise
    explains ``x`` again and the metrics score the new explanations on it."""
    generator = torch.Generator().manual_seed(problem.seed)
    values = {kind: {name: [] for name in problem.metrics} for kind in KINDS}
    predicted = {kind: [] for kind in KINDS}
    for index in range(k):
        for kind, sigma in zip(KINDS, noise):
            perturbed = _perturbed_model(model, sigma, generator)
            stage = f"MPT {kind} {index + 1}/{k}"
            attributions = problem.explain(perturbed, x, target, bar, stage)
            for name, value in problem.score(perturbed, x, target, attributions, x, masks, bar, stage).items():
                values[kind][name].append(value)
            predicted[kind].append(_predictions(perturbed, x))
    return _TestRun({kind: {name: np.stack(rows) for name, rows in by_metric.items()}
                     for kind, by_metric in values.items()},
                    {kind: np.stack(rows) for kind, rows in predicted.items()})


def _perturbed_model(model: torch.nn.Module, sigma: float, generator: torch.Generator) -> torch.nn.Module:
    """A copy of ``model`` whose every floating-point parameter entry is multiplied by ``N(1, sigma^2)`` noise drawn
    on the CPU from ``generator`` (MetaQuantus's multiplicative ``sample`` of the model)."""
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        for parameter in perturbed.parameters():
            if parameter.is_floating_point():
                noise = 1 + sigma * torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.mul_(noise.to(parameter.device, parameter.dtype))
    return perturbed


def _predictions(model, x) -> np.ndarray:
    return batched_logits(model, x, device=model_device(model)).argmax(dim=1).cpu().numpy()


def _values_table(runs: dict, clean: dict, prediction, samples, labels) -> pd.DataFrame:
    frames = []
    for test, run in runs.items():
        for kind in KINDS:
            predicted = run.predictions[kind]  # (K, N)
            k = len(predicted)
            for name, value in run.values[kind].items():  # (K, L, N)
                shape = value.shape
                frames.append(pd.DataFrame({
                    "metric": name,
                    "method": np.broadcast_to(np.asarray(labels, dtype=object)[None, :, None], shape).ravel(),
                    "test": test, "kind": kind,
                    "perturbation": np.broadcast_to(np.arange(k)[:, None, None], shape).ravel(),
                    "sample": np.broadcast_to(samples[None, None, :], shape).ravel(),
                    "prediction": np.broadcast_to(prediction[None, None, :], shape).ravel(),
                    "perturbed_prediction": np.broadcast_to(predicted[:, None, :], shape).ravel(),
                    "clean": np.broadcast_to(clean[name][None], shape).ravel(),
                    "value": value.ravel(),
                }))
    return pd.concat(frames, ignore_index=True)[list(VALUE_COLUMNS)]


def _scores_table(runs: dict, clean: dict, prediction, chosen: dict, labels) -> pd.DataFrame:
    rows = []
    for name, metric in chosen.items():
        for test, run in runs.items():
            for kind, criterion_kind in zip(KINDS, ("NR", "AR")):
                perturbed = run.values[kind][name]
                changed = run.predictions[kind] != prediction[None, :]
                subset = changed if criterion_kind == "AR" else ~changed
                iac, iac_images = intra_consistency(clean[name], perturbed, subset, criterion_kind == "AR")
                iec, iec_images = inter_consistency(clean[name], perturbed, subset, metric.higher_is_better,
                                                    criterion_kind == "AR")
                for index in range(len(perturbed)):
                    rows.extend(
                        (name, test, f"IAC_{criterion_kind}", label, index, iac_images[index, position],
                         iac[index, position])
                        for position, label in enumerate(labels)
                    )
                    rows.append((name, test, f"IEC_{criterion_kind}", "", index, iec_images[index], iec[index]))
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS))


def intra_consistency(clean: np.ndarray, perturbed: np.ndarray, subset: np.ndarray, disruptive: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """IAC ``(K, L)`` and the images compared ``(K, L)``: per perturbation and explainer, the p-value of Wilcoxon's
    signed-rank test (two-sided, zero differences split between the ranks, ``wilcoxon_p``) of the clean values
    ``clean`` ``(L, N)`` against the perturbed ones ``perturbed`` ``(K, L, N)`` over the images of ``subset``
    ``(K, N)`` where both are finite; ``1 - p`` if ``disruptive``. NaN where no image is left."""
    valid = subset[:, None, :] & np.isfinite(clean)[None] & np.isfinite(perturbed)
    differences = perturbed - clean[None]
    p = np.array([[wilcoxon_p(differences[k, l][valid[k, l]]) for l in range(valid.shape[1])]
                  for k in range(valid.shape[0])])
    return (1 - p if disruptive else p), valid.sum(axis=-1)


def wilcoxon_p(differences: np.ndarray) -> float:
    """The two-sided p-value of Wilcoxon's signed-rank test that ``differences`` are centred on 0, zero differences
    split between the positive and negative ranks (``zero_method="zsplit"``, as MetaQuantus): exact for up to 50
    differences without zeros or tied magnitudes, else the normal approximation (the choice scipy's ``"auto"`` made
    before it turned to permutation tests, fixed here so that the p-value depends neither on the scipy version nor on
    random resampling); 1 when every difference is 0, NaN for none."""
    if len(differences) == 0:
        return float("nan")
    if not differences.any():
        return 1.0
    magnitudes = np.abs(differences)
    exact = len(differences) <= 50 and magnitudes.all() and len(np.unique(magnitudes)) == len(magnitudes)
    return float(stats.wilcoxon(differences, zero_method="zsplit", alternative="two-sided",
                                method="exact" if exact else "asymptotic").pvalue)


def inter_consistency(clean: np.ndarray, perturbed: np.ndarray, subset: np.ndarray, higher_is_better: bool,
                      disruptive: bool) -> tuple[np.ndarray, np.ndarray]:
    """IEC ``(K,)`` and the images compared ``(K,)`` from the clean values ``(L, N)`` and the perturbed ones
    ``(K, L, N)`` over the images of ``subset`` ``(K, N)``: if ``disruptive``, the share of (explainer, image) pairs,
    both values finite, whose perturbed value is worse; otherwise the share of ranking places, over the images with
    every value finite, that hold the same explainer before and after (explainers sorted by value, ties by their
    order). NaN where no image is left."""
    finite = np.isfinite(clean)[None] & np.isfinite(perturbed)  # (K, L, N)
    if disruptive:
        valid = subset[:, None, :] & finite
        worse = clean[None] > perturbed if higher_is_better else clean[None] < perturbed
        hits, total = (worse & valid).sum(axis=(1, 2)), valid.sum(axis=(1, 2))
        images = valid.any(axis=1).sum(axis=1)
    else:
        compared = subset & finite.all(axis=1)  # (K, N)
        same = np.argsort(clean, axis=0, kind="stable")[None] == np.argsort(perturbed, axis=1, kind="stable")
        hits, total = (same & compared[:, None, :]).sum(axis=(1, 2)), compared.sum(axis=1) * clean.shape[0]
        images = compared.sum(axis=1)
    return np.where(total > 0, hits / np.maximum(total, 1), np.nan), images


def _check_levels(levels, name: str) -> tuple[float, float]:
    """``(minor, disruptive)`` noise levels: two positive numbers, the minor one the smaller."""
    try:
        minor, disruptive = (float(level) for level in levels)
    except (TypeError, ValueError):
        raise XaitrustError(f"{name} must be two numbers (minor, disruptive); got {levels!r}") from None
    if not 0 < minor < disruptive or not np.isfinite(disruptive):
        raise XaitrustError(f"{name} must be two finite positive numbers, the minor one smaller (minor, disruptive); "
                            f"got {levels!r}")
    return minor, disruptive
