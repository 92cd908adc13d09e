"""The masked-evaluation engine: ``model(x * keep + replacement * (1 - keep))`` for many masks per image."""

from .engine import (
    MaskSet,
    RankedMasks,
    TensorMasks,
    accepts_perturbation_level,
    compose,
    masked_images,
    masked_logits,
    masked_scores,
)
from .replacement import make_replacement, REPLACEMENTS

__all__ = [
    "MaskSet",
    "RankedMasks",
    "TensorMasks",
    "REPLACEMENTS",
    "accepts_perturbation_level",
    "compose",
    "make_replacement",
    "masked_images",
    "masked_logits",
    "masked_scores",
]
