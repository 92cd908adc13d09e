"""Per-sample scores of one method's maps on one model: the rows of the benchmark scorecard and of the
Calibrate-to-Interpret protocol. Each function only calls ``xaitrust.metrics`` and returns tidy rows."""

from __future__ import annotations

import pandas as pd
import torch

from ..explainers import get_explainer
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
from .results import tidy_rows

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


def faithfulness_rows(
    model, x, target, attributions, maps, config: dict, baseline: PerturbationCurves, method: str, model_name: str
) -> tuple[pd.DataFrame, dict[str, torch.Tensor]]:
    """Deletion and insertion areas and BTR (blur replacement, C2I), the MIF/LIF area (zero replacement, logits, x in
    percent, FPA), muFidelity (MeGe appendix C) and Otsu-TV (C2I) of ``maps`` ``(N, H, W)``; also returns the
    deletion curves for figures."""
    btr = better_than_random(
        model, x, maps, target, config["n_superpixels"], config["n_orders"], config["seed"],
        steps=config["deletion_steps"], replacement=config["replacement"], output=config["output"], baseline=baseline,
    )
    inserted = insertion(
        model, x, maps, target, config["deletion_steps"], config["replacement"], config["output"], seed=config["seed"]
    )
    curves = mif_lif(model, x, maps, target)
    between = area_between(curves.mif.curves, curves.lif.curves, curves.mif.fractions)
    fidelity = mu_fidelity(
        model, x, attributions, target, n_subsets=config["mu_fidelity_subsets"], seed=config["seed"]
    )
    labels = {"method": method, "model": model_name}
    table = pd.concat(
        [
            tidy_rows(btr.deletion.area, metric="deletion_area", **labels),
            tidy_rows(inserted.area, metric="insertion_area", **labels),
            tidy_rows(btr.better.float(), metric="better_than_random", **labels),
            tidy_rows(between.per_sample, metric="mif_lif_area", **labels),
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
        reduction=config["reduction"], normalize=True, seed=config["seed"],
    )
    return tidy_rows(values, metric="local_lipschitz", method=method, model=model_name)


def ssim_rows(maps: torch.Tensor, reference: torch.Tensor, method: str, model_name: str) -> pd.DataFrame:
    """SSIM between a calibrated model's maps and the uncalibrated model's maps of the same images (C2I 4.3)."""
    return tidy_rows(map_ssim(maps, reference), metric="ssim_to_uncalibrated", method=method, model=model_name)
