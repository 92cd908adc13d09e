"""Per-sample scores of one method's maps on one model: the rows of the benchmark scorecard and of the
Calibrate-to-Interpret protocol. Each function only calls ``xaitrust.metrics`` and returns tidy rows."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..explainers import get_explainer
from ..explainers.reduce import reduce_attributions
from ..metrics import (
    area_between,
    better_than_random,
    insertion,
    local_lipschitz,
    map_ssim,
    mif_lif,
    mu_fidelity,
    otsu_tv,
)
from ..metrics.curves import PerturbationCurves
from ..metrics.faithfulness import random_superpixel_deletion
from .common import explain_cached, predictions
from .results import tidy_rows
from .run_folder import RunFolder

#: Metric names used in tables and reports, with whether higher is better.
HIGHER_IS_BETTER = {
    "deletion_area": False,
    "insertion_area": True,
    "better_than_random": True,
    "mif_lif_area": True,
    "mu_fidelity": True,
    "otsu_tv": False,
    "local_lipschitz": False,
    "ssim_to_uncalibrated": True,
}


#: The ``method`` label of rows that do not depend on the explanation method.
ALL_METHODS = "(all methods)"
#: The ``method`` of the random superpixel baseline's deletion rows (Calibrate to Interpret 4.4: "We compute the
#: deletion area on the random baseline, uncalibrated models and calibrated ones").
RANDOM_SUPERPIXELS = "random-superpixels"
#: The rows of random controls, which findings never rank among the methods.
CONTROLS = ("random", RANDOM_SUPERPIXELS)


def method_reduction(config: dict, method: str) -> str:
    """The reduction of ``method``'s attributions: ``config["method_reductions"][method]`` or ``config["reduction"]``."""
    return config["method_reductions"].get(method, config["reduction"])


