"""How the reports write numbers: one format for an estimate and its interval."""

from __future__ import annotations

import math

#: Written for an estimate that was not measured (NaN).
MISSING = "–"


def interval_text(value: float, low: float, high: float, digits: int = 4, signed: bool = False,
                  significant: bool = False) -> str:
    """``value [low, high]``, every number with ``digits`` decimals (``digits`` significant digits when
    ``significant``) and its sign written when ``signed`` (for changes and differences, e.g. ``+0.0123 [-0.0040,
    +0.0286]``). ``value (no interval)`` when a bound is NaN or infinite (e.g. below two observations), ``MISSING``
    when ``value`` is NaN."""
    if math.isnan(value):
        return MISSING
    spec = f"{'+' if signed else ''}.{digits}{'g' if significant else 'f'}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{value:{spec}} (no interval)"
    return f"{value:{spec}} [{low:{spec}}, {high:{spec}}]"
