"""Time xaitrust's local Lipschitz estimate against Quantus' LocalLipschitzEstimate at the same number of neighbours.

Both explain the same small CNN on 28x28 images with the same Saliency explainer; only the neighbour sampling
differs (uniform in the ball for xaitrust, Gaussian noise for Quantus), which does not change the cost. Needs the
``bench`` extra (quantus).

Run: ``.venv/bin/python benchmarks/bench_stability.py [--samples B] [--neighbours N] [--threads T]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from xaitrust.explainers import get_explainer
from xaitrust.metrics.stability import local_lipschitz


class SmallCNN(nn.Module):
    num_classes = 10

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )

    def forward(self, x):
        return self.body(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--neighbours", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SmallCNN().eval()
    x = torch.rand(args.samples, 1, 28, 28)
    y = model(x).argmax(dim=1)
    explainer = get_explainer("saliency")

    start = time.perf_counter()
    ours = local_lipschitz(explainer, model, x, y, n_neighbours=args.neighbours, radius=0.05)
    ours_time = time.perf_counter() - start

    import quantus

    def explain(model, inputs, targets, **kwargs):
        inputs = torch.as_tensor(inputs, dtype=torch.float32)
        return explainer(model, inputs, torch.as_tensor(targets)).numpy()

    metric = quantus.LocalLipschitzEstimate(nr_samples=args.neighbours, perturb_std=0.05 / 28, normalise=False, abs=False, disable_warnings=True)
    start = time.perf_counter()
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), explain_func=explain, device="cpu", batch_size=args.samples)
    quantus_time = time.perf_counter() - start
    print(
        f"B={args.samples} neighbours={args.neighbours} threads={args.threads}: xaitrust {ours_time:.2f} s, "
        f"Quantus {quantus_time:.2f} s, speed-up {quantus_time / ours_time:.1f}x "
        f"(median estimate xaitrust {ours.median():.3g}, Quantus {np.median(theirs):.3g})"
    )


if __name__ == "__main__":
    main()
