"""Which score of the model an explainer or metric looks at.

Every explainer and metric takes ``output="logit" | "probability" | "log-probability"``: the target class's raw logit,
its softmax probability, or its log-softmax. The papers differ (FPA uses logits, Calibrate-to-Interpret softmax
scores), so the choice is always explicit.
"""

from __future__ import annotations

import torch

from .errors import XaitrustError

OUTPUTS = ("logit", "probability", "log-probability")


def check_output(output: str) -> str:
    """Return ``output`` if it names a known score, else raise a clear error."""
    if output not in OUTPUTS:
        raise XaitrustError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
    return output


def scores_from_logits(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Turn logits ``(..., K)`` into the chosen score for every class ``(..., K)``."""
    check_output(output)
    if output == "logit":
        return logits
    if output == "probability":
        return torch.softmax(logits, dim=-1)
    return torch.log_softmax(logits, dim=-1)


def target_scores(logits: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """The chosen score of class ``target`` for each row: logits ``(B, K)``, target ``(B,)`` -> ``(B,)``."""
    scores = scores_from_logits(logits, output)
    return scores.gather(-1, target.reshape(-1, 1).to(scores.device)).squeeze(-1)


def check_target(target, batch_size: int, num_classes: int | None, device=None) -> torch.Tensor:
    """Validate and broadcast a target (int or ``(B,)`` tensor) to an int64 tensor ``(B,)``."""
    target = torch.as_tensor(target, device=device)
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise XaitrustError(f"target must hold integer class indices; got dtype {target.dtype}")
    target = target.long()
    if target.ndim == 0:
        target = target.expand(batch_size)
    if target.shape != (batch_size,):
        raise XaitrustError(f"target must be an int or a tensor of shape ({batch_size},); got {tuple(target.shape)}")
    if num_classes is not None and batch_size and (target.min() < 0 or target.max() >= num_classes):
        raise XaitrustError(f"target classes must lie in [0, {num_classes - 1}]; got {target.min().item()}..{target.max().item()}")
    return target
