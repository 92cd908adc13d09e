"""What every xaitrust classifier provides on top of ``nn.Module``.

A model takes images in [0, 1] and normalises them itself with the dataset mean/std stored as buffers, so explainers,
perturbation metrics and calibrators all work in image space. It names the layer CAM methods use, and carries the
``spec`` it was built from so that a checkpoint can rebuild it without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Base class: ``forward(x)`` normalises ``x`` then returns logits ``(B, num_classes)``.

    Subclasses implement ``features_and_head`` pieces through ``self.body`` (an ``nn.Module`` from normalised images to
    logits) and set ``self.cam_layer_name`` to the dotted name of the module whose output Grad-CAM uses.
    """

    cam_layer_name: str = ""

    def __init__(
        self,
        name: str,
        in_channels: int,
        num_classes: int,
        image_size: Sequence[int],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        options: dict | None = None,
    ) -> None:
        super().__init__()
        self.spec = {
            "name": name,
            "in_channels": int(in_channels),
            "num_classes": int(num_classes),
            "image_size": [int(s) for s in image_size],
            "options": dict(options or {}),
        }
        mean = torch.zeros(in_channels) if mean is None else torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.ones(in_channels) if std is None else torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        self.register_buffer("input_mean", mean.reshape(1, -1, 1, 1).clone())
        self.register_buffer("input_std", std.clamp_min(1e-6).reshape(1, -1, 1, 1).clone())

    @property
    def num_classes(self) -> int:
        return self.spec["num_classes"]

    @property
    def in_channels(self) -> int:
        return self.spec["in_channels"]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.spec["image_size"])

    @property
    def cam_layer(self) -> nn.Module:
        """The module whose output feature maps Grad-CAM and Grad-CAM++ weight."""
        return self.get_submodule(self.cam_layer_name)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def set_normalization(self, mean, std) -> None:
        """Store the training data's per-channel mean and std ``(C,)``."""
        self.input_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.input_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
