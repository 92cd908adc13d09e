"""Which score of the model an explainer or metric looks at.

Every explainer and metric takes ``output="logit" | "probability" | "log-probability"``: the target class's raw logit,
its softmax probability, or its log-softmax. The papers differ (FPA uses logits, Calibrate-to-Interpret softmax
scores), so the choice is always explicit.
"""

from __future__ import annotations

import torch

from .errors import XaitrustError
from .validation import check_target  # noqa: F401  (the target's check, also importable from here)

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
