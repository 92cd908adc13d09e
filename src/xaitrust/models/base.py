"""What every xaitrust classifier provides on top of ``nn.Module``.

A model takes images in [0, 1] and normalises them itself with the dataset mean/std stored as buffers, so explainers,
perturbation metrics and calibrators all work in image space. It names the layer CAM methods use, and carries the
``spec`` it was built from so that a checkpoint can rebuild it without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import XaitrustError


@dataclass(frozen=True)
class ClassifierShape:
    """What a classifier takes and returns: ``in_channels x H x W`` images (``image_size = (H, W)``) and
    ``num_classes`` logits. ``xaitrust.models.build_model`` validates it and hands it to the architecture."""

    in_channels: int
    num_classes: int
    image_size: tuple[int, int]


class ImageClassifier(nn.Module):
    """Base class: ``forward(x)`` normalises ``x`` then returns logits ``(B, num_classes)``.

    Subclasses set ``self.body`` (an ``nn.Module`` from normalised images to logits) and ``self.cam_layer_name``, the
    dotted name (from the model) of the module whose output Grad-CAM uses.
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
        mean = torch.zeros(in_channels) if mean is None else _channel_values("mean", mean, in_channels)
        std = torch.ones(in_channels) if std is None else _channel_values("std", std, in_channels)
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
        """Store the training data's per-channel mean and std ``(C,)`` (one value is used for every channel)."""
        self.input_mean.copy_(_channel_values("mean", mean, self.in_channels).reshape(1, -1, 1, 1))
        self.input_std.copy_(_channel_values("std", std, self.in_channels).clamp_min(1e-6).reshape(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))


def _channel_values(what: str, values, in_channels: int) -> torch.Tensor:
    """``values`` as a float32 vector of length ``in_channels`` (a single value is repeated), else a clear error."""
    values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if len(values) == 1:
        values = values.expand(in_channels)
    if len(values) != in_channels or not torch.isfinite(values).all():
        raise XaitrustError(
            f"{what} must hold one finite value per input channel ({in_channels}); got {values.tolist()}"
        )
    if what == "std" and (values < 0).any():
        raise XaitrustError(f"std must be >= 0 in every channel (0 is raised to 1e-6); got {values.tolist()}")
    return values
