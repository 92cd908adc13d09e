"""The benchmark scorecard, xaitrust's main job: one model, every explainer, uncalibrated vs calibrated.

Steps: train (or reuse) the model; fit a calibrator (temperature scaling by default) on a calibration split carved
from the test data; explain the same held-out images with every method on both models; score each method's maps for
faithfulness (deletion area and BTR with blurred replacement, Calibrate to Interpret; MIF/LIF area, FPA; muFidelity,
MeGe/ReCo appendix C), coherence (Otsu-TV), stability (local Lipschitz) and the calibration interplay (SSIM between
the two models' maps), and run the sanity check (full-model randomisation, on the uncalibrated model); meta-evaluate
the faithfulness metrics on the uncalibrated model (``meta_evaluation_scores``: how far to believe each one there,
after MetaQuantus); then give the verdict, which methods to trust (``xaitrust.report.verdict``), and the report
(``xaitrust.report.benchmark``).

Equal map values (the flat regions of Grad-CAM, Meaningful Perturbation's saturated mask) are removed in a random
order drawn from ``seed`` (``ties = "random"``, default) in the deletion, insertion and MIF/LIF curves: row by row
(``"stable"``) removes a tied block as one contiguous region, which lowers the blurred score faster and flattered MP's
deletion area (0.386 against 0.395-0.397 with random ties on a 2-epoch CNN).

Keys of the report's extra parts:

- ``calibration_bootstrap``: resamples of the held-out images behind the bootstrap intervals of the calibration
  errors (``xaitrust.report.calibration_glance``; positive; 1000, 200 in the smoke profile, which must stay fast).
- ``meta_metrics``: the metrics meta-evaluated (registered or ``path/to/file.py:Name``; none that compares maps with
  another model's): the verdict's faithfulness metrics (``xaitrust.report.verdict.FAITHFULNESS``), in the smoke
  profile the deletion and insertion areas; an empty list leaves the meta-evaluation out.
- ``meta_explainers``: the explainers whose maps the metrics score there, at least two (their ranking is compared),
  built with ``explainer_params``; by default saliency, gradient x input and Grad-CAM.
- ``meta_perturbations``: ``K``, the minor and the disruptive perturbations of each test, at least 2 (MC's interval
  spreads over them); 5, 3 in the quick profile, 2 in the smoke profile.
- ``meta_images``: the explained images the meta-evaluation takes (a stratified seeded choice among them; at most
  ``n_images``): 64, 16 in the quick profile, 6 in the smoke profile. Each perturbation scores every image again with
  every metric, so the meta-evaluation costs about ``(1 + 4 K) x meta_images`` scorings per explainer.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..data import ImageDataset, stratified_sample
from ..errors import XaitrustError
from ..evaluation.meta import DEFAULT_META_EXPLAINERS, DEFAULT_PERTURBATIONS, meta_evaluate
from ..explainers import available_explainers
from ..models.loading import ModelSource
from ..perturb.orders import TIES
from ..report.benchmark import BenchmarkResults, mean_table, meta_evaluation_table, write_benchmark_report
from ..report.verdict import FAITHFULNESS
from .common import (
    RECIPE_DEFAULTS,
    TRAINED_MODEL_DEFAULTS,
    calibrated_models,
    check_explainer_lists,
    check_metric_names,
    check_model_source,
    dataset_label,
    image_samples,
    images_to_explain,
    listed_metrics,
    model_description,
    removal_fill,
    removal_value,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .run_folder import RunFolder
from .scoring import (
    FAITHFULNESS_METRICS,
    SCORECARD_METRICS,
    ScoringSettings,
    faithfulness_params,
    score_methods,
)

ALL_EXPLAINERS = [info.name for info in available_explainers()]

#: Integrated Gradients as Calibrate to Interpret uses it: eq. 4 (right Riemann sum), black and white references,
#: each reference's map taken in magnitude before the two are averaged
#: (see ``xaitrust.explainers.integrated_gradients``).
C2I_IG = {"baseline": "black+white", "rule": "riemann-right", "combine": "mean-abs"}

_COMMON = {
    **RECIPE_DEFAULTS,
    **TRAINED_MODEL_DEFAULTS,
    "calibrator": "temperature",
    "calibration_size": 2000,
    "explainers": ALL_EXPLAINERS,
    "output": "probability",
    "explained_class": "own",
    "reduction": "abs-sum",
    "method_reductions": {},
    "replacement": "blur",
    "ties": "random",
    "removal_value": "mean",
    "deletion_steps": 100,
    "n_superpixels": 100,
    "n_orders": 5,
    "mu_fidelity_subsets": 200,
    "n_images": 256,
    "lipschitz_images": 32,
    "lipschitz_neighbours": 40,
    "lipschitz_radius": 0.05,
    "lipschitz_explainers": ALL_EXPLAINERS,
    "explainer_batch_size": 64,
    "explainer_params": {"integrated-gradients": {"steps": 30, **C2I_IG}},
    "metrics": list(SCORECARD_METRICS),
    "metric_params": {},
    "calibration_bootstrap": 1000,
    "meta_metrics": list(FAITHFULNESS),
    "meta_explainers": list(DEFAULT_META_EXPLAINERS),
    "meta_perturbations": 5,
    "meta_images": 64,
}

_CHEAP_LIPSCHITZ = ["saliency", "sensitivity", "gradient-input", "integrated-gradients", "smoothgrad", "gradcam",
                    "gradcam++", "guided-backprop", "deeplift", "lrp", "random"]

def check_scoring(config: dict) -> None:
    """Checks across the keys the scoring protocols share: the removal value, the model keys
    (``ModelSource.check``), the explainers (registered or ``path/to/file.py:Name``, with valid parameters) and the
    metrics (registered or ``path/to/file.py:Name``)."""
    removal_value(config)
    check_model_source(config)
    check_explainer_lists(config)
    check_metric_names(config)


def check_meta_explainers(config: dict) -> None:
    """With ``meta_metrics`` to meta-evaluate, ``meta_explainers`` names at least two explainers, each once: the
    meta-evaluation compares how each metric ranks them."""
    names = config["meta_explainers"]
    if config["meta_metrics"] and (len(names) < 2 or len(set(names)) < len(names)):
        raise XaitrustError(
            "config key 'meta_explainers' must name at least two explainers that can explain the model, each once "
            f"(the meta-evaluation compares how each metric ranks them; e.g. among {', '.join(config['explainers'])}); "
            f"got {names!r}. Or set meta_metrics = [] to leave the meta-evaluation out")


def check_meta_evaluation(config: dict) -> None:
    """The meta-evaluation keys (``meta_evaluation_scores``): ``meta_metrics`` (empty: no meta-evaluation) names
    metrics each once (``listed_metrics``), none that compares the maps with another model's (a perturbed problem has
    no other model), each with the parameters it needs; ``meta_explainers`` as ``check_meta_explainers`` asks."""
    metrics = listed_metrics(config, "meta_metrics")
    comparing = [name for name, metric in metrics.items() if "reference_maps" in metric.needs]
    if comparing:
        raise XaitrustError(f"config key 'meta_metrics' lists {', '.join(comparing)}, which compare the maps with "
                            "those of another model; a perturbed problem has no other model: drop them")
    for name, metric in metrics.items():  # the scorecard's faithfulness metrics take their parameters from its keys
        if name not in FAITHFULNESS_METRICS:
            metric.check_params(config["metric_params"].get(name, {}))
    check_meta_explainers(config)


def validate(config: dict) -> None:
    """The checks of ``check_scoring`` and ``check_meta_evaluation``."""
    check_scoring(config)
    check_meta_evaluation(config)


SPEC = ProtocolSpec(
    name="benchmark",
    description="Which explanations of one model to trust: every explainer's sanity, faithfulness against random maps, "
    "stability, coherence and calibration interplay, verdict first.",
    defaults={
        "paper": dict(_COMMON, n_images=256),
        "quick": dict(
            _COMMON, epochs=3, n_images=48, deletion_steps=50, n_superpixels=50, n_orders=3, mu_fidelity_subsets=64,
            lipschitz_images=12, lipschitz_neighbours=10, lipschitz_explainers=_CHEAP_LIPSCHITZ, meta_images=16,
            meta_perturbations=DEFAULT_PERTURBATIONS,
            explainer_params={
                "integrated-gradients": {"steps": 30, **C2I_IG},
                "smoothgrad": {"samples": 30}, "smoothgrad-squared": {"samples": 30}, "vargrad": {"samples": 30},
                "rise": {"n_masks": 1000}, "meaningful-perturbation": {"steps": 150},
                "kernelshap": {"n_samples": 200}, "lime": {"n_samples": 200},
            },
        ),
        "smoke": dict(
            _COMMON, train_size=2000, test_size=600, epochs=1, calibration_size=300, n_images=6, deletion_steps=10,
            n_superpixels=20, n_orders=2, mu_fidelity_subsets=16, lipschitz_images=3, lipschitz_neighbours=3,
            lipschitz_explainers=["saliency", "integrated-gradients", "gradcam"], calibration_bootstrap=200,
            meta_metrics=["deletion_area", "insertion_area"], meta_perturbations=2, meta_images=6,
            explainer_params={
                "integrated-gradients": {"steps": 8, **C2I_IG},
                "smoothgrad": {"samples": 4}, "smoothgrad-squared": {"samples": 4}, "vargrad": {"samples": 4},
                "rise": {"n_masks": 100}, "meaningful-perturbation": {"steps": 10},
                "kernelshap": {"n_samples": 40}, "lime": {"n_samples": 40},
            },
        ),
    },
    choices={
        "calibrator": ("temperature", "dirichlet"),
        "output": ("logit", "probability", "log-probability"),
        "explained_class": ("own", "reference"),
        "reduction": ("abs-sum", "sum", "max-abs", "input-sum"),
        "replacement": ("zero", "mean", "blur", "uniform"),
        "ties": TIES,
    },
    validate=validate,
    mixed_types=("removal_value",),
    positive=("n_superpixels", "n_orders", "lipschitz_images", "lipschitz_neighbours", "lipschitz_radius",
              "calibration_bootstrap", "meta_images"),
    at_least={"meta_perturbations": 2},
)


def trainings(config: dict) -> int:
    """Models the run trains: none for a given trained model, else the one model."""
    return 0 if ModelSource.from_config(config).is_trained else 1


def meta_evaluation_images(held_out: ImageDataset, chosen: torch.Tensor, config: dict) -> torch.Tensor:
    """The indices into ``held_out`` of the images the meta-evaluation takes: a stratified seeded choice of
    ``meta_images`` of the explained images ``held_out.x[chosen]`` (all of them when fewer)."""
    size = min(config["meta_images"], len(chosen))
    return chosen[stratified_sample(held_out.y[chosen], size, seed=config["seed"])]


def meta_evaluation_scores(run: RunFolder, model: torch.nn.Module, held_out: ImageDataset, meta: torch.Tensor,
                           removal: tuple[float, ...]) -> pd.DataFrame:
    """The scores of the meta-evaluation (``xaitrust.evaluation.meta.meta_evaluate``, after MetaQuantus; Hedström et
    al., TMLR 2023) of the config's ``meta_metrics`` on ``model`` (the reference) and the images ``held_out.x[meta]``
    (``meta_evaluation_images``, with their dataset indices and ground-truth masks, if any): ``meta_perturbations``
    minor and as many disruptive perturbations of the inputs and of the model, the ``meta_explainers`` built with
    their ``explainer_params``, the run's ``output``, ``reduction`` (``method_reductions`` aside), ``ties`` and
    ``seed``. The scorecard's own metrics (``FAITHFULNESS_METRICS``) are measured as the scorecard measures them
    (``faithfulness_params`` with the MIF/LIF ``removal`` value; BTR against random superpixel orders drawn on each
    perturbed problem), the others with their ``metric_params``. Cached as ``cache/meta_evaluation/scores.csv``."""
    config = run.config
    x = held_out.x[meta]
    masks = None if held_out.masks is None else held_out.masks[meta]
    faithfulness = faithfulness_params(ScoringSettings.from_config(config), None, removal, x.dtype)
    metric_params = {name: faithfulness.get(name, {}) if name in FAITHFULNESS_METRICS
                     else config["metric_params"].get(name, {}) for name in listed_metrics(config, "meta_metrics")}
    explainers = {name: name for name in config["meta_explainers"]}  # labelled by their config names, as the tables
    explainer_params = {name: params for name, params in config["explainer_params"].items() if name in explainers}
    return run.cached_table("meta_evaluation/scores", lambda: meta_evaluate(
        model, x, explainers, config["meta_metrics"], config["meta_perturbations"], config["seed"],
        output=config["output"], masks=masks, reduction=config["reduction"], indices=held_out.index[meta].numpy(),
        metric_params=metric_params, explainer_params=explainer_params, ties=config["ties"]).scores)


def execute(run: RunFolder) -> Path:
    """Train or load the model, calibrate it, explain and score the held-out images, meta-evaluate the metrics, write
    the tables (``meta_evaluation.csv``: ``xaitrust.report.benchmark.meta_evaluation_table``), then the report and
    ``summary.json`` (``xaitrust.report.benchmark``)."""
    config = run.config
    prepared = train_and_split(run, config)
    check_meta_explainers(config)  # the preflight may have dropped some
    trained, model, held_out = prepared.trained, prepared.model, prepared.held_out
    calibrated = calibrated_models(run, prepared, {"calibrated": config["calibrator"]})

    chosen, x, target = images_to_explain(model, held_out, config)
    masks = None if held_out.masks is None else held_out.masks[chosen]
    removal = removal_fill(config, model.input_mean)
    scored = score_methods(run, calibrated.models, x, target, ScoringSettings.from_config(config), removal, masks)
    results = with_sample_columns(scored.results, calibrated.models, x, held_out, chosen)
    summary = write_results(run, results)
    run.write_table("scorecard", mean_table(summary, SCORECARD_METRICS).reset_index())
    meta_table, meta_images = None, 0
    if config["meta_metrics"]:
        meta = meta_evaluation_images(held_out, chosen, config)
        meta_table = meta_evaluation_table(meta_evaluation_scores(run, model, held_out, meta, removal))
        run.write_table("meta_evaluation", meta_table)
        meta_images = len(meta)
    description = (f"{len(x)} held-out {dataset_label(config)} images, {model_description(config, trained)}, "
                   f"explanations of the {config['output']} of the predicted class, maps reduced by "
                   f"{config['reduction']}")
    return write_benchmark_report(run.path, BenchmarkResults(
        config=config, results=results, summary=summary, calibrated=calibrated, scored=scored, x=x,
        samples=image_samples(model, x, held_out, chosen), class_names=list(held_out.classes),
        description=description, meta_evaluation=meta_table, meta_images=meta_images))
