"""Models whose outputs are known in closed form, for the perturbation engine and faithfulness metric tests."""

import torch
from torch import nn


class LinearModel(nn.Module):
    """Class 0's logit is ``sum(w * x)``, class 1's logit is 0."""

    num_classes = 2

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x):
        logit = (x * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


class PixelModel(nn.Module):
    """Class 0's logit is ``scale * x[:, 0, row, col]``, class 1's logit is 0: the score vanishes once that pixel is 0."""

    num_classes = 2

    def __init__(self, row: int, col: int, scale: float = 1.0) -> None:
        super().__init__()
        self.row, self.col, self.scale = row, col, scale
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = self.scale * x[:, 0, self.row, self.col] + self.anchor
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


class PatchModel(nn.Module):
    """Class 0's logit is ``scale * mean(x)`` over the patch ``rows x cols`` of channel 0, class 1's logit is 0."""

    num_classes = 2

    def __init__(self, rows: slice, cols: slice, scale: float = 10.0) -> None:
        super().__init__()
        self.rows, self.cols, self.scale = rows, cols, scale
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = self.scale * x[:, 0, self.rows, self.cols].mean(dim=(1, 2)) + self.anchor
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)
