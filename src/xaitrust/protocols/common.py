"""Steps the protocols share: load the configured data, train (or reuse) models inside the run folder, explain
images with caching. Nothing here computes a metric; it only moves data between the library's pieces."""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..calibration import Calibrator, get_calibrator
from ..calibration.summary import calibration_summary
from ..chunks import batched_logits, explain_in_chunks
from ..data import ImageDataset, calibration_split, load_dataset, stratified_sample
from ..devices import on_device, resolve_device
from ..errors import XaitrustError
from ..explainers import get_explainer
from ..models import build_model
from ..models.loading import ModelSource
from ..models.preflight import Preflight, preflight_wrapped
from ..perturb.engine import model_device
from ..training import Runner, SequentialRunner, Task, TrainConfig, TrainingJob
from ..training.trainer import TrainResult, evaluate_accuracy
from .results import summarize
from .run_folder import RunFolder

#: The data keys every protocol shares: a dataset name (``xaitrust datasets``), where its files are (a folder, or the
#: file of an ``npz`` dataset), the loader's own options (e.g. ``image_size``, ``test_fraction``) and subset sizes;
#: and the device models run on (``xaitrust.devices.resolve_device``).
DATA_DEFAULTS = {
    "dataset": "fashion-mnist", "data_root": "", "dataset_options": {}, "train_size": 0, "test_size": 0,
    "device": "auto",
}

#: Defaults of the data keys and of the training recipe keys read by ``train_config`` (plus the architecture: a
#: built-in name or ``path/to/file.py:Name``, and its keyword options).
RECIPE_DEFAULTS = {
    **DATA_DEFAULTS, "model": "cnn", "model_options": {},
    "optimizer": "adam", "lr": 1e-3, "batch_size": 128, "epochs": 5, "seed": 0,
}

#: Keys of the protocols that score a given trained model instead of training one (benchmark, Calibrate to
#: Interpret, ReCalX): ``weights`` of an architecture, the statistics it expects its inputs normalised with, the
#: Grad-CAM layer of a model that does not name one (``xaitrust.models.loading.ModelSource``), and what to do with
#: configured explainers the model cannot support (``"drop"``: leave them out with a warning and say so in
#: ``preflight.txt``; ``"refuse"``: stop before any work).
TRAINED_MODEL_DEFAULTS = {
    "weights": "", "input_mean": [], "input_std": [], "cam_layer": "", "unsupported_explainers": "drop",
}
UNSUPPORTED_EXPLAINERS = ("drop", "refuse")
#: Config keys that list explainers: those a protocol explains with (``explainers`` or ``methods``) and the ones some
#: of its steps use (built with the same ``explainer_params``).
EXPLAINER_LISTS = ("explainers", "methods", "lipschitz_explainers", "sweep_explainers", "meta_explainers")
#: Config keys that list metrics: those a protocol scores with and those it meta-evaluates.
METRIC_LISTS = ("metrics", "meta_metrics")


def check_architecture(config: dict) -> None:
    """Validate a retraining protocol's ``model``: a built-in name or ``path/to/file.py:Name`` that the protocol trains
    with its recipe (MeGe/ReCo, FPA and ROAR retrain by design: a trained model cannot be scored by them)."""
    resolve_device(config.get("device", "auto"))
    source = ModelSource.from_config(config)
    source.check()
    if source.is_trained:
        raise XaitrustError(
            f"the {config.get('protocol', 'this')} protocol trains its models itself (folds, regimes or retrainings "
            "from scratch); model must be an architecture (a built-in name or path/to/file.py:Name), not "
            f"{source.model}"
        )


def check_explainer_lists(config: dict) -> None:
    """Every explainer of the config's explainer lists (``EXPLAINER_LISTS``) and of ``explainer_params`` is registered
    or ``path/to/file.py:Name`` and is built with its parameters (so a bad parameter fails now, even for an explainer
    listed only for the stability metric or not run at all); ``explainers`` names each once and at least one."""
    main = config.get("explainers", config.get("methods"))
    if main is not None:
        duplicated = sorted({name for name in main if main.count(name) > 1})
        if duplicated or not main:
            raise XaitrustError("config key 'explainers' must name each explainer once and at least one"
                                + (f"; listed twice: {', '.join(duplicated)}" if duplicated else ""))
    params = config.get("explainer_params", {})
    listed = [(key, name) for key in EXPLAINER_LISTS for name in config.get(key, [])]
    for key, name in listed + [("explainer_params", name) for name in params]:  # parameters of unlisted ones too
        try:
            get_explainer(name, **params.get(name, {}))
        except XaitrustError as error:
            raise XaitrustError(f"config key {key!r}: {error}") from None


