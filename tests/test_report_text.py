"""The one format of an estimate and its interval in the reports."""

import math

from xaitrust.report.text import MISSING, interval_text


def test_value_and_bounds_share_the_digits_and_the_sign():
    assert interval_text(0.123456, 0.1, 0.15) == "0.1235 [0.1000, 0.1500]"
    assert interval_text(65.0, 50.0, 80.04, 1) == "65.0 [50.0, 80.0]"
    assert interval_text(0.0123, -0.004, 0.0286, 4, signed=True) == "+0.0123 [-0.0040, +0.0286]"
    assert interval_text(0.000123456, 0.0001, 12345.0, 3, significant=True) == "0.000123 [0.0001, 1.23e+04]"
    assert interval_text(-0.2, -0.25, -0.15, 3, signed=True, significant=True) == "-0.2 [-0.25, -0.15]"


def test_a_missing_bound_says_so_and_a_missing_value_is_a_dash():
    assert interval_text(0.1234, math.nan, 0.2) == "0.1234 (no interval)"
    assert interval_text(0.1234, 0.1, math.inf) == "0.1234 (no interval)"
    assert interval_text(0.5, math.nan, math.nan, 2, signed=True) == "+0.50 (no interval)"
    assert interval_text(math.nan, 0.1, 0.2) == MISSING == "–"
