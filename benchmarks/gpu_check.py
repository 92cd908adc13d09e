"""Checks for a machine with a CUDA GPU: the explainers, the metrics and a smoke protocol give on the GPU what they
give on the CPU (within a float tolerance), a training interrupted on the GPU resumes to the uninterrupted weights,
and how much faster the GPU is than one CPU thread (to replace the assumed factors of ``bench_costs.py``).

1. A small CNN trained on the digits on the CPU explains 16 test images on the CPU and on the GPU with every registered
   explainer; the maps must agree to ``--rtol`` of their largest magnitude. The same images are scored by the
   faithfulness metrics on both devices (``xaitrust.evaluate``); the values must agree to ``--atol``.
2. A ResNet-18 with dropout trains 2 epochs on the GPU once without and once with an interruption after the first;
   the weights must be identical (the GPU's RNG is part of the resumable state; cuDNN is put in deterministic mode).
3. ``benchmark``'s smoke profile runs with ``device = "cuda"`` and with ``device = "cpu"``; the trained models differ
   in their last bits, so only the test accuracies are compared, to within 0.05.
4. Seconds per training image (cnn, mnist-cnn, resnet18) and per explained image (a few explainers), GPU against one
   CPU thread.

Run: ``.venv/bin/python benchmarks/gpu_check.py [--device cuda] [--out FOLDER]``; exits 1 when a check fails.
``--device cpu`` runs every step with the CPU on both sides (a check of the script on a machine without a GPU).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from xaitrust import evaluate
from xaitrust.data import load_dataset
from xaitrust.devices import on_device, resolve_device
from xaitrust.explainers import available_explainers, get_explainer
from xaitrust.models import build_model
from xaitrust.protocols import run_protocol
from xaitrust.training import TrainConfig, TrainingJob, train_model

CPU = torch.device("cpu")
METRICS = ["deletion_area", "insertion_area", "mif_lif_area", "mu_fidelity"]
TIMED_EXPLAINERS = ["saliency", "integrated-gradients", "smoothgrad", "rise", "kernelshap"]
#: The benchmark's smoke profile on the digits: one epoch, 4 images (as in tests/test_determinism.py).
SMOKE = {"dataset": "digits", "calibration_size": 100, "n_images": 4,
         "explainers": ["saliency", "integrated-gradients", "kernelshap", "random"], "lipschitz_explainers": ["saliency"]}
TIMED_MODELS = {"cnn": {}, "mnist-cnn": {}, "resnet18": {"base_filters": 26, "dropout": 0.4}}


def digits_model():
    """A ``cnn`` trained one epoch on the digits on the CPU, and 16 test images with their labels."""
    train, test = (load_dataset("digits", split=split) for split in ("train", "test"))
    factory = partial(build_model, "cnn", 1, 10, 8)
    model = TrainingJob("digits", factory, train, TrainConfig(epochs=1, batch_size=32), progress=False).run(1).model
    return model, test.x[:16], test.y[:16]


def compare_explainers(device: torch.device, rtol: float) -> list[str]:
    model, x, y = digits_model()
    failures = []
    for info in available_explainers():
        on_cpu = get_explainer(info.name)(model.to(CPU), x, y).cpu()
        on_device_ = get_explainer(info.name)(model.to(device), x, y).cpu()
        scale = on_cpu.abs().max().clamp_min(1e-12)
        error = float((on_device_ - on_cpu).abs().max() / scale)
        ok = error <= rtol
        print(f"  {info.name:<26} largest difference {error:.2e} of the largest |attribution|  "
              f"{'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"explainer {info.name}")
    return failures


def compare_metrics(device: torch.device, atol: float) -> list[str]:
    model, x, y = digits_model()
    on_cpu, on_device_ = (evaluate(model.to(where), x, y, ["saliency", "integrated-gradients", "random"], METRICS,
                                   progress=False) for where in (CPU, device))
    merged = on_cpu.merge(on_device_, on=["sample", "method", "metric"], suffixes=("_cpu", "_device"))
    merged["difference"] = (merged["value_cpu"] - merged["value_device"]).abs()
    worst = merged.groupby("metric")["difference"].max()
    failures = []
    for metric, difference in worst.items():
        ok = difference <= atol
        print(f"  {metric:<26} largest difference {difference:.2e}  {'ok' if ok else 'FAIL'}")
        if not ok:
            failures.append(f"metric {metric}")
    return failures


def check_resume(device: torch.device, out: Path) -> list[str]:
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    train = load_dataset("digits", split="train")
    factory = partial(on_device, partial(build_model, "resnet18", 1, 10, 8, base_filters=8, dropout=0.4), device)
    config = TrainConfig(epochs=2, batch_size=64, seed=3)

    def fresh():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return factory()

    whole = train_model(fresh(), train, config, progress=False, checkpoint_dir=out / "whole").model

    class Interrupted(Exception):
        pass

    def stop(record):
        raise Interrupted

    try:
        train_model(fresh(), train, config, progress=False, checkpoint_dir=out / "resumed", on_epoch_end=stop)
    except Interrupted:
        pass
    resumed = train_model(fresh(), train, config, progress=False, checkpoint_dir=out / "resumed").model
    same = all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    print(f"  resumed weights {'identical to' if same else 'DIFFER from'} the uninterrupted ones")
    return [] if same else ["resume on the device"]


def compare_protocol(device: torch.device, out: Path) -> list[str]:
    accuracy = []
    for side, where in (("cpu", CPU), ("device", device)):
        folder = out / f"benchmark-{side}"
        run_protocol("benchmark", profile="smoke", out=folder, overrides={"device": str(where), **SMOKE})
        accuracy.append(float(pd.read_csv(folder / "calibration.csv")["accuracy"].iloc[0]))
    ok = abs(accuracy[1] - accuracy[0]) <= 0.05
    print(f"  benchmark smoke: test accuracy {accuracy[0]:.3f} on the CPU, {accuracy[1]:.3f} on the device  "
          f"{'ok' if ok else 'FAIL'}")
    return [] if ok else ["benchmark smoke accuracy"]


def seconds(step, repeats: int = 3) -> float:
    step()  # warm-up (and CUDA kernels loaded)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats


def training_step(model, optimizer, x, y) -> None:
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


def speed_ups(device: torch.device) -> None:
    data = load_dataset("fashion-mnist", split="test", limit=512)
    for name, options in TIMED_MODELS.items():
        per_image = []
        for where in (CPU, device):
            model = build_model(name, 1, 10, 28, **options).to(where)
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
            x, y = data.x[:128].to(where), data.y[:128].to(where)
            per_image.append(seconds(partial(training_step, model, optimizer, x, y)) / len(x))
        print(f"  training {name:<12} {per_image[0] * 1e3:8.3f} ms/image on one CPU thread, "
              f"{per_image[1] * 1e3:8.3f} on the device: {per_image[0] / per_image[1]:6.1f}x")
    model = build_model("cnn", 1, 10, 28).eval()
    x, y = data.x[:16], data.y[:16]
    for name in TIMED_EXPLAINERS:
        explainer = get_explainer(name)
        per_image = [seconds(partial(explainer, model.to(where), x, y), repeats=1) / len(x) for where in (CPU, device)]
        print(f"  explaining {name:<22} {per_image[0] * 1e3:8.2f} ms/image on one CPU thread, "
              f"{per_image[1] * 1e3:8.2f} on the device: {per_image[0] / per_image[1]:6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="the GPU to check (cuda, cuda:N); cpu checks the script")
    parser.add_argument("--rtol", type=float, default=1e-3, help="explainers: tolerance relative to the largest map value")
    parser.add_argument("--atol", type=float, default=1e-3, help="metrics: absolute tolerance")
    parser.add_argument("--out", default="", help="folder for the runs (default: a temporary folder)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)  # the explainers' own caveats, the same on every device
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu-check-"))
    failures = []
    print(f"1. explainers on the CPU and on {device}")
    failures += compare_explainers(device, args.rtol)
    print(f"   metrics on the CPU and on {device}")
    failures += compare_metrics(device, args.atol)
    print(f"2. a training interrupted and resumed on {device}")
    failures += check_resume(device, out)
    print(f"3. benchmark smoke profile on the CPU and on {device}")
    failures += compare_protocol(device, out)
    print(f"4. speed of {device} against one CPU thread")
    speed_ups(device)
    print("all checks passed" if not failures else f"FAILED: {', '.join(failures)}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