def listed_metrics(config: dict, key: str) -> dict:
    """``{name: Metric}`` of the config's list ``key`` (``METRIC_LISTS``), checked: registered metrics or
    ``path/to/file.py:Name`` ones, each once (a file's metric goes by its own name, as in the tables)."""
    from ..evaluation import get_metric

    try:
        listed = [get_metric(name) for name in config[key]]
    except XaitrustError as error:
        raise XaitrustError(f"config key {key!r}: {error}") from None
    metrics = {metric.name: metric for metric in listed}
    if len(metrics) < len(listed):
        names = [metric.name for metric in listed]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        raise XaitrustError(f"config key {key!r} lists {', '.join(duplicated)} twice; list each metric once")
    return metrics


def check_metric_names(config: dict) -> None:
    """``metrics`` names metrics each once (``listed_metrics``); ``metric_params`` is keyed by metric name and sets
    only parameters those metrics have."""
    metrics = listed_metrics(config, "metrics")
    for name in config["metric_params"]:
        if name not in metrics:
            raise XaitrustError(f"config key 'metric_params' names {name!r}, which 'metrics' does not list "
                                f"(metric names: {', '.join(metrics)})")
    for name, metric in metrics.items():  # every metric, so that one missing a parameter it needs fails here
        metric.check_params(config["metric_params"].get(name, {}))


def check_model_source(config: dict) -> None:
    """Validate a scoring protocol's model keys (``ModelSource.check``) before any data is loaded."""
    resolve_device(config.get("device", "auto"))
    ModelSource.from_config(config).check()
    if config["unsupported_explainers"] not in UNSUPPORTED_EXPLAINERS:
        raise XaitrustError(f"config key 'unsupported_explainers' must be one of {', '.join(UNSUPPORTED_EXPLAINERS)}; "
                            f"got {config['unsupported_explainers']!r}")


def load_split(config: dict, split: str) -> ImageDataset:
    """Split ``split`` of ``config["dataset"]`` with its ``dataset_options``, cut to ``train_size`` / ``test_size``
    (0: all) by a stratified seeded subset."""
    limit = config[f"{split}_size"] or None
    return load_dataset(config["dataset"], config["data_root"] or None, split, limit=limit,
                        **config.get("dataset_options", {}))


def load_splits(config: dict) -> tuple[ImageDataset, ImageDataset]:
    """Train and test splits of ``config["dataset"]`` (``load_split``)."""
    return load_split(config, "train"), load_split(config, "test")


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
    architecture = partial(
        build_model, model_name, train.in_channels, train.num_classes, train.image_size, **(model_options or {})
    )
    factory = partial(on_device, architecture, config_device(run.config))
    return TrainingJob(name, factory, train, recipe, val=val, checkpoint_dir=run.file(f"models/{name}"))


def train_in_run(run: RunFolder, name: str, model_name: str, train, val, recipe, model_options=None) -> TrainResult:
    """Train ``model_name`` with the run's runner (or reuse the finished model in the run folder) and return the
    result."""
    return run.runner.run([training_job(run, name, model_name, train, val, recipe, model_options)])[0]


def runner_for(config: dict) -> Runner:
    """The runner of a protocol's trainings, from its config: ``executor = "local"`` runs them one after another in
    this process, ``"ray"`` as tasks of the Ray cluster at ``ray_address`` (empty: a local Ray instance); either way
    every training runs on ``training_threads`` torch threads, so both give the same weights."""
    threads = config["training_threads"]
    if config["executor"] == "ray":
        from ..training.ray_runner import RayRunner

        return RayRunner(config["ray_address"] or None, threads=threads, device=config_device(config))
    return SequentialRunner(threads=threads)


def run_shards(run: RunFolder, shards: Iterable[tuple[Task, str]]) -> None:
    """With a runner whose tasks run in other processes (``Runner.remote``: the Ray executor), run the ``(task,
    piece)`` shards whose ``piece`` (the last cache piece the task writes, e.g. ``intervals/cnn/saliency.json``) is
    not on disk yet, side by side as the runner's tasks. A local runner runs nothing here: the pipeline then computes
    the same pieces in its own order, with progress bars, and the shards' generator is never drawn from. Either way
    the pipeline afterwards reads or computes every piece with its ``cached_*`` calls, so both give the same bytes."""
    if run.runner.remote:
        run.runner.map(task for task, piece in shards if not run.has_piece(piece))


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
    progress: bool = True,
) -> torch.Tensor:
    """Raw attributions ``(N, C, H, W)`` of ``method`` for ``x``, computed ``batch_size`` images per call (with a
    progress bar unless ``progress`` is false), and cached in the run folder under ``attributions/<key>``."""

    def compute() -> dict[str, torch.Tensor]:
        explainer = get_explainer(method, **params)
        attributions = explain_in_chunks(explainer, model, x, target, output, batch_size,
                                         progress=f"explain {key}" if progress else None)
        return {"attributions": attributions}

    return run.cached_tensors(f"attributions/{key}", compute)["attributions"]


