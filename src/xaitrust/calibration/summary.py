"""Every calibration measure of one set of predictions at once: the row the CLI prints and the per-level tables hold."""

from __future__ import annotations

from .binned import ece
from .density import density_ece
from .kl import kl_calibration_error
from .scores import accuracy, nll


def calibration_summary(probs, labels, n_bins: int = 15, kl_mode: str = "top-label") -> dict[str, float]:
    """``accuracy``, binned top-label ``ece`` (``n_bins`` equal-width bins), ``density_ece`` (Silverman bandwidth),
    ``kl_calibration_error`` (risk estimator, ``kl_mode``) and ``nll`` of ``probs`` ``(N, K)`` against ``labels``."""
    return {
        "accuracy": accuracy(probs, labels),
        "ece": ece(probs, labels, n_bins=n_bins),
        "density_ece": density_ece(probs, labels),
        "kl_calibration_error": kl_calibration_error(probs, labels, mode=kl_mode),
        "nll": nll(probs, labels),
    }
