"""The checks of what comes in at the public boundary: images, maps, targets, masks, counts and model weights.

Every public entry point that takes one of these (the explainers, the masked-evaluation engine, the metrics,
``xaitrust.evaluate``, ``ImageDataset``, model loading) checks it here, so that a mistake gives the same
``XaitrustError`` naming the argument and saying what to fix wherever it is made.

- ``check_images``: a float ``(B, C, H, W)`` batch, non-empty, finite, in [0, 1];
- ``check_maps`` / ``check_attributions``: real ``(B, H, W)`` maps (or ``(B, C, H, W)`` attributions) matching the
  images, finite; signed values are fine, only images are range-checked;
- ``check_finite``: no NaN or infinity, naming the samples that hold one;
- ``check_target`` / ``check_labels``: integer class indices, one per image, within the model's classes;
- ``check_masks``: ground-truth masks ``(N, H, W)`` matching the images;
- ``check_count``: a positive integer (batch sizes, steps, samples);
- ``check_logits``: a model's output is a float ``(B, K)`` tensor;
- ``check_finite_model``: no NaN or infinite parameter or buffer.

Each check reads a tensor at most once on the way in (images: one ``aminmax``, which NaN and infinities fail too; the
finer scan that names the culprits only runs once something failed), so a public call pays one pass over its inputs
and nothing per chunk.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from .errors import XaitrustError

#: What NaN or infinite maps or attributions usually mean (``check_finite``'s default advice).
MAPS_HINT = "check the explainer's output (e.g. a division by a zero gradient norm)"

_RANGE_FREE: ContextVar[bool] = ContextVar("xaitrust_images_outside_unit_range", default=False)


def check_images(x, name: str = "x", *, allow_empty: bool = False) -> torch.Tensor:
    """Return ``x`` if it is a float ``(B, C, H, W)`` batch of finite values in [0, 1], else raise an ``XaitrustError``
    naming ``name`` and what to fix. An empty batch is an error unless ``allow_empty`` (a data set may be empty).

    Inside ``outside_unit_range_allowed()`` finite values outside [0, 1] pass.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise XaitrustError(f"{name} must be a tensor of images (B, C, H, W); got {got}")
    if not x.dtype.is_floating_point:
        raise XaitrustError(f"{name} must be a float tensor of images with values in [0, 1]; got dtype {x.dtype} "
                            "(convert 8-bit images with x.float() / 255)")
    if x.numel() == 0:
        if allow_empty and len(x) == 0:
            return x
        raise XaitrustError(f"{name} holds no pixel values (shape {tuple(x.shape)}); give at least one image, with "
                            "C, H and W of at least 1")
    low, high = (bound.item() for bound in torch.aminmax(x.detach()))
    if low >= 0 and high <= 1:  # False for NaN, whose comparisons all fail, and for infinities
        return x
    check_finite(x, f"the images {name}", "fix or drop these images")
    if not _RANGE_FREE.get():
        raise XaitrustError(
            f"{name} must hold images with values in [0, 1]; got values from {low:g} to {high:g}. Divide 8-bit images "
            "by 255 (x / 255); for a model trained on normalised inputs, pass the [0, 1] images and give the "
            "statistics as input_mean / input_std"
        )
    return x


@contextmanager
def outside_unit_range_allowed() -> Iterator[None]:
    """Within this block ``check_images`` accepts finite values outside [0, 1]: for inputs that leave the image range
    by design and are explained as images (the local Lipschitz estimate's unclipped neighbours). The other checks
    still apply."""
    token = _RANGE_FREE.set(True)
    try:
        yield
    finally:
        _RANGE_FREE.reset(token)


def check_finite(values: torch.Tensor, name: str, hint: str = MAPS_HINT) -> None:
    """Raise if ``values`` (one sample per row of the first dimension) hold NaN or inf, naming how many samples are
    affected and the first ones, followed by ``hint``."""
    if values.numel() == 0:
        return
    bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
    if bad.any():
        index = bad.nonzero().flatten().tolist()
        raise XaitrustError(
            f"{name} contain NaN or infinite values for {len(index)} sample(s) (first: {index[:5]}); {hint}"
        )


