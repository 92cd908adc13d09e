"""Memory on large inputs: a 3 x 224 x 224 classifier explained and scored on a few images through ``evaluate``.

The masked-evaluation engine bounds the activations of one chunk of masked images by
``xaitrust.perturb.batching.MEMORY_BUDGET_BYTES``; the gradient explainers bound their chunks by the same measure.
This script reports the process's peak resident memory (``ru_maxrss``) before and after the run, so the growth can
be compared with that budget (plus the inputs, maps and curves the run keeps, which are small for a few images).

Model: ``build_model("cnn", 3, 10, 224)`` (untrained; its feature maps are what costs memory) on random images.

Run: ``.venv/bin/python benchmarks/bench_large_images.py [--images 2] [--threads 2]``
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch

from xaitrust.evaluation import evaluate
from xaitrust.models import build_model
from xaitrust.perturb.batching import MEMORY_BUDGET_BYTES, activation_bytes_per_sample

EXPLAINERS = ["saliency", "integrated-gradients", "smoothgrad", "gradcam", "rise", "occlusion", "kernelshap"]
EXPLAINER_PARAMS = {"integrated-gradients": {"steps": 32}, "smoothgrad": {"samples": 16}, "rise": {"n_masks": 500},
                    "occlusion": {"window": 32, "stride": 16}, "kernelshap": {"n_samples": 200}}
METRICS = ["deletion_area", "insertion_area", "better_than_random", "mif_lif_area", "mu_fidelity", "otsu_tv"]


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model("cnn", 3, 10, 224).eval()
    x = torch.rand(args.images, 3, 224, 224)
    per_image = activation_bytes_per_sample(model, x.shape[1:], x.device) / 2**20
    before = peak_mib()
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = evaluate(model, x, None, EXPLAINERS, METRICS, explainer_params=EXPLAINER_PARAMS,
                         metric_params={"deletion_area": {"steps": 50}, "insertion_area": {"steps": 50},
                                        "better_than_random": {"steps": 50, "n_superpixels": 50, "n_orders": 2},
                                        "mu_fidelity": {"n_subsets": 64}}, progress=False)
    seconds = time.perf_counter() - began
    after = peak_mib()
    print(f"{args.images} images of 3x224x224, {len(EXPLAINERS)} explainers x {len(METRICS)} metrics: "
          f"{len(table)} rows in {seconds:.0f} s")
    print(f"activations per image: {per_image:.1f} MiB; engine budget per chunk: {MEMORY_BUDGET_BYTES / 2**20:.0f} MiB")
    print(f"peak resident memory: {before:.0f} MiB before (model, images, libraries), {after:.0f} MiB after "
          f"(growth {after - before:.0f} MiB)")


if __name__ == "__main__":
    main()
