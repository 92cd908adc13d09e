"""Work that several metrics share within one evaluation, done once.

Some metrics read the same computation: BTR's deletion curves are the deletion area's, completeness and soundness
come from one insertion game, and the random-superpixel baseline of BTR does not depend on the explanation, so one
computation serves every explainer. A metric asks ``work.call(function, *args, **kwargs)`` instead of calling
``function`` itself and gets the remembered result of an earlier call with the same arguments.
"""

from __future__ import annotations

import inspect

_VALUES = (type(None), bool, int, float, complex, str, bytes)


class SharedWork:
    """Results of function calls (of ``xaitrust.metrics``) remembered for one evaluation.

    Two calls are the same when they call the same function with the same arguments once bound to its signature
    with its defaults (a positional and a keyword spelling of an argument are one call): numbers, strings and
    ``None`` compare by value, tuples, lists and dicts by their items, and every other object (tensors, models,
    explainers) by identity. The arguments are kept alive as long as the results, so an identity is never reused.
    """

    def __init__(self) -> None:
        self._results: dict = {}  # key -> (result, the bound arguments, kept alive for their identities)

    def call(self, function, /, *args, **kwargs):
        """``function(*args, **kwargs)``, computed on the first such call and remembered."""
        key, arguments = _key(function, args, kwargs)
        if key not in self._results:
            self._results[key] = function(*args, **kwargs), arguments
        return self._results[key][0]

    def remember(self, result, function, /, *args, **kwargs) -> None:
        """Record ``result`` as what ``function(*args, **kwargs)`` returns (a result obtained on the way, e.g. the
        deletion curves ``better_than_random`` computes), unless that call is already remembered."""
        key, arguments = _key(function, args, kwargs)
        self._results.setdefault(key, (result, arguments))


def _key(function, args, kwargs) -> tuple[tuple, dict]:
    bound = inspect.signature(function).bind(*args, **kwargs)
    bound.apply_defaults()
    return (function, tuple((name, _token(value)) for name, value in bound.arguments.items())), bound.arguments


def _token(value):
    if isinstance(value, _VALUES):
        return type(value).__name__, value
    if isinstance(value, (tuple, list)):
        return "sequence", tuple(_token(item) for item in value)
    if isinstance(value, dict):
        return "mapping", tuple(sorted((repr(key), _token(item)) for key, item in value.items()))
    return "object", id(value)
