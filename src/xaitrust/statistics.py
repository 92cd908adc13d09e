"""Statistics of every protocol and report, in one place: intervals of means, paired tests, multiple-comparison
correction, bootstrap intervals and ranks that show statistical ties.

- **Intervals of means.** Student-t ``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` (``s`` with ``ddof = 1``), honest
  for the few observations of a handful of seeds (``ci95_half_width``, ``mean_interval``); the FPA paper's area A
  uses the normal approximation ``z_{(1+level)/2}`` instead (``normal_interval``).
- **Paired tests** (``paired_test``): two scores of the same images, per image ``d_i = a_i - b_i`` over the images
  where both are finite. ``"t"`` (default): the paired Student-t test of ``mean(d) = 0`` and the t interval of
  ``mean(d)``, which agree with each other (the interval excludes 0 exactly when ``p < 1 - level``). ``"wilcoxon"``:
  the signed-rank test (``scipy.stats.wilcoxon``, zero differences dropped as Wilcoxon did), for skewed scores; the
  interval stays the t interval of the mean difference. Both are two-sided: a test names the direction of a
  significant difference by the sign of ``mean(d)``.
- **Multiple comparisons** (``holm``): Holm's step-down correction of a family of p-values, which controls the
  probability of any false rejection (family-wise error rate) at ``alpha`` without assuming independence (Holm 1979,
  "A simple sequentially rejective multiple test procedure", Scand. J. Statist.).
- **Bootstrap** (``bootstrap_indices``, ``percentile_interval``, ``bootstrap_interval``): percentile intervals over
  resamples of the observations drawn with replacement from a generator seeded by ``seed`` (deterministic).
- **Separation from the leader** (``overlaps_leader``): the items whose intervals overlap the interval of the best
  one, i.e. those a comparison of intervals cannot tell apart from it (the FPA report's 95% CIs of A, the MeGe/ReCo
  report's bootstrap intervals). Conservative: disjoint 95% intervals imply a difference, overlapping ones do not
  imply equality, so an overlap reads "not resolved".
- **Ranks with ties** (``significance_ranks``): a method's rank is one plus the number of methods that are
  significantly better than it on the same images (paired tests, Holm-corrected over all pairs of the metric), so
  methods that the sample cannot tell apart share ranks and a method is ranked first unless something beats it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .errors import XaitrustError

TESTS = ("t", "wilcoxon")


def _check_level(level: float) -> float:
    if not 0 < level < 1:
        raise XaitrustError(f"a confidence level must lie in (0, 1); got {level}")
    return float(level)


def ci95_half_width(std, n):
    """Half-width of the two-sided 95% Student-t confidence interval of a mean: ``t_{0.975, n-1} * std / sqrt(n)``.

    ``std`` is the sample standard deviation (``ddof=1``) of ``n`` observations; both may be arrays (broadcast).
    Where ``n < 2`` or ``std`` is NaN no spread is measured and the half-width is NaN (not 0: one observation says
    nothing about the uncertainty of its mean). Returns a float for scalar inputs, else an array.
    """
    return t_half_width(std, n, 0.95)


def t_half_width(std, n, level: float = 0.95):
    """Half-width ``t_{(1+level)/2, n-1} * std / sqrt(n)`` of the Student-t interval of a mean (see
    ``ci95_half_width``; NaN where ``n < 2``)."""
    level = _check_level(level)
    std, n = np.asarray(std, dtype=float), np.asarray(n, dtype=float)
    measured = n >= 2
    dof = np.where(measured, n - 1, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = np.where(measured, stats.t.ppf(0.5 + level / 2, dof) * std / np.sqrt(np.where(measured, n, 1.0)),
                        np.nan)
    return float(half) if half.ndim == 0 else half


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float).reshape(-1)
    return values[np.isfinite(values)]


@dataclass(frozen=True)
class Interval:
    """A mean and its interval ``[low, high]`` over ``n`` finite observations (NaN bounds below two)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_interval(values, level: float = 0.95) -> Interval:
    """Mean of the finite ``values`` with its Student-t interval at ``level`` (NaN mean for no value, NaN bounds
    below two values)."""
    values = _finite(values)
    if not len(values):
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(values.mean())
    half = t_half_width(values.std(ddof=1) if len(values) > 1 else math.nan, len(values), level)
    return Interval(mean, mean - half, mean + half, len(values))


