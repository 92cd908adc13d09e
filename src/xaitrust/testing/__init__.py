"""Contract checks for explainers and metrics, and the oracle models they run on.

Every registered explainer and metric passes these checks (xaitrust's own tests run them over both registries); run
them on your own explainer or metric before trusting its numbers::

    from xaitrust.testing import check_explainer, check_metric

    for result in check_explainer(my_explainer, steps=8):   # parameters of the explainer, small to be quick
        print(result)                                       # explainer 'my_explainer': direction passed: ...
    check_metric(my_metric, raise_on_failure=True)          # a ContractError lists the failed checks

- ``check_explainer`` (``explainer_checks``): output shape and dtype, batch invariance, determinism, side effects
  on the model, direction (the pixel driving the score gets the largest attribution) and dependence on the target.
- ``check_metric`` (``metric_checks``): output shape and finiteness, batch invariance, determinism, side effects,
  and direction on an oracle whose better explanation is known.
- ``ExplainerContract`` / ``MetricContract``: what a subject promises, for explainers and metrics that, by their
  definition, do not promise everything (the checks they skip say why).
- ``oracles``: models whose outputs are known in closed form.
"""

from .explainer_checks import ExplainerContract, check_explainer
from .metric_checks import MetricContract, check_metric
from .results import CheckResult, ContractError

__all__ = ["CheckResult", "ContractError", "ExplainerContract", "MetricContract", "check_explainer", "check_metric"]
