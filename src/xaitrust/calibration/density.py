"""Density-based top-label ECE (Posocco & Bonnefoy, 2021), the estimator Calibrate-to-Interpret reports.

With top-label confidences ``s_i = max_k p_ik`` and hits ``c_i = [argmax_k p_ik == y_i]``, the density of confidences
and the density of confidences of correct predictions (times the accuracy) are estimated by Gaussian kernels reflected
at both ends of the support [0, 1] (so no mass leaks out of it):

    K_h(s, s_i) = phi((s - s_i) / h) + phi((s + s_i) / h) + phi((s - 2 + s_i) / h),  divided by h
    f(s) = 1/N sum_i K_h(s, s_i)          g(s) = 1/N sum_i c_i K_h(s, s_i) = P(correct | s) f(s)

and ECE = integral over [0, 1] of |P(correct | s) - s| f(s) ds = integral of |g(s) - s f(s)| ds, computed by the
trapezoid rule on a regular grid with at least 8 points per bandwidth, up to ``MAX_GRID_SIZE`` points (``grid_size``
is raised when needed: a confident model's small bandwidth would otherwise be sampled at one grid point and the
integral be off). A bandwidth below ``MIN_BANDWIDTH`` (8 points of the largest grid), e.g. Silverman's for confidences
that are nearly all exactly 1 (a model far below its calibrated temperature: 73% of float32 confidences at 1.0 gave
h = 2e-8 and an "ECE" of 6.4), is raised to it with a warning: the grid cannot resolve a narrower kernel.
The bandwidth ``h`` follows Silverman's rule on the confidences by default:
``h = 0.9 min(std, IQR / 1.349) N^(-1/5)`` (IQR replaced by the std when it is 0).
"""

from __future__ import annotations

import math
import warnings

import torch

from ..errors import XaitrustError
from .checks import check_probabilities

MIN_SAMPLES = 10
GRID_SIZE = 1025
MAX_GRID_SIZE = 2**16 + 1
MIN_BANDWIDTH = 8 / (MAX_GRID_SIZE - 1)
KERNEL_ELEMENTS_PER_CHUNK = 2**22


def silverman_bandwidth(values: torch.Tensor) -> float:
    """Silverman's rule-of-thumb bandwidth for a 1-D sample (see the module docstring)."""
    if len(values) < MIN_SAMPLES:
        raise XaitrustError(f"a kernel bandwidth needs at least {MIN_SAMPLES} samples; got {len(values)}")
    std = values.std().item()
    q75, q25 = torch.quantile(values, torch.tensor([0.75, 0.25], dtype=values.dtype)).tolist()
    spread = min(std, (q75 - q25) / 1.349) if q75 > q25 else std
    if spread <= 0:
        raise XaitrustError("all confidences are equal, so Silverman's bandwidth is 0; give a bandwidth explicitly")
    return 0.9 * spread * len(values) ** -0.2


def density_ece(probs, labels, bandwidth: float | str = "silverman", grid_size: int = GRID_SIZE) -> float:
    """Density-based top-label ECE of ``probs`` ``(N, K)`` against ``labels`` ``(N,)`` (module docstring)."""
    probs, labels = check_probabilities(probs, labels)
    confidence, predicted = probs.max(dim=1)
    hits = (predicted == labels).double()
    if bandwidth == "silverman":
        bandwidth = silverman_bandwidth(confidence)
    elif isinstance(bandwidth, str) or not bandwidth > 0:
        raise XaitrustError(f"bandwidth must be 'silverman' or a positive number; got {bandwidth!r}")
    if bandwidth < MIN_BANDWIDTH:
        warnings.warn(f"kernel bandwidth {bandwidth:.2g} is below the {MIN_BANDWIDTH:.2g} the integration grid resolves "
                      "(near-identical confidences); it is raised to that", UserWarning, stacklevel=2)
        bandwidth = MIN_BANDWIDTH
    grid_size = max(grid_size, min(MAX_GRID_SIZE, math.ceil(8 / float(bandwidth)) + 1))
    grid = torch.linspace(0.0, 1.0, grid_size, dtype=torch.float64)
    density = torch.zeros_like(grid)
    correct_density = torch.zeros_like(grid)
    chunk = max(1, KERNEL_ELEMENTS_PER_CHUNK // grid_size)
    for start in range(0, len(confidence), chunk):
        kernel = reflected_gaussian(grid, confidence[start : start + chunk], float(bandwidth))
        density += kernel.sum(dim=1)
        correct_density += kernel @ hits[start : start + chunk]
    gap = (correct_density - grid * density).abs() / len(confidence)
    return torch.trapezoid(gap, grid).item()


def reflected_gaussian(grid: torch.Tensor, centres: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """Gaussian kernels ``(G, n)`` centred on ``centres`` and reflected at 0 and 1, evaluated on ``grid``."""
    s, c = grid[:, None], centres[None, :]
    z = torch.stack([(s - c), (s + c), (s - 2.0 + c)]) / bandwidth
    return torch.exp(-0.5 * z**2).sum(dim=0) / (bandwidth * math.sqrt(2 * math.pi))
