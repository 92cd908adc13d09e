"""The benchmark scorecard, xaitrust's main job: one model, every explainer, uncalibrated vs calibrated.

Steps: train (or reuse) the model; fit a calibrator (temperature scaling by default) on a calibration split carved
from the test data; explain the same held-out images with every method on both models; score each method's maps for
faithfulness (deletion area and BTR with blurred replacement, Calibrate to Interpret; MIF/LIF area, FPA; muFidelity,
MeGe/ReCo appendix C), coherence (Otsu-TV), stability (local Lipschitz) and the calibration interplay (SSIM between
the two models' maps), and run the sanity check (full-model randomisation, on the uncalibrated model); then give
the verdict, which methods to trust (``xaitrust.report.verdict``), and the report (``xaitrust.report.benchmark``).

Equal map values (the flat regions of Grad-CAM, Meaningful Perturbation's saturated mask) are removed in a random
order drawn from ``seed`` (``ties = "random"``, default) in the deletion, insertion and MIF/LIF curves: row by row
(``"stable"``) removes a tied block as one contiguous region, which lowers the blurred score faster and flattered MP's
deletion area (0.386 against 0.395-0.397 with random ties on a 2-epoch CNN).
"""

from __future__ import annotations

from pathlib import Path

from ..explainers import available_explainers
from ..models.loading import ModelSource
from ..perturb.orders import TIES
from ..report.benchmark import mean_table, write_benchmark_report
from .common import (
    RECIPE_DEFAULTS,
    TRAINED_MODEL_DEFAULTS,
    calibrated_models,
    check_explainer_lists,
    check_metric_names,
    check_model_source,
    dataset_label,
    images_to_explain,
    model_description,
    removal_fill,
    removal_value,
    train_and_split,
    with_sample_columns,
    write_results,
)
from .config import ProtocolSpec
from .run_folder import RunFolder
from .scoring import SCORECARD_METRICS, score_methods

ALL_EXPLAINERS = [info.name for info in available_explainers()]

#: Integrated Gradients as Calibrate to Interpret uses it: eq. 4 (right Riemann sum), black and white references,
#: each reference's map taken in magnitude before the two are averaged (see ``xaitrust.explainers.integrated_gradients``).
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
}

_CHEAP_LIPSCHITZ = ["saliency", "sensitivity", "gradient-input", "integrated-gradients", "smoothgrad", "gradcam",
                    "gradcam++", "guided-backprop", "deeplift", "lrp", "random"]

def validate(config: dict) -> None:
    """Checks across keys: the removal value, the model keys (``ModelSource.check``), the explainers (registered or
    ``path/to/file.py:Name``, with valid parameters) and the metrics (registered or ``path/to/file.py:Name``)."""
    removal_value(config)
    check_model_source(config)
    check_explainer_lists(config)
    check_metric_names(config)


SPEC = ProtocolSpec(
    name="benchmark",
    description="Which explanations of one model to trust: every explainer's sanity, faithfulness against random maps, "
    "stability, coherence and calibration interplay, verdict first.",
    defaults={
        "paper": dict(_COMMON, n_images=256),
        "quick": dict(
            _COMMON, epochs=3, n_images=48, deletion_steps=50, n_superpixels=50, n_orders=3, mu_fidelity_subsets=64,
            lipschitz_images=12, lipschitz_neighbours=10, lipschitz_explainers=_CHEAP_LIPSCHITZ,
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
            lipschitz_explainers=["saliency", "integrated-gradients", "gradcam"],
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
    positive=("n_superpixels", "n_orders", "lipschitz_images", "lipschitz_neighbours", "lipschitz_radius"),
)


def trainings(config: dict) -> int:
    """Models the run trains: none for a given trained model, else the one model."""
    return 0 if ModelSource.from_config(config).is_trained else 1


def execute(run: RunFolder) -> Path:
    """Train or load the model, calibrate it, explain and score the held-out images, write the tables, then the
    report and ``summary.json`` (``xaitrust.report.benchmark``)."""
    config = run.config
    prepared = train_and_split(run, config)
    trained, model, held_out = prepared.trained, prepared.model, prepared.held_out
    _, models, calibration_results = calibrated_models(run, prepared, {"calibrated": config["calibrator"]})

    chosen, x, target = images_to_explain(model, held_out, config)
    masks = None if held_out.masks is None else held_out.masks[chosen]
    scored = score_methods(run, models, x, target, config, removal_fill(config, model.input_mean), masks)
    results = with_sample_columns(scored.results, models, x, held_out, chosen)
    summary = write_results(run, results)
    run.write_table("scorecard", mean_table(summary, SCORECARD_METRICS).reset_index())
    description = (f"{len(x)} held-out {dataset_label(config)} images, {model_description(config, trained)}, "
                   f"explanations of the {config['output']} of the predicted class, maps reduced by "
                   f"{config['reduction']}")
    return write_benchmark_report(run.path, config, results, summary, calibration_results, description, scored, x)
