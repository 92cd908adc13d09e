"""Calibrate a trained model: carve a calibration split from its dataset's test data, fit, save the calibrator beside
the model (or in a folder of the user's choice), and measure calibration before and after on the remaining (held-out) test data."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..chunks import batched_logits
from ..perturb.batching import auto_batch_size
from ..perturb.engine import model_device
from .base import get_calibrator
from .by_level import calibration_error_by_level
from .plots import plot_error_by_level, reliability_diagram
from .summary import calibration_summary


def model_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
    """Clean logits ``(N, K)`` on the model's device (``xaitrust.chunks.batched_logits``: no gradients, eval mode), in
    chunks of ``batch_size`` images (``None``: the masked-evaluation engine's ``auto_batch_size``)."""
    device = model_device(model)
    if batch_size is None:
        batch_size = auto_batch_size(model, x.shape[1:], device)
    return batched_logits(model, x, batch_size, device=device)


def calibrate_checkpoint(
    checkpoint,
    method: str = "temperature",
    calibration_size: int = 2000,
    seed: int = 0,
    root=None,
    limit: int | None = None,
    level_eval_size: int = 1000,
    **method_options,
) -> dict:
    """``calibrate_model`` on the model of an xaitrust checkpoint and the test split of the data it records, writing
    into the checkpoint folder."""
    from ..data import load_dataset
    from ..training import load_metadata, load_model

    folder = Path(checkpoint)
    folder = folder if folder.is_dir() else folder.parent
    metadata = load_metadata(checkpoint)
    recorded = metadata.get("data") or {"dataset": metadata["dataset"]}
    dataset = load_dataset(recorded["dataset"], root or recorded.get("root"), split="test",
                           **recorded.get("options", {}))
    return calibrate_model(load_model(checkpoint), dataset, folder, method, calibration_size, seed, limit,
                           level_eval_size, **method_options)


def calibrate_model(
    model: torch.nn.Module,
    dataset,
    folder,
    method: str = "temperature",
    calibration_size: int = 2000,
    seed: int = 0,
    limit: int | None = None,
    level_eval_size: int = 1000,
    **method_options,
) -> dict:
    """Fit ``method`` on ``calibration_size`` samples of the test data ``dataset`` (stratified, ``seed``); with
    ``limit``, only a stratified subset of ``limit`` test samples is used (faster; the KL estimator is O(N^2)).

    Writes ``calibration-<method>.safetensors/.json``, ``calibration-<method>-summary.json`` and
    ``calibration-<method>-reliability.png`` (and for ReCalX ``calibration-recalx-levels.png``, KL error by
    perturbation level before and after on up to ``level_eval_size`` held-out images) in ``folder``. Returns
    ``{"before": ..., "after": ..., "files": ...}`` with the measures of ``calibration_summary`` on held-out data.
    """
    from ..data import calibration_split, stratified_sample

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if limit is not None and limit < len(dataset):
        dataset = dataset.subset(stratified_sample(dataset.y, limit, seed=0))
    if method == "recalx":
        method_options.setdefault("seed", seed)
    calibrator = get_calibrator(method, **method_options)
    calibration, held_out = calibration_split(dataset, calibration_size, seed=seed)
    if method == "recalx":
        calibrator.fit(model, calibration.x, calibration.y)
    else:
        calibrator.fit(model_logits(model, calibration.x), calibration.y)
    logits = model_logits(model, held_out.x)
    before = torch.softmax(logits.double(), dim=1)
    after = calibrator(logits.double()).exp()
    stem = folder / f"calibration-{method}"
    files = {"calibrator": str(calibrator.save(stem))}
    files["reliability"] = str(reliability_diagram(after, held_out.y, f"{stem}-reliability.png", title=f"{method} (held-out)"))
    result = {
        "method": method, "calibration_size": len(calibration), "held_out_size": len(held_out), "seed": seed,
        "before": calibration_summary(before, held_out.y), "after": calibration_summary(after, held_out.y),
        "learned": {name: torch.as_tensor(getattr(calibrator, name)).tolist() for name in calibrator.learned_names},
    }
    if method == "recalx":
        subset = held_out.subset(slice(0, level_eval_size))
        curves = {
            "uncalibrated": calibration_error_by_level(model, subset.x, subset.y, seed=seed + 1),
            "ReCalX": calibration_error_by_level(calibrator.wrap(model), subset.x, subset.y, seed=seed + 1),
        }
        files["levels"] = str(plot_error_by_level(curves, f"{stem}-levels.png", title="held-out data, zero baseline"))
        result["by_level"] = curves
    result["files"] = files
    Path(f"{stem}-summary.json").write_text(json.dumps(result, indent=2))
    return result
