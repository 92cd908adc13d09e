"""Running a model in eval mode for a while without losing its own train/eval settings.

``model.train(was_training)`` after ``model.eval()`` would set every submodule to the model's flag, undoing choices
made per module: a batch-norm layer frozen with ``bn.eval()`` inside a model in training would resume updating its
statistics, and a dropout left in train mode inside an evaluated model (e.g. for Monte-Carlo dropout) would stop
dropping. ``evaluation_mode`` restores each module's own flag instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block, then give every module back its own ``training`` flag (also when
    the block raises)."""
    flags = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags.items():
            module.training = training