def normal_interval(values, level: float = 0.95) -> Interval:
    """Mean of the finite ``values`` with the normal-approximation interval ``mean +- z_{(1+level)/2} * s /
    sqrt(n)`` (``s`` with ``ddof = 1``), as the FPA paper's "A +- CI"; NaN bounds below two values."""
    level = _check_level(level)
    values = _finite(values)
    if len(values) < 2:
        return Interval(float(values.mean()) if len(values) else math.nan, math.nan, math.nan, len(values))
    mean = float(values.mean())
    half = float(stats.norm.ppf(0.5 + level / 2)) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return Interval(mean, mean - half, mean + half, len(values))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of scores ``a`` and ``b`` of the same images: the mean difference ``a - b`` with its
    Student-t interval ``[low, high]``, the two-sided ``p_value`` of ``test`` and the number ``n`` of pairs."""

    difference: float
    low: float
    high: float
    p_value: float
    n: int
    test: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def paired_test(a, b, *, test: str = "t", level: float = 0.95) -> PairedTest:
    """Two-sided paired test of the per-image scores ``a`` and ``b`` (same length, same images in the same order) over
    the pairs where both are finite (see the module docstring). With fewer than two pairs nothing is measured: NaN
    interval, p = 1. Differences that are all zero give p = 1 (no evidence of a difference)."""
    if test not in TESTS:
        raise XaitrustError(f"test must be one of {', '.join(TESTS)}; got {test!r}")
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise XaitrustError(f"paired scores need one value per image on both sides; got {len(a)} and {len(b)}")
    both = np.isfinite(a) & np.isfinite(b)
    d = a[both] - b[both]
    interval = mean_interval(d, level)
    if len(d) < 2 or not np.any(d):
        return PairedTest(interval.mean, interval.low, interval.high, 1.0, len(d), test)
    with warnings.catch_warnings():  # nearly constant differences: scipy warns of lost precision, p is still ~0
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "t":
            p = float(stats.ttest_1samp(d, 0.0).pvalue) if np.ptp(d) > 0 else 0.0  # constant nonzero d: certain
        else:
            p = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return PairedTest(interval.mean, interval.low, interval.high, p, len(d), test)


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values of a family (same order as given): the ``k``-th smallest of ``m`` becomes
    ``max_{j <= k} min(1, (m - j + 1) p_(j))``. Rejecting where the adjusted value is below ``alpha`` controls the
    family-wise error rate at ``alpha``. NaN p-values are left out of the family and stay NaN."""
    p = np.asarray(p_values, dtype=float).reshape(-1)
    adjusted = np.full(p.shape, np.nan)
    present = np.flatnonzero(np.isfinite(p))
    if not len(present):
        return adjusted
    order = present[np.argsort(p[present], kind="stable")]
    m = len(order)
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def bootstrap_indices(n: int, n_resamples: int, seed: int = 0) -> np.ndarray:
    """``(n_resamples, n)`` indices of ``n`` observations drawn with replacement, from a generator seeded by
    ``seed``."""
    if n < 1 or n_resamples < 1:
        raise XaitrustError(f"a bootstrap needs observations and resamples; got n={n}, n_resamples={n_resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def percentile_interval(draws, level: float = 0.95) -> tuple[float, float]:
    """The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the finite resampled statistics ``draws`` (NaN
    when none is finite)."""
    level = _check_level(level)
    draws = _finite(draws)
    if not len(draws):
        return math.nan, math.nan
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n: int, *, n_resamples: int = 1000,
                       level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(indices)``, a statistic of the observations at ``indices`` (e.g.
    the calibration error of those images), over ``n_resamples`` resamples of the ``n`` observations."""
    draws = [statistic(indices) for indices in bootstrap_indices(n, n_resamples, seed)]
    return percentile_interval(draws, level)


def overlaps_leader(values, lows, highs, higher_is_better: bool = True) -> np.ndarray:
    """Which items the interval comparison cannot separate from the leader: ``True`` for item ``i`` when its interval
    ``[lows[i], highs[i]]`` overlaps the leader's ``[low_L, high_L]``, that is unless ``high_i < low_L`` or ``low_i >
    high_L``; a missing (NaN) bound on either side counts as overlapping. The leader ``L`` is the first item with the
    highest value (the lowest when not ``higher_is_better``; NaN values left out) and is itself ``False``: it is the
    reference, not a rival. Every item is ``False`` when every value is NaN (no leader). Returns a boolean array, one
    entry per item."""
    values, lows, highs = (np.asarray(a, dtype=float).reshape(-1) for a in (values, lows, highs))
    if not len(values) == len(lows) == len(highs):
        raise XaitrustError(f"give one value, low and high bound per item; got {len(values)}, {len(lows)} and "
                            f"{len(highs)}")
    if np.isnan(values).all():
        return np.zeros(len(values), dtype=bool)
    leader = int(np.nanargmax(values) if higher_is_better else np.nanargmin(values))
    tied = ~((highs < lows[leader]) | (lows > highs[leader]))  # False on NaN: a missing bound overlaps
    tied[leader] = False
    return tied


def significance_ranks(scores: dict[str, np.ndarray], higher_is_better: bool, *, alpha: float = 0.05,
                       test: str = "t") -> dict[str, int]:
    """Rank of each method: one plus the number of methods significantly better on the same images (paired
    ``test`` of every pair, Holm-corrected over all pairs at ``alpha``). ``scores[method]`` holds per-image values in
    the same image order for every method; a method without a finite value gets no rank (it is left out)."""
    names = [name for name, values in scores.items() if np.isfinite(np.asarray(values, dtype=float)).any()]
    pairs = list(itertools.combinations(names, 2))
    tests = [paired_test(scores[first], scores[second], test=test) for first, second in pairs]
    adjusted = holm([result.p_value for result in tests])
    better_than = {name: 0 for name in names}
    for (first, second), result, p in zip(pairs, tests, adjusted):
        if not p < alpha:
            continue
        first_better = (result.difference > 0) == higher_is_better
        better_than[second if first_better else first] += 1
    return {name: 1 + count for name, count in better_than.items()}
