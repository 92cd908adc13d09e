"""Validation of explainer parameters, so that every explainer rejects a bad value when it is built (not halfway
through an explanation) with the same clear message naming the explainer and the parameter.

Integers and reals of any type (numpy's ``np.int64(10)``, ``np.float32(0.5)``) are accepted and returned as plain
Python ``int`` and ``float``, so parameters print and serialise alike whatever produced them. ``True`` and ``False``
are not numbers here: a flag passed where a number is expected is a mistake.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch

from ..errors import XaitrustError


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(explainer: str, name: str, value) -> int:
    """``value`` as an int if it is an integer (e.g. a seed), else a clear error naming the explainer and parameter."""
    if not _is_integer(value):
        raise XaitrustError(f"{explainer}: {name} must be an integer; got {value!r}")
    return int(value)


def positive_int(explainer: str, name: str, value) -> int:
    """``value`` as an int if it is an integer >= 1, else a clear error."""
    if not _is_integer(value) or value < 1:
        raise XaitrustError(f"{explainer}: {name} must be a positive integer; got {value!r}")
    return int(value)


def positive_int_or_pair(explainer: str, name: str, value) -> int | tuple[int, int]:
    """``value`` as an int if it is a positive integer, as a pair of ints if it is a pair (tuple or list) of them
    (e.g. a window's height and width), else a clear error."""
    if _is_integer(value) and value >= 1:
        return int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_integer(v) and v >= 1 for v in value):
        return int(value[0]), int(value[1])
    raise XaitrustError(f"{explainer}: {name} must be a positive integer or a pair of them; got {value!r}")


def bounded_float(
    explainer: str, name: str, value, low: float, high: float = math.inf, *, open_low: bool = False
) -> float:
    """``value`` as a float if it is a finite real number in ``[low, high]`` (``(low, high]`` when ``open_low``),
    else a clear error."""
    if not _is_finite_real(value) or not (value > low if open_low else value >= low) or value > high:
        if high == math.inf:
            bound = f"{'>' if open_low else '>='} {low:g}"
        else:
            bound = f"in {'(' if open_low else '['}{low:g}, {high:g}]"
        raise XaitrustError(f"{explainer}: {name} must be a finite number {bound}; got {value!r}")
    return float(value)


def non_negative_float(explainer: str, name: str, value) -> float:
    """``value`` as a float if it is a finite number >= 0, else a clear error."""
    return bounded_float(explainer, name, value, 0.0)


def positive_float(explainer: str, name: str, value) -> float:
    """``value`` as a float if it is a finite number > 0, else a clear error."""
    return bounded_float(explainer, name, value, 0.0, open_low=True)


def optional(check: Callable, explainer: str, name: str, value):
    """``None`` (the explainer then chooses, e.g. an automatic batch size) or ``check(explainer, name, value)``."""
    return None if value is None else check(explainer, name, value)


def choice(explainer: str, name: str, value, allowed: Sequence[str]) -> str:
    """``value`` if it is one of the strings ``allowed``, else a clear error listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise XaitrustError(f"{explainer}: {name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def choice_or_value(explainer: str, name: str, value, allowed: Sequence[str]) -> str | float | torch.Tensor:
    """An image given by name, constant or tensor (a replacement, a baseline): ``value`` if it is one of the strings
    ``allowed`` or a tensor (whose shape the explainer checks against the images), as a float if it is a finite
    number, else a clear error."""
    if isinstance(value, torch.Tensor) or (isinstance(value, str) and value in allowed):
        return value
    if _is_finite_real(value):
        return float(value)
    raise XaitrustError(f"{explainer}: {name} must be one of {', '.join(allowed)}, a number or a tensor; got {value!r}")
