"""Walking work in chunks: the one loop behind every batched pass of xaitrust.

Images, or the (image, sample) pairs derived from them (Integrated-Gradients path points, SmoothGrad noisy copies,
masked copies), go through a model a chunk at a time so that memory stays bounded while each chunk is one batched
call. Every loop of that kind is built from this module:

- ``chunk_slices``: consecutive slices of at most ``size`` of ``range(total)``;
- ``pair_chunks``: the ``n_items * n_per_item`` pairs flattened item-major, as index tensors, a chunk at a time;
- ``batched_logits``: a model's logits, no gradients, eval mode, a chunk of inputs per forward pass;
- ``explain_in_chunks``: an explainer's attributions, a chunk of images per call, with an optional progress bar.

Chunking changes how work is grouped, never what is computed: results are concatenated in input order, and an empty
input goes through once as an empty chunk, so the result has the shape one call on all of it would give.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from .model_mode import evaluation_mode
from .validation import check_count, check_logits

#: Default chunk of ``batched_logits``: a no-grad forward pass of this many small images takes little memory.
LOGITS_BATCH_SIZE = 512


def num_chunks(total: int, size: int) -> int:
    """How many chunks ``chunk_slices(total, size)`` yields: ``ceil(total / size)``."""
    return -(-total // check_count(size, "batch_size"))


def chunk_slices(total: int, size: int) -> Iterator[slice]:
    """``slice(0, size)``, ``slice(size, 2 * size)``, ... covering ``range(total)``; the last one may be shorter,
    and ``total = 0`` gives none. ``size`` is checked at once (``xaitrust.validation.check_count``), not when
    iteration starts."""
    size = check_count(size, "batch_size")
    return (slice(start, min(start + size, total)) for start in range(0, total, size))


def pair_chunks(
    n_items: int, n_per_item: int, size: int, device: torch.device | str | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(item_index, point_index)`` long tensors on ``device`` (``None``: torch's default device) for consecutive
    chunks of at most ``size`` of the ``n_items * n_per_item`` pairs flattened item-major: pair ``i`` is item
    ``i // n_per_item``, point ``i % n_per_item``, so all points of item 0 come first. ``size`` is checked at once
    (``xaitrust.validation.check_count``). One ``arange`` and one division per chunk: no Python work per pair."""
    return _pairs(chunk_slices(n_items * n_per_item, size), n_per_item, device)


def _pairs(parts: Iterable[slice], n_per_item: int, device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for part in parts:
        flat = torch.arange(part.start, part.stop, device=device)
        yield flat // n_per_item, flat % n_per_item


def batched_logits(
    model: torch.nn.Module,
    x: torch.Tensor,
    batch_size: int = LOGITS_BATCH_SIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Logits ``(N, K)`` of ``model`` for ``x``, ``batch_size`` inputs per forward pass, without gradients and in
    eval mode (``evaluation_mode``: each module gets its own train/eval flag back afterwards).

    Each chunk is moved to ``device`` (``None``: it stays on ``x``'s device, which must then be the model's), so
    ``x`` may stay on the CPU for a model elsewhere. The logits stay on the device the model ran on; callers move
    them if they need them elsewhere. A model that returns anything but float logits ``(n, K)`` for a chunk of ``n``
    inputs is an ``XaitrustError`` (``xaitrust.validation.check_logits``).
    """
    batch_size = check_count(batch_size, "batch_size")
    with evaluation_mode(model), torch.no_grad():
        return _concatenate(lambda part: check_logits(model(x[part].to(device)), part.stop - part.start),
                            chunk_slices(len(x), batch_size))


def explain_in_chunks(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    output: str,
    batch_size: int,
    progress: str | None = None,
    reduce: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``explainer(model, x[part], target[part], output)`` for consecutive parts of ``batch_size`` images,
    concatenated: the attributions of all of ``x``.

    Args:
        progress: the description of a progress bar counting chunks (``tqdm.auto``, removed when done); ``None``
            shows none.
        reduce: if given, ``reduce(attributions, inputs)`` of each chunk is kept instead of its attributions (e.g.
            maps ``(n, H, W)`` from attributions ``(n, C, H, W)``), so that only reduced chunks are held.
    """
    batch_size = check_count(batch_size, "batch_size")

    def explain(part: slice) -> torch.Tensor:
        attributions = explainer(model, x[part], target[part], output)
        return attributions if reduce is None else reduce(attributions, x[part])

    parts = chunk_slices(len(x), batch_size)
    if progress is not None:
        parts = tqdm(parts, total=num_chunks(len(x), batch_size), desc=progress, leave=False, unit="batch")
    return _concatenate(explain, parts)


def _concatenate(compute: Callable[[slice], torch.Tensor], parts: Iterable[slice]) -> torch.Tensor:
    """``compute`` of every part, concatenated; with no parts, ``compute(slice(0, 0))`` (the empty input's result)."""
    results = [compute(part) for part in parts]
    return torch.cat(results) if results else compute(slice(0, 0))
