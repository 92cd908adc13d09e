"""Confidence intervals of means, shared by the result tables and the figures."""

from __future__ import annotations

import numpy as np
from scipy import stats


def ci95_half_width(std, n):
    """Half-width of the two-sided 95% Student-t confidence interval of a mean: ``t_{0.975, n-1} * std / sqrt(n)``.

    ``std`` is the sample standard deviation (``ddof=1``) of ``n`` observations; both may be arrays (broadcast).
    Where ``n < 2`` or ``std`` is NaN no spread is measured and the half-width is NaN (not 0: one observation says
    nothing about the uncertainty of its mean). Returns a float for scalar inputs, else an array.
    """
    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    measured = n >= 2
    dof = np.where(measured, n - 1, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(measured, stats.t.ppf(0.975, dof) * std / np.sqrt(np.where(measured, n, 1.0)), np.nan)
    return float(half) if half.ndim == 0 else half
