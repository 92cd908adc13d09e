"""Batched gradients of the target score with respect to the input, shared by every gradient-based explainer.

``score_gradients`` differentiates the sum of the chosen target scores (``xaitrust.outputs.target_scores``) once for
the whole batch: since sample ``b``'s score only depends on image ``b``, the gradient of the sum is every sample's own
gradient. ``sampled_gradients`` does the same for ``n`` derived inputs per image (Integrated-Gradients path points,
SmoothGrad noisy copies): it walks the ``B * n`` (image, point) pairs in chunks, one forward and one backward pass per
chunk, and hands each chunk's gradients to the caller, which accumulates them. Pure PyTorch autograd; no Captum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ..chunks import pair_chunks
from ..outputs import target_scores
from ..perturb.batching import memory_bound

# Forward+backward of the small CNN on 28x28 images costs about 1.5x more per image in chunks of 128 than of 512, and no
# less in chunks of 1600 (benchmarks/bench_gradient_explainers.py): larger chunks would only add memory.
GRADIENT_MAX_BATCH = 512


def score_gradients(model: torch.nn.Module, inputs: torch.Tensor, target: torch.Tensor, output: str) -> torch.Tensor:
    """``d s(model(inputs))[target] / d inputs`` for every row, ``(N, C, H, W)``, in one forward/backward pass."""
    with torch.enable_grad():
        inputs = inputs.detach().requires_grad_(True)
        scores = target_scores(model(inputs), target, output)
        (gradients,) = torch.autograd.grad(scores.sum(), inputs)
    return gradients


def gradient_batch_size(model: torch.nn.Module, x: torch.Tensor) -> int:
    """How many inputs like ``x``'s one gradient pass takes: the masked-evaluation engine's memory bound on the
    activations of a chunk and their gradients (``xaitrust.perturb.batching.memory_bound`` with two copies), at most
    ``GRADIENT_MAX_BATCH``. No timing probe: the backward pass's cost is not what a no-grad probe measures, and
    timings on a loaded machine are noise."""
    return memory_bound(model, x.shape[1:], x.device, GRADIENT_MAX_BATCH, copies=2)


def sampled_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    output: str,
    num_points: int,
    make_inputs: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Gradients at ``num_points`` derived inputs per image, chunk by chunk.

    The ``len(x) * num_points`` pairs are flattened image-major (pair ``i`` is image ``i // num_points``, point
    ``i % num_points``) and walked in chunks of ``batch_size`` (``xaitrust.chunks.pair_chunks``). For each chunk,
    ``make_inputs(image_index, point_index)`` builds the inputs; the generator yields ``(image_index, point_index,
    gradients)``.
    """
    if batch_size is None:
        batch_size = gradient_batch_size(model, x)
    for image_index, point_index in pair_chunks(len(x), num_points, batch_size, x.device):
        inputs = make_inputs(image_index, point_index)
        yield image_index, point_index, score_gradients(model, inputs, target[image_index], output)
