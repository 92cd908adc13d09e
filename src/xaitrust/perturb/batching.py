"""How many masked images go through the model at once.

The chunk size is chosen in two stages and cached per (model, input shape, device):

1. **Memory bound.** One probe forward pass of two images, with forward hooks on every leaf module, measures the
   bytes of activations a sample produces; the bound is ``MEMORY_BUDGET_BYTES / (input + activation bytes per
   sample)``, capped at ``MAX_BATCH``. Summing every layer's output over-counts the peak of a no-grad forward pass
   (earlier activations are freed), so the bound is conservative.
2. **Throughput.** Powers of two from ``MIN_PROBE_BATCH`` up to the memory bound are timed (best of
   ``PROBE_REPEATS`` no-grad forward passes each) while doubling the batch still gains at least ``PLATEAU_GAIN``;
   the fastest size measured is kept. If the probe runs past ``PROBE_BUDGET_SECONDS`` while throughput is still
   rising (large fixed costs per call, e.g. threads contending for busy cores), the memory bound is kept. The probe
   runs once per model, input shape and device.

A user-given ``batch_size`` bypasses both.
"""

from __future__ import annotations

import time
import weakref

import torch

from ..model_mode import evaluation_mode

MEMORY_BUDGET_BYTES = 256 * 2**20
MAX_BATCH = 1024
MIN_PROBE_BATCH = 16
PROBE_REPEATS = 2
PLATEAU_GAIN = 0.1
PROBE_BUDGET_SECONDS = 1.0

_CACHE: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()


def auto_batch_size(model: torch.nn.Module, sample_shape, device=None, max_batch: int = MAX_BATCH) -> int:
    """The chunk size for ``model`` on inputs of ``sample_shape`` ``(C, H, W)``: memory-bounded, then fastest."""
    device = torch.device("cpu") if device is None else torch.device(device)
    key = (tuple(int(s) for s in sample_shape), str(device), int(max_batch))
    cached = _CACHE.setdefault(model, {})
    if key not in cached:
        with evaluation_mode(model):  # the probe must not update batch-norm statistics
            bound = memory_bound(model, key[0], device, max_batch)
            cached[key] = fastest_batch_size(model, key[0], device, bound)
    return cached[key]


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


def fastest_batch_size(model: torch.nn.Module, sample_shape, device, bound: int) -> int:
    """The power-of-two batch (or ``bound``) with the highest measured images/second (see the module notes)."""
    candidates = _candidates(bound)
    if len(candidates) == 1:
        return candidates[0]
    throughput = {}
    began = time.perf_counter()
    generator = torch.Generator(device=device).manual_seed(0)  # the caller's global random stream stays untouched
    with torch.no_grad():
        forward(model, torch.rand(candidates[0], *sample_shape, device=device, generator=generator))  # warm-up
        for size in candidates:
            inputs = torch.rand(size, *sample_shape, device=device, generator=generator)
            seconds = min(_timed(model, inputs, device) for _ in range(PROBE_REPEATS))
            previous_best = max(throughput.values(), default=0.0)
            throughput[size] = size / max(seconds, 1e-9)
            if throughput[size] < previous_best * (1 + PLATEAU_GAIN):
                return max(throughput, key=throughput.get)
            if time.perf_counter() - began > PROBE_BUDGET_SECONDS:
                return bound  # still speeding up when the budget ran out: larger chunks amortise per-call costs
    return max(throughput, key=throughput.get)


def forward(model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model(inputs)``; a perturbation-aware model is told the inputs are unperturbed (level 0)."""
    if getattr(model, "accepts_perturbation_level", False):
        return model(inputs, perturbation_level=torch.zeros(len(inputs), device=inputs.device))
    return model(inputs)


def _candidates(bound: int) -> list[int]:
    sizes = []
    size = MIN_PROBE_BATCH
    while size < bound:
        sizes.append(size)
        size *= 2
    sizes.append(bound)
    return sizes


def _timed(model, inputs, device) -> float:
    start = time.perf_counter()
    forward(model, inputs)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _input_bytes(sample_shape) -> int:
    numel = 1
    for size in sample_shape:
        numel *= int(size)
    return 4 * numel
