"""How many masked images go through the model at once."""

from __future__ import annotations

import torch

# Bytes of input per chunk; activations of a small CNN are a few tens of times the input, so this keeps a chunk of
# 28x28 images around a few hundred MB at most.
INPUT_BYTES_PER_CHUNK = 8 * 2**20
MAX_BATCH = 1024


def auto_batch_size(model: torch.nn.Module, sample_shape, max_batch: int = MAX_BATCH) -> int:
    """A chunk size bounded by memory: ``INPUT_BYTES_PER_CHUNK`` of float32 input, at most ``max_batch`` images."""
    numel = 1
    for size in sample_shape:
        numel *= int(size)
    return int(max(1, min(max_batch, INPUT_BYTES_PER_CHUNK // (4 * numel))))
