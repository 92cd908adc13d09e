"""Per-sample scores of one method's maps on one model: the rows of the benchmark scorecard and of the
Calibrate-to-Interpret protocol. Every score is a metric of the registry (``xaitrust.evaluation``), with its
parameters from the protocol config; each function returns tidy rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..evaluation import MetricInputs, get_metric, metric_values
from ..evaluation.builtin import GAMES, game_curves
from ..explainers import get_explainer
from ..explainers.reduce import reduce_attributions
from ..metrics.curves import PerturbationCurves
from ..metrics.faithfulness import random_superpixel_deletion
from ..metrics.fidelity import FPA_FRACTIONS
from .common import explain_cached, predictions
from .results import tidy_rows
from .run_folder import RunFolder

#: The scorecard's metrics (registry names), in the order of its columns.
SCORECARD_METRICS = ("deletion_area", "insertion_area", "better_than_random", "mif_lif_area", "mu_fidelity",
                     "otsu_tv", "local_lipschitz", "randomisation_similarity", "ssim_to_uncalibrated")
#: Those computed on every explained image of every method (``faithfulness_rows``).
FAITHFULNESS_METRICS = SCORECARD_METRICS[:6]
#: Metric names used in tables and reports, with whether higher is better (``Metric.higher_is_better``).
HIGHER_IS_BETTER = {name: get_metric(name).higher_is_better for name in SCORECARD_METRICS}


#: The ``method`` label of rows that do not depend on the explanation method.
ALL_METHODS = "(all methods)"
#: The ``method`` of the random superpixel baseline's deletion rows (Calibrate to Interpret 4.4: "We compute the
#: deletion area on the random baseline, uncalibrated models and calibrated ones").
RANDOM_SUPERPIXELS = "random-superpixels"
#: The rows of random controls, which findings never rank among the methods.
CONTROLS = ("random", RANDOM_SUPERPIXELS)


@dataclass(frozen=True)
class ScoringSettings:
    """The protocol config's keys that explaining and scoring read, typed and read once (``from_config``): which
    ``explainers`` (with ``explainer_params``, ``explainer_batch_size`` images per call) explain which score
    (``output``) of which class (``explained_class``), how attributions become maps (``reduction``, per method
    ``method_reductions``), and the metrics' settings: ``seed``, ``ties``, the deletion game (``replacement``,
    ``deletion_steps``), BTR's random superpixel orders (``n_superpixels``, ``n_orders``), muFidelity's
    ``mu_fidelity_subsets``, local Lipschitz (``lipschitz_images``, ``lipschitz_neighbours``, ``lipschitz_radius``,
    ``lipschitz_explainers``), the ``metrics`` computed with their ``metric_params``, and ``n_images``."""

    explainers: tuple[str, ...]
    explainer_params: Mapping[str, Mapping]
    explainer_batch_size: int
    output: str
    explained_class: str
    reduction: str
    method_reductions: Mapping[str, str]
    seed: int
    ties: str
    replacement: str
    deletion_steps: int
    n_superpixels: int
    n_orders: int
    mu_fidelity_subsets: int
    lipschitz_images: int
    lipschitz_neighbours: int
    lipschitz_radius: float
    lipschitz_explainers: tuple[str, ...]
    metrics: tuple[str, ...]
    metric_params: Mapping[str, Mapping]
    n_images: int

    @classmethod
    def from_config(cls, config: Mapping) -> ScoringSettings:
        """The settings of a resolved (validated) protocol config; lists become tuples, tables read-only."""
        values = {}
        for item in fields(cls):
            value = config[item.name]
            values[item.name] = (tuple(value) if isinstance(value, list)
                                 else MappingProxyType(dict(value)) if isinstance(value, dict) else value)
        return cls(**values)

    def reduction_of(self, method: str) -> str:
        """The reduction of ``method``'s attributions: its ``method_reductions`` entry, else ``reduction``."""
        return self.method_reductions.get(method, self.reduction)


