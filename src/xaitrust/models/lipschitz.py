"""``lipschitz-cnn``: the 1-Lipschitz network of the MeGe/ReCo paper (Fel et al., Table 4, CIFAR-10).

Table 4: ``Conv2D(48) - PReLU - AvgPool(2) - Dropout(0.2) - Conv2D(96) - PReLU - AvgPool(2) - Dropout(0.2) -
Conv2D(96) - AvgPool(2) - Flatten - Dense(10)``, trained with Deel-Lip's spectrally normalised layers. Here every
layer is 1-Lipschitz in L2 (see ``lipschitz_layers``): 3x3 convolutions divided by their exact operator norm on the
image size they see, a dense layer of spectral norm 1, average pooling scaled by 2, and ``MaxMin`` (default) or
``BoundedPReLU`` activations. The body (normalised image -> logits) is therefore 1-Lipschitz in eval mode (dropout in
training mode scales activations by 1 / (1 - p)).

Input normalisation: the base class divides by the per-channel ``std``, which multiplies the constant by at most
``1 / min(std)``. The bound is kept with respect to the raw image, the model's real input: ``lipschitz_bound()``
returns ``1 / min(std)`` (1 with the default std of 1), i.e. ``||f(x) - f(y)||_2 <= lipschitz_bound() * ||x - y||_2``.
The bound holds for images of the built ``image_size``.

Training: the weights start orthogonal with zero biases (Deel-Lip's initialisation, see ``lipschitz_layers``). The
logits of a 1-Lipschitz network cannot saturate a softmax at temperature 1, so such networks are trained with a loss
made for them: ``TrainConfig(loss="tau-cross-entropy", tau=...)`` (Béthune et al., "Pay attention to your loss"), as
the MeGe/ReCo protocol does.

CAM layer: the last convolution (Table 4 puts no activation after it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from ..errors import XaitrustError
from ._options import POSITIVE_INTS, RATE, check_image_size, one_of, validated
from .base import ClassifierShape, ImageClassifier
from .lipschitz_layers import (
    BoundedPReLU,
    MaxMin,
    ScaledAvgPool2d,
    lipschitz_conv2d,
    lipschitz_linear,
)

ACTIVATIONS = {"maxmin": lambda channels: MaxMin(), "prelu": BoundedPReLU}


class LipschitzCNN(ImageClassifier):
    name = "lipschitz-cnn"
    description = "1-Lipschitz CNN of the MeGe/ReCo paper (Table 4): normalised convs, MaxMin/PReLU, scaled avg-pool"

    def __init__(self, shape: ClassifierShape, *, channels: Sequence[int] = (48, 96, 96), activation: str = "maxmin",
                 dropout: float = 0.2) -> None:
        options = validated(
            self.name,
            channels=(channels, POSITIVE_INTS),
            activation=(activation, one_of(tuple(ACTIVATIONS))),
            dropout=(dropout, RATE),
        )
        channels = options["channels"]
        check_image_size(self.name, shape.image_size, 2 ** len(channels), f"{len(channels)} 2x2 average poolings")
        if options["activation"] == "maxmin" and any(c % 2 for c in channels[:-1]):
            raise XaitrustError(
                f"model {self.name!r}: activation 'maxmin' pairs channels, so every entry of channels but the last "
                f"must be even; got {channels}"
            )
        super().__init__(self.name, shape.in_channels, shape.num_classes, shape.image_size, options=options)

        layers = OrderedDict()
        size = shape.image_size
        for index, (c_in, c_out) in enumerate(zip([shape.in_channels, *channels], channels), start=1):
            last = index == len(channels)
            layers[f"conv{index}"] = lipschitz_conv2d(c_in, c_out, size)
            if not last:
                layers[f"act{index}"] = ACTIVATIONS[options["activation"]](c_out)
            layers[f"pool{index}"] = ScaledAvgPool2d(2)
            if not last:
                layers[f"dropout{index}"] = nn.Dropout(options["dropout"])
            size = (size[0] // 2, size[1] // 2)
        layers["flatten"] = nn.Flatten()
        layers["fc"] = lipschitz_linear(channels[-1] * size[0] * size[1], shape.num_classes)
        self.body = nn.Sequential(layers)
        self.cam_layer_name = f"body.conv{len(channels)}"

    def lipschitz_bound(self) -> float:
        """``L`` such that ``||f(x) - f(y)||_2 <= L ||x - y||_2`` for raw images in eval mode: ``1 / min(std)``."""
        return float(1.0 / self.input_std.min())
