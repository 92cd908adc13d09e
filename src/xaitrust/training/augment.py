"""Training-time augmentations, vectorised over the mini-batch, every random draw from an explicit generator.

* ``horizontal_flip``: each image mirrored left-right with probability ``p``.
* ``feature_perturbation``: FPA, Algorithm 1 of Brocki & Chung, "Feature Perturbation Augmentation for reliable
  evaluation of importance estimators in neural networks" (Pattern Recognition Letters 2023).
* ``random_erasing``: one random rectangle per image, Zhong et al., "Random Erasing Data Augmentation" (AAAI 2020),
  the "Rectangle" baseline of the FPA paper.

Images are ``(B, C, H, W)`` in [0, 1]; a "pixel" is one spatial position, and removing a pixel sets all its channels
to the fill ``value``: one number for every channel or one number per channel, in raw image units (default 0, black).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from .config import FPA_SQUARES, TrainConfig


def _uniform(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def fill_pixels(x: torch.Tensor, removed: torch.Tensor, value: float | tuple[float, ...] = 0.0) -> torch.Tensor:
    """``x`` with the pixels marked in the bool mask ``removed`` ``(B, 1, H, W)`` set to ``value`` in every channel:
    ``out[b, c, h, w] = value_c`` where ``removed[b, 0, h, w]``, else ``x[b, c, h, w]``. ``value`` is one number or
    one number per channel of ``x``."""
    fill = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    if fill.shape[1] not in (1, x.shape[1]):
        raise XaitrustError(
            f"the fill value needs one number or one per channel ({x.shape[1]}); got {fill.shape[1]} numbers"
        )
    return torch.where(removed, fill, x)


def horizontal_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image along its width with probability ``p`` (one independent draw per image)."""
    flip = _uniform(len(x), generator, x.device) < p
    return torch.where(flip.reshape(-1, 1, 1, 1), x.flip(-1), x)


def square_cover(starts: torch.Tensor, sides: torch.Tensor, s_max: int) -> torch.Tensor:
    """Pixels covered by squares: ``starts`` bool ``(B, 1, H, W)`` marks top-left corners, ``sides`` int the side of the
    square starting there. The square at ``(w, h)`` with side ``s`` covers ``[w, w + s) x [h, h + s)``, cut at the
    image border (Algorithm 1's ``X[w:(w+s), h:(h+s)]``). One max-pool per side length, so the cost does not depend on
    how many squares there are."""
    covered = torch.zeros_like(starts)
    for side in range(1, s_max + 1):
        corners = (starts & (sides == side)).float()
        # A pixel is covered when a corner sits up to side - 1 rows above and columns left of it.
        padded = F.pad(corners, (side - 1, 0, side - 1, 0))
        covered |= F.max_pool2d(padded, kernel_size=side, stride=1).bool()
    return covered


def feature_perturbation(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    p1_max: float = 0.25,
    p2: float = 0.1,
    s_max: int = 3,
    value: float | tuple[float, ...] = 0.0,
    squares: str = "selected",
) -> torch.Tensor:
    """Feature Perturbation Augmentation (FPA) of one mini-batch (Brocki & Chung, section 3 and Algorithm 1).

    With probability ``p`` the whole mini-batch is perturbed (otherwise it is returned unchanged). Then:

    1. ``p1 ~ Uniform(0, p1_max)``, drawn once for the mini-batch;
    2. every pixel of every image is removed (set to ``value``) with probability ``p1``, independently;
    3. squares ``X[w:(w+s), h:(h+s)]`` are removed, their side ``s`` drawn uniformly from ``{1, ..., s_max}`` for
       each corner ``(w, h)`` and cut at the right and bottom borders. Where the corners are is ``squares``:

       - ``"selected"`` (default): the text's reading, "First, for each mini-batch, we draw p^1 ... and set input
         pixels to 0 with a probability of p^1. Second, with a probability of p^2 for each selected pixel, we create
         a non-informative square of 0's": a square starts at a pixel removed in step 2 with probability ``p2``.
       - ``"every-pixel"``: the literal loop of Algorithm 1, whose line "With p^2, X[w:(w+s), h:(h+s)] <- 0" is not
         conditioned on the line before: a square starts at every position with probability ``p2``, independently
         of step 2. With the small-image values this removes about 2.5 times as many pixels (``removed_share``).

       The authors' published code follows the text (a square only at a selected pixel), with two differences kept
       out of here because the paper states otherwise: its side is drawn from ``{0, ..., s_max}`` (a side 0 removes
       nothing, not even the selected pixel) and a square that crosses the border is dropped rather than cut.

    Paper defaults: ``p = 0.5`` and, for small images (CIFAR-10), ``p1_max = 0.25, p2 = 0.1, s_max = 3``.

    The paper masks pixels "by setting them to zero" (section 3) in network inputs scaled to [-1, 1] (CIFAR-10,
    ImageNet) or z-scored with the training mean and std (Food101, appendix A), so a removed pixel is mid-grey or the
    training mean. Here images are in [0, 1] and ``value`` is that raw value: 0.5 for mid-grey, the training images'
    per-channel mean (one number per channel) for the zero of a z-scored input; the default 0 is black.
    """
    if squares not in FPA_SQUARES:
        raise XaitrustError(f"squares must be one of {', '.join(FPA_SQUARES)}; got {squares!r}")
    if not bool(_uniform(1, generator, x.device) < p):
        return x
    p1 = float(_uniform(1, generator, x.device)) * p1_max
    shape = (len(x), 1, *x.shape[2:])
    pixels = _uniform(shape, generator, x.device) < p1
    starts = _uniform(shape, generator, x.device) < p2
    if squares == "selected":
        starts &= pixels
    sides = torch.randint(1, s_max + 1, shape, generator=generator, device=generator.device).to(x.device)
    return fill_pixels(x, pixels | square_cover(starts, sides, s_max), value)


