"""Sufficiency (``xaitrust.metrics.sufficiency``) in the registry; the maths, the paper and how Quantus 0.6 differs
live there."""

from __future__ import annotations

from ..metrics.sufficiency import sufficiency
from .registry import register_metric


def _sufficiency(model, x, maps, *, rule="pixels", k: int = 5, tolerance: float = 0.0, threshold: float = 0.6):
    return sufficiency(model, x, maps, rule=rule, k=k, tolerance=tolerance, threshold=threshold)


register_metric(
    _sufficiency, name="sufficiency", higher_is_better=True,
    description="Share of the evaluated images (x included) the explanation of x applies to that the model assigns to "
    "x's class. rule 'pixels': the explanation is the map's `k` top pixels with x's values there and applies to the "
    "images whose values there are within `tolerance` (0: equal); 'map-distance' (Quantus's reading): to the images "
    "whose maps lie within `threshold` of the largest standardised Euclidean distance between two maps.",
    source="Dasgupta, Frost & Moshkovitz, Framework for evaluating faithfulness of local explanations, ICML 2022",
)
