"""Validation of what calibrators and calibration-error estimators are given: logits, probabilities, labels.

"Labels out of range" means a label outside ``[0, K - 1]`` where ``K`` is the number of columns of the logits or
probabilities: a class the predictions have no column for (e.g. a model with 10 outputs scored on 11-class data).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import XaitrustError

SUM_TOLERANCE = 1e-3


def as_matrix(values, what: str) -> torch.Tensor:
    """``values`` (tensor or array) validated as a finite float ``(N, K)`` tensor with ``N >= 1`` and ``K >= 2``.

    Device, dtype and autograd history are kept (calibrated logits must stay differentiable).
    """
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    if not isinstance(values, torch.Tensor) or not (values.dtype.is_floating_point):
        raise XaitrustError(f"{what} must be a float tensor or array (N, K); got {getattr(values, 'dtype', type(values))}")
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise XaitrustError(f"{what} must have shape (N, K) with N >= 1 samples and K >= 2 classes; got {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise XaitrustError(f"{what} contain NaN or infinite values; check the model's outputs")
    return values


def check_labels(labels, n_samples: int, num_classes: int) -> torch.Tensor:
    """Integer labels ``(N,)`` in ``[0, num_classes - 1]`` as an int64 CPU tensor."""
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(labels)
    labels = torch.as_tensor(labels)
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise XaitrustError(f"labels must hold integer class indices; got dtype {labels.dtype}")
    if labels.shape != (n_samples,):
        raise XaitrustError(f"labels must have shape ({n_samples},), one per sample; got {tuple(labels.shape)}")
    labels = labels.to("cpu", torch.long)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise XaitrustError(
            f"labels must lie in [0, {num_classes - 1}] for predictions over {num_classes} classes; "
            f"got {labels.min().item()}..{labels.max().item()} (does the model's number of classes match the data?)"
        )
    return labels


def check_probabilities(probs, labels) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(N, K)`` in [0, 1] whose rows sum to one (within ``SUM_TOLERANCE``), as float64 CPU, and labels."""
    probs = as_matrix(probs, "probabilities").detach().to("cpu", torch.float64)
    if probs.min() < 0 or probs.max() > 1:
        raise XaitrustError("probabilities must lie in [0, 1]; pass softmax(logits), not logits")
    worst = (probs.sum(dim=1) - 1).abs().max().item()
    if worst > SUM_TOLERANCE:
        raise XaitrustError(f"each row of probabilities must sum to 1 (off by up to {worst:.3g}); pass softmax(logits)")
    return probs, check_labels(labels, len(probs), probs.shape[1])


def check_logits(logits, labels=None, num_classes: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits ``(N, K)`` (with ``K == num_classes`` when given; kept as given) and, if given, their labels."""
    logits = as_matrix(logits, "logits")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise XaitrustError(f"the calibrator was fitted on {num_classes} classes but the logits have {logits.shape[1]}")
    return logits, None if labels is None else check_labels(labels, len(logits), logits.shape[1])
