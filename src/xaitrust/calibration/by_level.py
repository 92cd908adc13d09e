"""Calibration error as a function of perturbation level (ReCalX, Figure 1): how reliable a model's predictions are
on the perturbed inputs perturbation-based explanations feed it."""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from .checks import check_labels
from .kl import MODES, kl_calibration_error
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
    segmentation: dict | None = None,
    n_bins: int = 15,
    kl_mode: str = "top-label",
    also_kl_modes=(),
    seed: int = 0,
    batch_size: int | None = None,
) -> list[dict]:
    """One row per level: ``perturbation_level``, ``pixel_level``, ``n`` and the measures of ``calibration_summary``
    (``kl_calibration_error`` in ``kl_mode``), plus ``kl_calibration_error_<mode>`` (dashes as underscores) for each
    mode of ``also_kl_modes``.

    Each image gets ``samples_per_level`` random feature orders; at level ``l`` the first ``round(l * d)`` of its ``d``
    features (``grouping`` with the ``segmentation`` options of ``xaitrust.calibration.perturbed.feature_segments``)
    of each order are replaced (``xaitrust.calibration.perturbed``), and the model's softmax on all ``N *
    samples_per_level`` perturbed images is scored against the labels. ``pixel_level`` is the mean fraction of pixels
    those copies have replaced (``l`` up to rounding for pixels; for superpixels of unequal size it varies around
    ``l``). One engine pass covers every level; a perturbation-aware model (e.g. ``ReCalX(...).wrap(model)``) is given
    each input's pixel level by the engine. The default levels are the midpoints of ReCalX's ten bins.
    """
    levels = torch.as_tensor(levels, dtype=torch.float64).reshape(-1)
    if len(levels) == 0:
        raise XaitrustError("give at least one perturbation level")
    also_kl_modes = tuple(also_kl_modes)
    if any(mode not in MODES for mode in also_kl_modes):
        raise XaitrustError(f"also_kl_modes must name modes among {', '.join(MODES)}; got {list(also_kl_modes)}")
    labels = check_labels(labels, len(x), getattr(model, "num_classes", int(torch.as_tensor(labels).max()) + 1))
    logits, pixel_levels = perturbed_logits(
        model, x, levels, repeats=samples_per_level, grouping=grouping, segmentation=segmentation,
        replacement=replacement, seed=seed, batch_size=batch_size,
    )
    probs = torch.softmax(logits.double(), dim=-1).cpu()
    copies = labels.repeat_interleave(samples_per_level)
    rows = []
    for index, level in enumerate(levels.tolist()):
        summary = calibration_summary(probs[:, index], copies, n_bins=n_bins, kl_mode=kl_mode)
        extra = {f"kl_calibration_error_{mode.replace('-', '_')}": kl_calibration_error(probs[:, index], copies, mode=mode)
                 for mode in also_kl_modes}
        rows.append({"perturbation_level": level, "pixel_level": pixel_levels[:, index].mean().item(),
                     "n": len(copies), **summary, **extra})
    return rows
