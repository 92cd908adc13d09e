"""Optimiser and learning-rate schedule of a ``TrainConfig``.

The schedule is a pure function of the epoch, set on the optimiser at the start of every epoch, so resuming needs no
scheduler state: step decay ``lr * gamma ** (number of milestones <= epoch)`` (e.g. the FPA paper's CIFAR-10 recipe:
SGD, lr 0.01, momentum 0.9, weight decay 5e-4, times 0.1 at epoch 30) and cosine annealing to zero
``lr * (1 + cos(pi * epoch / epochs)) / 2`` (their Food101 recipe; Loshchilov & Hutter 2017 without restarts).
"""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (with momentum) or Adam over all the model's parameters, with ``config.lr`` and ``config.weight_decay``."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def learning_rate(config: TrainConfig, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based) under ``config.schedule``."""
    if config.schedule == "step":
        return config.lr * config.gamma ** sum(1 for milestone in config.milestones if milestone <= epoch)
    if config.schedule == "cosine":
        return config.lr * (1 + math.cos(math.pi * epoch / config.epochs)) / 2
    return config.lr


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
