"""The scorecard's per-sample rows: an image whose clean logit is not positive has an undefined MIF/LIF area."""

import math
import warnings

import torch

from xaitrust.metrics.faithfulness import random_superpixel_deletion
from xaitrust.protocols.scoring import FAITHFULNESS_METRICS, faithfulness_rows
from xaitrust.testing.oracles import LinearModel

CONFIG = {"n_superpixels": 8, "n_orders": 2, "seed": 0, "deletion_steps": 10, "replacement": "zero", "ties": "random",
          "output": "probability", "mu_fidelity_subsets": 8, "metrics": list(FAITHFULNESS_METRICS)}


def test_mif_lif_area_is_nan_where_the_clean_logit_is_not_positive():
    weight = torch.rand(1, 1, 8, 8) - 0.5
    x = torch.rand(3, 1, 8, 8) * (weight > 0)
    x[1] = torch.rand(1, 8, 8) * (weight[0] < 0)  # class 0's logit sum(w * x) < 0 for this image only
    model, target, maps = LinearModel(weight), torch.zeros(3, dtype=torch.long), (weight * x)[:, 0]
    baseline = random_superpixel_deletion(model, x, target, 8, 2, 0, steps=10, replacement="zero")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the clean score <= 0 warning is expected
        rows, _ = faithfulness_rows(model, x, target, weight * x, maps, CONFIG, baseline, "m", "linear", (0.0,))
    area = rows[rows["metric"] == "mif_lif_area"]["value"].tolist()
    assert math.isnan(area[1]) and not math.isnan(area[0]) and not math.isnan(area[2])


def test_tied_map_values_are_removed_in_the_configured_order():
    # The map ties every pixel of the top half; the model reads the first row only. Row by row ("stable") removes
    # that row first, so the score falls to 0 within 1/8 of the pixels; a random tie break spreads the row over the
    # first half of the removals, so the deletion area is larger.
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., 0, :] = 1.0
    x = 0.1 + 0.9 * torch.rand(2, 1, 8, 8)
    model, target = LinearModel(weight), torch.zeros(2, dtype=torch.long)
    maps = torch.full((2, 8, 8), 0.5)
    maps[:, :4] = 1.0
    baseline = random_superpixel_deletion(model, x, target, 8, 2, 0, steps=16, replacement="zero", output="logit")
    areas = {}
    for ties in ("stable", "random"):
        config = dict(CONFIG, ties=ties, output="logit", deletion_steps=16)
        rows, _ = faithfulness_rows(model, x, target, weight * x, maps, config, baseline, "m", "linear", (0.0,))
        areas[ties] = rows[rows["metric"] == "deletion_area"]["value"].to_numpy()
    assert (areas["stable"] < 0.1).all() and (areas["random"] > 0.15).all()
