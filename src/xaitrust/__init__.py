"""xaitrust: how far can the saliency explanations of an image classifier be trusted?

The package is organised along the flow of data (see ``docs/architecture.md``):
``data`` -> ``models`` / ``training`` -> ``calibration`` -> ``explainers`` -> ``perturb`` / ``metrics``
-> ``protocols`` -> ``report``.
"""

__version__ = "0.1.0"
