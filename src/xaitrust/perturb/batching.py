"""How many masked images go through the model at once.

The chunk size depends only on the model, the input shape and the device, never on timing, so the same config gives
the same chunks in every run, and with them the same numbers. Results cannot be made independent of the chunk size
itself: a model's per-sample outputs may change in their last bits with the batch they are computed in (on the CPU,
the small CNN's float32 logits of an image agree exactly in batches of 4, 16, 64 or 512 but not in batches of 1 to 3,
as the last chunk of a call can be), so it is the deterministic size that makes identical runs identical; a size
picked by timing forward passes ranged from 16 to the memory bound over identical runs, and the last bits with it.

One probe forward pass of two images, with forward hooks on every leaf module, measures the bytes of activations a
sample produces; the chunk is the largest power of two whose input plus activations fit ``CHUNK_BYTES``, at most
``MAX_BATCH`` (and at least 1). ``CHUNK_BYTES`` is half of ``MEMORY_BUDGET_BYTES``, the bound on the memory of one
forward pass (``memory_bound``; summing every layer's output over-counts the peak of a no-grad forward pass, since
earlier activations are freed, so both are conservative). It keeps the chunk near the fastest size without timing
anything: larger chunks amortise the per-call costs, but once the activations outgrow the CPU's caches throughput
falls. Measured on the small CNN on 28 x 28 images (about 350 kB a sample, so 256 images a chunk): deletion, MIF/LIF
and occlusion took within 16% of their fastest time from 32 to 256 images a chunk, about 40% more at 512 and
twice as long at 1024, on one or two threads; on cores busy with other work, two threads took 2 to 3 times as long in
chunks of 64 or 128 as in chunks of 256 to 1024, as they wait on each other at every call. A model with little
activation memory per sample (small images) gets large chunks. The size is cached per (model, input shape, device).

A user-given ``batch_size`` bypasses it.
"""

from __future__ import annotations

import weakref

import torch

from ..model_mode import evaluation_mode

MEMORY_BUDGET_BYTES = 256 * 2**20
CHUNK_BYTES = MEMORY_BUDGET_BYTES // 2
MAX_BATCH = 1024

_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def auto_batch_size(model: torch.nn.Module, sample_shape, device=None, max_batch: int = MAX_BATCH) -> int:
    """The chunk size for ``model`` on inputs of ``sample_shape`` ``(C, H, W)`` (see the module notes): a power of two
    (or ``max_batch`` if smaller) from the measured activation bytes per sample, the same in every run."""
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (tuple(int(s) for s in sample_shape), str(device), int(max_batch))
    cached = _CACHE.setdefault(model, {})
    if key not in cached:
        with evaluation_mode(model):  # the probe must not update batch-norm statistics
            per_sample = _input_bytes(key[0]) + activation_bytes_per_sample(model, key[0], device)
        cached[key] = chunk_size(per_sample, max_batch)
    return cached[key]


def chunk_size(bytes_per_sample: int, max_batch: int = MAX_BATCH) -> int:
    """The largest power of two whose ``bytes_per_sample`` (input plus activations) fit ``CHUNK_BYTES``, at most
    ``max_batch``, at least 1."""
    fitting = max(1, CHUNK_BYTES // max(1, bytes_per_sample))
    return int(max(1, min(1 << (fitting.bit_length() - 1), max_batch)))


def memory_bound(
    model: torch.nn.Module, sample_shape, device, max_batch: int = MAX_BATCH, copies: int = 1
) -> int:
    """Largest batch whose input plus every layer's output fits ``MEMORY_BUDGET_BYTES`` (at most ``max_batch``), each
    held ``copies`` times: 1 for a no-grad forward pass; 2 for a backward pass, which keeps the activations for
    autograd and builds a gradient of each (measured on a 3 x 224 x 224 CNN: Integrated Gradients in chunks bounded
    with one copy grew the process by 328 MiB against the 256 MiB budget)."""
    per_sample = copies * (_input_bytes(sample_shape) + activation_bytes_per_sample(model, sample_shape, device))
    return int(max(1, min(max_batch, MEMORY_BUDGET_BYTES // per_sample)))


def activation_bytes_per_sample(model: torch.nn.Module, sample_shape, device) -> int:
    """Bytes of all leaf modules' outputs for one sample, measured on a no-grad forward pass of two zero images."""
    total = [0]

    def count(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * output.element_size()

    leaves = [module for module in model.modules() if not any(True for _ in module.children())]
    handles = [module.register_forward_hook(count) for module in leaves]
    try:
        with torch.no_grad():
            forward(model, torch.zeros(2, *sample_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return max(1, total[0] // 2)


def forward(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model(inputs)``; a perturbation-aware model is told the inputs are unperturbed (level 0)."""
    if getattr(model, "accepts_perturbation_level", False):
        return model(inputs, perturbation_level=torch.zeros(len(inputs), device=inputs.device))
    return model(inputs)


def _input_bytes(sample_shape) -> int:
    numel = 1
    for size in sample_shape:
        numel *= int(size)
    return 4 * numel
