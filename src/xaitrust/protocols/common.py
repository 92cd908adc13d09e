"""Steps the protocols share: load the configured data, train (or reuse) models inside the run folder, explain
images with caching. Nothing here computes a metric; it only moves data between the library's pieces."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..calibration import Calibrator, get_calibrator
from ..calibration.summary import calibration_summary
from ..data import ImageDataset, calibration_split, load_dataset, stratified_sample
from ..errors import XaitrustError
from ..explainers import get_explainer
from ..model_mode import evaluation_mode
from ..models import build_model
from ..training import TrainConfig, TrainingJob
from ..training.trainer import TrainResult
from .results import summarize
from .run_folder import RunFolder

#: Config keys every protocol shares (with the training recipe keys below).
DATA_KEYS = ("dataset", "data_root", "train_size", "test_size")

#: Defaults of the data keys and of the training recipe keys read by ``train_config`` (plus the model's name).
RECIPE_DEFAULTS = {
    "dataset": "fashion-mnist", "data_root": "", "train_size": 0, "test_size": 0, "model": "cnn",
    "optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 5, "seed": 0,
}


def load_splits(config: dict) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``config["dataset"]``, cut to ``train_size`` / ``test_size`` (0: all) by a
    stratified seeded subset."""
    root = config.get("data_root") or None
    train = load_dataset(config["dataset"], root, "train", limit=config["train_size"] or None)
    test = load_dataset(config["dataset"], root, "test", limit=config["test_size"] or None)
    return train, test


def train_config(config: dict, **overrides) -> TrainConfig:
    """The training recipe from the protocol config keys ``optimizer``, ``lr``, ``batch_size``, ``epochs``, ``seed``."""
    values = {key: config[key] for key in ("optimizer", "lr", "batch_size", "epochs", "seed")}
    values.update(overrides)
    return TrainConfig(**values)


def training_job(
    run: RunFolder, name: str, model_name: str, train: ImageDataset, val: ImageDataset | None, recipe: TrainConfig,
    model_options: dict | None = None,
) -> TrainingJob:
    """A training job whose checkpoint (and resumable state) lives in ``models/<name>`` of the run folder."""
    factory = partial(
        build_model, model_name, train.in_channels, train.num_classes, train.image_size, **(model_options or {})
    )
    return TrainingJob(name, factory, train, recipe, val=val, checkpoint_dir=run.file(f"models/{name}"))


def train_in_run(run: RunFolder, name: str, model_name: str, train, val, recipe, model_options=None) -> TrainResult:
    """Train ``model_name`` (or reuse the finished model in the run folder) and return the result."""
    return training_job(run, name, model_name, train, val, recipe, model_options).run()


def explain_cached(
    run: RunFolder,
    key: str,
    method: str,
    params: dict,
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    output: str,
    batch_size: int = 64,
) -> torch.Tensor:
    """Raw attributions ``(N, C, H, W)`` of ``method`` for ``x``, computed ``batch_size`` images per call with a
    progress bar, and cached in the run folder under ``attributions/<key>``."""

    def compute() -> dict[str, torch.Tensor]:
        explainer = get_explainer(method, **params)
        parts = []
        for start in tqdm(range(0, len(x), batch_size), desc=f"explain {key}", leave=False, unit="batch"):
            parts.append(explainer(model, x[start : start + batch_size], target[start : start + batch_size], output))
        return {"attributions": torch.cat(parts)}

    return run.cached_tensors(f"attributions/{key}", compute)["attributions"]


def predictions(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, K)`` of ``model`` for ``x`` in eval mode (``evaluation_mode``), without gradients, in batches."""
    with evaluation_mode(model), torch.no_grad():
        return torch.cat([model(x[start : start + batch_size]) for start in range(0, len(x), batch_size)])


def fit_calibrator(run: RunFolder, model, calibration: ImageDataset, name: str, **params) -> Calibrator:
    """Fit calibrator ``name`` on the calibration split's logits, or load it from ``calibrators/<name>``."""
    path = run.path / "calibrators" / name
    if path.with_suffix(".json").exists():  # written last by Calibrator.save
        return Calibrator.load(path)
    calibrator = get_calibrator(name, **params).fit(predictions(model, calibration.x), calibration.y)
    calibrator.save(path)
    return calibrator


def calibration_table(models: dict, held_out: ImageDataset) -> pd.DataFrame:
    """Accuracy, binned ECE, density ECE, KL calibration error and NLL of each model on the held-out images."""
    rows = []
    for name, model in models.items():
        probs = torch.softmax(predictions(model, held_out.x).double(), dim=-1)  # float32 saturates at 1
        rows.append({"model": name, **calibration_summary(probs, held_out.y)})
    return pd.DataFrame(rows)


