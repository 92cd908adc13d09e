"""Validation of explainer parameters, so that every explainer rejects bad values with the same clear message."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import XaitrustError


def positive_int(explainer: str, name: str, value) -> int:
    """``value`` as an int if it is a positive integer, else a clear error naming the explainer and parameter."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise XaitrustError(f"{explainer}: {name} must be a positive integer; got {value!r}")
    return value


def non_negative_float(explainer: str, name: str, value) -> float:
    """``value`` as a float if it is a finite number >= 0, else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise XaitrustError(f"{explainer}: {name} must be a finite number >= 0; got {value!r}")
    return float(value)


def choice(explainer: str, name: str, value, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else a clear error listing them."""
    if value not in allowed:
        raise XaitrustError(f"{explainer}: {name} must be one of {', '.join(allowed)}; got {value!r}")
    return value
