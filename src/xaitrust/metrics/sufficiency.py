"""Sufficiency of local explanations (Dasgupta, Frost & Moshkovitz, "Framework for evaluating faithfulness of local
explanations", ICML 2022).

An explanation system gives each input ``x`` an explanation ``e(x)``, and each explanation ``e`` applies to a set
``C_e`` of inputs (an anchor's rule holds on them, a highlighted phrase occurs in them); the explanation of ``x`` holds
for ``x``, which lies in ``C_e(x)``. The system is sufficient when an explanation fixes the prediction wherever it
applies, ``x' in C_e(x) => f(x') = f(x)``, and the paper measures how far that holds at ``x`` by the local sufficiency

    m_s(x) = Pr_{x' ~ mu | C_e(x)} [ f(x') = f(x) ],

the chance that an input drawn from the data distribution ``mu`` restricted to the inputs the explanation of ``x``
applies to gets ``x``'s prediction; the global sufficiency is its mean over ``x ~ mu``. The paper pairs it with
consistency (``xaitrust.metrics.robustness.consistency``: the same share among the inputs given the same explanation).
An explanation that applies to ``x`` alone is trivially sufficient; one that applies to every input is sufficient only
as far as the model predicts one class.

Here ``f`` is the predicted class and ``mu`` the empirical distribution of the evaluated images (``x`` among them), so
an image's value depends on the other images evaluated with it, by definition; ``x`` always counts in its own
``C_e(x)``, so an explanation that applies to no other image scores 1. A saliency map becomes a discrete explanation
by one of two rules (``rule``):

- ``"pixels"``, the paper's reading of an explanation that highlights features (as an anchor's rule does: the
  features with their values, which apply to the inputs sharing them): ``e(x)`` is the set ``S`` of the ``k`` highest
  pixels of the map (equal values ranked by position, as in ``consistency``) with ``x``'s values there, and it applies
  to ``x'`` when ``|x'_{c,p} - x_{c,p}| <= tolerance`` for every pixel ``p`` of ``S`` and channel ``c``.
  ``tolerance=0`` is the paper's ``x'_S = x_S``; images stored with 8-bit values share exact values, and a tolerance
  of a few levels (e.g. 2 / 255) counts near-equal values as shared.
- ``"map-distance"``, Quantus 0.6's reading (``Sufficiency``): the explanation of ``x`` applies to ``x'`` when their
  maps are close, ``d(m, m') / max d <= threshold``, with ``d`` the standardised Euclidean distance
  ``sqrt(sum_p (m_p - m'_p)^2 / v_p)``, ``v_p`` the unbiased variance of pixel ``p``'s map value over the evaluated
  images (pixels whose value does not vary contribute nothing) and ``max d`` the largest distance between two of
  them. This reads "applies to" as "explains alike": it tells whether images explained alike are predicted alike,
  closer to consistency than to the paper's sufficiency, and depends on the whole batch through ``v`` and ``max d``.

Quantus 0.6 (``Sufficiency``, ``threshold=0.6``, SciPy's ``seuclidean``) leaves ``x`` out of ``mu`` (0 where no other
image is close), computes within each batch of ``batch_size`` images, takes the maps' absolute values (``abs=True``;
the evaluation's ``abs-sum`` maps are non-negative already), scales them by the batch's largest magnitude (which leaves
the standardised distances unchanged) and divides 0 by 0 at a pixel whose map value is the same on every image, which
makes every distance NaN and every value 0. Otherwise, with ``n = |C_e(x)|`` images sharing the explanation and one
batch, Quantus's value is ``(n m_s - 1) / (n - 1)`` of the ``"map-distance"`` value here.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..chunks import LOGITS_BATCH_SIZE, batched_logits, chunk_slices
from ..errors import XaitrustError
from ..perturb.engine import model_device
from ..validation import check_count, check_images, check_maps
from .robustness import top_pixels

RULES = ("pixels", "map-distance")
#: Pixel values compared at once by the ``"pixels"`` rule (rows of images at a time against every image).
COMPARISON_BLOCK = 2**24


def _check_non_negative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < math.inf:
        raise XaitrustError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def applies_by_pixels(x: torch.Tensor, maps: torch.Tensor, k: int, tolerance: float = 0.0) -> torch.Tensor:
    """``(B, B)`` bool: entry ``(i, j)`` says whether the explanation of image ``i`` (the ``k`` highest pixels of its
    map with its values there) applies to image ``j``, i.e. ``j``'s values at those pixels are within ``tolerance`` of
    ``i``'s on every channel."""
    flat = x.flatten(2)  # (B, C, P)
    chosen = top_pixels(maps, k)  # (B, k)
    own = flat.gather(2, chosen.unsqueeze(1).expand(-1, flat.shape[1], -1))  # (B, C, k)
    rows = max(1, COMPARISON_BLOCK // (flat.shape[0] * flat.shape[1] * k))
    applies = torch.empty(len(x), len(x), dtype=torch.bool, device=x.device)
    for part in chunk_slices(len(x), rows):  # bounds the (rows, B, C, k) comparison
        others = flat[:, :, chosen[part]].permute(2, 0, 1, 3)  # every image's values at each row's pixels
        applies[part] = ((others - own[part].unsqueeze(1)).abs() <= tolerance).flatten(2).all(dim=2)
    return applies


def applies_by_map_distance(maps: torch.Tensor, threshold: float = 0.6) -> torch.Tensor:
    """``(B, B)`` bool: whether the standardised Euclidean distance between maps ``i`` and ``j``, divided by the
    largest such distance, is at most ``threshold`` (module docstring)."""
    flat = maps.flatten(1).double()
    variance = flat.var(dim=0) if len(flat) > 1 else torch.zeros_like(flat[0])
    varies = variance > 0
    scaled = flat[:, varies] / variance[varies].sqrt()
    distances = torch.cdist(scaled, scaled, compute_mode="donot_use_mm_for_euclid_dist")
    largest = distances.max()
    return distances / largest.where(largest > 0, 1.0) <= threshold


def sufficiency(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    *,
    rule: str = "pixels",
    k: int = 5,
    tolerance: float = 0.0,
    threshold: float = 0.6,
    batch_size: int = LOGITS_BATCH_SIZE,
) -> torch.Tensor:
    """Local sufficiency ``m_s(x)`` of each image's explanation among the evaluated images -> ``(B,)`` (module
    docstring): the share of the images the explanation of ``x`` applies to (``x`` included) that the model assigns
    to ``x``'s predicted class.

    Args:
        rule: ``"pixels"`` (the ``k`` top pixels of the map with ``x``'s values, equal within ``tolerance``) or
            ``"map-distance"`` (maps within ``threshold`` of the largest standardised distance, as Quantus).
        k, tolerance: the ``"pixels"`` rule's explanation size and value tolerance (unused by ``"map-distance"``).
        threshold: the ``"map-distance"`` rule's bound on the normalised distance (unused by ``"pixels"``).
        batch_size: images per forward pass of the predictions.
    """
    if rule not in RULES:
        raise XaitrustError(f"rule must be one of {', '.join(RULES)}; got {rule!r}")
    x = check_images(x).to(model_device(model))
    maps = check_maps(maps, x).to(x.device)
    if rule == "pixels":
        applies = applies_by_pixels(x, maps, check_count(k, "k"), _check_non_negative(tolerance, "tolerance"))
    else:
        applies = applies_by_map_distance(maps, _check_non_negative(threshold, "threshold"))
    predicted = batched_logits(model, x, batch_size, device=x.device).argmax(dim=1)
    agreeing = applies & (predicted.unsqueeze(0) == predicted.unsqueeze(1))
    return agreeing.sum(dim=1) / applies.sum(dim=1)
