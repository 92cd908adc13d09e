"""The metric registry: one name per metric, with its direction, the score it measures, its parameters and source.

A metric is a function returning one value per image, a tensor ``(B,)``. Its parameters say what it reads; the
evaluation passes each by name:

- ``model``, ``x`` (images ``(B, C, H, W)``), ``target`` (classes ``(B,)``): always available;
- ``NEEDS``: ``maps`` (``(B, H, W)``, the attributions after the evaluation's reduction), ``attributions`` (raw,
  ``(B, C, H, W)``), ``explainer`` (the ``Explainer``, for metrics that explain again, e.g. neighbours of ``x``),
  ``masks`` (ground-truth masks ``(B, H, W)``), ``reference_maps`` (maps of the same images by another model);
- ``SETTINGS`` of the evaluation: ``output`` (the score the explanations explain, see below), ``seed``, ``ties``
  (order of equal map values), ``batch_size`` (masked images per forward pass), ``reduction``;
- ``work``: a ``SharedWork``, through which metrics that read the same computation do it once;
- its own parameters: every other parameter, keyword with a default (e.g. ``steps=100``).

The score of the target class a metric measures (``Metric.output``) is either fixed by its definition ("logit" for
the MIF/LIF area, "probability" for completeness), or, for a metric that takes an ``output`` parameter,
``EXPLAINED``: the score the explanations explain (``evaluate(output=...)``, as the papers measure what they
explain; ``metric_params`` may set another one for that metric), or ``None`` for metrics of the maps alone.

A user's metric is a function declared with ``define_metric`` (or ``register_metric`` to also name it in the
registry), in a file named as ``path/to/file.py:centre_mass``::

    from xaitrust.evaluation import define_metric

    @define_metric(higher_is_better=True, description="Share of each map's mass inside a centred square.")
    def centre_mass(maps, *, margin: int = 2):
        inner = maps[:, margin:-margin, margin:-margin]
        return inner.flatten(1).sum(1) / maps.flatten(1).sum(1)

A declared metric stays a callable with the function's signature.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from types import MappingProxyType

import torch

from ..errors import XaitrustError
from ..outputs import OUTPUTS
from ..sources import is_file_reference, load_from_file
from .work import SharedWork

ALWAYS = ("model", "x", "target")
NEEDS = ("maps", "attributions", "explainer", "masks", "reference_maps")
SETTINGS = ("output", "seed", "ties", "batch_size", "reduction")
WORK = "work"
#: ``Metric.output`` of a metric that measures the score the explanations explain.
EXPLAINED = "explained"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REGISTRY: dict[str, "Metric"] = {}


@dataclass(frozen=True)
class MetricInputs:
    """What an evaluation offers its metrics for one explanation (one explainer's attributions of ``x``)."""

    model: torch.nn.Module
    x: torch.Tensor
    target: torch.Tensor
    output: str = "probability"
    seed: int = 0
    ties: str = "random"
    batch_size: int | None = None
    reduction: str = "abs-sum"
    maps: torch.Tensor | None = None
    attributions: torch.Tensor | None = None
    explainer: object = None
    masks: torch.Tensor | None = None
    reference_maps: torch.Tensor | None = None
    work: SharedWork = field(default_factory=SharedWork)


@dataclass(frozen=True)
class Metric:
    """A metric: ``function`` computes per-sample values ``(B,)`` from the inputs its parameters name.

    Attributes:
        name: the one spelling of the metric in tables, the command line and ``metric_params``.
        function: the computation (see the module docstring for its parameters).
        higher_is_better: the direction of a better explanation.
        description: one or two sentences for a glossary, with the formula.
        source: the paper (and section) defining the metric.
        output: the score it measures: one of ``xaitrust.outputs.OUTPUTS`` fixed by its definition, ``EXPLAINED``
            (set from the function taking ``output``) or ``None`` (maps only).
        needs: the inputs of ``NEEDS`` it reads (from the function's parameters).
        params: its own parameters with their defaults (from the function's parameters).
        check: called with the parameters a config sets (``check_params``), before any work, to refuse values the
            metric cannot use (e.g. a file that does not exist) with an ``XaitrustError``.
    """

    name: str
    function: object
    higher_is_better: bool
    description: str
    source: str = ""
    output: str | None = None
    check: object = None
    needs: frozenset = field(init=False)
    params: MappingProxyType = field(init=False)
    reads: tuple = field(init=False, repr=False)  # the evaluation's inputs and settings it takes, by name

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise XaitrustError(
                f"a metric name must be a Python-style identifier (letters, digits, _); got {self.name!r}"
            )
        if not isinstance(self.higher_is_better, bool):
            raise XaitrustError(
                f"metric {self.name!r}: higher_is_better must be True or False; got {self.higher_is_better!r}"
            )
        if not callable(self.function):
            raise XaitrustError(f"metric {self.name!r}: its function must be callable; got {self.function!r}")
        inputs = ALWAYS + NEEDS + SETTINGS + (WORK,)
        reads, params = [], {}
        for parameter in inspect.signature(self.function).parameters.values():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD, parameter.POSITIONAL_ONLY):
                raise XaitrustError(
                    f"metric {self.name!r}: parameters are passed by name; remove *args, **kwargs and /"
                )
            if parameter.name in inputs:
                reads.append(parameter.name)
            elif parameter.default is parameter.empty:
                raise XaitrustError(
                    f"metric {self.name!r}: parameter {parameter.name!r} is neither an input ({', '.join(inputs)}) nor "
                    "a parameter with a default value"
                )
            else:
                params[parameter.name] = parameter.default
        takes_output = "output" in reads
        if takes_output and self.output not in (None, EXPLAINED):
            raise XaitrustError(
                f"metric {self.name!r} takes the explained score as its parameter 'output': do not also fix "
                f"output={self.output!r}"
            )
        if not takes_output and self.output not in (None, *OUTPUTS):
            raise XaitrustError(
                f"metric {self.name!r}: output must be one of {', '.join(OUTPUTS)} or None; got {self.output!r}"
            )
        object.__setattr__(self, "output", EXPLAINED if takes_output else self.output)
        object.__setattr__(self, "reads", tuple(reads))
        object.__setattr__(self, "needs", frozenset(reads) & frozenset(NEEDS))
        object.__setattr__(self, "params", MappingProxyType(params))

    def __call__(self, *args, **kwargs):
        """The function itself, so a declared metric is still called as it was written."""
        return self.function(*args, **kwargs)

    def check_params(self, params) -> dict:
        """``params`` (a mapping) if this metric takes every key: its own parameters and the settings it reads."""
        allowed = [*self.params, *(s for s in SETTINGS if s in self.reads)]
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise XaitrustError(
                f"metric {self.name!r} has no parameter {', '.join(map(repr, unknown))}; its parameters: "
                f"{', '.join(allowed) or 'none'}"
            )
        if self.check is not None:
            self.check(dict(params))
        return dict(params)

    def compute(self, inputs: MetricInputs, params=None) -> torch.Tensor:
        """Per-sample values ``(B,)`` of this metric on ``inputs``, with ``params`` overriding its defaults (and the
        settings it reads, e.g. ``output``)."""
        arguments = {name: getattr(inputs, name) for name in self.reads}
        arguments.update(self.check_params(params or {}))
        missing = [name for name in sorted(self.needs) if arguments[name] is None]
        if missing:
            raise XaitrustError(f"metric {self.name!r} needs {', '.join(missing)}, which this evaluation lacks")
        values = self.function(**arguments)
        values = values if isinstance(values, torch.Tensor) else torch.as_tensor(values)
        if values.shape != (len(inputs.x),):
            raise XaitrustError(
                f"metric {self.name!r} must return one value per image, shape ({len(inputs.x)},); "
                f"got {tuple(values.shape)}"
            )
        return values


