"""Attribution methods behind one registry: ``get_explainer(name, **params)(model, x, target, output)``.

Every module of this package that defines explainers registers them on import; importing the package imports them all.
"""

from importlib import import_module
from pkgutil import iter_modules

from .base import Explainer, ExplainerInfo, available_explainers, get_explainer, register

for _module in iter_modules(__path__):
    import_module(f"{__name__}.{_module.name}")

__all__ = ["Explainer", "ExplainerInfo", "available_explainers", "get_explainer", "register"]