def check_maps(maps, x: torch.Tensor | None = None, *, name: str = "maps") -> torch.Tensor:
    """Validate saliency maps and return them as a float ``(B, H, W)`` tensor.

    Accepts ``(B, H, W)`` or ``(B, 1, H, W)``, signed or not. With ``x`` given, the batch size and spatial size must
    match the images'. Raises ``XaitrustError`` on a wrong shape, a non-real dtype or NaN/inf values.
    """
    if not isinstance(maps, torch.Tensor):
        raise XaitrustError(f"{name} must be a tensor (B, H, W); got {type(maps).__name__}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if maps.ndim != 3:
        raise XaitrustError(
            f"{name} must be (B, H, W) or (B, 1, H, W); got {tuple(maps.shape)} "
            "(reduce (B, C, H, W) attributions first with xaitrust.explainers.reduce.reduce_attributions)"
        )
    if maps.dtype.is_complex:
        raise XaitrustError(f"{name} must hold real numbers; got dtype {maps.dtype}")
    maps = maps if maps.dtype.is_floating_point else maps.float()
    if x is not None:
        expected = (x.shape[0], x.shape[2], x.shape[3])
        if tuple(maps.shape) != expected:
            raise XaitrustError(
                f"{name} must have shape (B, H, W) = {expected} to match the images; got {tuple(maps.shape)}"
            )
    check_finite(maps, name)
    return maps


def check_attributions(attributions, x: torch.Tensor, *, name: str = "attributions") -> torch.Tensor:
    """Validate attributions ``(B, C, H, W)`` (same shape as ``x``) or maps ``(B, H, W)``; return them as floats."""
    if isinstance(attributions, torch.Tensor) and attributions.ndim == 4 and attributions.shape[1] != 1:
        if attributions.shape != x.shape:
            raise XaitrustError(
                f"{name} must have the images' shape {tuple(x.shape)} or (B, H, W); got {tuple(attributions.shape)}"
            )
        check_finite(attributions, name)
        return attributions.float()
    return check_maps(attributions, x, name=name)


def check_labels(labels, n: int, num_classes: int | None, *, name: str = "labels", device=None) -> torch.Tensor:
    """``labels`` as an int64 tensor ``(n,)`` of class indices in ``[0, num_classes)`` (any range when
    ``num_classes`` is None), else an ``XaitrustError`` naming ``name``."""
    labels = _as_tensor(labels, name, device)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise XaitrustError(f"{name} must hold integer class indices; got dtype {labels.dtype}")
    if tuple(labels.shape) != (n,):
        raise XaitrustError(f"{name} must hold one class index per image, shape ({n},); got {tuple(labels.shape)}")
    labels = labels.long()
    if num_classes is not None and n:
        low, high = (bound.item() for bound in torch.aminmax(labels))
        if low < 0 or high >= num_classes:
            raise XaitrustError(
                f"{name} must lie in [0, {num_classes - 1}] for {num_classes} classes; got {low}..{high}"
            )
    return labels


def check_target(target, batch_size: int, num_classes: int | None, device=None) -> torch.Tensor:
    """Validate and broadcast a target (an int, or one class index per image) to an int64 tensor ``(B,)``
    (``check_labels``)."""
    target = _as_tensor(target, "target", device)
    if target.ndim == 0 and not (target.dtype.is_floating_point or target.dtype == torch.bool):
        target = target.expand(batch_size)
    return check_labels(target, batch_size, num_classes, name="target", device=device)


def check_masks(masks, shape: Sequence[int], name: str = "masks") -> torch.Tensor:
    """``masks`` as a tensor of ``shape`` ``(N, H, W)`` (one mask or annotation map per image; ``(N, 1, H, W)`` is
    squeezed), else an ``XaitrustError`` naming ``name``."""
    masks = _as_tensor(masks, name)
    if masks.ndim == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if tuple(masks.shape) != tuple(shape):
        raise XaitrustError(f"{name} must be (N, H, W) = {tuple(shape)}, one mask per image; got {tuple(masks.shape)}")
    return masks


def check_count(value, name: str) -> int:
    """``value`` as an int if it is an integer >= 1 (numpy integers included; ``True``/``False`` are not numbers
    here), else an ``XaitrustError`` naming ``name``."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise XaitrustError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def check_logits(logits, batch_size: int) -> torch.Tensor:
    """``logits`` if a model returned a float tensor ``(batch_size, K)`` for a batch of ``batch_size`` images, else an
    ``XaitrustError`` saying what it returned instead. Reads no values: cheap enough for every forward pass."""
    if not isinstance(logits, torch.Tensor):
        raise XaitrustError(
            f"the model must return a tensor of logits (B, K); it returned a {type(logits).__name__}. Wrap it in a "
            "module whose forward returns the logits alone (e.g. output[0] or output['logits'])"
        )
    if logits.ndim != 2 or len(logits) != batch_size or not logits.dtype.is_floating_point:
        raise XaitrustError(f"the model must return float logits (B, K); for a batch of {batch_size} images it "
                            f"returned {logits.dtype} {tuple(logits.shape)}")
    return logits


def check_finite_model(model: torch.nn.Module, what: str) -> None:
    """Raise an ``XaitrustError`` naming the first parameter or buffer of ``model`` that holds NaN or infinite values
    (``what`` names the model or its weights file in the message)."""
    for kind, named in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for key, tensor in named:
            if tensor.is_floating_point() and tensor.device.type != "meta" and not torch.isfinite(tensor).all():
                raise XaitrustError(
                    f"{what} holds NaN or infinite values in {kind} {key!r}: such a model gives NaN scores and maps "
                    "(e.g. training diverged); retrain it or load other weights"
                )


def _as_tensor(value, name: str, device=None) -> torch.Tensor:
    try:
        return torch.as_tensor(value, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise XaitrustError(f"{name} must be a tensor or an array of numbers; got {type(value).__name__}") from None
