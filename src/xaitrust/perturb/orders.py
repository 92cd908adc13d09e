"""Orders in which perturbation metrics remove (or insert) pixels, as rank tensors for ``RankedMasks``.

A rank tensor ``(B, 1, H, W)`` gives every pixel its position in the removal order (0 first); pixels that share a rank
(a superpixel) are removed together. ``counts_from_fractions`` turns the fractions of a curve's x-axis into how many
ranks are removed at each step.

Ties. Saliency maps often hold equal values (zeros of a rectified gradient, flat regions of an upsampled CAM).
``ties="stable"`` (default) breaks them by pixel index in row-major order (a stable sort), so a given map always gives
the same order; ``ties="random"`` breaks them by a random permutation instead, which avoids the row-major bias when a
map has large flat regions. A constant map carries no order at all: its pixels are always ranked at random, so it
behaves like the random baseline; metrics warn about such maps.

Random draws are made per image: each image's permutation (or superpixel order) comes from its own generator, seeded
by the call's ``seed`` and the bytes of a tensor that identifies the image (``xaitrust.seeding.image_seed``): its map
by default, or what the caller passes as ``seed_from`` (e.g. the images themselves, when the maps or segments carry no
identity, as an all-zero placeholder or a pixel grid shared by every image does). An image therefore gets the same
order alone or at any place in any batch. Identical keys share their draws.
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..seeding import image_seed

ORDERS = ("most-important-first", "least-important-first", "random")
TIES = ("stable", "random")


def ranks_from_maps(
    maps: torch.Tensor,
    order: str = "most-important-first",
    seed: int = 0,
    ties: str = "stable",
    *,
    seed_from: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel ranks ``(B, 1, H, W)`` (int64) from maps ``(B, H, W)``.

    ``"most-important-first"`` ranks the highest value first (MIF; for signed maps, from the largest positive to the
    most negative value, as in Brocki & Chung's FPA paper); ``"least-important-first"`` the lowest first (LIF);
    ``"random"`` ignores the values and draws a uniformly random order per image. Random orders and random tie breaks
    of image ``b`` are drawn from ``seed`` and the bytes of ``seed_from[b]`` (``None``: ``maps[b]``; see the module
    notes), so they do not depend on the rest of the batch.
    """
    if order not in ORDERS:
        raise XaitrustError(f"order must be one of {', '.join(ORDERS)}; got {order!r}")
    if ties not in TIES:
        raise XaitrustError(f"ties must be one of {', '.join(TIES)}; got {ties!r}")
    if maps.ndim != 3:
        raise XaitrustError(f"maps must be (B, H, W); got {tuple(maps.shape)}")
    keys = _seed_keys(maps, seed_from)
    flat = maps.reshape(len(maps), -1)
    if order == "random":
        return _ranks_of_order(image_permutations(keys, flat.shape[1], seed, maps.device)).reshape(
            len(maps), 1, *maps.shape[1:]
        )
    values = flat if order == "least-important-first" else -flat
    # the rows whose ties are broken at random: all of them, or only the constant maps, which have nothing else
    shuffled = torch.ones(len(flat), dtype=torch.bool, device=flat.device) if ties == "random" else (
        flat.amax(dim=1) == flat.amin(dim=1)
    )
    presort = torch.arange(flat.shape[1], device=maps.device).repeat(len(flat), 1)
    if shuffled.any():
        rows = shuffled.nonzero().flatten()
        presort[rows] = image_permutations(keys[rows.cpu()], flat.shape[1], seed, maps.device)
    positions = torch.sort(values.gather(1, presort), dim=1, stable=True).indices
    return _ranks_of_order(presort.gather(1, positions)).reshape(len(maps), 1, *maps.shape[1:])


