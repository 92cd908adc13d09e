"""Time the gradient explainers against their cost floor and Integrated Gradients against Captum.

Fashion-MNIST test images and the small CNN (``build_model("cnn", 1, 10, (28, 28))``, untrained: speed does not depend
on the weights). "Bare" is the time of as many forward+backward passes (gradient of the summed target logits with
respect to the input) as the method needs, at the fastest of a few batch sizes: one per image for saliency and
gradient x input, ``samples`` per image for SmoothGrad, ``steps`` per image for IG. Goals: ours / bare <= 1.2; IG at
least 2x faster than Captum's ``IntegratedGradients`` at its default internal batching (all steps of the batch in one
pass) and never slower than Captum at its best ``internal_batch_size``. The IG comparison runs ours and Captum on the
same ``--captum-images`` images (Captum's default batching holds every step of every image in memory at once), the
timings interleaved over ``--repeats`` rounds, best of each kept. Each explainer is called once before timing.

Run: ``.venv/bin/python benchmarks/bench_gradient_explainers.py [--images 256] [--steps 50] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import torch
from captum.attr import IntegratedGradients

from xaitrust.data import load_dataset
from xaitrust.explainers import get_explainer
from xaitrust.explainers._autograd import gradient_batch_size, score_gradients
from xaitrust.models import build_model

BATCH_SIZES = (128, 256, 512, 1024)
CAPTUM_INTERNAL_BATCH_SIZES = (128, 256, 512, 1024)


def best_time(function, repeats: int) -> float:
    """Best wall time of ``repeats`` calls."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def bare_seconds_per_pass(model, shape) -> float:
    """Seconds per image of a forward+backward pass at the fastest batch size (4 batches per size)."""
    per_image = []
    for batch_size in BATCH_SIZES:
        inputs, target = torch.rand(batch_size, *shape), torch.zeros(batch_size, dtype=torch.long)
        score_gradients(model, inputs, target, "logit")
        seconds = best_time(lambda: [score_gradients(model, inputs, target, "logit") for _ in range(4)], repeats=2)
        per_image.append(seconds / (4 * batch_size))
    return min(per_image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="IG points (Captum's default n_steps)")
    parser.add_argument("--samples", type=int, default=15, help="SmoothGrad samples (FPA's choice)")
    parser.add_argument("--captum-images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x = load_dataset("fashion-mnist", split="test", limit=args.images).x
    model = build_model("cnn", 1, 10, (28, 28)).eval()
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    per_pass = bare_seconds_per_pass(model, x.shape[1:])
    print(f"{len(x)} images {tuple(x.shape[1:])}, {args.threads} threads; bare forward+backward "
          f"{per_pass * 1e6:.0f} us/image; our chunk size {gradient_batch_size(model, x)}")

    methods = {
        "saliency": ({}, 1),
        "gradient-input": ({}, 1),
        "smoothgrad": ({"samples": args.samples}, args.samples),
        "integrated-gradients": ({"steps": args.steps, "rule": "riemann-right"}, args.steps),
    }
    print(f"{'method':<22}{'passes':>8}{'ours s':>9}{'bare s':>9}{'ours/bare':>11}")
    for name, (params, passes_per_image) in methods.items():
        explainer = get_explainer(name, **params)
        explainer(model, x[:2], target[:2])
        ours = best_time(lambda: explainer(model, x, target), args.repeats)
        bare = per_pass * passes_per_image * len(x)
        print(f"{name:<22}{passes_per_image * len(x):>8}{ours:>9.3f}{bare:>9.3f}{ours / bare:>11.2f}")

    # IG against Captum on the same images, measurements interleaved (a shared machine's load drifts).
    small_x, small_target = x[: args.captum_images], target[: args.captum_images]
    ours_ig = get_explainer("integrated-gradients", steps=args.steps, rule="riemann-right")
    captum = IntegratedGradients(model)
    contenders = {"ours": lambda: ours_ig(model, small_x, small_target)}
    for size in (None, *CAPTUM_INTERNAL_BATCH_SIZES):
        contenders[f"captum {size or 'default'}"] = lambda size=size: captum.attribute(
            small_x, target=small_target, n_steps=args.steps, method="riemann_right", internal_batch_size=size
        )
    seconds = {name: float("inf") for name in contenders}
    for _ in range(args.repeats):
        for name, function in contenders.items():
            seconds[name] = min(seconds[name], best_time(function, 1))
    ig, default = seconds.pop("ours"), seconds.pop("captum default")
    best_name = min(seconds, key=seconds.get)
    print(f"IG on {len(small_x)} images x {args.steps} steps: ours {ig:.3f} s")
    print(f"  Captum default batching: {default:.3f} s -> Captum / ours = {default / ig:.2f}")
    print(f"  Captum best ({best_name}): {seconds[best_name]:.3f} s -> Captum / ours = {seconds[best_name] / ig:.2f}")
    print("  " + ", ".join(f"{name}: {value:.3f} s" for name, value in seconds.items()))


if __name__ == "__main__":
    main()