def define_metric(function=None, /, *, name: str | None = None, higher_is_better: bool, description: str,
                  source: str = "", output: str | None = None, check=None):
    """A ``Metric`` from ``function`` (named after it unless ``name`` is given); as a decorator,
    ``@define_metric(higher_is_better=..., description=...)``. ``output`` fixes the score a metric without an
    ``output`` parameter measures (see the module docstring); ``check(params)`` refuses parameter values early."""

    def declare(function) -> Metric:
        return Metric(name or function.__name__, function, higher_is_better, description, source, output, check)

    return declare if function is None else declare(function)


def register_metric(metric=None, /, **declaration):
    """Add a metric to the registry and return it: ``register_metric(metric)`` with a ``Metric``, or as
    ``define_metric`` does, ``register_metric(function, higher_is_better=..., ...)`` or the decorator
    ``@register_metric(higher_is_better=..., ...)``. A name registered twice is an error."""

    def register(metric) -> Metric:
        if not isinstance(metric, Metric):
            metric = define_metric(metric, **declaration)
        elif declaration:
            raise XaitrustError(
                f"metric {metric.name!r} is already declared; register it without {sorted(declaration)}"
            )
        if metric.name in _REGISTRY:
            raise XaitrustError(f"a metric named {metric.name!r} is already registered; choose another name")
        _REGISTRY[metric.name] = metric
        return metric

    return register if metric is None else register(metric)


def get_metric(name) -> Metric:
    """The metric registered as ``name``, or the ``Metric`` defined in a file as ``path/to/file.py:Name``
    (``name`` may also be a ``Metric``, returned as is)."""
    if isinstance(name, Metric):
        return name
    if not isinstance(name, str):
        raise XaitrustError(
            f"a metric is a name, path/to/file.py:Name or a Metric; got {name!r} (declare a function with "
            "xaitrust.evaluation.define_metric)"
        )
    if is_file_reference(name):
        metric = load_from_file(name, "metric")
        if not isinstance(metric, Metric):
            raise XaitrustError(
                f"{name} is not a declared metric: decorate the function with "
                "@xaitrust.evaluation.define_metric(higher_is_better=..., description=...)"
            )
        return metric
    if name not in _REGISTRY:
        raise XaitrustError(
            f"unknown metric {name!r}; available: {', '.join(_REGISTRY)} "
            "(or path/to/file.py:Name for one defined in a file)"
        )
    return _REGISTRY[name]


def available_metrics() -> list[Metric]:
    """Every registered metric, in the order of registration."""
    return list(_REGISTRY.values())
