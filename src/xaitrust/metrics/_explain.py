"""Explain a batch in chunks and reduce the attributions to maps: the step the stability and sanity metrics share."""

from __future__ import annotations

import torch

from ..chunks import explain_in_chunks
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
    (``reduction=None``) of ``explainer(model, x, target, output)``, ``batch_size`` images per call
    (``xaitrust.chunks.explain_in_chunks``; each chunk is reduced as soon as it is explained)."""

    def reduce(attributions: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        return reduce_attributions(attributions, reduction, inputs=inputs)

    maps = None if reduction is None else reduce
    return explain_in_chunks(explainer, model, x, target, output, batch_size, reduce=maps)