def predictions(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, K)`` of ``model`` for ``x`` in eval mode (``evaluation_mode``), without gradients, in batches
    (``xaitrust.chunks.batched_logits``) moved to the model's device; the logits come back to the CPU, where the
    labels and tables they are compared with are."""
    return batched_logits(model, x, batch_size, device=model_device(model)).cpu()


def fit_calibrator(run: RunFolder, model, calibration: ImageDataset, name: str, **params) -> Calibrator:
    """Fit calibrator ``name`` on the calibration split's logits, or load it from ``calibrators/<name>``."""
    path = run.path / "calibrators" / name
    if path.with_suffix(".json").exists():  # written last by Calibrator.save
        return Calibrator.load(path)
    calibrator = get_calibrator(name, **params).fit(predictions(model, calibration.x), calibration.y)
    calibrator.save(path)
    return calibrator


def held_out_probabilities(models: dict, held_out: ImageDataset) -> dict[str, torch.Tensor]:
    """Each model's probabilities ``(N, K)`` of the held-out images: the float64 softmax of its logits (float32
    saturates at 1, which the calibration errors would read as certainty), on the CPU."""
    return {name: torch.softmax(predictions(model, held_out.x).double(), dim=-1) for name, model in models.items()}


def calibration_table(probabilities: dict[str, torch.Tensor], labels: torch.Tensor) -> pd.DataFrame:
    """Accuracy, binned ECE, density ECE, KL calibration error and NLL (``calibration_summary``) of each model's
    ``probabilities`` ``(N, K)`` (``held_out_probabilities``) against ``labels``, one row per model."""
    return pd.DataFrame([{"model": name, **calibration_summary(probs, labels)}
                         for name, probs in probabilities.items()])


@dataclass
class TrainedWithSplits:
    """The run's model with the test data split into a calibration part and a held-out part."""

    trained: TrainResult
    calibration: ImageDataset
    held_out: ImageDataset

    @property
    def model(self) -> torch.nn.Module:
        return self.trained.model


def config_device(config: dict) -> torch.device:
    """The device of ``config["device"]`` (``auto`` when the config has none)."""
    return resolve_device(config.get("device", "auto"))


def fresh_model(model_name: str, data: ImageDataset, model_options: dict | None = None) -> torch.nn.Module:
    """An untrained ``model_name`` (built-in or ``path/to/file.py:Name``) for ``data``'s images and classes."""
    return build_model(model_name, data.in_channels, data.num_classes, data.image_size, **(model_options or {}))


def check_explainers(config: dict, model: torch.nn.Module) -> None:
    """Before any training or explaining, the explainers of the config (``explainers`` or ``methods``) that cannot
    explain ``model`` (``Explainer.check_model``) are refused or dropped (``keep_supported``), instead of failing
    after hours of work."""
    params = config.get("explainer_params", {})
    supported = {}
    for name in config.get("explainers", config.get("methods", [])):
        try:
            get_explainer(name, **params.get(name, {})).check_model(model)
            supported[name] = None
        except XaitrustError as error:
            supported[name] = str(error)
    keep_supported(config, supported)


def keep_supported(config: dict, supported: dict[str, str | None]) -> None:
    """Refuse the explainers ``supported`` gives a reason against (name -> None or the reason), or, with
    ``unsupported_explainers = "drop"``, leave them out of the config's explainer lists with a warning."""
    refused = {name: reason for name, reason in supported.items() if reason}
    if not refused:
        return
    if config.get("unsupported_explainers", "refuse") != "drop":
        hint = ", or set unsupported_explainers = \"drop\"" if "unsupported_explainers" in config else ""
        raise XaitrustError("the model cannot be explained by " + "; ".join(
            f"{name}: {reason}" for name, reason in refused.items()) + f". Remove these explainers or change the "
            f"model as said{hint}")
    for name, reason in refused.items():
        warnings.warn(f"leaving out explainer {name}: {reason}", UserWarning, stacklevel=2)
    for key in EXPLAINER_LISTS:
        if key in config:
            config[key] = [name for name in config[key] if name not in refused]


