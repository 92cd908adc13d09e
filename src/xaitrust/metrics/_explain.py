"""Explain a batch in chunks and reduce the attributions to maps: the step the stability and sanity metrics share."""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..explainers.reduce import reduce_attributions


def explain_maps(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    output: str = "logit",
    reduction: str | None = "abs-sum",
    batch_size: int = 256,
) -> torch.Tensor:
    """Maps ``(B, H, W)`` (``reduction`` from ``xaitrust.explainers.reduce``) or raw attributions ``(B, C, H, W)``
    (``reduction=None``) of ``explainer(model, x, target, output)``, ``batch_size`` images per call."""
    if batch_size < 1:
        raise XaitrustError(f"batch_size must be a positive integer; got {batch_size}")
    parts = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        attributions = explainer(model, chunk, target[start : start + batch_size], output)
        if reduction is not None:
            attributions = reduce_attributions(attributions, reduction, inputs=chunk.to(attributions.device))
        parts.append(attributions)
    return torch.cat(parts)
