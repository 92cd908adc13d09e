"""Result summaries: mean, sample std and the Student-t 95% confidence half-width per group, NaN where fewer than two
observations are there to measure a spread."""

import math

import numpy as np
import pandas as pd
import pytest

from xaitrust.statistics import ci95_half_width
from xaitrust.protocols.results import summarize

T_975 = {1: 12.706205, 2: 4.302653, 4: 2.776445}  # t_{0.975, dof} from a table


def test_ci95_is_the_student_t_interval_of_the_mean():
    assert ci95_half_width(1.0, 3) == pytest.approx(T_975[2] / math.sqrt(3))
    np.testing.assert_allclose(ci95_half_width([2.0, 0.5], [2, 5]),
                               [T_975[1] * 2.0 / math.sqrt(2), T_975[4] * 0.5 / math.sqrt(5)], rtol=1e-6)


@pytest.mark.parametrize(("std", "n"), [(np.nan, 1), (1.0, 1), (np.nan, 0), (np.nan, 4)])
def test_ci95_is_nan_without_a_measured_spread(std, n):
    assert math.isnan(ci95_half_width(std, n))


def test_summarize_reports_mean_sample_std_and_t_interval_per_group():
    table = pd.DataFrame({
        "metric": "m", "model": "net",
        "method": ["a", "a", "a", "b", "c", "c", "c"],
        "value": [1.0, 2.0, 3.0, 5.0, 4.0, np.nan, 6.0],
    })
    summary = summarize(table).set_index("method")
    assert summary.loc["a", ["mean", "std", "n"]].tolist() == [2.0, 1.0, 3]
    assert summary.loc["a", "ci95"] == pytest.approx(4.302653 / math.sqrt(3))
    # NaN values are not observations: c has two, std sqrt(2), t with one degree of freedom.
    assert summary.loc["c", "n"] == 2
    assert summary.loc["c", "ci95"] == pytest.approx(T_975[1] * math.sqrt(2) / math.sqrt(2))
    # One observation: no spread, so neither a std nor an interval (not a zero-width one).
    assert summary.loc["b", "n"] == 1 and math.isnan(summary.loc["b", "std"]) and math.isnan(summary.loc["b", "ci95"])
