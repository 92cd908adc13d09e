"""Overhead of ``xaitrust.evaluate`` over calling the explainers and metric functions directly (goal: within 5%).

Both do the same work on the same images: the model's predictions, each explainer's attributions and maps, and the
scorecard's faithfulness metrics (deletion and insertion areas, BTR with one random baseline for every explainer and
the deletion curves it measures, MIF/LIF area, muFidelity, Otsu-TV). The direct version is the hand-written loop a
user would write, sharing what can be shared; ``evaluate`` adds validation, the registry, the shared-work lookups and
the tidy table. Runs alternate, best of ``--repeats`` each; the ratio is evaluate / direct.

Model: ``build_model("cnn", 1, 10, 28)`` (untrained) on random 28x28 images.

Run: ``.venv/bin/python benchmarks/bench_evaluate.py [--images 64] [--repeats 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from xaitrust.evaluation import evaluate
from xaitrust.explainers import get_explainer
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.metrics import area_between, better_than_random, insertion, mif_lif, mu_fidelity, otsu_tv
from xaitrust.metrics.faithfulness import random_superpixel_deletion
from xaitrust.models import build_model

EXPLAINERS = {"saliency": {}, "integrated-gradients": {"steps": 16}, "gradcam": {}}
STEPS, N_SUPERPIXELS, N_ORDERS, N_SUBSETS, SEED = 50, 50, 3, 64, 0
METRIC_PARAMS = {
    "deletion_area": {"steps": STEPS},
    "insertion_area": {"steps": STEPS},
    "better_than_random": {"steps": STEPS, "n_superpixels": N_SUPERPIXELS, "n_orders": N_ORDERS},
    "mu_fidelity": {"n_subsets": N_SUBSETS},
}
METRICS = ["deletion_area", "insertion_area", "better_than_random", "mif_lif_area", "mu_fidelity", "otsu_tv"]


def direct(model, x) -> dict:
    """The explainers and metric functions called by hand, the random baseline computed once."""
    with torch.no_grad():
        probabilities = torch.softmax(model(x), dim=1)
    confidence, target = probabilities.max(dim=1)
    curves = {"ties": "random", "seed": SEED}
    baseline = random_superpixel_deletion(model, x, target, N_SUPERPIXELS, N_ORDERS, SEED, steps=STEPS)
    values = {}
    for name, params in EXPLAINERS.items():
        attributions = get_explainer(name, **params)(model, x, target, "probability")
        maps = reduce_attributions(attributions, "abs-sum", inputs=x)
        btr = better_than_random(model, x, maps, target, N_SUPERPIXELS, N_ORDERS, SEED, steps=STEPS, ties="random",
                                 baseline=baseline)
        fidelity = mif_lif(model, x, maps, target, **curves)
        values[name] = {
            "deletion_area": btr.deletion.area,
            "insertion_area": insertion(model, x, maps, target, STEPS, **curves).area,
            "better_than_random": btr.better.float(),
            "mif_lif_area": area_between(fidelity.mif, fidelity.lif).per_sample,
            "mu_fidelity": mu_fidelity(model, x, attributions, target, n_subsets=N_SUBSETS, output="probability",
                                       seed=SEED),
            "otsu_tv": otsu_tv(maps),
        }
    return values


def through_evaluate(model, x):
    return evaluate(model, x, None, list(EXPLAINERS), METRICS, seed=SEED, metric_params=METRIC_PARAMS,
                    explainer_params=EXPLAINERS, progress=False)


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)  # SLIC on random images falls back to patches, and says so each time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("cnn", 1, 10, 28).eval()
    x = torch.rand(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    direct(model, x[:2])  # the automatic batch size is probed once per model, before any timing
    best = {"direct": float("inf"), "evaluate": float("inf")}
    for _ in range(args.repeats):
        expected, seconds = timed(direct, model, x)
        best["direct"] = min(best["direct"], seconds)
        table, seconds = timed(through_evaluate, model, x)
        best["evaluate"] = min(best["evaluate"], seconds)
    for method, metrics in expected.items():  # the same work: the same numbers
        for metric, values in metrics.items():
            measured = table.loc[(table["method"] == method) & (table["metric"] == metric), "value"].to_numpy()
            torch.testing.assert_close(torch.tensor(measured), values.double(), equal_nan=True)
    print(f"{args.images} images, {len(EXPLAINERS)} explainers x {len(METRICS)} metrics, {args.threads} thread(s), "
          f"best of {args.repeats}: direct {best['direct']:.2f} s, evaluate {best['evaluate']:.2f} s, "
          f"ratio {best['evaluate'] / best['direct']:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