def train_and_split(run: RunFolder, config: dict) -> TrainedWithSplits:
    """The run's model with the test split carved into a stratified calibration split of ``calibration_size`` images
    and the held-out rest.

    A trained model (``ModelSource.is_trained``: weights given, a checkpoint, a ``.pt2`` or ``.onnx`` file, an object
    given to the Python API) is loaded and scored as it is, its accuracy measured on the test split; an architecture
    is trained (or reused) on the train split as ``models/model`` with the config's recipe. Data given to the Python
    API (``run.supplied["data"]``, a ``(train, test)`` pair) replaces the configured dataset."""
    train, test = run.supplied.get("data") or load_splits(config)
    check_split_sizes(config, test)
    check_masks(config, test)
    source = ModelSource.from_config(config)
    if source.is_trained:
        model = source.load(test.in_channels, test.num_classes, test.image_size, train.mean, train.std,
                            module=run.supplied.get("model")).to(config_device(config))
        check_model(run, model, test)
        trained = TrainResult(model, None, metrics={"test_accuracy": evaluate_accuracy(model, test)})
    else:
        check_explainers(config, fresh_model(config["model"], train, config["model_options"]))
        trained = train_in_run(run, "model", config["model"], train, test, train_config(config),
                               config["model_options"])
        check_model(run, trained.model, test)  # after training, before the long work: e.g. the Grad-CAM layer
    calibration, held_out = calibration_split(test, config["calibration_size"], seed=config["seed"])
    return TrainedWithSplits(trained, calibration, held_out)


def check_split_sizes(config: dict, test: ImageDataset) -> None:
    """Fail before any work when the calibration split would leave no held-out images to explain."""
    if config["calibration_size"] >= len(test):
        raise XaitrustError(
            f"calibration_size = {config['calibration_size']} leaves no held-out images of the {len(test)} test "
            "images: lower calibration_size, or give more test data (test_size, dataset_options.test_fraction)"
        )


def check_masks(config: dict, data: ImageDataset) -> None:
    """Fail before any work when a metric of the config's metric lists (``METRIC_LISTS``) needs ground-truth masks
    that ``data`` does not have."""
    from ..evaluation import get_metric

    for key in METRIC_LISTS:
        needing = [name for name in config.get(key, []) if "masks" in get_metric(name).needs]
        if needing and data.masks is None:
            raise XaitrustError(f"metrics {', '.join(needing)} compare maps with ground-truth masks, which {data.name} "
                                "does not have (the synthetic 'shapes' data set has; an .npz may hold them as "
                                f"'masks'); drop them from {key!r}")


def check_model(run: RunFolder, model: torch.nn.Module, data: ImageDataset) -> Preflight:
    """The model preflight (``xaitrust.models.preflight``) of a trained model on ``data``, in seconds and before any
    long work: outputs against the classes, input convention, deterministic eval mode, the graph, the Grad-CAM layer
    (chosen for a model that names none) and which configured explainers can explain it. Explainers it cannot
    support are dropped from the run's explainer lists or refused (``unsupported_explainers``); the findings go to
    ``preflight.txt`` in the run folder and to the terminal."""
    config = run.config
    requested = config["explainers"]
    result = preflight_wrapped(model, data.x, data.y, data.num_classes, requested, config.get("explainer_params", {}))
    keep_supported(config, result.supported)
    text = result.describe()
    if "deletion_steps" in config and "mu_fidelity_subsets" in config:
        from .scoring import ScoringSettings, scoring_passes

        passes = scoring_passes(ScoringSettings.from_config(config),
                                1 + len(config.get("calibrators", [config.get("calibrator")])))
        seconds = passes * result.forward_seconds
        text += (f"\nCost estimate: the metrics take about {passes:,} forward passes, "
                 f"{f'{seconds:.0f} s' if seconds < 120 else f'{seconds / 60:.0f} min'} at the measured cost; "
                 "explanations come on top "
                 "(from one backward pass per image for saliency to thousands of forward passes for RISE, "
                 "KernelSHAP and LIME).")
    run.path.joinpath("preflight.txt").write_text(text + "\n")
    tqdm.write(f"preflight of {ModelSource.from_config(config).label}:\n{text}", file=sys.stderr)
    return result


