"""Dirichlet calibration with ODIR regularisation (Kull et al., 2019), as used by Calibrate-to-Interpret.

Calibrated probabilities are ``softmax(W log p + b)`` with ``p = softmax(z)`` the model's probabilities, ``W`` a
``K x K`` matrix and ``b`` a ``K``-vector fitted on a held-out calibration split by minimising

    NLL + lambda / (K (K - 1)) * sum_{i != j} W_ij^2 + mu / K * sum_j b_j^2

(Off-Diagonal and Intercept Regularisation, ODIR) with full-batch L-BFGS, starting from ``W = I, b = 0`` (the
uncalibrated model).

The regularisation weights. Kull et al. select them by cross-validation on the calibration data; Calibrate to
Interpret does not state them. By default (``reg_lambda = reg_mu = None``) ``lambda = mu`` is chosen from
``REGULARIZATION_GRID`` by the mean held-out NLL of a stratified ``cv_folds``-fold split of the calibration split, then
``W, b`` are refitted on all of it; ``reg_lambda_`` and ``reg_mu_`` record the weights used. One shared weight keeps
the search one-dimensional (Kull et al. search both). Fixed weights skip the search: with 10 classes and 2000
calibration samples of a Fashion-MNIST CNN, ``lambda = mu = 1e-3`` raised the held-out NLL from 0.460 to 0.493, while
1 lowered it to 0.420 (temperature scaling: 0.459). Unlike temperature scaling, ``W`` mixes classes, so Dirichlet calibration **may change the
predicted class** of some inputs: ``changed_argmax_`` is the fraction changed on the calibration split, and
``argmax_change_rate(logits)`` measures it on any data. Calibrate-to-Interpret attributes part of its larger effect on
explanations to this.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from ..data.splits import stratified_kfold
from ..errors import XaitrustError
from .base import Calibrator, register
from .checks import check_logits

LBFGS_ITERATIONS = 500
#: Candidate weights ``lambda = mu`` of the cross-validated search.
REGULARIZATION_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def fit_dirichlet(log_probs: torch.Tensor, labels: torch.Tensor, reg_lambda: float, reg_mu: float):
    """``(W, b)`` minimising the ODIR objective of the module docstring on log-probabilities ``(N, K)`` (float64)."""
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
        loss = F.cross_entropy(log_probs @ weight.T + bias, labels)
        loss = loss + reg_lambda * weight[off_diagonal].pow(2).sum() / (k * (k - 1))
        loss = loss + reg_mu * bias.pow(2).sum() / k
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def cross_validated_regularization(log_probs: torch.Tensor, labels: torch.Tensor, folds: int, seed: int) -> float:
    """The weight of ``REGULARIZATION_GRID`` whose fits have the lowest mean held-out NLL over ``folds`` stratified
    folds (the first one on ties); a warning when it is an end of the grid, where a weight beyond might do better.
    ``len(REGULARIZATION_GRID) * folds`` L-BFGS fits: seconds for a few thousand samples of 10 classes. The folds are
    cut to the smallest class count (at least 2 samples of every present class are needed)."""
    smallest = int(torch.bincount(labels)[torch.bincount(labels) > 0].min())
    if smallest < 2:
        raise XaitrustError("choosing the Dirichlet regularisation by cross-validation needs at least 2 calibration "
                            "samples of every class present; give reg_lambda and reg_mu, or a larger calibration split")
    if smallest < folds:
        warnings.warn(f"a class has only {smallest} calibration samples: cross-validation uses {smallest} folds, not "
                      f"cv_folds = {folds}", UserWarning, stacklevel=3)
        folds = smallest
    fold = stratified_kfold(labels, folds, seed)
    losses = []
    for weight in REGULARIZATION_GRID:
        held_out = []
        for i in range(folds):
            train, test = fold != i, fold == i
            w, b = fit_dirichlet(log_probs[train], labels[train], weight, weight)
            held_out.append(F.cross_entropy(log_probs[test] @ w.T + b, labels[test]).item())
        losses.append(sum(held_out) / folds)
    best = losses.index(min(losses))
    if best in (0, len(REGULARIZATION_GRID) - 1):
        warnings.warn(f"cross-validation chose the regularisation weight {REGULARIZATION_GRID[best]:g}, an end of the "
                      "searched grid; give reg_lambda and reg_mu to go beyond it", UserWarning, stacklevel=3)
    return REGULARIZATION_GRID[best]


@register
class DirichletCalibration(Calibrator):
    """``softmax(weight_ @ log_softmax(z) + bias_)`` with ODIR weights ``reg_lambda`` (off-diagonal) and ``reg_mu``
    (bias), both chosen by ``cv_folds``-fold cross-validation when None; see the module docstring."""

    name = "dirichlet"
    learned_names = ("weight_", "bias_", "changed_argmax_", "reg_lambda_", "reg_mu_")

    def __init__(self, reg_lambda: float | None = None, reg_mu: float | None = None, cv_folds: int = 5,
                 seed: int = 0) -> None:
        if (reg_lambda is None) != (reg_mu is None):
            raise XaitrustError("give both reg_lambda and reg_mu, or neither (then they are chosen by cross-validation)")
        if reg_lambda is not None and (reg_lambda < 0 or reg_mu < 0):
            raise XaitrustError(f"reg_lambda and reg_mu must be non-negative; got {reg_lambda}, {reg_mu}")
        if isinstance(cv_folds, bool) or not isinstance(cv_folds, int) or cv_folds < 2:
            raise XaitrustError(f"cv_folds must be an integer >= 2; got {cv_folds!r}")
        self.reg_lambda = None if reg_lambda is None else float(reg_lambda)
        self.reg_mu = None if reg_mu is None else float(reg_mu)
        self.cv_folds, self.seed = cv_folds, seed

    def settings(self) -> dict:
        return {"reg_lambda": self.reg_lambda, "reg_mu": self.reg_mu, "cv_folds": self.cv_folds, "seed": self.seed}

    def expected_classes(self) -> int | None:
        return self.weight_.shape[0]

    def fit(self, logits, labels) -> "DirichletCalibration":
        """Fit ``weight_`` ``(K, K)`` and ``bias_`` ``(K,)`` on calibration logits ``(N, K)`` and labels ``(N,)``,
        after choosing the regularisation weights by cross-validation unless they were given.

        Warns when the fitted map changes the predicted class of some calibration samples.
        """
        logits, labels = check_logits(logits, labels)
        log_probs = torch.log_softmax(logits.detach().to("cpu", torch.float64), dim=1)
        labels = labels.cpu()
        if self.reg_lambda is None:
            self.reg_lambda_ = self.reg_mu_ = cross_validated_regularization(log_probs, labels, self.cv_folds, self.seed)
        else:
            self.reg_lambda_, self.reg_mu_ = self.reg_lambda, self.reg_mu
        self.weight_, self.bias_ = fit_dirichlet(log_probs, labels, self.reg_lambda_, self.reg_mu_)
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
