"""xaitrust: how far can the saliency explanations of an image classifier be trusted?

The package is organised along the flow of data (see ``docs/architecture.md``):
``data`` -> ``models`` / ``training`` -> ``calibration`` -> ``explainers`` -> ``perturb`` / ``metrics``
-> ``protocols`` -> ``report``.

``xaitrust.evaluate``, ``register_metric``, ``get_metric``, ``available_metrics`` (``xaitrust.evaluation``) and
``register_explainer`` (``xaitrust.explainers.base``), and the scoring protocols on your own model and data
``benchmark``, ``calibrate_to_interpret`` and ``recalx`` (``xaitrust.protocols.api``) are imported on first use, so
``import xaitrust`` stays cheap.
"""

__version__ = "0.1.0"

_LAZY = {
    "evaluate": "xaitrust.evaluation",
    "register_metric": "xaitrust.evaluation",
    "get_metric": "xaitrust.evaluation",
    "available_metrics": "xaitrust.evaluation",
    "register_explainer": "xaitrust.explainers.base",
    "benchmark": "xaitrust.protocols.api",
    "calibrate_to_interpret": "xaitrust.protocols.api",
    "recalx": "xaitrust.protocols.api",
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'xaitrust' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