def faithfulness_params(settings: ScoringSettings, baseline: PerturbationCurves | None, removal: tuple[float, ...],
                        dtype) -> dict:
    """The registry parameters of ``FAITHFULNESS_METRICS`` from the protocol config: ``deletion_steps`` and
    ``replacement`` (deletion, insertion, BTR), ``n_superpixels`` and ``n_orders`` (BTR, against the random
    ``baseline``, or with None against the random orders BTR draws on the images it is given), ``mu_fidelity_subsets``,
    and the MIF/LIF ``removal`` value per channel. The score (``output``), ``seed`` and ``ties`` are settings of
    ``metric_inputs``."""
    game = {"steps": settings.deletion_steps, "replacement": settings.replacement}
    return {
        "deletion_area": game,
        "insertion_area": game,
        "better_than_random": {**game, "n_superpixels": settings.n_superpixels, "n_orders": settings.n_orders,
                               "baseline": baseline},
        "mif_lif_area": {"replacement": torch.tensor(removal, dtype=dtype).reshape(1, -1, 1, 1)},
        "mu_fidelity": {"n_subsets": settings.mu_fidelity_subsets},
    }


def metric_inputs(model, x, target, settings: ScoringSettings, **explanation) -> MetricInputs:
    """What the metrics see: ``model``, images, targets, the config's ``output``, ``seed`` and ``ties``, and the
    ``explanation`` (``maps``, ``attributions``, ``explainer``, ``reduction``, ``reference_maps``)."""
    return MetricInputs(model, x, target, settings.output, settings.seed, settings.ties, **explanation)


def metric_rows(names, inputs: MetricInputs, params: dict, method: str, model_name: str) -> pd.DataFrame:
    """Tidy rows of the metrics ``names`` (registered or ``path/to/file.py:Name``) on ``inputs``, in the order of
    ``names``, each under its metric name; ``params`` are keyed by metric name."""
    metrics = [get_metric(name) for name in names]
    values = {metric.name: value for metric, value in metric_values(metrics, inputs, params)}
    return pd.concat([tidy_rows(values[metric.name], metric=metric.name, method=method, model=model_name)
                      for metric in metrics])