def random_segment_ranks(
    segments: torch.Tensor, n_orders: int = 1, seed: int = 0, *, seed_from: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random removal orders of whole segments (superpixels).

    Args:
        segments: integer segment ids ``(B, H, W)`` (e.g. ``xaitrust.perturb.segments.superpixels``).
        n_orders: random orders per image.
        seed, seed_from: image ``b``'s orders are drawn from ``seed`` and the bytes of ``seed_from[b]`` (``None``:
            ``segments[b]``; pass the images when several may share their segment ids, e.g. a patch grid), so they
            do not depend on the rest of the batch; its first orders stay the same when ``n_orders`` grows.

    Returns:
        ``(ranks, n_segments)``: pixel ranks ``(B * n_orders, 1, H, W)`` (image-major: rows ``b * n_orders + o``), every
        pixel of a segment sharing its segment's rank; and the number of distinct segments of each row
        ``(B * n_orders,)``. The segments present in an image get ranks ``0 .. n - 1`` even when ids have gaps.
    """
    if segments.ndim != 3 or segments.dtype.is_floating_point:
        raise XaitrustError(f"segments must be integer ids (B, H, W); got {tuple(segments.shape)} {segments.dtype}")
    if n_orders < 1:
        raise XaitrustError(f"n_orders must be a positive integer; got {n_orders}")
    keys = _seed_keys(segments, seed_from)
    flat = segments.reshape(len(segments), -1).long()
    image_ids = flat.amax(dim=1).cpu() + 1  # an image's draws span its own ids only, whatever the batch's largest
    n_ids = int(image_ids.max()) if len(flat) else 1
    present = torch.zeros(len(flat), n_ids, dtype=torch.bool, device=flat.device).scatter_(1, flat, True)
    draws = torch.full((len(flat), n_orders, n_ids), float("inf"))
    generator = torch.Generator()
    for row, (key, width) in enumerate(zip(keys, image_ids.tolist())):
        generator.manual_seed(image_seed(seed, key))
        draws[row, :, :width] = torch.rand(n_orders, width, generator=generator)
    draws = draws.to(flat.device).masked_fill(~present[:, None], float("inf")).flatten(0, 1)
    segment_ranks = _ranks_of_order(draws.argsort(dim=1, stable=True))
    ranks = segment_ranks.gather(1, flat.repeat_interleave(n_orders, dim=0))
    return ranks.reshape(len(draws), 1, *segments.shape[1:]), present.sum(dim=1).repeat_interleave(n_orders)


def image_permutations(keys: torch.Tensor, length: int, seed: int, device=None) -> torch.Tensor:
    """One uniformly random permutation of ``0 .. length - 1`` per row of ``keys`` ``(B, ...)``: ``(B, length)`` on
    ``device``, row ``b`` drawn from a generator seeded by ``seed`` and the bytes of ``keys[b]``
    (``xaitrust.seeding.image_seed``), so it does not depend on the other rows."""
    draws = torch.empty(len(keys), length)
    generator = torch.Generator()
    for row, key in enumerate(keys):  # one cheap draw per image; the sort below is batched
        generator.manual_seed(image_seed(seed, key))
        draws[row] = torch.rand(length, generator=generator)
    return draws.argsort(dim=1, stable=True).to(device)


def random_permutations(n_rows: int, length: int, seed: int, device=None) -> torch.Tensor:
    """``n_rows`` independent uniformly random permutations of ``0 .. length - 1`` ``(n_rows, length)`` from one
    generator seeded with ``seed``: draws shared by every image of a call (e.g. muFidelity's subsets), not per image
    (``image_permutations``)."""
    generator = torch.Generator(device=device or "cpu").manual_seed(int(seed))
    return torch.rand(n_rows, length, generator=generator, device=device).argsort(dim=1)


def uniform_fractions(steps: int) -> torch.Tensor:
    """``steps + 1`` evenly spaced fractions ``0, 1/steps, ..., 1`` (float64)."""
    if not isinstance(steps, int) or steps < 1:
        raise XaitrustError(f"steps must be a positive integer; got {steps!r}")
    return torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)


def check_fractions(fractions) -> torch.Tensor:
    """Fractions as a float64 ``(M,)`` tensor, increasing, in [0, 1]; raise otherwise."""
    fractions = torch.as_tensor(fractions, dtype=torch.float64).reshape(-1)
    if len(fractions) < 2 or not torch.isfinite(fractions).all():
        raise XaitrustError(f"fractions must hold at least two finite values; got {fractions.tolist()}")
    if fractions.min() < 0 or fractions.max() > 1 or (fractions.diff() <= 0).any():
        raise XaitrustError(f"fractions must increase strictly within [0, 1]; got {fractions.tolist()}")
    return fractions


def counts_from_fractions(fractions: torch.Tensor, n_features) -> torch.Tensor:
    """How many features a fraction removes: ``round(fraction * n_features)`` (int64).

    ``n_features`` is an int (``(M,)`` result) or a ``(B,)`` tensor of per-image feature counts (``(B, M)`` result,
    e.g. images with different numbers of superpixels). Rounds half to even (``torch.round``).
    """
    fractions = torch.as_tensor(fractions, dtype=torch.float64)
    n_features = torch.as_tensor(n_features, dtype=torch.float64)
    if n_features.ndim == 0:
        return torch.round(fractions * n_features).long()
    return torch.round(fractions.to(n_features.device)[None, :] * n_features[:, None]).long()


def _ranks_of_order(order: torch.Tensor) -> torch.Tensor:
    """Inverse permutation of each row: ``ranks[b, order[b, k]] = k``."""
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _seed_keys(values: torch.Tensor, seed_from: torch.Tensor | None) -> torch.Tensor:
    """The per-image tensors whose bytes seed each image's draws, on the CPU (hashed one by one)."""
    keys = values if seed_from is None else seed_from
    if len(keys) != len(values):
        raise XaitrustError(f"seed_from must hold one entry per image ({len(values)}); got {len(keys)}")
    return keys.detach().cpu()
