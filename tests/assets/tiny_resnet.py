"""A user's own classifier, written as a researcher would: BatchNorm, residual blocks, functional ReLUs, its own input
normalisation inside, for 3 x 32 x 32 RGB images and 5 classes. Tests load it as ``tests/assets/tiny_resnet.py:TinyResNet``."""

import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class TinyResNet(nn.Module):
    def __init__(self, width: int = 16, num_classes: int = 5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).reshape(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.block1 = Block(width)
        self.block2 = Block(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.bn(self.stem(x)))
        x = F.max_pool2d(self.block1(x), 2)
        x = self.block2(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def make_tiny_resnet(width: int = 16) -> TinyResNet:
    """A factory, the other form a user's architecture may take."""
    return TinyResNet(width=width)
