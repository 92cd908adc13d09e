"""``cnn``: the small, fast default classifier.

Blocks of ``Conv2d(3x3, padding 1) - ReLU - MaxPool2d(2)``, one per entry of ``channels``, then
``Flatten - Linear(hidden) - ReLU - Dropout - Linear(num_classes)``. Only Conv2d/ReLU/MaxPool/Linear/Dropout, so that
rule-based explainers (DeepLIFT, LRP) handle every layer. With the defaults (32, 64 channels, 128 hidden units) a
28x28 forward pass costs about 4 MMAC per image, and a few epochs on Fashion-MNIST reach about 90% test accuracy.

CAM layer: the last block's ReLU (before its pooling), so Grad-CAM weights rectified feature maps at the finest
resolution the last convolution has.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ._options import POSITIVE_INT, POSITIVE_INTS, RATE, check_image_size, validated
from .base import ClassifierShape, ImageClassifier


class SmallCNN(ImageClassifier):
    name = "cnn"
    description = "small fast CNN (conv3x3-ReLU-maxpool blocks, two linear layers); the default model"

    def __init__(self, shape: ClassifierShape, *, channels: Sequence[int] = (32, 64), hidden: int = 128,
                 dropout: float = 0.25) -> None:
        options = validated(
            self.name, channels=(channels, POSITIVE_INTS), hidden=(hidden, POSITIVE_INT), dropout=(dropout, RATE)
        )
        channels = options["channels"]
        check_image_size(self.name, shape.image_size, 2 ** len(channels), f"{len(channels)} 2x2 max-poolings")
        super().__init__(self.name, shape.in_channels, shape.num_classes, shape.image_size, options=options)

        layers = OrderedDict()
        height, width = shape.image_size
        for index, (c_in, c_out) in enumerate(zip([shape.in_channels, *channels], channels), start=1):
            layers[f"conv{index}"] = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)
            layers[f"relu{index}"] = nn.ReLU()
            layers[f"pool{index}"] = nn.MaxPool2d(2)
            height, width = height // 2, width // 2
        self.cam_layer_name = f"body.relu{len(channels)}"
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = nn.Linear(channels[-1] * height * width, options["hidden"])
        layers["fc1_relu"] = nn.ReLU()
        layers["dropout"] = nn.Dropout(options["dropout"])
        layers["fc2"] = nn.Linear(options["hidden"], shape.num_classes)
        self.body = nn.Sequential(layers)
