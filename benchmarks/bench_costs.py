"""What each protocol's ``paper`` profile costs: CPU-hours on one thread of this machine, from measured unit costs,
and the GPU-hours expected from an assumed GPU speed-up (an estimate, not a measurement).

Unit costs, measured here on one torch thread with each protocol's paper settings: seconds per training image and
epoch (forward, backward and optimiser step of the paper's model, batch size and optimiser), per forward pass of an
image (metric curves, validation), and per explained image for every explainer with the protocol's parameters.
The counts come from the paper configs:

* training: trainings x epochs x training images, plus a validation pass over the held-out images after each epoch;
* explanations: images explained x models x explainers (ROAR: every training and test image, per method, on the
  unmodified model; MeGe: every explained image on every model of every family; the scorecards: the local Lipschitz
  neighbours too);
* metric forward passes: deletion / insertion / MIF / LIF curves and muFidelity subsets (``scoring_passes`` for the
  scorecards), MeGe's muFidelity, FPA's MIF/LIF curves, ReCalX's curves and perturbation levels.

Cheap steps (data loading, rankings, distances, figures) are left out. GPU-hours = CPU-hours / factor, with the factor
an assumption per model size (``GPU_SPEED_UP``): a GPU over one CPU thread on these 28x28 / 32x32 images.
``benchmarks/gpu_check.py`` measures the real factors on a machine with a GPU.

Run: ``.venv/bin/python benchmarks/bench_costs.py [--protocols ...] [--images 4] [--json FILE]`` (a few minutes).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from xaitrust.data import load_dataset
from xaitrust.explainers import get_explainer
from xaitrust.metrics.fidelity import FPA_FRACTIONS
from xaitrust.protocols import fpa as fpa_protocol
from xaitrust.protocols import protocol_config
from xaitrust.protocols.common import fresh_model, train_config
from xaitrust.protocols.mege_reco import LIPSCHITZ_MODEL
from xaitrust.protocols.scoring import ScoringSettings, scoring_passes
from xaitrust.training import TrainingJob

#: Assumed speed-up of one GPU over one CPU thread of this machine, per model. Published comparisons of whole
#: machines: a Pascal Titan X with cuDNN trains ResNets on 224x224 images 49-74x faster than two 8-core Xeons
#: (github.com/jcjohnson/cnn-benchmarks), and a GTX 1660 Super trains ResNet-18 on MNIST about 119x faster than a
#: 6-core i5-10400 (Bentham Recent Advances in Electrical & Electronic Engineering 18(10), 2025). Against one thread
#: the factor is larger still, but the small CNNs on 28x28 images launch kernels too small to fill a GPU, so these are
#: kept conservative: 20x for the small CNNs, 50x for ResNet-18.
GPU_SPEED_UP = {"resnet18": 50.0}
DEFAULT_SPEED_UP = 20.0
#: Explainers whose cost per image is large enough that fewer images are timed.
SLOW = {"kernelshap", "lime", "meaningful-perturbation", "occlusion", "rise"}
SIZES = {"fashion-mnist": (60000, 10000)}


def split_sizes(config: dict) -> tuple[int, int]:
    """Training and test images of the paper config."""
    full = SIZES.get(config["dataset"])
    if full is None:
        full = tuple(len(load_dataset(config["dataset"], None, split)) for split in ("train", "test"))
    return config["train_size"] or full[0], config.get("test_size", 0) or full[1]


def per_image(seconds_of, images: int) -> float:
    """Seconds per image of ``seconds_of(images)`` after one warm-up call on a single image."""
    seconds_of(1)
    began = time.perf_counter()
    seconds_of(images)
    return (time.perf_counter() - began) / images


class Units:
    """Unit costs of one model on one data set, measured lazily and remembered."""

    def __init__(self, config: dict, model_name: str, model_options: dict, images: int) -> None:
        self.config, self.images = config, images
        self.data = load_dataset(config["dataset"], None, "test", limit=256)
        self.model_name, self.model_options = model_name, model_options
        self.model = fresh_model(model_name, self.data, model_options).eval()
        self.explained: dict[str, float] = {}

    def training(self) -> float:
        """Seconds per training image and epoch: the second epoch (the first warms up) over 256 images with the
        paper's recipe."""
        recipe = train_config(self.config, epochs=2)
        job = TrainingJob("cost", lambda: fresh_model(self.model_name, self.data, self.model_options), self.data,
                          recipe, progress=False)
        return job.run(threads=1).history[-1]["seconds"] / len(self.data)

    def forward(self) -> float:
        """Seconds per image of a batched forward pass."""
        with torch.no_grad():
            return per_image(lambda n: self.model(self.data.x[:max(n, 1)].repeat(4, 1, 1, 1)), 64) / 4

    def explanation(self, name: str, params: dict) -> float:
        """Seconds per explained image of explainer ``name`` with ``params``."""
        key = f"{name}{sorted(params.items(), key=str)}"
        if key not in self.explained:
            explainer = get_explainer(name, **params)
            count = max(1, self.images // 2) if name in SLOW else self.images
            self.explained[key] = per_image(
                lambda n: explainer(self.model, self.data.x[:n], self.data.y[:n], self.config.get("output", "logit")),
                count)
        return self.explained[key]


def hours(seconds: float) -> float:
    return seconds / 3600


def roar(config: dict, images: int) -> dict:
    units = Units(config, config["model"], config["model_options"], images)
    n_train, n_test = split_sizes(config)
    trainings = config["seeds"] * (1 + len(config["methods"]) * len(config["modes"]) * len(config["fractions"]))
    training = trainings * config["epochs"] * (n_train * units.training() + n_test * units.forward())
    explaining = sum((n_train + n_test) * units.explanation(m, config["explainer_params"].get(m, {}))
                     for m in config["methods"] if m != "random")
    return {"trainings": trainings, "training_s": training, "explaining_s": explaining, "metrics_s": 0.0,
            "gpu_s": None}


def mege_reco(config: dict, images: int) -> dict:
    n_train, _ = split_sizes(config)
    k, n = config["k"], min(config["n_samples"], n_train)
    families = {config["model"]: (1 + len(config["shuffle_levels"]), 1 + len(config["noise_levels"])
                                  + len(config["shuffle_levels"]), config["model_options"])}
    if config["lipschitz"]:
        families[LIPSCHITZ_MODEL] = (1, 1, {})
    training = explaining = metrics = gpu = 0.0
    for model, (trained, scored, options) in families.items():
        units = Units(config, model, options, images)
        per_model = config["epochs"] * (n_train * (k - 1) / k * units.training() + n_train / k * units.forward())
        parts = (trained * k * per_model,
                 scored * k * n * sum(units.explanation(m, config["explainer_params"].get(m, {}))
                                      for m in config["explainers"]),
                 scored * n * len(config["explainers"]) * config["mu_fidelity_subsets"] * units.forward())
        training, explaining, metrics = training + parts[0], explaining + parts[1], metrics + parts[2]
        gpu += sum(parts) / GPU_SPEED_UP.get(model, DEFAULT_SPEED_UP)
    trainings = k * sum(trained for trained, _, _ in families.values())
    return {"trainings": trainings, "training_s": training, "explaining_s": explaining, "metrics_s": metrics,
            "gpu_s": gpu}


def fpa(config: dict, images: int) -> dict:
    units = Units(config, config["model"], config["model_options"], images)
    n_train, n_test = split_sizes(config)
    regimes = len(config["regimes"])
    training = regimes * config["epochs"] * (n_train * units.training() + n_test * units.forward())
    reference = fpa_protocol.reference_point(config, (0.0,))
    explainers = dict.fromkeys(fpa_protocol.ESTIMATORS[name].explainer for name in config["estimators"])
    n = min(config["n_images"], n_test)
    explaining = regimes * n * sum(units.explanation(e, fpa_protocol.explainer_params(config, e, reference))
                                   for e in explainers)
    metrics = regimes * n * len(config["estimators"]) * 2 * len(FPA_FRACTIONS) * units.forward()
    return {"trainings": regimes, "training_s": training, "explaining_s": explaining, "metrics_s": metrics,
            "gpu_s": None}


def scorecard(config: dict, images: int) -> dict:
    """benchmark and calibrate-to-interpret: one training, every explainer on the model and each calibrated one."""
    units = Units(config, config["model"], config["model_options"], images)
    n_train, n_test = split_sizes(config)
    training = config["epochs"] * (n_train * units.training() + n_test * units.forward())
    models = 1 + len(config.get("calibrators", [config.get("calibrator")]))
    cost = {name: units.explanation(name, config["explainer_params"].get(name, {})) for name in config["explainers"]}
    explaining = models * config["n_images"] * sum(cost.values())
    explaining += models * config["lipschitz_images"] * config["lipschitz_neighbours"] * sum(
        cost[name] for name in config["lipschitz_explainers"])
    if "sweep_explainers" in config:
        explaining += config["sweep_images"] * len(config["sweep_factors"]) * sum(
            cost[name] for name in config["sweep_explainers"])
    metrics = scoring_passes(ScoringSettings.from_config(config), models) * units.forward()
    return {"trainings": 1, "training_s": training, "explaining_s": explaining, "metrics_s": metrics,
            "gpu_s": None}


def recalx(config: dict, images: int) -> dict:
    units = Units(config, config["model"], config["model_options"], images)
    n_train, n_test = split_sizes(config)
    training = config["epochs"] * (n_train * units.training() + n_test * units.forward())
    explaining = config["n_images"] * sum(units.explanation(name, config["explainer_params"].get(name, {}))
                                          for name in config["explainers"])
    passes = config["n_images"] * len(config["explainers"]) * (config["deletion_steps"] + 1)
    passes += config["calibration_size"] * len(config["levels"]) * config["samples_per_level"]
    return {"trainings": 1, "training_s": training, "explaining_s": explaining, "metrics_s": passes * units.forward(),
            "gpu_s": None}


ESTIMATES = {"roar": roar, "mege-reco": mege_reco, "fpa": fpa, "benchmark": scorecard,
             "calibrate-to-interpret": scorecard, "recalx": recalx}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", nargs="+", default=list(ESTIMATES), choices=list(ESTIMATES))
    parser.add_argument("--images", type=int, default=4, help="images timed per explainer (half for slow ones)")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'protocol':<24}{'trainings':>10}{'train h':>10}{'explain h':>11}{'metrics h':>11}{'CPU-h':>9}"
          f"{'GPU-h (est.)':>14}", flush=True)
    for name in args.protocols:
        config = protocol_config(name, "paper")
        cost = ESTIMATES[name](config, args.images)
        total = cost["training_s"] + cost["explaining_s"] + cost["metrics_s"]
        gpu = cost["gpu_s"] if cost["gpu_s"] is not None else total / GPU_SPEED_UP.get(config["model"],
                                                                                        DEFAULT_SPEED_UP)
        row = {"protocol": name, "trainings": cost["trainings"], "training_h": hours(cost["training_s"]),
               "explaining_h": hours(cost["explaining_s"]), "metrics_h": hours(cost["metrics_s"]),
               "cpu_h": hours(total), "gpu_h": hours(gpu)}
        rows.append(row)
        print(f"{name:<24}{row['trainings']:>10}{row['training_h']:>10.1f}{row['explaining_h']:>11.1f}"
              f"{row['metrics_h']:>11.1f}{row['cpu_h']:>9.1f}{row['gpu_h']:>14.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
