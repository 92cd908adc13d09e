"""``resnet18``: the CIFAR-style ResNet-18 of the MeGe/ReCo experiments (Fel et al., appendix E).

He et al. (2016) ResNet-18 adapted to small images: a 3x3 stride-1 stem convolution with no max-pooling, four stages
of two ``BasicBlock``s with ``base_filters`` x (1, 2, 4, 8) channels (stages 2-4 start with stride 2), global average
pooling, ``Dropout(dropout)`` and one linear layer. The MeGe appendix uses base filters 26 / dropout 0.4 for
Fashion-MNIST, 46 / 0.25 for EuroSAT and 32 / 0.25 for CIFAR-10; the defaults (64, 0) are the original network.
Every ReLU is its own module (none reused, none in place) so that hook-based explainers see each one.

CAM layer: ``body.layer4``, the output of the last stage (after its final ReLU).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ._options import POSITIVE_INT, RATE, validated
from .base import ClassifierShape, ImageClassifier


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut: ``relu(F(x) + shortcut(x))``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(ImageClassifier):
    name = "resnet18"
    description = "CIFAR-style ResNet-18 (3x3 stem, no max-pool, 4 stages x 2 basic blocks, dropout before the head)"

    def __init__(self, shape: ClassifierShape, *, base_filters: int = 64, dropout: float = 0.0) -> None:
        options = validated(self.name, base_filters=(base_filters, POSITIVE_INT), dropout=(dropout, RATE))
        super().__init__(self.name, shape.in_channels, shape.num_classes, shape.image_size, options=options)
        base_filters = options["base_filters"]

        layers = OrderedDict(
            conv1=nn.Conv2d(shape.in_channels, base_filters, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(base_filters),
            relu=nn.ReLU(),
        )
        channels = base_filters
        for stage in range(4):
            out_channels = base_filters * 2**stage
            stride = 1 if stage == 0 else 2
            layers[f"layer{stage + 1}"] = nn.Sequential(
                BasicBlock(channels, out_channels, stride), BasicBlock(out_channels, out_channels, 1)
            )
            channels = out_channels
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        layers["dropout"] = nn.Dropout(options["dropout"])
        layers["fc"] = nn.Linear(channels, shape.num_classes)
        self.body = nn.Sequential(layers)
        self.cam_layer_name = "body.layer4"