def removed_share(
    shape: tuple[int, ...], p1_max: float = 0.25, p2: float = 0.1, s_max: int = 3, squares: str = "selected",
    batches: int = 200, seed: int = 0,
) -> float:
    """Mean share of pixels FPA removes from a perturbed mini-batch of images of ``shape`` ``(B, C, H, W)``,
    measured over ``batches`` mini-batches drawn with ``feature_perturbation`` itself (``p = 1``; ``p1`` drawn per
    batch as in training; squares cut at the border). For a pixel away from the top and left border and a given
    ``p1``: a corner at offset ``(a, b)`` above and left of it with ``max(a, b) = m`` covers it when its side exceeds
    ``m`` (probability ``(s_max - m) / s_max``), and ``2m + 1`` offsets share that ``m``, so

    - ``"every-pixel"``: ``P = 1 - (1 - p1) * prod_{m=0}^{s_max-1} (1 - p2 * (s_max - m) / s_max) ** (2m + 1)``;
    - ``"selected"``: ``P = 1 - (1 - p1) * prod_{m=1}^{s_max-1} (1 - p1 * p2 * (s_max - m) / s_max) ** (2m + 1)``
      (a corner is a removed pixel, so the pixel's own corner, ``m = 0``, adds nothing).
    """
    generator = torch.Generator().manual_seed(seed)
    ones = torch.ones(shape[0], 1, *shape[2:])
    removed = [
        1 - feature_perturbation(ones, generator, 1.0, p1_max, p2, s_max, 0.0, squares).mean()
        for _ in range(batches)
    ]
    return float(torch.stack(removed).mean())


def random_erasing(
    x: torch.Tensor,
    generator: torch.Generator,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    value: float | tuple[float, ...] = 0.0,
    attempts: int = 100,
) -> torch.Tensor:
    """Random erasing (Zhong et al. 2020, Algorithm 1): each image, with probability ``p``, gets one rectangle set to
    ``value`` (one number, or one number per channel).

    Per image: target area ``S_e ~ U(area) * H * W`` and aspect ratio ``r_e ~ U(ratio)``; the rectangle has height
    ``round(sqrt(S_e * r_e))`` and width ``round(sqrt(S_e / r_e))``; it is accepted when it is smaller than the image
    in both directions (else new draws, ``attempts`` tries as in the reference code, after which the image is left
    unchanged); its top-left corner is uniform over the positions where it fits. Defaults are the paper's
    (``p = 0.5, s_l = 0.02, s_h = 0.4, r_1 = 0.3``). The value is a constant (default 0, black) rather than the
    paper's random values, so that random erasing and FPA can remove pixels alike (the FPA protocol gives both the
    same value).
    """
    batch, _, height, width = x.shape
    erase = _uniform(batch, generator, x.device) < p
    target = (area[0] + _uniform((batch, attempts), generator, x.device) * (area[1] - area[0])) * height * width
    aspect = ratio[0] + _uniform((batch, attempts), generator, x.device) * (ratio[1] - ratio[0])
    heights = torch.sqrt(target * aspect).round().long()
    widths = torch.sqrt(target / aspect).round().long()
    fits = (heights < height) & (widths < width) & (heights > 0) & (widths > 0)
    first = fits.long().argmax(dim=1, keepdim=True)
    erase &= fits.any(dim=1)
    h, w = heights.gather(1, first).squeeze(1), widths.gather(1, first).squeeze(1)
    top = (_uniform(batch, generator, x.device) * (height - h + 1)).floor().long()
    left = (_uniform(batch, generator, x.device) * (width - w + 1)).floor().long()
    rows = torch.arange(height, device=x.device).reshape(1, -1, 1)
    cols = torch.arange(width, device=x.device).reshape(1, 1, -1)
    inside = (rows >= top.reshape(-1, 1, 1)) & (rows < (top + h).reshape(-1, 1, 1))
    inside = inside & (cols >= left.reshape(-1, 1, 1)) & (cols < (left + w).reshape(-1, 1, 1))
    return fill_pixels(x, (inside & erase.reshape(-1, 1, 1)).unsqueeze(1), value)


def augment_batch(x: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentations named in ``config.augmentation`` (order: flip, fpa, erasing) with its parameters."""
    for name in config.augmentations():
        if name == "flip":
            x = horizontal_flip(x, generator, config.flip_p)
        elif name == "fpa":
            x = feature_perturbation(
                x, generator, config.fpa_p, config.fpa_p1_max, config.fpa_p2, config.fpa_s_max, config.fpa_value,
                config.fpa_squares,
            )
        else:
            x = random_erasing(
                x, generator, config.erasing_p, config.erasing_area, config.erasing_ratio, config.erasing_value
            )
    return x
