"""Time the perturbation explainers against their cost floor and against Captum.

Fashion-MNIST test images and the small CNN (``build_model("cnn", 1, 10, (28, 28))``, untrained: speed does not depend
on the weights). For each method, "bare" is the time of no-grad forward passes of as many images as the method
evaluates, at the best of a few batch sizes; the ratio ours / bare is the overhead of mask building, chunking and the
accumulation (goal <= 1.2). KernelSHAP and LIME are also compared with Captum's ``KernelShap`` and ``Lime`` on the same
superpixels and number of samples, ``perturbations_per_eval`` tuned (goal: ours >= 2x faster). Captum runs on
``--captum-images`` images and its time is scaled to the full count. SLIC time is included in ours and shown apart.

Times are CPU seconds of this process (``time.process_time``), on one thread by default: on a machine shared with
other jobs, wall time measures the neighbours more than the code. Pass ``--threads`` to change it.

Run: ``.venv/bin/python benchmarks/bench_perturbation_explainers.py [--images 256] [--rise-images 32] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import time
import timeit
import warnings

import torch
from captum.attr import KernelShap, Lime

from xaitrust.data import load_dataset
from xaitrust.explainers import get_explainer
from xaitrust.models import build_model
from xaitrust.perturb.batching import auto_batch_size
from xaitrust.perturb.segments import superpixels

BATCH_SIZES = (128, 256, 512, 1024)


def timed(function, repeats: int = 1) -> float:
    """Best CPU time of ``repeats`` calls."""
    return min(timeit.repeat(function, number=1, repeat=repeats, timer=time.process_time))


def bare_seconds(model, n_images: int, shape) -> float:
    """Seconds for ``n_images`` no-grad forward passes at the fastest batch size (estimated from 4 batches each)."""
    per_image = []
    with torch.no_grad():
        for batch_size in BATCH_SIZES:
            inputs = torch.rand(batch_size, *shape)
            model(inputs)
            per_image.append(timed(lambda: [model(inputs) for _ in range(4)], repeats=2) / (4 * batch_size))
    return min(per_image) * n_images


def captum_seconds(method, model, x, target, segments, n_samples: int) -> tuple[float, int]:
    """Best time over a few ``perturbations_per_eval`` values on ``x`` (and that value). Captum explains the images
    of a batch one after the other (and warns about it)."""
    warnings.filterwarnings("ignore", message="You are providing multiple inputs")
    results = []
    for per_eval in (50, 100, 200):
        explainer = method(model)
        seconds = timed(
            lambda: explainer.attribute(
                x, target=target, baselines=0.0, feature_mask=segments[:, None], n_samples=n_samples,
                perturbations_per_eval=per_eval,
            )
        )
        results.append((seconds, per_eval))
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rise-images", type=int, default=32, help="RISE with 4000 masks runs on this many images")
    parser.add_argument("--captum-images", type=int, default=32)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--segments", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    data = load_dataset("fashion-mnist", split="test", limit=args.images)
    x, target, shape = data.x, data.y, data.x.shape[1:]  # the true classes are explained
    model = build_model("cnn", 1, 10, (28, 28)).eval()
    print(f"{len(x)} Fashion-MNIST test images, small CNN, {args.threads} thread(s), CPU seconds")

    runs = [
        ("rise (4000 masks)", get_explainer("rise", n_masks=4000), args.rise_images, 4000),
        ("occlusion (4x4, stride 2)", get_explainer("occlusion", window=4, stride=2), args.images, 13 * 13 + 1),
        (f"kernelshap ({args.samples})", get_explainer("kernelshap", n_samples=args.samples, n_segments=args.segments),
         args.images, args.samples + 2),
        (f"lime ({args.samples})", get_explainer("lime", n_samples=args.samples, n_segments=args.segments),
         args.images, args.samples),
    ]
    get_explainer("occlusion")(model, x[:2], target[:2])  # warm-up, and the engine's chunk-size probe
    print(f"engine chunk size: {auto_batch_size(model, shape, torch.device('cpu'))} masked images")
    ours = {}
    for label, explainer, n_images, per_image in runs:
        seconds = timed(lambda: explainer(model, x[:n_images], target[:n_images]))
        floor = bare_seconds(model, n_images * per_image, shape)
        ours[label] = seconds
        print(
            f"{label:26s} {n_images:4d} images x {per_image:4d} masks: ours {seconds:7.2f} s, "
            f"bare forward passes {floor:7.2f} s, ratio {seconds / floor:.2f}"
        )

    segments = superpixels(x, args.segments)
    slic_seconds = timed(lambda: superpixels(x, args.segments))
    print(f"SLIC of {len(x)} images (inside the kernelshap/lime times): {slic_seconds:.2f} s")
    subset = slice(0, args.captum_images)
    scale = len(x) / args.captum_images
    for label, method in ((f"kernelshap ({args.samples})", KernelShap), (f"lime ({args.samples})", Lime)):
        seconds, per_eval = captum_seconds(method, model, x[subset], target[subset], segments[subset], args.samples)
        estimate = seconds * scale
        print(
            f"Captum {label:21s} {seconds:7.2f} s on {args.captum_images} images (perturbations_per_eval={per_eval}), "
            f"~{estimate:.1f} s for {len(x)}: ours is {estimate / ours[label]:.1f}x faster"
        )


if __name__ == "__main__":
    main()
