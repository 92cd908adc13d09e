"""Mask sets built on the fly, chunk by chunk, for ``masked_scores``: RISE masks, sliding windows, feature coalitions.

Each stores only what it needs to rebuild any mask (a low-resolution grid and a shift, a window position, a binary
coalition), so memory stays bounded by the engine's chunk; RISE masks small enough to fit ``MASK_BLOCK_BYTES`` are
built once up front instead, since every image reuses them.
``mask_weighted_sum`` contracts per-mask weights with masks shared by every image, block by block, as a matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from .engine import MaskSet

INTERPOLATIONS = ("bilinear", "bicubic")
# Bytes of float32 masks built at once by ``mask_weighted_sum``.
MASK_BLOCK_BYTES = 64 * 2**20


class RiseMasks(MaskSet):
    """RISE masks (Petsiuk et al., 2018), the same ``num_masks`` masks for every image.

    Mask ``i``: a binary ``grid_size x grid_size`` grid with cells kept with probability ``keep_prob``, upsampled
    (``interpolation``, values clamped to [0, 1]) to ``(grid_size + 1) * cell`` with ``cell = ceil(H / grid_size)``
    (and likewise for W), then cropped to ``H x W`` at a random shift in ``[0, cell)``. The grids and shifts are drawn
    once from ``seed``. When all masks fit in ``MASK_BLOCK_BYTES`` (4000 masks of 28x28 take 12.5 MB) they are built
    once and shared by every image; larger ones are rebuilt per chunk.
    """

    def __init__(
        self,
        image_size,
        num_masks: int = 4000,
        grid_size: int = 8,
        keep_prob: float = 0.6,
        interpolation: str = "bicubic",
        seed: int = 0,
        device=None,
    ) -> None:
        self.check(num_masks, grid_size, keep_prob, interpolation)
        self.height, self.width = (int(s) for s in image_size)
        self.num_masks = int(num_masks)
        self.interpolation = interpolation
        cells = (-(-self.height // grid_size), -(-self.width // grid_size))
        self.upsampled_size = ((grid_size + 1) * cells[0], (grid_size + 1) * cells[1])
        generator = torch.Generator().manual_seed(int(seed))
        self.grids = (torch.rand(num_masks, 1, grid_size, grid_size, generator=generator) < keep_prob).float().to(device)
        shift_rows = torch.randint(0, cells[0], (num_masks,), generator=generator)
        shift_cols = torch.randint(0, cells[1], (num_masks,), generator=generator)
        self.shifts = torch.stack([shift_rows, shift_cols], dim=1).to(device)
        self.built = None
        if num_masks * self.height * self.width * 4 <= MASK_BLOCK_BYTES:
            self.built = torch.cat([self.build(block) for block in torch.arange(num_masks).split(512)])

    @staticmethod
    def check(num_masks: int, grid_size: int, keep_prob: float, interpolation: str) -> None:
        """Raise a clear error for parameters that cannot make RISE masks."""
        if num_masks < 1 or grid_size < 1:
            raise XaitrustError(f"num_masks and grid_size must be positive integers; got {num_masks}, {grid_size}")
        if not 0.0 < keep_prob <= 1.0:
            raise XaitrustError(f"keep_prob must lie in (0, 1]; got {keep_prob}")
        if interpolation not in INTERPOLATIONS:
            raise XaitrustError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}; got {interpolation!r}")

    def keep(self, image_index, mask_index):
        mask_index = mask_index.to(self.grids.device)
        return self.built[mask_index] if self.built is not None else self.build(mask_index)

    def build(self, mask_index: torch.Tensor) -> torch.Tensor:
        """Masks ``(n, 1, H, W)`` number ``mask_index``, upsampled and cropped from their grids."""
        mask_index = mask_index.to(self.grids.device)
        upsampled = F.interpolate(
            self.grids[mask_index], size=self.upsampled_size, mode=self.interpolation, align_corners=False
        ).clamp_(0.0, 1.0)
        rows = self.shifts[mask_index, :1] + torch.arange(self.height, device=self.grids.device)
        cols = self.shifts[mask_index, 1:] + torch.arange(self.width, device=self.grids.device)
        picked = torch.arange(len(mask_index), device=self.grids.device)[:, None, None]
        return upsampled[picked, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


class WindowMasks(MaskSet):
    """Sliding-window occlusion masks over all channels, the same for every image (as Captum's ``Occlusion``).

    Windows of ``window = (h, w)`` start at every multiple of ``stride`` from 0, ``ceil((H - h) / stride) + 1`` rows
    of them (likewise for columns); the last row or column of windows may be cut off by the image edge. Each mask is 0
    inside its window and 1 elsewhere; masks are ordered row by row of window positions.
    """

    def __init__(self, image_size, window, stride, device=None) -> None:
        self.height, self.width = (int(s) for s in image_size)
        window, stride = self.check(window, stride)
        if window[0] > self.height or window[1] > self.width:
            raise XaitrustError(f"the window {window} must fit in the image {(self.height, self.width)}")
        counts = [-(-(size - w) // s) + 1 for size, w, s in zip((self.height, self.width), window, stride)]
        self.window = window
        self.tops = torch.arange(counts[0], device=device).repeat_interleave(counts[1]) * stride[0]
        self.lefts = torch.arange(counts[1], device=device).repeat(counts[0]) * stride[1]
        self.num_masks = counts[0] * counts[1]

    @staticmethod
    def check(window, stride) -> tuple[tuple[int, int], tuple[int, int]]:
        """``window`` and ``stride`` as pairs of positive integers, the stride no larger than the window."""
        window, stride = _pair(window, "window"), _pair(stride, "stride")
        if stride[0] > window[0] or stride[1] > window[1]:
            raise XaitrustError(f"the stride {stride} must not exceed the window {window}, or pixels are never occluded")
        return window, stride

    def keep(self, image_index, mask_index):
        mask_index = mask_index.to(self.tops.device)
        rows = torch.arange(self.height, device=self.tops.device) - self.tops[mask_index, None]
        cols = torch.arange(self.width, device=self.tops.device) - self.lefts[mask_index, None]
        inside_rows = (rows >= 0) & (rows < self.window[0])
        inside_cols = (cols >= 0) & (cols < self.window[1])
        return (~(inside_rows[:, :, None] & inside_cols[:, None, :])).float().unsqueeze(1)


class CoalitionMasks(MaskSet):
    """Keep masks from binary coalitions of feature groups: pixel ``p`` of image ``b`` is kept by mask ``m`` when
    ``coalitions[b, m, segments[b, p]]`` is 1.

    Args:
        coalitions: ``(B, M, F)`` (or ``(M, F)``, shared by every image), 1 = group kept.
        segments: int group ids ``(B, H, W)`` in ``[0, F)``.
    """

    def __init__(self, coalitions: torch.Tensor, segments: torch.Tensor) -> None:
        if coalitions.ndim == 2:
            coalitions = coalitions.expand(len(segments), -1, -1)
        if coalitions.ndim != 3 or segments.ndim != 3 or len(coalitions) != len(segments):
            raise XaitrustError(
                "coalitions must be (B, M, F) and segments (B, H, W); "
                f"got {tuple(coalitions.shape)}, {tuple(segments.shape)}"
            )
        if segments.numel() and segments.max() >= coalitions.shape[2]:
            raise XaitrustError(
                f"segment ids reach {segments.max().item()} but coalitions have {coalitions.shape[2]} features"
            )
        self.coalitions = coalitions.float()
        self.segments = segments.long().flatten(1)
        self.image_size = tuple(segments.shape[1:])
        self.num_masks = coalitions.shape[1]

    def keep(self, image_index, mask_index):
        device = self.coalitions.device
        image_index, mask_index = image_index.to(device), mask_index.to(device)
        keep = self.coalitions[image_index, mask_index].gather(1, self.segments.to(device)[image_index])
        return keep.reshape(len(image_index), 1, *self.image_size)


def mask_weighted_sum(weights: torch.Tensor, masks: MaskSet, block_size: int | None = None) -> torch.Tensor:
    """``sum_m weights[:, m] * keep_m`` for masks shared by every image: ``(B, M)`` -> ``(B, 1|C, H, W)``.

    Masks are rebuilt in blocks of ``block_size`` (by default as many as fit in ``MASK_BLOCK_BYTES``), each block
    contracted with one matmul.
    """
    if weights.ndim != 2 or weights.shape[1] != masks.num_masks:
        raise XaitrustError(f"weights must be (B, {masks.num_masks}); got {tuple(weights.shape)}")
    first = torch.zeros(1, dtype=torch.long)
    shape = masks.keep(first, first).shape[1:]
    if block_size is None:
        block_size = max(1, MASK_BLOCK_BYTES // (4 * shape.numel()))
    total = weights.new_zeros(len(weights), shape.numel())
    for start in range(0, masks.num_masks, block_size):
        mask_index = torch.arange(start, min(start + block_size, masks.num_masks))
        block = masks.keep(torch.zeros_like(mask_index), mask_index).to(weights)
        total += weights[:, start : start + len(mask_index)] @ block.flatten(1)
    return total.reshape(len(weights), *shape)


def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or any(not isinstance(v, int) or v < 1 for v in pair):
        raise XaitrustError(f"{name} must be a positive integer or a pair of them; got {value!r}")
    return int(pair[0]), int(pair[1])
