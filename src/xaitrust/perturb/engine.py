"""The one hot loop of xaitrust: ``model(x * keep + replacement * (1 - keep))`` for many masks per image.

Deletion, insertion, MIF/LIF, the random-superpixel baseline, muFidelity, ROAR/KAR masking, RISE, occlusion,
LIME/KernelSHAP and ReCalX fitting all evaluate masked copies of their images through ``masked_scores``. It walks the
flattened (image, mask) pairs in chunks whose size bounds memory, builds each chunk's masks on the fly from a
``MaskSet`` (so that 4000 RISE masks or 100 deletion steps of large images never sit in memory at once), and returns
the chosen score of the target class for every pair: one batched forward pass per chunk, on the model's device.
``masked_images`` returns the masked images of the same loop instead of scores (ROAR/KAR retrain on them).

A perturbation-aware model (``accepts_perturbation_level(model)``, e.g. a ReCalX-calibrated model) is also given the
perturbation level of each masked input: the fraction of pixels replaced, ``1 - mean(keep)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..chunks import pair_chunks
from ..errors import XaitrustError
from ..model_mode import evaluation_mode
from ..outputs import check_output, target_scores
from ..validation import check_images, check_target
from .batching import auto_batch_size
from .replacement import make_replacement


class MaskSet:
    """Keep masks (1 = original pixel, 0 = replaced, values in between blend) for ``num_masks`` masks per image."""

    num_masks: int

    def keep(self, image_index: torch.Tensor, mask_index: torch.Tensor) -> torch.Tensor:
        """Masks ``(n, 1 or C, H, W)`` for the ``n`` pairs ``(image_index[i], mask_index[i])``."""
        raise NotImplementedError


class TensorMasks(MaskSet):
    """Masks held in a tensor: ``(M, 1|C, H, W)`` shared by every image, or ``(B, M, 1|C, H, W)`` per image."""

    def __init__(self, keep: torch.Tensor) -> None:
        if keep.ndim not in (4, 5):
            raise XaitrustError(f"keep masks must be (M, 1|C, H, W) or (B, M, 1|C, H, W); got {tuple(keep.shape)}")
        self.masks = keep
        self.shared = keep.ndim == 4
        self.num_masks = keep.shape[0] if self.shared else keep.shape[1]

    def keep(self, image_index, mask_index):
        if self.shared:
            return self.masks[mask_index.to(self.masks.device)]
        return self.masks[image_index.to(self.masks.device), mask_index.to(self.masks.device)]


class RankedMasks(MaskSet):
    """Masks that remove (``mode="delete"``) or keep only (``mode="insert"``) the first features of a ranking.

    Args:
        ranks: int ``(B, 1|C, H, W)``; rank 0 is removed (deletion) or inserted (insertion) first. Pixels that share a
            rank (a superpixel) go together. ``xaitrust.perturb.orders`` builds them from maps or superpixels.
        counts: int ``(M,)`` shared by every image, or ``(B, M)`` per image (e.g. when images have different numbers
            of superpixels): how many ranks are removed (inserted) at each step; step ``m`` removes ranks
            ``< counts[m]``.
    """

    def __init__(self, ranks: torch.Tensor, counts: torch.Tensor, mode: str = "delete") -> None:
        if ranks.ndim != 4:
            raise XaitrustError(f"ranks must be (B, 1|C, H, W); got {tuple(ranks.shape)}")
        if mode not in ("delete", "insert"):
            raise XaitrustError(f"mode must be 'delete' or 'insert'; got {mode!r}")
        counts = torch.as_tensor(counts, device=ranks.device).long()
        if counts.ndim == 2 and counts.shape[0] != ranks.shape[0]:
            raise XaitrustError(f"per-image counts must be (B, M) with B = {ranks.shape[0]}; got {tuple(counts.shape)}")
        self.ranks = ranks
        self.counts = counts if counts.ndim == 2 else counts.reshape(-1)
        self.mode = mode
        self.num_masks = self.counts.shape[-1]

    def keep(self, image_index, mask_index):
        image_index, mask_index = image_index.to(self.ranks.device), mask_index.to(self.ranks.device)
        counts = self.counts[image_index, mask_index] if self.counts.ndim == 2 else self.counts[mask_index]
        removed = self.ranks[image_index] < counts.reshape(-1, 1, 1, 1)
        return (~removed if self.mode == "delete" else removed).to(torch.float32)


def accepts_perturbation_level(model: torch.nn.Module) -> bool:
    """True for models whose ``forward(x, perturbation_level=...)`` uses each input's perturbation level."""
    return bool(getattr(model, "accepts_perturbation_level", False))


