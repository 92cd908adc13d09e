"""Proper scores and accuracy of predicted probabilities ``(N, K)`` against labels ``(N,)``.

    NLL = -1/N sum_i log p_{i, y_i}                     (log loss; probabilities clipped at ``EPSILON``)
    Brier = 1/N sum_i sum_k (p_ik - [y_i == k])^2       (Brier, 1950; multi-class form)
    accuracy = 1/N sum_i [argmax_k p_ik == y_i]
"""

from __future__ import annotations

import torch

from .checks import check_probabilities

EPSILON = 1e-12


def nll(probs, labels) -> float:
    """Mean negative log-likelihood of the labels."""
    probs, labels = check_probabilities(probs, labels)
    return -probs.gather(1, labels[:, None]).clamp_min(EPSILON).log().mean().item()


def brier(probs, labels) -> float:
    """Mean multi-class Brier score, in [0, 2]."""
    probs, labels = check_probabilities(probs, labels)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).double()
    return ((probs - onehot) ** 2).sum(dim=1).mean().item()


def accuracy(probs, labels) -> float:
    """Fraction of samples whose most probable class is the label."""
    probs, labels = check_probabilities(probs, labels)
    return (probs.argmax(dim=1) == labels).double().mean().item()
