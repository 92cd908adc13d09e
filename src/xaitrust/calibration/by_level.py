"""Calibration error as a function of perturbation level (ReCalX, Figure 1): how reliable a model's predictions are
on the perturbed inputs perturbation-based explanations feed it."""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from .checks import check_labels
from .perturbed import perturbed_logits
from .summary import calibration_summary

DEFAULT_LEVELS = tuple((b + 0.5) / 10 for b in range(10))


def calibration_error_by_level(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels,
    levels=DEFAULT_LEVELS,
    *,
    samples_per_level: int = 1,
    replacement="zero",
    grouping: str = "pixels",
    patch_size: int = 4,
    n_segments: int = 100,
    n_bins: int = 15,
    kl_mode: str = "top-label",
    seed: int = 0,
    batch_size: int | None = None,
) -> list[dict]:
    """One row per level: ``perturbation_level``, ``n`` and the measures of ``calibration_summary``.

    Each image gets ``samples_per_level`` random feature orders; at level ``l`` the first ``round(l * d)`` features of
    each order are replaced (``xaitrust.calibration.perturbed``), and the model's softmax on all ``N *
    samples_per_level`` perturbed images is scored against the labels. One engine pass covers every level; a
    perturbation-aware model (e.g. ``ReCalX(...).wrap(model)``) is given each input's level by the engine. The default
    levels are the midpoints of ReCalX's ten bins.
    """
    levels = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    if len(levels) == 0:
        raise XaitrustError("give at least one perturbation level")
    labels = check_labels(labels, len(x), getattr(model, "num_classes", int(torch.as_tensor(labels).max()) + 1))
    logits, _ = perturbed_logits(
        model, x, levels, repeats=samples_per_level, grouping=grouping, patch_size=patch_size,
        n_segments=n_segments, replacement=replacement, seed=seed, batch_size=batch_size,
    )
    probs = torch.softmax(logits.double(), dim=-1).cpu()
    copies = labels.repeat_interleave(samples_per_level)
    rows = []
    for index, level in enumerate(levels.tolist()):
        summary = calibration_summary(probs[:, index], copies, n_bins=n_bins, kl_mode=kl_mode)
        rows.append({"perturbation_level": level, "n": len(copies), **summary})
    return rows