def compose(x: torch.Tensor, keep: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """``x * keep + replacement * (1 - keep)`` (differentiable; ``keep`` broadcasts over channels)."""
    return torch.addcmul(replacement, keep, x - replacement)


def model_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def masked_scores(
    model: torch.nn.Module,
    x: torch.Tensor,
    masks: MaskSet | torch.Tensor,
    target,
    *,
    replacement: str | float | torch.Tensor = "zero",
    output: str = "logit",
    mean: torch.Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Score of ``target`` for every (image, mask) pair: ``(B, M)``.

    ``scores[b, m] = s(model(x[b] * keep[b, m] + r[b] * (1 - keep[b, m])))[target[b]]`` where ``r`` is the
    replacement image (``make_replacement``) and ``s`` the chosen ``output``. Runs without gradients and in eval
    mode (``evaluation_mode``: each module gets its own train/eval flag back afterwards), in chunks of ``batch_size``
    masked images (chosen by ``auto_batch_size`` when ``None``), on the model's device. ``progress``, if given, is
    called with the number of masked images finished after each chunk.
    """
    check_output(output)
    check_images(x)
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=model_device(model))
    return _masked_map(
        model, x, masks, lambda logits, image_index: target_scores(logits, target[image_index], output),
        replacement=replacement, mean=mean, batch_size=batch_size, generator=generator, progress=progress,
    )


def masked_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    masks: MaskSet | torch.Tensor,
    *,
    replacement: str | float | torch.Tensor = "zero",
    mean: torch.Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """All logits for every (image, mask) pair: ``(B, M, K)``; same chunked loop as ``masked_scores``."""
    check_images(x)
    return _masked_map(
        model, x, masks, lambda logits, image_index: logits,
        replacement=replacement, mean=mean, batch_size=batch_size, generator=generator, progress=progress,
    )


def _masked_map(model, x, masks, reduce, *, replacement, mean, batch_size, generator, progress) -> torch.Tensor:
    """The chunk loop: ``reduce(logits, image_index)`` of every masked image, reshaped to ``(B, M, ...)``."""
    masks = TensorMasks(masks) if isinstance(masks, torch.Tensor) else masks
    device = model_device(model)
    x = x.to(device)
    if mean is None and isinstance(replacement, str) and replacement == "mean":
        mean = getattr(model, "input_mean", None)
        mean = None if mean is None else mean.reshape(-1)
    base = make_replacement(x, replacement, mean=mean, generator=generator)
    n_images, n_masks = len(x), masks.num_masks
    if batch_size is None:
        batch_size = auto_batch_size(model, x.shape[1:], device)
    level_aware = accepts_perturbation_level(model)
    chunks = []
    with evaluation_mode(model), torch.no_grad():
        for image_index, keep, inputs in _masked_chunks(x, masks, base, batch_size):
            if level_aware:
                logits = model(inputs, perturbation_level=1.0 - keep.mean(dim=(1, 2, 3)))
            else:
                logits = model(inputs)
            chunks.append(reduce(logits, image_index))
            if progress is not None:
                progress(len(image_index))
    if not chunks:
        return torch.empty(n_images, n_masks, device=device)
    values = torch.cat(chunks)
    return values.reshape(n_images, n_masks, *values.shape[1:])


def _masked_chunks(x, masks: MaskSet, base, batch_size):
    """``(image_index, keep, x * keep + base * (1 - keep))`` for consecutive chunks of at most ``batch_size`` of the
    flattened (image, mask) pairs, image-major (``xaitrust.chunks.pair_chunks``), on ``x``'s device."""
    delta = x - base
    for image_index, mask_index in pair_chunks(len(x), masks.num_masks, batch_size, x.device):
        keep = masks.keep(image_index, mask_index).to(device=x.device, dtype=x.dtype)
        yield image_index, keep, torch.addcmul(base[image_index], keep, delta[image_index])


def masked_images(
    x: torch.Tensor,
    masks: MaskSet | torch.Tensor,
    *,
    replacement: str | float | torch.Tensor = "zero",
    mean: torch.Tensor | None = None,
    batch_size: int = 4096,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The masked images themselves, ``(B, M, C, H, W)``: ``x[b] * keep[b, m] + r[b] * (1 - keep[b, m])``.

    Built by the same chunk loop as ``masked_scores`` (masks made ``batch_size`` pairs at a time) for the users that
    need the images rather than scores, e.g. ROAR/KAR, which retrain on masked copies of a whole dataset.
    """
    check_images(x)
    masks = TensorMasks(masks) if isinstance(masks, torch.Tensor) else masks
    base = make_replacement(x, replacement, mean=mean, generator=generator)
    parts = [inputs for _, _, inputs in _masked_chunks(x, masks, base, batch_size)]
    if not parts:
        return x.new_empty(len(x), masks.num_masks, *x.shape[1:])
    return torch.cat(parts).reshape(len(x), masks.num_masks, *x.shape[1:])