@dataclass
class TrainedWithSplits:
    """The run's model with the test data split into a calibration part and a held-out part."""

    trained: TrainResult
    calibration: ImageDataset
    held_out: ImageDataset

    @property
    def model(self) -> torch.nn.Module:
        return self.trained.model


def check_explainers(config: dict, model_name: str, data: ImageDataset, model_options: dict | None = None) -> None:
    """Fail before any training when an explainer of the config (``explainers`` or ``methods``) cannot explain a
    ``model_name`` built for ``data`` (``Explainer.check_model``), instead of after hours of it."""
    model = build_model(model_name, data.in_channels, data.num_classes, data.image_size, **(model_options or {}))
    for name in config.get("explainers", config.get("methods", [])):
        get_explainer(name, **config.get("explainer_params", {}).get(name, {})).check_model(model)


def train_and_split(run: RunFolder, config: dict) -> TrainedWithSplits:
    """Train (or reuse) ``config["model"]`` on the train split as ``models/model``, and carve a stratified
    calibration split of ``calibration_size`` images from the test split; the rest is held out."""
    train, test = load_splits(config)
    check_explainers(config, config["model"], train)
    trained = train_in_run(run, "model", config["model"], train, test, train_config(config))
    calibration, held_out = calibration_split(test, config["calibration_size"], seed=config["seed"])
    return TrainedWithSplits(trained, calibration, held_out)


def images_to_explain(model: torch.nn.Module, held_out: ImageDataset, config: dict):
    """A stratified seeded choice of ``n_images`` held-out images: indices, images and the model's predicted classes
    (the explained targets)."""
    chosen = stratified_sample(held_out.y, min(config["n_images"], len(held_out)), seed=config["seed"])
    x = held_out.x[chosen]
    return chosen, x, predictions(model, x).argmax(dim=1)


def write_results(run: RunFolder, results: pd.DataFrame) -> pd.DataFrame:
    """Write the tidy ``results`` table and its ``summary`` (mean, std, CI per metric x method x model); return it."""
    run.write_table("results", results)
    summary = summarize(results)
    run.write_table("summary", summary)
    return summary


def calibrated_models(run: RunFolder, prepared: TrainedWithSplits, calibrators: dict[str, str]):
    """Fit (or load) calibrator ``name`` for each ``label: name`` of ``calibrators`` on the calibration split.

    Returns the fitted calibrators by label, the models to compare (``"uncalibrated"`` first, then each label's
    wrapped model) and their held-out calibration table, which is also written as ``calibration.csv``.
    """
    fitted = {label: fit_calibrator(run, prepared.model, prepared.calibration, name) for label, name in calibrators.items()}
    models = {"uncalibrated": prepared.model, **{label: c.wrap(prepared.model) for label, c in fitted.items()}}
    table = calibration_table(models, prepared.held_out)
    run.write_table("calibration", table)
    return fitted, models, table


def removal_value(config: dict) -> str | float:
    """``config["removal_value"]``, checked: ``"mean"`` or a number in [0, 1] in raw image units."""
    value = config["removal_value"]
    if value == "mean":
        return value
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not 0 <= number <= 1:
        raise XaitrustError(
            "config key 'removal_value' must be 'mean' (the training images' per-channel mean, the zero of the "
            "model's normalised input) or a number in [0, 1] in raw image units (e.g. 0.5, mid-grey, the zero of the "
            f"paper's [-1, 1] scaling, or 0, black); got {value!r}"
        )
    return number


def removal_fill(config: dict, channel_mean) -> tuple[float, ...]:
    """The raw value of a removed pixel, one number per channel: ``channel_mean`` (the per-channel mean of the
    training images, which an xaitrust model subtracts from its input, so the zero of that input) for
    ``removal_value = "mean"``, else the number in every channel. FPA uses it alike for FPA, random erasing and the
    MIF/LIF curves; the scorecard for its MIF/LIF curves."""
    value = removal_value(config)
    channel_mean = [float(v) for v in torch.as_tensor(channel_mean).flatten()]
    return tuple(channel_mean) if value == "mean" else (value,) * len(channel_mean)


def describe_fill(config: dict, fill: tuple[float, ...]) -> str:
    """``fill`` in words for the report."""
    numbers = ", ".join(f"{v:.3f}" for v in fill)
    if removal_value(config) == "mean":
        return f"the training images' per-channel mean ({numbers}), the zero of the model's normalised input"
    return f"{numbers} in raw image units ([0, 1])"
