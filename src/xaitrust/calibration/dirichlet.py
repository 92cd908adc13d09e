"""Dirichlet calibration with ODIR regularisation (Kull et al., 2019), as used by Calibrate-to-Interpret.

Calibrated probabilities are ``softmax(W log p + b)`` with ``p = softmax(z)`` the model's probabilities, ``W`` a
``K x K`` matrix and ``b`` a ``K``-vector fitted on a held-out calibration split by minimising

    NLL + lambda / (K (K - 1)) * sum_{i != j} W_ij^2 + mu / K * sum_j b_j^2

(Off-Diagonal and Intercept Regularisation, ODIR) with full-batch L-BFGS, starting from ``W = I, b = 0`` (the
uncalibrated model). Unlike temperature scaling, ``W`` mixes classes, so Dirichlet calibration **may change the
predicted class** of some inputs: ``changed_argmax_`` is the fraction changed on the calibration split, and
``argmax_change_rate(logits)`` measures it on any data. Calibrate-to-Interpret attributes part of its larger effect on
explanations to this.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from .base import Calibrator, register
from .checks import check_logits

LBFGS_ITERATIONS = 500


@register
class DirichletCalibration(Calibrator):
    """``softmax(weight_ @ log_softmax(z) + bias_)`` with ODIR weights ``reg_lambda`` (off-diagonal) and ``reg_mu``
    (bias); see the module docstring."""

    name = "dirichlet"
    learned_names = ("weight_", "bias_", "changed_argmax_")

    def __init__(self, reg_lambda: float = 1e-3, reg_mu: float = 1e-3) -> None:
        if reg_lambda < 0 or reg_mu < 0:
            raise XaitrustError(f"reg_lambda and reg_mu must be non-negative; got {reg_lambda}, {reg_mu}")
        self.reg_lambda = float(reg_lambda)
        self.reg_mu = float(reg_mu)

    def settings(self) -> dict:
        return {"reg_lambda": self.reg_lambda, "reg_mu": self.reg_mu}

    def expected_classes(self) -> int | None:
        return self.weight_.shape[0]

    def fit(self, logits, labels) -> "DirichletCalibration":
        """Fit ``weight_`` ``(K, K)`` and ``bias_`` ``(K,)`` on calibration logits ``(N, K)`` and labels ``(N,)``.

        Warns when the fitted map changes the predicted class of some calibration samples.
        """
        logits, labels = check_logits(logits, labels)
        log_probs = torch.log_softmax(logits.detach().to("cpu", torch.float64), dim=1)
        k = log_probs.shape[1]
        weight = torch.eye(k, dtype=torch.float64, requires_grad=True)
        bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        off_diagonal = ~torch.eye(k, dtype=torch.bool)
        optimizer = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=LBFGS_ITERATIONS, line_search_fn="strong_wolfe",
            tolerance_grad=1e-10, tolerance_change=1e-14,
        )

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(log_probs @ weight.T + bias, labels.cpu())
            loss = loss + self.reg_lambda * weight[off_diagonal].pow(2).sum() / (k * (k - 1))
            loss = loss + self.reg_mu * bias.pow(2).sum() / k
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weight_, self.bias_ = weight.detach(), bias.detach()
        self.changed_argmax_ = self.argmax_change_rate(logits)
        if self.changed_argmax_ > 0:
            warnings.warn(
                f"Dirichlet calibration changes the predicted class of {100 * self.changed_argmax_:.2f}% of the "
                "calibration samples; explanations of the calibrated model may explain a different class",
                stacklevel=2,
            )
        return self

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        weight = self.weight_.to(device=logits.device, dtype=logits.dtype)
        bias = self.bias_.to(device=logits.device, dtype=logits.dtype)
        return torch.log_softmax(logits, dim=-1) @ weight.T + bias

    def argmax_change_rate(self, logits) -> float:
        """Fraction of inputs whose predicted class differs before and after calibration."""
        logits, _ = check_logits(logits, num_classes=self.expected_classes())
        with torch.no_grad():
            changed = self.calibrated_logits(logits).argmax(dim=1) != logits.argmax(dim=1)
        return changed.double().mean().item()