def faithfulness_rows(
    model, x, target, attributions, maps, settings: ScoringSettings, baseline: PerturbationCurves, method: str,
    model_name: str, removal: tuple[float, ...],
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Deletion and insertion areas and BTR against ``baseline`` (blur replacement, C2I), the MIF/LIF area (removed
    pixels set to the per-channel ``removal`` values, logits, x in percent, FPA; NaN for an image whose clean logit
    is <= 0), muFidelity (MeGe appendix C) and Otsu-TV (C2I) of ``maps`` ``(N, H, W)``; also returns the deletion
    and insertion curves ``(N, S)`` and their ``fractions`` ``(S,)`` for figures: those the areas measured
    (``xaitrust.evaluation.builtin.game_curves``, through the same ``inputs.work``, so measured once)."""
    params = faithfulness_params(settings, baseline, removal, x.dtype)
    inputs = metric_inputs(model, x, target, settings, maps=maps, attributions=attributions)
    names = [name for name in FAITHFULNESS_METRICS if name in settings.metrics]
    table = metric_rows(names, inputs, params, method, model_name) if names else pd.DataFrame()
    curves = {game: game_curves(inputs, game, **params["deletion_area"]) for game in GAMES}
    return table, {"fractions": curves["deletion"].fractions, **{game: c.curves for game, c in curves.items()}}


def other_metric_rows(model, x, target, attributions, maps, masks, method: str, params: dict,
                      settings: ScoringSettings, model_name: str) -> pd.DataFrame:
    """Rows of the config's ``metrics`` beyond the scorecard's own (registered or ``path/to/file.py:Name``), with
    their ``metric_params``; empty when there are none."""
    names = [name for name in settings.metrics if name not in SCORECARD_METRICS]
    if not names:
        return pd.DataFrame()
    inputs = metric_inputs(model, x, target, settings, maps=maps, attributions=attributions, masks=masks,
                           explainer=get_explainer(method, **params), reduction=settings.reduction_of(method))
    return metric_rows(names, inputs, settings.metric_params, method, model_name)


def lipschitz_rows(model, x, target, method: str, params: dict, settings: ScoringSettings, model_name: str
                   ) -> pd.DataFrame:
    """Local Lipschitz estimate (C2I section 4.6) of ``method`` (built with ``params``) on the first
    ``lipschitz_images`` images, ``lipschitz_neighbours`` neighbours within ``lipschitz_radius``, comparing min-max
    normalised maps after the method's reduction."""
    n = settings.lipschitz_images
    inputs = metric_inputs(model, x[:n], target[:n], settings, explainer=get_explainer(method, **params),
                           reduction=settings.reduction_of(method))
    neighbours = {"n_neighbours": settings.lipschitz_neighbours, "radius": settings.lipschitz_radius}
    return metric_rows(("local_lipschitz",), inputs, {"local_lipschitz": neighbours}, method, model_name)


def randomisation_rows(model, x, target, maps, method: str, params: dict, settings: ScoringSettings, model_name: str
                       ) -> pd.DataFrame:
    """Full-model randomisation (Adebayo et al. 2018): Spearman similarity between ``maps`` and the maps of ``method``
    (built with ``params``, same reduction) on ``model``'s fully randomised copy, re-initialised from ``seed``."""
    inputs = metric_inputs(model, x, target, settings, maps=maps, explainer=get_explainer(method, **params),
                           reduction=settings.reduction_of(method))
    return metric_rows(("randomisation_similarity",), inputs, {}, method, model_name)


def ssim_rows(model, x, target, maps, reference: torch.Tensor, settings: ScoringSettings, method: str, model_name: str
              ) -> pd.DataFrame:
    """SSIM between a calibrated model's maps and the uncalibrated model's maps of the same images (C2I 4.3)."""
    inputs = metric_inputs(model, x, target, settings, maps=maps, reference_maps=reference)
    return metric_rows(("ssim_to_uncalibrated",), inputs, {}, method, model_name)


def scoring_passes(settings: ScoringSettings, n_models: int) -> int:
    """Forward passes the scorecard's metrics take on ``n_models`` models (explanations not included): per image and
    model, the random superpixel baseline's ``n_orders`` deletion curves; per image, model and method, the deletion
    and insertion curves (``deletion_steps + 1`` points each), the MIF and LIF curves (``FPA_FRACTIONS`` each) and
    ``mu_fidelity_subsets`` subsets."""
    curve = settings.deletion_steps + 1
    per_method = 2 * curve + 2 * len(FPA_FRACTIONS) + settings.mu_fidelity_subsets
    per_model = settings.n_orders * curve + len(settings.explainers) * per_method
    return settings.n_images * n_models * per_model


@dataclass
class ScoredMethods:
    """What ``score_methods`` returns: tidy per-sample ``results``; per model, the random baseline's deletion curves
    (``random_curves[label] = (fractions, curves)``), each method's deletion and insertion curves
    (``curves[model][method] = {"fractions": (S,), "deletion": (N, S), "insertion": (N, S)}``) and its maps
    (``maps[model][method]``, ``(N, H, W)``)."""

    results: pd.DataFrame
    random_curves: dict
    curves: dict
    maps: dict


def explained_classes(models: dict, x: torch.Tensor, reference_target: torch.Tensor, settings: ScoringSettings
                      ) -> dict:
    """The class each model explains: its own prediction (``settings.explained_class = "own"``, Calibrate to
    Interpret: a calibrator such as Dirichlet can change the predicted class, and the paper explains each model's own
    prediction) or ``reference_target`` for every model (``"reference"``: the first model's prediction)."""
    if settings.explained_class == "reference":
        return {name: reference_target for name in models}
    return {name: predictions(model, x).argmax(dim=1) for name, model in models.items()}


def score_methods(
    run: RunFolder, models: dict, x: torch.Tensor, target: torch.Tensor, settings: ScoringSettings,
    removal: tuple[float, ...], masks: torch.Tensor | None = None,
) -> ScoredMethods:
    """Explain ``x`` with every method of ``settings.explainers`` on every model of ``models`` (the first one is the
    reference, "uncalibrated") and score the maps; attributions and score tables are cached in the run folder.
    ``target`` is the reference model's predicted class; each model explains the class chosen by
    ``explained_classes``, and the share of images whose class differs from the reference's is the metric
    ``explained_class_changed``; the random superpixel baseline's deletion area is the method
    ``RANDOM_SUPERPIXELS``. ``removal`` is the per-channel value of a pixel removed by the MIF/LIF curves
    (``xaitrust.protocols.common.removal_fill``). Only the config's ``metrics`` are computed; ``masks`` (ground truth
    of ``x``) serve the localisation metrics among them. An image whose superpixels collapsed and fell back to a
    patch grid (``xaitrust.perturb.segments``) has ``segmentation_fallback`` 1: for the random superpixel baseline
    (method ``RANDOM_SUPERPIXELS``) and for each explainer with its own segmentation (KernelSHAP, LIME). The sanity
    check ``randomisation_similarity`` explains the reference model's randomised copy once per method, on the
    reference only (a calibrated model wraps the same network)."""
    reference = next(iter(models))
    tables, random_curves, all_curves, all_maps = [], {}, {}, {}
    targets = explained_classes(models, x, target, settings)
    for model_name, model in models.items():
        target = targets[model_name]
        if model_name != reference:
            tables.append(tidy_rows((target != targets[reference]).float(), metric="explained_class_changed",
                                    method=ALL_METHODS, model=model_name))
        baseline = random_superpixel_deletion(
            model, x, target, settings.n_superpixels, settings.n_orders, settings.seed,
            steps=settings.deletion_steps, replacement=settings.replacement, output=settings.output,
        )
        random_curves[f"random superpixels ({model_name})"] = (baseline.fractions, baseline.curves)
        tables.append(tidy_rows(baseline.area, metric="deletion_area", method=RANDOM_SUPERPIXELS, model=model_name))
        tables.append(tidy_rows(baseline.fallback.float(), metric="segmentation_fallback", method=RANDOM_SUPERPIXELS,
                                model=model_name))
        for method in tqdm(settings.explainers, desc=f"score {model_name}", unit="method"):
            params = settings.explainer_params.get(method, {})
            key = f"{method}/{model_name}"
            attributions = explain_cached(
                run, key, method, params, model, x, target, settings.output, settings.explainer_batch_size
            )
            maps = reduce_attributions(attributions, settings.reduction_of(method), inputs=x)
            segmented = getattr(get_explainer(method, **params), "segmentation", None)
            if segmented is not None:  # KernelSHAP, LIME: which images' superpixels fell back to a patch grid
                tables.append(tidy_rows(segmented(x).fallback.float(), metric="segmentation_fallback", method=method,
                                        model=model_name))
            all_maps.setdefault(model_name, {})[method] = maps

            def compute():
                rows, curves = faithfulness_rows(
                    model, x, target, attributions, maps, settings, baseline, method, model_name, removal
                )
                run.cached_tensors(f"curves/{key}", lambda: curves)  # saved before the table that marks it finished
                parts = [rows, other_metric_rows(model, x, target, attributions, maps, masks, method, params, settings,
                                                 model_name)]
                if "local_lipschitz" in settings.metrics and method in settings.lipschitz_explainers:
                    parts.append(lipschitz_rows(model, x, target, method, params, settings, model_name))
                if "randomisation_similarity" in settings.metrics and model_name == reference:
                    parts.append(randomisation_rows(model, x, target, maps, method, params, settings, model_name))
                if "ssim_to_uncalibrated" in settings.metrics and model_name != reference:
                    parts.append(ssim_rows(model, x, target, maps, all_maps[reference][method], settings, method,
                                           model_name))
                return pd.concat(parts)

            tables.append(run.cached_table(f"scores/{key}", compute))
            curves = run.cached_tensors(f"curves/{key}", lambda: faithfulness_rows(  # measured again if damaged
                model, x, target, attributions, maps, settings, baseline, method, model_name, removal)[1])
            all_curves.setdefault(model_name, {})[method] = curves
    return ScoredMethods(pd.concat(tables, ignore_index=True), random_curves, all_curves, all_maps)