def faithfulness_rows(
    model, x, target, attributions, maps, config: dict, baseline: PerturbationCurves, method: str, model_name: str,
    removal: tuple[float, ...],
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Deletion and insertion areas and BTR (blur replacement, C2I), the MIF/LIF area (removed pixels set to the
    per-channel ``removal`` values, logits, x in percent, FPA; NaN for an image whose clean logit is <= 0), muFidelity (MeGe appendix C) and Otsu-TV (C2I) of ``maps`` ``(N, H, W)``; also returns the
    deletion curves for figures."""
    btr = better_than_random(
        model, x, maps, target, config["n_superpixels"], config["n_orders"], config["seed"],
        steps=config["deletion_steps"], replacement=config["replacement"], output=config["output"], baseline=baseline,
        ties=config["ties"],
    )
    inserted = insertion(
        model, x, maps, target, config["deletion_steps"], config["replacement"], config["output"],
        ties=config["ties"], seed=config["seed"],
    )
    curves = mif_lif(model, x, maps, target, replacement=torch.tensor(removal, dtype=x.dtype).reshape(1, -1, 1, 1),
                     ties=config["ties"], seed=config["seed"])
    mif_lif_area = area_between(curves.mif, curves.lif).per_sample  # NaN where the clean logit is <= 0
    fidelity = mu_fidelity(
        model, x, attributions, target, n_subsets=config["mu_fidelity_subsets"], output=config["output"],
        seed=config["seed"],
    )
    labels = {"method": method, "model": model_name}
    table = pd.concat(
        [
            tidy_rows(btr.deletion.area, metric="deletion_area", **labels),
            tidy_rows(inserted.area, metric="insertion_area", **labels),
            tidy_rows(btr.better.float(), metric="better_than_random", **labels),
            tidy_rows(mif_lif_area, metric="mif_lif_area", **labels),
            tidy_rows(fidelity, metric="mu_fidelity", **labels),
            tidy_rows(otsu_tv(maps), metric="otsu_tv", **labels),
        ]
    )
    return table, {"deletion": btr.deletion.curves, "fractions": btr.deletion.fractions}


def lipschitz_rows(model, x, target, method: str, params: dict, config: dict, model_name: str) -> pd.DataFrame:
    """Local Lipschitz estimate (C2I section 4.6) of ``method`` on the first ``lipschitz_images`` images."""
    n = config["lipschitz_images"]
    values = local_lipschitz(
        get_explainer(method, **params), model, x[:n], target[:n],
        n_neighbours=config["lipschitz_neighbours"], radius=config["lipschitz_radius"], output=config["output"],
        reduction=method_reduction(config, method), normalize=True, seed=config["seed"],
    )
    return tidy_rows(values, metric="local_lipschitz", method=method, model=model_name)


def ssim_rows(maps: torch.Tensor, reference: torch.Tensor, method: str, model_name: str) -> pd.DataFrame:
    """SSIM between a calibrated model's maps and the uncalibrated model's maps of the same images (C2I 4.3)."""
    return tidy_rows(map_ssim(maps, reference), metric="ssim_to_uncalibrated", method=method, model=model_name)


@dataclass
class ScoredMethods:
    """What ``score_methods`` returns: tidy per-sample ``results``; per model, the random baseline's deletion curves
    (``random_curves[label] = (fractions, curves)``), each method's deletion curves, its maps of the first eight images
    (``examples[model][method]``) and all its maps (``maps[model][method]``)."""

    results: pd.DataFrame
    random_curves: dict
    deletion_curves: dict
    examples: dict
    maps: dict


def explained_classes(models: dict, x: torch.Tensor, reference_target: torch.Tensor, config: dict) -> dict:
    """The class each model explains: its own prediction (``config["explained_class"] = "own"``, Calibrate to
    Interpret: a calibrator such as Dirichlet can change the predicted class, and the paper explains each model's own
    prediction) or ``reference_target`` for every model (``"reference"``: the first model's prediction)."""
    if config["explained_class"] == "reference":
        return {name: reference_target for name in models}
    return {name: predictions(model, x).argmax(dim=1) for name, model in models.items()}


def score_methods(
    run: RunFolder, models: dict, x: torch.Tensor, target: torch.Tensor, config: dict, removal: tuple[float, ...]
) -> ScoredMethods:
    """Explain ``x`` with every method of ``config["explainers"]`` on every model of ``models`` (the first one is the
    reference, "uncalibrated") and score the maps; attributions and score tables are cached in the run folder.
    ``target`` is the reference model's predicted class; each model explains the class chosen by
    ``explained_classes``, and the share of images whose class differs from the reference's is the metric
    ``explained_class_changed``; the random superpixel baseline's deletion area is the method
    ``RANDOM_SUPERPIXELS``. ``removal`` is the per-channel value of a pixel removed by the MIF/LIF curves
    (``xaitrust.protocols.common.removal_fill``)."""
    reference = next(iter(models))
    tables, random_curves, deletion_curves, examples, all_maps = [], {}, {}, {}, {}
    targets = explained_classes(models, x, target, config)
    for model_name, model in models.items():
        target = targets[model_name]
        if model_name != reference:
            tables.append(tidy_rows((target != targets[reference]).float(), metric="explained_class_changed",
                                    method=ALL_METHODS, model=model_name))
        baseline = random_superpixel_deletion(
            model, x, target, config["n_superpixels"], config["n_orders"], config["seed"],
            steps=config["deletion_steps"], replacement=config["replacement"], output=config["output"],
        )
        random_curves[f"random superpixels ({model_name})"] = (baseline.fractions, baseline.curves)
        tables.append(tidy_rows(baseline.area, metric="deletion_area", method=RANDOM_SUPERPIXELS, model=model_name))
        for method in tqdm(config["explainers"], desc=f"score {model_name}", unit="method"):
            params = config["explainer_params"].get(method, {})
            key = f"{method}/{model_name}"
            attributions = explain_cached(
                run, key, method, params, model, x, target, config["output"], config["explainer_batch_size"]
            )
            maps = reduce_attributions(attributions, method_reduction(config, method), inputs=x)
            all_maps.setdefault(model_name, {})[method] = maps
            examples.setdefault(model_name, {})[method] = maps[:8]

            def compute():
                rows, curves = faithfulness_rows(
                    model, x, target, attributions, maps, config, baseline, method, model_name, removal
                )
                run.cached_tensors(f"curves/{key}", lambda: curves)  # saved before the table that marks it finished
                parts = [rows]
                if method in config["lipschitz_explainers"]:
                    parts.append(lipschitz_rows(model, x, target, method, params, config, model_name))
                if model_name != reference:
                    parts.append(ssim_rows(maps, all_maps[reference][method], method, model_name))
                return pd.concat(parts)

            tables.append(run.cached_table(f"scores/{key}", compute))
            curves = run.cached_tensors(f"curves/{key}", dict)
            deletion_curves[(method, model_name)] = (curves["fractions"], curves["deletion"])
    return ScoredMethods(pd.concat(tables, ignore_index=True), random_curves, deletion_curves, examples, all_maps)
