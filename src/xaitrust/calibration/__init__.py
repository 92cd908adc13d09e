"""Calibration: calibrators (temperature scaling, Dirichlet, ReCalX), calibration-error estimators, plots.

Calibrators work on logits with a scikit-learn-like ``fit`` / ``__call__`` and ``wrap(model)`` into an ``nn.Module``.
"""

from .base import CalibratedModel, Calibrator, calibrator_names, get_calibrator
from .binned import ReliabilityBins, ece, mce, reliability_bins
from .by_level import calibration_error_by_level
from .density import density_ece, silverman_bandwidth
from .dirichlet import DirichletCalibration
from .kl import kl_calibration_error, select_bandwidth
from .recalx import PerturbationAwareModel, ReCalX, level_bins
from .scores import accuracy, brier, nll
from .temperature import TemperatureScaling, fit_temperatures

__all__ = [
    "CalibratedModel",
    "Calibrator",
    "DirichletCalibration",
    "PerturbationAwareModel",
    "ReCalX",
    "ReliabilityBins",
    "TemperatureScaling",
    "accuracy",
    "brier",
    "calibration_error_by_level",
    "calibrator_names",
    "density_ece",
    "ece",
    "fit_temperatures",
    "get_calibrator",
    "kl_calibration_error",
    "level_bins",
    "mce",
    "nll",
    "reliability_bins",
    "select_bandwidth",
    "silverman_bandwidth",
]
