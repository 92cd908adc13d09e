"""Models whose outputs are known in closed form: the oracles of the contract checks and of xaitrust's own tests.

With an oracle the right answer is known before any explanation is computed: which pixel drives a score, which map
ranks the evidence first, which pixels are counter-evidence. Every oracle is a two-class ``nn.Module`` returning
logits ``(B, 2)`` and names ``num_classes = 2``.

- ``LinearModel``: class 0's logit is ``sum(w * x)``; its evidence map is ``w * x``; ``reset_parameters`` draws an
  untrained weight (for the randomisation tests).
- ``PixelModel``: class 0's logit is one pixel of channel 0, scaled.
- ``PatchModel``: class 0's logit is the mean of a patch of channel 0, scaled and shifted.
- ``TwoPixelNet``: one pixel drives each class, built from the layers every explainer supports (convolution, batch
  norm, ReLU, dropout, linear) and naming a CAM layer, so that every explainer can run on it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import XaitrustError


class LinearModel(nn.Module):
    """Class 0's logit is ``sum(w * x)``, class 1's logit is 0."""

    num_classes = 2

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x):
        logit = (x * self.weight).sum(dim=(1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)

    def reset_parameters(self) -> None:
        """An untrained weight, ``N(0, 1 / d)`` for ``d`` inputs: what the randomisation tests re-initialise."""
        with torch.no_grad():
            self.weight.normal_(0.0, self.weight.numel() ** -0.5)


class PixelModel(nn.Module):
    """Class 0's logit is ``scale * x[:, 0, row, col]``, class 1's logit is 0: the score vanishes once that pixel
    is 0."""

    num_classes = 2

    def __init__(self, row: int, col: int, scale: float = 1.0) -> None:
        super().__init__()
        self.row, self.col, self.scale = row, col, scale
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = self.scale * x[:, 0, self.row, self.col] + self.anchor
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


class PatchModel(nn.Module):
    """Class 0's logit is ``scale * mean(x) + bias`` over the patch ``rows x cols`` of channel 0, class 1's logit
    is 0."""

    num_classes = 2

    def __init__(self, rows: slice, cols: slice, scale: float = 10.0, bias: float = 0.0) -> None:
        super().__init__()
        self.rows, self.cols, self.scale = rows, cols, scale
        self.anchor = nn.Parameter(torch.full((1,), float(bias)))

    def forward(self, x):
        logit = self.scale * x[:, 0, self.rows, self.cols].mean(dim=(1, 2)) + self.anchor
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


class TwoPixelNet(nn.Module):
    """Pixel ``pixels[k]`` alone drives class ``k``: ``logit_k = scale * relu(mean_c x[:, c, r_k, c_k] - threshold)``
    (times the batch norm's ``1 / sqrt(1 + 1e-5)``).

    Layers: a 3x3 convolution to two feature maps (map 0 reads each pixel's channel mean, map 1 the channel mean of
    the pixel one up and one left, so the two classes look at differently placed features), a batch norm with identity
    statistics, a ReLU after subtracting ``threshold``, then flatten, dropout and a linear layer reading feature map
    ``k`` at the place that sees ``pixels[k]``. No other pixel changes either logit, so the gradient of a class's
    score is zero everywhere but at its pixel (on every channel). The ReLU makes the gradient at that pixel depend on
    the pixel's value (zero below ``threshold``), so methods that look at how gradients vary (VarGrad) see it too.

    ``cam_layer`` is the block producing the feature maps (convolution, batch norm, ReLU). The batch norm and the
    dropout behave differently in train mode: a method that ran the model in train mode would change the batch
    norm's running statistics or get random logits.
    """

    num_classes = 2

    def __init__(self, channels: int, size: tuple[int, int], pixels=((3, 8), (8, 3)), scale: float = 10.0,
                 threshold: float = 0.55) -> None:
        super().__init__()
        height, width = size
        (r0, c0), (r1, c1) = pixels
        if not (0 <= r0 < height and 0 <= c0 < width and 0 <= r1 < height - 1 and 0 <= c1 < width - 1):
            raise XaitrustError(
                f"pixels {pixels} must lie inside {size} (the second one off the last row and column)"
            )
        self.channels, self.size = channels, (height, width)
        self.pixels = ((r0, c0), (r1, c1))
        convolution = nn.Conv2d(channels, 2, kernel_size=3, padding=1)
        head = nn.Linear(2 * height * width, 2, bias=False)
        with torch.no_grad():
            convolution.weight.zero_()
            convolution.weight[0, :, 1, 1] = 1.0 / channels  # map 0 at (i, j) reads pixel (i, j)
            convolution.weight[1, :, 0, 0] = 1.0 / channels  # map 1 at (i, j) reads pixel (i - 1, j - 1)
            convolution.bias.fill_(-threshold)
            head.weight.zero_()
            head.weight[0, r0 * width + c0] = scale
            head.weight[1, height * width + (r1 + 1) * width + (c1 + 1)] = scale
        self.features = nn.Sequential(convolution, nn.BatchNorm2d(2), nn.ReLU())
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), head)

    @property
    def cam_layer(self) -> nn.Module:
        return self.features

    def forward(self, x):
        return self.head(self.features(x))

    def images(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` images ``(n, channels, height, width)`` uniform in [0, 1] whose driving pixels take values uniform in
        [0.57, 0.63] (the same on every channel): above the default ``threshold``, so both classes' pixels are active,
        close enough to it that noise of a few hundredths switches the ReLU, below many other pixels (the brightest
        pixel is not the answer), and different from image to image (so are the scores)."""
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand(n, self.channels, *self.size, generator=generator)
        for row, col in self.pixels:
            x[:, :, row, col] = 0.57 + 0.06 * torch.rand(n, 1, generator=generator)
        return x
