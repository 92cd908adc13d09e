"""Binned calibration errors: ECE and MCE (Naeini et al., 2015; Guo et al., 2017), top-label or classwise.

Top-label (confidence) calibration looks at the predicted class only: the score is ``s_i = max_k p_ik`` and the event
``argmax_k p_ik == y_i``. Classwise calibration (Kull et al., 2019) looks at every class ``k``: the score ``p_ik`` and
the event ``y_i == k``. Scores are grouped into ``n_bins`` bins, of equal width on [0, 1] (``binning="width"``) or
holding equal numbers of samples (``binning="mass"``), and in each bin ``b`` the mean score ``conf_b`` is compared
with the event's frequency ``acc_b``:

    ECE = sum_b |B_b| / N * |acc_b - conf_b|         MCE = max_b |acc_b - conf_b| (non-empty bins)

Classwise ECE averages the per-class ECEs over classes; classwise MCE takes the maximum over classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from .checks import check_probabilities

BINNINGS = ("width", "mass")
MODES = ("top-label", "classwise")


@dataclass(frozen=True)
class ReliabilityBins:
    """Per-bin statistics ``(n_bins, C)`` (``C = 1`` top-label, ``K`` classwise): sample count, mean score, frequency
    of the event. Empty bins have count 0 and NaN means."""

    count: torch.Tensor
    confidence: torch.Tensor
    accuracy: torch.Tensor


def reliability_bins(probs, labels, n_bins: int = 15, binning: str = "width", mode: str = "top-label") -> ReliabilityBins:
    """Bin the scores of ``probs`` ``(N, K)`` against ``labels`` ``(N,)`` (see the module docstring)."""
    if not isinstance(n_bins, int) or n_bins < 1:
        raise XaitrustError(f"n_bins must be a positive integer; got {n_bins!r}")
    if binning not in BINNINGS:
        raise XaitrustError(f"binning must be one of {', '.join(BINNINGS)}; got {binning!r}")
    if mode not in MODES:
        raise XaitrustError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    probs, labels = check_probabilities(probs, labels)
    if mode == "top-label":
        confidence, predicted = probs.max(dim=1)
        scores, hits = confidence[:, None], (predicted == labels).double()[:, None]
    else:
        scores, hits = probs, torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    if binning == "width":
        index = (scores * n_bins).long().clamp(0, n_bins - 1)
    else:
        # Edges at the score quantiles; equal scores always share a bin (ties make bins unequal rather than split
        # a tie by row order, which would make the ECE depend on the order of the samples).
        levels = torch.linspace(0, 1, n_bins + 1, dtype=scores.dtype)[1:-1]
        inner_edges = torch.quantile(scores, levels, dim=0)  # (n_bins - 1, columns)
        index = torch.searchsorted(inner_edges.T.contiguous(), scores.T.contiguous(), right=True).T
    count = torch.zeros(n_bins, scores.shape[1], dtype=torch.float64).scatter_add_(0, index, torch.ones_like(scores))
    score_sum = torch.zeros_like(count).scatter_add_(0, index, scores)
    hit_sum = torch.zeros_like(count).scatter_add_(0, index, hits)
    return ReliabilityBins(count, score_sum / count, hit_sum / count)


def ece(probs, labels, n_bins: int = 15, binning: str = "width", mode: str = "top-label") -> float:
    """Expected calibration error (see the module docstring); 0 for perfectly calibrated bins."""
    bins = reliability_bins(probs, labels, n_bins, binning, mode)
    weighted = (bins.count * (bins.accuracy - bins.confidence).abs()).nan_to_num(0.0)
    return (weighted.sum(dim=0) / bins.count.sum(dim=0)).mean().item()


def mce(probs, labels, n_bins: int = 15, binning: str = "width", mode: str = "top-label") -> float:
    """Maximum calibration error over non-empty bins (and over classes, classwise)."""
    bins = reliability_bins(probs, labels, n_bins, binning, mode)
    return (bins.accuracy - bins.confidence).abs().nan_to_num(0.0).max().item()
