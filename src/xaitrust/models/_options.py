"""Validation of model options: each option is checked against a ``Rule`` and every failure gets the same message,
``model 'name': option must be <what the rule expects>; got <value>``."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

from ..errors import XaitrustError


class Rule(NamedTuple):
    accepts: Callable[[object], bool]
    expected: str
    convert: Callable[[object], object]  # to the JSON value recorded in ``spec["options"]``


def is_count(value) -> bool:
    """True for an integer >= 1 (Python or NumPy, not bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


POSITIVE_INT = Rule(is_count, "a positive integer", int)
POSITIVE_INTS = Rule(
    lambda v: isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 0 and all(map(is_count, v)),
    "a non-empty list of positive integers",
    lambda v: [int(c) for c in v],
)
RATE = Rule(
    lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 <= v < 1, "a number in [0, 1)", float
)


def one_of(allowed: Sequence[str]) -> Rule:
    return Rule(lambda v: v in allowed, f"one of {', '.join(allowed)}", str)


def validated(model: str, **options: tuple[object, Rule]) -> dict:
    """``{name: converted value}`` for ``options`` given as ``name=(value, rule)``; raises on the first bad value."""
    for name, (value, rule) in options.items():
        if not rule.accepts(value):
            raise XaitrustError(f"model {model!r}: {name} must be {rule.expected}; got {value!r}")
    return {name: rule.convert(value) for name, (value, rule) in options.items()}


def check_image_size(model: str, image_size: Sequence[int], minimum: int, reason: str) -> None:
    """Raise unless both sides of ``image_size`` are at least ``minimum`` pixels (``reason`` says why)."""
    if min(image_size) < minimum:
        raise XaitrustError(
            f"model {model!r} needs images of at least {minimum}x{minimum} pixels ({reason}); got {tuple(image_size)}"
        )
