"""Speed of the perturbation metrics against their cost floor, and agreement/speed against Quantus.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--n-images 256] [--threads 1]``

1. Floor: deletion and insertion (100 steps) and MIF/LIF (2 x 20 fractions) on a small CNN need ``B x M`` forward
   passes. The floor is that count divided by the best no-grad throughput of the bare model over batch sizes
   64/256/1024 (measured on 4096 random images); the ratio is metric time / floor (goal <= 1.2).
2. Quantus (optional, ``pip install quantus``): PixelFlipping with 8 pixels per step, black baseline and softmax
   scores against ``deletion(steps=98, replacement="zero", output="probability", normalize=False)``; same values
   and timing. LocalLipschitzEstimate against ``xaitrust.metrics.stability.local_lipschitz`` when that module exists.

The model is the "quick" Fashion-MNIST CNN (trained and cached on first use), saliency maps via the explainer registry.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np
import torch

from xaitrust.data import load_dataset
from xaitrust.explainers import get_explainer
from xaitrust.explainers.reduce import reduce_attributions
from xaitrust.metrics.faithfulness import deletion, insertion
from xaitrust.metrics.fidelity import mif_lif
from xaitrust.perturb.batching import auto_batch_size
from xaitrust.training import get_trained_model


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def best_throughput(model, sample_shape, sizes=(64, 256, 1024), n_images=4096) -> tuple[float, int]:
    """Highest images/second of bare no-grad forward passes, and the batch size reaching it."""
    best = (0.0, 0)
    with torch.no_grad():
        for size in sizes:
            inputs = torch.rand(size, *sample_shape)
            model(inputs)
            _, seconds = timed(lambda: [model(inputs) for _ in range(max(1, n_images // size))])
            best = max(best, (size * max(1, n_images // size) / seconds, size))
    return best


def bench_floor(model, x, maps, target) -> None:
    throughput, size = best_throughput(model, x.shape[1:])
    _, probe = timed(auto_batch_size, model, x.shape[1:])
    chosen = auto_batch_size(model, x.shape[1:])
    print(f"bare forward: {throughput:,.0f} images/s at batch {size}; automatic batch size {chosen} (probe {probe:.2f} s)")
    runs = {
        "deletion (100 steps, blur)": (lambda: deletion(model, x, maps, target), len(x) * 101),
        "insertion (100 steps, blur)": (lambda: insertion(model, x, maps, target), len(x) * 101),
        "MIF/LIF (2 x 20, zero)": (lambda: mif_lif(model, x, maps, target), len(x) * 40),
    }
    for name, (run, n_forward) in runs.items():
        _, seconds = timed(run)
        floor = n_forward / throughput
        print(f"{name:30s} {seconds:7.2f} s  floor {floor:7.2f} s  ratio {seconds / floor:5.2f}")


def bench_quantus_pixel_flipping(model, x, maps, target) -> None:
    import quantus

    metric = quantus.PixelFlipping(
        features_in_step=8, perturb_baseline="black", normalise=False, abs=False, disable_warnings=True
    )
    attributions = maps[:, None].numpy()
    theirs, their_seconds = timed(
        metric, model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=attributions,
        device="cpu", softmax=True, channel_first=True, batch_size=len(x),
    )
    ours, our_seconds = timed(deletion, model, x, maps, target, steps=98, replacement="zero", output="probability", normalize=False)
    difference = np.abs(np.asarray(theirs) - ours.curves[:, 1:].numpy()).max()
    print(
        f"pixel flipping vs Quantus ({len(x)} images, 98 steps): max |difference| {difference:.2e}; "
        f"xaitrust {our_seconds:.2f} s, Quantus {their_seconds:.2f} s, speed-up {their_seconds / our_seconds:.1f}x"
    )


def bench_quantus_local_lipschitz(model, x, target) -> None:
    import quantus
    from xaitrust.metrics.stability import local_lipschitz

    explainer = get_explainer("saliency")

    def explain(model, inputs, targets, **kwargs):
        attributions = explainer(model, torch.as_tensor(inputs), torch.as_tensor(targets))
        return attributions.numpy()

    metric = quantus.LocalLipschitzEstimate(nr_samples=40, perturb_std=0.05, disable_warnings=True)
    _, their_seconds = timed(
        metric, model=model, x_batch=x.numpy(), y_batch=target.numpy(), a_batch=None, explain_func=explain,
        device="cpu", softmax=False, channel_first=True, batch_size=len(x),
    )
    _, our_seconds = timed(local_lipschitz, explainer, model, x, target, n_neighbours=40, radius=0.05)
    print(f"local Lipschitz vs Quantus ({len(x)} images, 40 neighbours): xaitrust {our_seconds:.2f} s, "
          f"Quantus {their_seconds:.2f} s, speed-up {their_seconds / our_seconds:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--quantus-images", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = get_trained_model("fashion-mnist", "cnn", profile="quick", progress=False).model.eval()
    test = load_dataset("fashion-mnist", split="test")
    x = test.x[: args.n_images]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    maps = reduce_attributions(get_explainer("saliency")(model, x, target), "abs-sum")
    print(f"{len(x)} Fashion-MNIST test images, {args.threads} thread(s)")
    bench_floor(model, x, maps, target)
    if importlib.util.find_spec("quantus") is None:
        print("quantus is not installed: skipping the comparison")
        return
    n = args.quantus_images
    bench_quantus_pixel_flipping(model, x[:n], maps[:n], target[:n])
    if importlib.util.find_spec("xaitrust.metrics.stability") is not None:
        bench_quantus_local_lipschitz(model, x[:n], target[:n])
    else:
        print("xaitrust.metrics.stability is not present: skipping local Lipschitz")


if __name__ == "__main__":
    main()
