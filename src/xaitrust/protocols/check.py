"""``xaitrust run PROTOCOL --check``: everything a run is checked against before its long work, and its plan, in
seconds and without writing anything.

The config is resolved and validated key by key; the data is loaded and checked against the config (split sizes,
ground-truth masks the metrics need); the model is loaded (a trained one) or built (an architecture the run trains)
and passes the model preflight (``xaitrust.models.preflight``: outputs against the classes, input convention,
deterministic eval mode, which explainers can explain it, the Grad-CAM layer). The plan says what the run will train
and explain, and estimates its cost from the per-image costs the preflight measured.
"""

from __future__ import annotations

from ..models.loading import ModelSource
from ..models.preflight import preflight_wrapped
from . import protocol_config, protocol_module
from .common import check_masks, check_split_sizes, fresh_model, keep_supported, load_split, load_splits

#: Forward + backward + optimizer step of a training image against the measured forward + backward pass.
TRAINING_OVERHEAD = 1.5


def check_run(name: str, profile: str | None = None, config_file=None, overrides: dict | None = None,
              supplied: dict | None = None) -> str:
    """Check protocol ``name``'s config, data and model as the run would before any training, and return its plan.
    Raises ``XaitrustError`` for the first problem found."""
    config = protocol_config(name, profile, config_file, overrides)
    supplied = supplied or {}
    if "data" in supplied:
        train, test = supplied["data"]
    elif "test_size" in config:
        train, test = load_splits(config)
    else:
        train = test = load_split(config, "train")
    if "calibration_size" in config:
        check_split_sizes(config, test)
        check_masks(config, test)
    source = ModelSource.from_config(config)
    requested = list(config.get("explainers", config.get("methods", [])))
    if source.is_trained:
        model = source.load(test.in_channels, test.num_classes, test.image_size, train.mean, train.std,
                            module=supplied.get("model"))
    else:
        model = fresh_model(config["model"], train, config["model_options"])
    result = preflight_wrapped(model, test.x, test.y, test.num_classes, requested, config.get("explainer_params", {}))
    keep_supported(config, result.supported)
    n_trainings = protocol_module(name).trainings(config)
    images = f"{len(train)} training, {len(test)} test images" if test is not train else f"{len(train)} images"
    lines = [
        f"protocol {name}, profile {config['profile']}: config valid.",
        f"data: {config['dataset']} ({images} of {test.in_channels}x{test.image_size[0]}x{test.image_size[1]}, "
        f"{test.num_classes} classes).",
        f"model: {source.label} ("
        + ("given trained; scored as it is" if source.is_trained else "an architecture the run trains; the "
           "preflight's accuracies below are those of the untrained model") + ").",
        f"explainers: {', '.join(config.get('explainers', config.get('methods', [])))}"
        + (f" (left out: {', '.join(sorted(set(requested) - set(config.get('explainers', config.get('methods', [])))))})"
           if len(requested) > len(config.get("explainers", config.get("methods", []))) else "") + ".",
    ]
    if n_trainings:
        seconds = n_trainings * config["epochs"] * len(train) * result.gradient_seconds * TRAINING_OVERHEAD
        lines.append(f"trainings: {n_trainings} of {config['epochs']} epochs on {len(train)} images, about "
                     f"{_duration(seconds)} at the measured cost of a gradient pass; {_executor(config)}.")
    lines.append("preflight:\n  " + result.describe().replace("\n", "\n  "))
    return "\n".join(lines)


def _executor(config: dict) -> str:
    """How the trainings will run, in words."""
    threads = f"{config['training_threads']} torch thread{'s' if config['training_threads'] > 1 else ''}"
    if config["executor"] == "ray":
        cluster = (f"the Ray cluster at {config['ray_address']}" if config["ray_address"]
                   else "Ray ($RAY_ADDRESS, the cluster `ray start` started here, else a local instance)")
        return f"each a task of {cluster} on {threads}"
    return f"one after another in this process, each on {threads}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"
