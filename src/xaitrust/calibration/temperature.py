"""Temperature scaling (Guo et al., 2017), as used by Calibrate-to-Interpret and, per perturbation bin, by ReCalX.

Calibrated probabilities are ``softmax(z / T)`` for logits ``z`` and one temperature ``T > 0`` chosen to minimise the
negative log-likelihood of a held-out calibration split. ``T`` is optimised as ``log T`` (so it stays positive) by
L-BFGS with a strong-Wolfe line search, within ``[TEMPERATURE_MIN, TEMPERATURE_MAX]``: where the likelihood keeps
improving towards a uniform prediction (inputs so perturbed that the model is at chance) or towards a hard argmax (all
predictions right), the temperature stops at the bound instead of running to infinity or 0. Dividing every logit by
the same ``T`` never changes the predicted class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Calibrator, register
from .checks import check_logits

LBFGS_ITERATIONS = 200
TEMPERATURE_MIN, TEMPERATURE_MAX = 1e-3, 1e6


def fit_temperatures(logits: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor | None = None, n_groups: int = 1) -> torch.Tensor:
    """One temperature per group ``(n_groups,)`` (float64) minimising each group's mean NLL.

    ``loss = sum_g mean_{i in g} -log softmax(z_i / T_g)[y_i]``; the groups are independent, so one L-BFGS run on the
    sum finds every group's minimum. A group without samples keeps ``T = 1``.
    """
    logits = logits.detach().to("cpu", torch.float64)
    labels = labels.to("cpu")
    groups = torch.zeros(len(logits), dtype=torch.long) if groups is None else groups.to("cpu").long()
    weights = 1.0 / torch.bincount(groups, minlength=n_groups).clamp_min(1).double()[groups]
    log_temperature = torch.zeros(n_groups, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [log_temperature], lr=1.0, max_iter=LBFGS_ITERATIONS, line_search_fn="strong_wolfe",
        tolerance_grad=1e-10, tolerance_change=1e-14,
    )

    low, high = math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX)

    def closure():
        optimizer.zero_grad()
        scaled = logits * torch.exp(-log_temperature.clamp(low, high))[groups, None]
        loss = (F.cross_entropy(scaled, labels, reduction="none") * weights).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return torch.exp(log_temperature.detach().clamp(low, high))


@register
class TemperatureScaling(Calibrator):
    """``softmax(z / temperature_)`` with ``temperature_`` fitted by NLL (module docstring). Preserves the argmax."""

    name = "temperature"
    learned_names = ("temperature_",)

    def settings(self) -> dict:
        return {}

    def fit(self, logits, labels) -> "TemperatureScaling":
        """Fit ``temperature_`` on calibration logits ``(N, K)`` and labels ``(N,)``."""
        logits, labels = check_logits(logits, labels)
        self.temperature_ = float(fit_temperatures(logits, labels)[0])
        return self

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature_
