"""How concise an explanation is: sparseness, complexity and effective complexity.

A map is read as the magnitudes ``v_p = |m_p|`` of its ``n = H * W`` pixels (sparseness, complexity) or ranked by its
values (effective complexity). An all-zero map has no distribution of importance: its sparseness and complexity are
NaN, with a warning.

- Sparseness (Chalasani, Chen, Chowdhury, Wu & Jha, "Concise explanations of neural networks using adversarial
  training", ICML 2020): the Gini index of the magnitudes (Hurley & Rickard 2009), with ``v_(1) <= ... <= v_(n)``
  sorted increasingly, ``G = sum_i (2i - n - 1) v_(i) / (n sum_i v_(i))``; 0 for a uniform map, ``(n - 1) / n`` for a
  single pixel. Higher is sparser. Quantus 0.6 adds 1e-7 to every max-normalised magnitude (its Gini of an all-zero map
  is 0, and every value moves by about ``1e-7 n / sum v`` in those units); otherwise it computes the same index.
- Complexity (Bhatt, Weller & Moura, "Evaluating and aggregating feature-based model explanations", IJCAI 2020):
  the entropy of the fractional contributions ``P_p = v_p / sum_q v_q``, ``-sum_p P_p ln P_p`` (with
  ``0 ln 0 = 0``); ``ln n`` for a uniform map, 0 for a single pixel. Lower is more concise. Quantus 0.6 computes the
  same entropy (with ``ln(P + 1e-12)``).
- Effective complexity (Nguyen & Rodríguez Martínez, "On quantitative aspects of model interpretability", arXiv
  2007.07584, 2020): with ``M_k`` the k top-ranked pixels, the smallest k for which the model's prediction no
  longer depends, within a tolerance, on the other pixels: ``k* = min { k : E_{x'} |f(x) - f(x_{M_k}, x'_{-M_k})| <
  tolerance }``, the expectation over values ``x'`` of the pixels outside ``M_k``. Here ``f`` is the target's score
  (``output``), ``x'`` is uniform noise in [0, 1] (``n_samples`` noise images, seeded), and k runs over
  ``round(j * n / steps)``, j = 1..steps (every k = 1..n with ``steps=None``; a coarser grid gives the smallest k on
  it). Pixels are ranked by their map value, highest first (ties as
  ``ties``); ``k = n`` leaves the image intact, so k* always exists. Lower is more concise. Quantus 0.6 instead
  counts the pixels whose normalised magnitude exceeds ``eps`` (``sum_p [|m_p| / max|m| > eps]``), the number of
  non-zero attributions, which the paper introduces effective complexity to improve on: a map spreading tiny
  attributions over pixels the model ignores counts them all there, and none of them here. The two agree when a
  map is non-zero exactly on the pixels the model depends on and the tolerance is small (checked in the tests).
"""

from __future__ import annotations

import numbers
import warnings

import torch

from ..errors import XaitrustError
from ..perturb.orders import ranks_from_maps
from ..perturb.replacement import NOISE_SEED_OFFSET
from ..validation import check_count, check_images, check_maps
from .curves import ranked_curves


def _magnitudes(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flattened magnitudes ``(B, n)`` of the maps and the flags ``(B,)`` of all-zero maps (with a warning)."""
    magnitudes = check_maps(maps).flatten(1).abs()
    empty = magnitudes.sum(dim=1) == 0
    if empty.any():
        warnings.warn(f"{int(empty.sum())} map(s) are all zero: their sparseness and complexity are NaN",
                      UserWarning, stacklevel=3)
    return magnitudes, empty


def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index ``(B,)`` of each map's magnitudes: 0 when uniform, up to ``(n - 1) / n`` for one pixel."""
    magnitudes, empty = _magnitudes(maps)
    ordered = magnitudes.double().sort(dim=1).values
    n = ordered.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=ordered.device) - n - 1
    gini = (ordered * weights).sum(dim=1) / (n * ordered.sum(dim=1))
    return gini.masked_fill(empty, torch.nan).to(magnitudes.dtype)


def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Entropy ``(B,)`` of each map's fractional contributions ``|m_p| / sum |m|``: ``ln n`` when uniform."""
    magnitudes, empty = _magnitudes(maps)
    shares = magnitudes.double() / magnitudes.double().sum(dim=1, keepdim=True)
    entropy = -torch.xlogy(shares, shares).sum(dim=1)
    return entropy.masked_fill(empty, torch.nan).to(magnitudes.dtype)


def effective_complexity(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    tolerance: float = 0.05,
    n_samples: int = 4,
    steps: int | None = 100,
    *,
    output: str = "probability",
    seed: int = 0,
    ties: str = "stable",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Effective complexity ``(B,)``: the fewest top-ranked pixels that, kept while the others are noise, hold the
    target's score within ``tolerance`` of its clean value on average over ``n_samples`` noise draws."""
    x = check_images(x)
    maps = check_maps(maps, x)
    if isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not tolerance > 0:
        raise XaitrustError(f"tolerance must be a positive number (in units of the {output} score); got {tolerance!r}")
    n_samples = check_count(n_samples, "n_samples")
    n_pixels = maps[0].numel()
    steps = n_pixels if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or not 1 <= steps <= n_pixels:
        raise XaitrustError(f"steps must be an integer in [1, {n_pixels}] (pixels per image) or None; got {steps!r}")
    fractions = torch.arange(1, steps + 1, dtype=torch.float64) / steps
    ranks = ranks_from_maps(maps.to(x.device), "most-important-first", seed=seed, ties=ties)
    generator = torch.Generator().manual_seed(int(seed) + NOISE_SEED_OFFSET)
    noise = torch.rand((n_samples, 1, *x.shape[1:]), generator=generator).to(x)
    loss = 0.0
    for values in noise:  # one insertion game per noise draw, each batched over images and steps
        game = ranked_curves(model, x, ranks, n_pixels, fractions, target, mode="insert", replacement=values,
                             output=output, normalize=False, batch_size=batch_size)
        loss = loss + (game.curves - game.clean_score[:, None]).abs()
    within = loss / n_samples < tolerance  # true at k = n, whose image is the clean one the loss is measured from
    counts = torch.round(fractions * n_pixels).to(within.device)
    return counts[within.int().argmax(dim=1)].to(maps.dtype)
