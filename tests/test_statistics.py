"""The statistics module against closed forms, scipy and known cases."""

import math

import numpy as np
import pytest
from scipy import stats

from xaitrust.errors import XaitrustError
from xaitrust.statistics import (
    bootstrap_interval,
    ci95_half_width,
    holm,
    mean_interval,
    normal_interval,
    overlaps_leader,
    paired_test,
    percentile_interval,
    significance_ranks,
)


def test_t_interval_matches_scipy():
    values = np.array([0.2, 0.5, 0.9, 0.4, 0.7])
    interval = mean_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(), scale=stats.sem(values))
    assert (interval.low, interval.high) == pytest.approx((low, high))
    assert ci95_half_width(values.std(ddof=1), 5) == pytest.approx((high - low) / 2)
    assert math.isnan(mean_interval([1.0]).low) and mean_interval([]).n == 0
    assert mean_interval([1.0, np.nan, 3.0]).n == 2


def test_normal_interval_uses_z():
    values = np.arange(10.0)
    interval = normal_interval(values, 0.9)
    half = stats.norm.ppf(0.95) * values.std(ddof=1) / math.sqrt(10)
    assert (interval.low, interval.high) == pytest.approx((4.5 - half, 4.5 + half))


def test_paired_t_matches_scipy_and_its_interval():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    result = paired_test(a, b)
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert result.difference == pytest.approx((a - b).mean())
    assert (result.low < 0 < result.high) == (result.p_value >= 0.05)
    wilcoxon = paired_test(a, b, test="wilcoxon")
    assert wilcoxon.p_value == pytest.approx(stats.wilcoxon(a - b).pvalue)


def test_paired_test_drops_unfinished_pairs_and_handles_equal_scores():
    a = np.array([1.0, 2.0, np.nan, 4.0])
    assert paired_test(a, a).p_value == 1.0  # equal by construction: no evidence
    assert paired_test(a, a + 1).p_value == 0.0 and paired_test(a, a + 1).n == 3
    with pytest.raises(XaitrustError, match="one value per image"):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(XaitrustError, match="test must be"):
        paired_test(a, a, test="z")


def test_holm_against_hand_computation():
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4: 0.02, 0.03, 0.06, 0.06 (monotone)
    assert adjusted[[4, 0, 2, 1]] == pytest.approx([0.02, 0.03, 0.06, 0.06])
    assert math.isnan(adjusted[3])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_bootstrap_is_deterministic_and_covers_the_mean():
    values = np.random.default_rng(1).normal(1.0, 1.0, size=200)
    first = bootstrap_interval(lambda i: values[i].mean(), len(values), seed=3)
    assert first == bootstrap_interval(lambda i: values[i].mean(), len(values), seed=3)
    assert first[0] < values.mean() < first[1]
    assert first == pytest.approx((mean_interval(values).low, mean_interval(values).high), abs=0.05)
    assert all(math.isnan(v) for v in percentile_interval([np.nan]))


def test_significance_ranks_tie_what_the_sample_cannot_separate():
    rng = np.random.default_rng(2)
    noise = rng.normal(size=60)
    scores = {
        "random": noise,
        "same-as-random": noise + rng.normal(scale=1e-3, size=60) * 0,  # equal by construction
        "clearly-better": noise + 1.0 + rng.normal(scale=0.1, size=60),
    }
    ranks = significance_ranks(scores, higher_is_better=True)
    assert ranks == {"random": 2, "same-as-random": 2, "clearly-better": 1}
    lower = significance_ranks(scores, higher_is_better=False)
    assert lower == {"random": 1, "same-as-random": 1, "clearly-better": 3}


def test_overlaps_leader_marks_the_items_whose_interval_reaches_the_leader_s():
    values = [0.5, 0.9, 0.7, 0.3, 0.6]
    lows = [0.45, 0.8, 0.78, 0.2, np.nan]
    highs = [0.55, 1.0, 0.85, 0.4, np.nan]
    # Leader 0.9 [0.8, 1.0]: 0.7 [0.78, 0.85] reaches into it, 0.6 has no interval; 0.5 and 0.3 end below 0.8.
    assert overlaps_leader(values, lows, highs).tolist() == [False, False, True, False, True]
    # Lower is better: the leader is 0.3 [0.2, 0.4]; nothing else reaches 0.4 but the item without an interval.
    assert overlaps_leader(values, lows, highs, higher_is_better=False).tolist() == [False, False, False, False, True]


def test_overlaps_leader_counts_touching_bounds_and_a_leader_without_interval_as_overlapping():
    assert overlaps_leader([2.0, 1.0], [1.5, 0.5], [2.5, 1.5]).tolist() == [False, True]  # 1.5 is in both
    assert overlaps_leader([2.0, 1.0], [1.5, 0.5], [2.5, 1.4999]).tolist() == [False, False]
    assert overlaps_leader([2.0, 1.0, 0.0], [np.nan, 0.5, -1.0], [np.nan, 1.5, 1.0]).tolist() == [False, True, True]
    # NaN values are left out of the choice of leader; ties go to the first; no value, no leader.
    assert overlaps_leader([np.nan, 1.0, 1.0, 0.0], [5.0, 0.9, 0.95, -0.1], [6.0, 1.1, 1.05, 0.1]).tolist() == [
        False, False, True, False]
    assert overlaps_leader([np.nan, np.nan], [0.0, 0.0], [1.0, 1.0]).tolist() == [False, False]
    assert overlaps_leader([], [], []).tolist() == []
    with pytest.raises(XaitrustError, match="one value, low and high bound per item"):
        overlaps_leader([1.0, 2.0], [0.0], [3.0, 4.0])
