"""What every command that works on a trained model shares: how the model and the data come in, the device and the
threads.

- Model: ``--model`` (a checkpoint folder, ``path/to/file.py:Name`` with ``--weights W.safetensors``, a built-in
  architecture with ``--weights``, a ``.pt2`` or ``.onnx`` file; ``xaitrust.models.loading.ModelSource``),
  ``--model-options`` (keyword options of an architecture), ``--input-mean`` / ``--input-std`` (the statistics a
  model trained on normalised inputs expects), ``--cam-layer``.
- Data: ``--dataset`` (``xaitrust datasets``; default: the one a checkpoint records), ``--data-root`` (a folder, or
  the ``.npz`` file), ``--dataset-options`` (the loader's options). A checkpoint records its data's kind, root and
  options, so ``--model CHECKPOINT`` alone finds them again.
- ``--device`` (``auto``: CUDA when available, else the CPU) and ``--threads``.

Tables are TOML inline-table bodies: ``--model-options "width = 8"``, ``--dataset-options "image_size = 32,
test_fraction = 0.5"``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
import torch

from ..devices import resolve_device
from ..errors import XaitrustError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def parse_table(text: str | None, option: str) -> dict:
    """The TOML inline table ``{text}`` as a dict, or a clear error naming ``option``."""
    if not text:
        return {}
    try:
        return tomllib.loads(f"table = {{{text}}}")["table"]
    except tomllib.TOMLDecodeError as error:
        raise XaitrustError(f"{option} must be TOML key = value pairs separated by commas, e.g. "
                            f"\"image_size = 32, test_fraction = 0.5\"; got {text!r} ({error})") from None


def parse_numbers(text: str | None, option: str) -> list[float]:
    """Comma-separated numbers (one per channel), or a clear error naming ``option``."""
    if not text:
        return []
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise XaitrustError(f"{option} must be comma-separated numbers, one per channel; got {text!r}") from None


def model_options(command):
    """The options that say which trained model to load."""
    for option in reversed([
        click.option("--model", "--checkpoint", "model", required=True,
                     help="Trained model: checkpoint folder, path/to/file.py:Name or a built-in architecture (both with "
                          "--weights), .pt2 (torch.export) or .onnx file. Pickled torch.save files are refused."),
        click.option("--weights", default="", help="Safetensors state dict of the --model architecture."),
        click.option("--model-options", "model_options_text", default="",
                     help="Keyword options of the architecture, as TOML: \"width = 8, depth = 2\"."),
        click.option("--input-mean", default="", help="Per-channel mean the model expects inputs normalised with "
                     "(comma-separated); omit if the model takes [0, 1] images and normalises itself."),
        click.option("--input-std", default="", help="Per-channel std that goes with --input-mean."),
        click.option("--cam-layer", default="", help="Dotted name of the layer Grad-CAM uses (default: chosen)."),
    ]):
        command = option(command)
    return command


def data_options(command):
    """The options that say which data to load."""
    for option in reversed([
        click.option("--dataset", default=None, help="Dataset name (see `xaitrust datasets`; default: the "
                     "checkpoint's). folder and npz take your images."),
        click.option("--data-root", default=None, type=click.Path(),
                     help="Where the dataset is: a folder, or the .npz file (default: the checkpoint's)."),
        click.option("--dataset-options", "dataset_options_text", default="",
                     help="The dataset loader's options, as TOML: \"image_size = 32, test_fraction = 0.5\"."),
    ]):
        command = option(command)
    return command


def runtime_options(command):
    """``--device`` and ``--threads``."""
    command = click.option("--threads", type=click.IntRange(min=1), default=None,
                           help="CPU threads for torch (default: torch's choice).")(command)
    return click.option("--device", default="auto", show_default=True,
                        help="auto (CUDA when available, else CPU), cpu, cuda or cuda:N.")(command)


def apply_runtime(device: str, threads: int | None) -> torch.device:
    """Set torch's thread count and return the resolved device."""
    if threads is not None:
        torch.set_num_threads(threads)
    return resolve_device(device)


@dataclass
class ModelAndData:
    """A loaded trained model, the description of its source, and the test split of its data."""

    model: torch.nn.Module
    source: object
    test: object

    @property
    def label(self) -> str:
        return self.source.label


def load_model_and_data(
    model: str, weights: str, model_options_text: str, input_mean: str, input_std: str, cam_layer: str,
    dataset: str | None, data_root: str | None, dataset_options_text: str, device: torch.device,
    explainers: list[str] | None = None,
) -> ModelAndData:
    """The trained model of ``--model`` (on ``device``, eval mode) and the test split of its data, after the model
    preflight (``xaitrust.models.preflight``): it fits the data, and can be explained by ``explainers`` (a Grad-CAM
    layer is chosen for a model that names none); else a clear error before any work."""
    from ..data import load_dataset
    from ..models.loading import ModelSource
    from ..models.preflight import check_explainers, preflight_wrapped

    source = ModelSource(model, weights, parse_table(model_options_text, "--model-options"),
                         tuple(parse_numbers(input_mean, "--input-mean")),
                         tuple(parse_numbers(input_std, "--input-std")), cam_layer)
    source.check()
    recorded = recorded_data(source)
    dataset = dataset or recorded.get("dataset")
    if not dataset:
        raise XaitrustError(f"{model} does not record its data set; pass --dataset (and --data-root for your own "
                            "images: folder or npz)")
    same = dataset == recorded.get("dataset")
    root = data_root or (recorded.get("root") if same else None)
    options = parse_table(dataset_options_text, "--dataset-options") or (recorded.get("options") or {} if same else {})
    test = load_dataset(dataset, root, "test", **options)
    loaded = source.load(test.in_channels, test.num_classes, test.image_size, test.mean, test.std).to(device)
    result = preflight_wrapped(loaded, test.x, test.y, test.num_classes, explainers or [])
    check_explainers(result, explainers or [])
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    return ModelAndData(loaded, source, test)


def recorded_data(source) -> dict:
    """What a checkpoint folder records of its data: ``dataset``, ``root``, ``options`` (empty for other sources)."""
    if source.kind != "checkpoint":
        return {}
    from ..training import load_metadata

    metadata = load_metadata(source.model)
    return metadata.get("data") or {"dataset": metadata.get("dataset")}


def chosen_images(test, n_images: int, seed: int) -> torch.Tensor:
    """Indices (in ``test``) of ``n_images`` test images, a seeded permutation's first ones, in index order."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(len(test), generator=generator)[: min(n_images, len(test))].sort().values
