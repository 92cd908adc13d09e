"""One evaluation layer: the metric registry and ``evaluate``.

- ``registry``: ``Metric`` (name, computation, needs, direction, score, parameters, description, source),
  ``define_metric``, ``register_metric``, ``get_metric`` (a name or ``path/to/file.py:Name``), ``available_metrics``;
- ``builtin``: every metric of ``xaitrust.metrics`` registered under its one name;
- ``builtin_faithfulness``: the faithfulness metrics Quantus also has (``xaitrust.metrics.faithfulness_peers`` and
  ``faithfulness_regions``), registered after them;
- ``evaluate``: explain images with several explainers and score every explanation, into one tidy table.
"""

from . import builtin  # noqa: F401  (registers the built-in metrics)
from . import builtin_data_randomisation  # noqa: F401  (registers the data randomisation test)
from . import builtin_faithfulness  # noqa: F401  (registers the faithfulness metrics of Quantus's family)
from . import builtin_localisation  # noqa: F401  (registers the localisation, complexity and axiomatic metrics)
from . import builtin_robustness  # noqa: F401  (registers the robustness and randomisation metrics)
from . import builtin_sufficiency  # noqa: F401  (registers sufficiency)
from .evaluate import COLUMNS, evaluate, metric_values
from .registry import (
    EXPLAINED,
    Metric,
    MetricInputs,
    available_metrics,
    define_metric,
    get_metric,
    register_metric,
)
from .work import SharedWork

__all__ = [
    "COLUMNS",
    "EXPLAINED",
    "Metric",
    "MetricInputs",
    "SharedWork",
    "available_metrics",
    "define_metric",
    "evaluate",
    "get_metric",
    "metric_values",
    "register_metric",
]
