"""Stability of explanations: local Lipschitz estimate and SSIM between the maps of two models.

Local Lipschitz estimate (Alvarez-Melis & Jaakkola 2018, "On the robustness of interpretability methods", as used by
Calibrate-to-Interpret sec. 4.6: 40 neighbours in the ball of radius 0.05 around each input):

    ``L(x) = max_{j = 1..n} ||e(x) - e(x_j)||_2 / ||x - x_j||_2``,   ``x_j`` drawn uniformly in ``B_2(x, radius)``

where ``e`` is the explanation (raw attributions, or maps after a named reduction; optionally min-max normalised
per map, as Calibrate-to-Interpret normalises every map). Uniform sampling in the L2 ball: a direction uniform on
the sphere (a normalised standard Gaussian vector) times ``radius * U^(1/d)``, ``U ~ U(0, 1)``, ``d = C H W``.
The paper adds "small amount of gaussian noise ... inside the ball of radius 0.05" without naming the norm; the L2
ball is taken here, so a 28 x 28 neighbour moves each pixel by about 0.05 / 28 (an L-infinity reading would move each
pixel by up to 0.05, 28 times more). Neighbours are not clipped to [0, 1] by default (``clip=True`` clips them; the ratio then uses the clipped
displacement). All ``B * n`` neighbours are explained in large batches.

``map_ssim`` is the SSIM (``xaitrust.metrics.ssim``) between two models' maps of the same inputs, each map min-max
normalised first (Calibrate-to-Interpret compares calibrated and uncalibrated models this way).
"""

from __future__ import annotations

import math
import numbers

import torch

from ..errors import XaitrustError
from ..explainers.reduce import normalize_maps
from ..outputs import check_output
from ..perturb.engine import model_device
from ..seeding import image_seed
from ..validation import check_count, check_images, check_target, outside_unit_range_allowed
from ._explain import explain_maps
from ._validation import warn_constant_maps
from .distances import check_map_pair
from .ssim import ssim


def sample_in_ball(x: torch.Tensor, n: int, radius: float, seed: int) -> torch.Tensor:
    """``n`` points drawn uniformly in the L2 ball of ``radius`` around each image: ``(B, n, C, H, W)``.

    Direction uniform on the sphere (a normalised Gaussian), distance ``radius * U^(1/d)``. Each image draws its
    offsets from its own generator (``xaitrust.seeding.image_seed``), so its neighbours do not depend on the batch it
    is in, and two images are probed in independent directions.
    """
    generator = torch.Generator()
    offsets = []
    for image in x:  # a cheap draw per image; the explainer calls on the neighbours dominate
        generator.manual_seed(image_seed(seed, image))
        direction = torch.randn((n, *x.shape[1:]), generator=generator, dtype=x.dtype)
        direction /= direction.flatten(1).norm(dim=1).reshape(n, *[1] * (x.ndim - 1))
        scale = radius * torch.rand(n, generator=generator, dtype=x.dtype) ** (1 / x[0].numel())
        offsets.append(direction * scale.reshape(n, *[1] * (x.ndim - 1)))
    return x.unsqueeze(1) + torch.stack(offsets).to(x.device)


def local_lipschitz(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    *,
    n_neighbours: int = 40,
    radius: float = 0.05,
    output: str = "logit",
    reduction: str | None = None,
    normalize: bool = False,
    clip: bool = False,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Local Lipschitz estimate of ``explainer`` at each image of ``x`` ``(B, C, H, W)`` -> ``(B,)``.

    Args:
        explainer: called as ``explainer(model, x, target, output)``, returning attributions ``(B, C, H, W)``.
        reduction: ``None`` compares raw attributions; a name from ``xaitrust.explainers.reduce`` compares maps.
        normalize: min-max normalise each map (or attribution tensor) before comparing.
        batch_size: images per explainer call.
    """
    check_output(output)
    x = check_images(x).to(model_device(model))
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)
    n_neighbours = check_count(n_neighbours, "n_neighbours")
    if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not 0 < radius < math.inf:
        raise XaitrustError(f"radius must be a positive finite number; got {radius!r}")
    neighbours = sample_in_ball(x, n_neighbours, radius, seed)
    if clip:
        neighbours = neighbours.clamp(0, 1)
    inputs = torch.cat([x, neighbours.flatten(0, 1)])
    targets = torch.cat([target, target.repeat_interleave(n_neighbours)])
    with outside_unit_range_allowed():  # unclipped neighbours of black or white pixels leave [0, 1]
        explanations = explain_maps(explainer, model, inputs, targets, output=output, reduction=reduction,
                                    batch_size=batch_size)
    flat = explanations.flatten(1)
    if normalize:
        warn_constant_maps(flat.unsqueeze(1), "their min-max normalisation is all zeros")
        flat = normalize_maps(flat.unsqueeze(1)).squeeze(1)
    base, moved = flat[: len(x)], flat[len(x) :].reshape(len(x), n_neighbours, -1)
    change = (moved - base.unsqueeze(1)).norm(dim=2)
    step = (neighbours - x.unsqueeze(1)).flatten(2).norm(dim=2)
    return (change / step).amax(dim=1)


def map_ssim(maps_a: torch.Tensor, maps_b: torch.Tensor, *, win_size: int = 7) -> torch.Tensor:
    """SSIM ``(N,)`` between paired maps ``(N, H, W)`` after min-max normalising each map (data range 1).

    A constant map normalises to zeros (with a ``ConstantMapWarning``), so two constant maps have SSIM 1.
    """
    maps_a, maps_b = check_map_pair(maps_a, maps_b)
    warn_constant_maps(torch.cat([maps_a, maps_b]), "they are compared as all-zero maps")
    return ssim(normalize_maps(maps_a), normalize_maps(maps_b), data_range=1.0, win_size=win_size)
