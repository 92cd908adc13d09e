"""``mnist-cnn``: the MNIST network of the ROAR reconstruction (Loreth's thesis, section 5.1.1).

The thesis states only the layout, "two convolution layers, two pooling layers, and three linear layers" (trained
10 epochs, SGD lr 1e-3, momentum 0.9, batch 64, 97.4% on MNIST). The sizes are taken from LeNet-5, the usual network
of that layout (LeCun et al. 1998; the PyTorch tutorial ``Net``):
``Conv2d(6, 5x5) - ReLU - MaxPool(2) - Conv2d(16, 5x5) - ReLU - MaxPool(2) - Linear(120) - ReLU - Linear(84) - ReLU -
Linear(num_classes)``. Both convolutions are zero-padded by 2 ("same") so that any image of at least 4x4 pixels works
(8x8 digits included); on 28x28 images the flattened size is 16 * 7 * 7.

CAM layer: the second convolution's ReLU.
"""

from __future__ import annotations

from collections import OrderedDict
from torch import nn

from ._options import check_image_size
from .base import ClassifierShape, ImageClassifier


class MnistCNN(ImageClassifier):
    name = "mnist-cnn"
    description = "ROAR thesis MNIST CNN: 2 conv (6, 16 channels, 5x5), 2 max-pool, 3 linear (120, 84, classes)"

    def __init__(self, shape: ClassifierShape) -> None:
        check_image_size(self.name, shape.image_size, 4, "two 2x2 max-poolings")
        super().__init__(self.name, shape.in_channels, shape.num_classes, shape.image_size)
        height, width = shape.image_size[0] // 4, shape.image_size[1] // 4
        self.body = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(shape.in_channels, 6, kernel_size=5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(6, 16, kernel_size=5, padding=2),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * height * width, 120),
                relu3=nn.ReLU(),
                fc2=nn.Linear(120, 84),
                relu4=nn.ReLU(),
                fc3=nn.Linear(84, shape.num_classes),
            )
        )
        self.cam_layer_name = "body.relu2"