def model_description(config: dict, trained: TrainResult) -> str:
    """The model in words for a report: its name and whether it was given trained or trained here, and its accuracy
    on the test split."""
    source = ModelSource.from_config(config)
    how = "given trained" if source.is_trained else f"trained here for {config['epochs']} epochs"
    accuracy = trained.metrics.get("test_accuracy", float("nan"))
    return f"model {source.label} ({how}; test accuracy {accuracy:.4f})"


def dataset_label(config: dict) -> str:
    """The data in words: the dataset name, with the file or folder of user data."""
    name = config["dataset"].removeprefix("python:").split("@")[0]
    return f"{name} ({config['data_root']})" if config.get("data_root") else name


def images_to_explain(model: torch.nn.Module, held_out: ImageDataset, config: dict):
    """A stratified seeded choice of ``n_images`` held-out images: indices, images and the model's predicted classes
    (the explained targets)."""
    chosen = stratified_sample(held_out.y, min(config["n_images"], len(held_out)), seed=config["seed"])
    x = held_out.x[chosen]
    return chosen, x, predictions(model, x).argmax(dim=1)


def image_samples(model: torch.nn.Module, x: torch.Tensor, data: ImageDataset, chosen: torch.Tensor) -> pd.DataFrame:
    """One row per image of ``x = data.x[chosen]``, in order: its dataset index ``sample`` (``ImageDataset.index``),
    its ``label``, and ``model``'s ``prediction`` and ``confidence`` (the float64 softmax probability of the predicted
    class)."""
    top = torch.softmax(predictions(model, x).double(), dim=1).max(dim=1)
    return pd.DataFrame({"sample": data.index[chosen].numpy(), "label": data.y[chosen].numpy(),
                         "prediction": top.indices.numpy(), "confidence": top.values.numpy()})


def with_sample_columns(results: pd.DataFrame, models: dict, x: torch.Tensor, data: ImageDataset,
                        chosen: torch.Tensor) -> pd.DataFrame:
    """``results`` (rows of the images ``x = data.x[chosen]``, ``sample`` their position) joined back to the images
    (``image_samples``): ``sample`` becomes each image's dataset index, with its ``label``, and the ``prediction``
    and ``confidence`` of the row's model."""
    position = results["sample"].to_numpy()
    samples = {name: image_samples(model, x, data, chosen) for name, model in models.items()}
    prediction = pd.array([pd.NA] * len(results), dtype="Int64")
    confidence = np.full(len(results), np.nan)
    for name, table in samples.items():
        rows = (results["model"] == name).to_numpy()
        prediction[rows] = table["prediction"].to_numpy()[position[rows]]
        confidence[rows] = table["confidence"].to_numpy()[position[rows]]
    images = next(iter(samples.values()))
    return results.assign(sample=images["sample"].to_numpy()[position], label=images["label"].to_numpy()[position],
                          prediction=prediction, confidence=confidence)


def write_results(run: RunFolder, results: pd.DataFrame) -> pd.DataFrame:
    """Write the tidy ``results`` table and its ``summary`` (mean, std, CI per metric x method x model); return it."""
    run.write_table("results", results)
    summary = summarize(results)
    run.write_table("summary", summary)
    return summary


@dataclass
class CalibratedModels:
    """What ``calibrated_models`` returns: the fitted ``calibrators`` by label, the ``models`` to compare
    (``"uncalibrated"`` first, then each label's wrapped model), their ``probabilities`` of the held-out images
    (``held_out_probabilities``), the images' ``labels`` and the calibration ``table`` computed from both."""

    calibrators: dict[str, Calibrator]
    models: dict[str, torch.nn.Module]
    probabilities: dict[str, torch.Tensor]
    labels: torch.Tensor
    table: pd.DataFrame


def calibrated_models(run: RunFolder, prepared: TrainedWithSplits, calibrators: dict[str, str]) -> CalibratedModels:
    """Fit (or load) calibrator ``name`` for each ``label: name`` of ``calibrators`` on the calibration split, and
    measure every model on the held-out images; the calibration table is also written as ``calibration.csv``."""
    fitted = {label: fit_calibrator(run, prepared.model, prepared.calibration, name)
              for label, name in calibrators.items()}
    models = {"uncalibrated": prepared.model, **{label: c.wrap(prepared.model) for label, c in fitted.items()}}
    probabilities = held_out_probabilities(models, prepared.held_out)
    table = calibration_table(probabilities, prepared.held_out.y)
    run.write_table("calibration", table)
    return CalibratedModels(fitted, models, probabilities, prepared.held_out.y, table)


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
