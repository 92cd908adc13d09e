"""muFidelity (Bhatt, Weller & Moura, 2020), as used by Fel et al. (*How Good is your Explanation?*, appendix C, eq. 7):

    muF(f, Phi, x) = Corr_{S subset of {1..d}, |S| = k} ( sum_{i in S} Phi(f, x)_i ,  f(x) - f(x_[x_i = xbar_i, i in S]) )

the Pearson correlation, over random feature subsets S of fixed size k, between the attribution mass of S and the drop
of the target's score when the features of S are set to the baseline xbar. Fel et al. use subsets of 15% of the
image and the baseline 0 (the defaults here). A feature is a pixel (all channels together) or, with ``patch_size=p``,
a p x p patch (``xaitrust.perturb.segments.patches``); its attribution is the sum of the attributions of its pixels and channels.
The same ``n_subsets`` random subsets (drawn from ``seed``) are used for every image, so a sample's value does not
depend on the rest of the batch.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import XaitrustError
from ..perturb.engine import masked_scores
from ..perturb.orders import random_permutations
from ..perturb.replacement import seeded_replacement
from ..perturb.segments import patches
from ..validation import check_attributions, check_images
from .correlation import pearson


def mu_fidelity(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    subset_fraction: float = 0.15,
    n_subsets: int = 200,
    baseline=0.0,
    patch_size: int | None = None,
    output: str = "logit",
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Per-sample muFidelity ``(B,)``: Pearson correlation over ``n_subsets`` subsets of ``k = round(subset_fraction * d)``
    features (at least 1) between their attribution sum and the score drop when they take the ``baseline`` value.

    Args:
        attributions: ``(B, C, H, W)`` attributions or ``(B, H, W)`` maps.
        baseline: the value a removed feature takes (any ``xaitrust.perturb.make_replacement`` spec).
        patch_size: ``None`` for pixel features, else the side of the square patches used as features.

    A sample whose attribution sums or score drops do not vary over the subsets (e.g. a constant map) has no
    correlation: its value is NaN, with a warning.
    """
    check_images(x)
    attributions = check_attributions(attributions, x).to(x.device)
    if not 0 < subset_fraction < 1:
        raise XaitrustError(f"subset_fraction must lie in (0, 1); got {subset_fraction}")
    if n_subsets < 2:
        raise XaitrustError(f"n_subsets must be at least 2 to compute a correlation; got {n_subsets}")
    if patch_size is None:
        features = torch.arange(x.shape[2] * x.shape[3], device=x.device).reshape(x.shape[2:])
    else:
        features = patches(x.shape[2:], patch_size, device=x.device)
    n_features = int(features.max()) + 1
    size = max(1, round(subset_fraction * n_features))
    in_subset = random_permutations(n_subsets, n_features, seed, x.device) < size
    keep = torch.cat([torch.ones(1, n_features, device=x.device), (~in_subset).float()])[:, features].unsqueeze(1)
    scores = masked_scores(model, x, keep, target, replacement=seeded_replacement(x, baseline, seed), output=output,
                           batch_size=batch_size)
    drops = scores[:, :1] - scores[:, 1:]
    pixel_mass = attributions.sum(dim=1) if attributions.ndim == 4 else attributions
    feature_mass = torch.zeros(len(x), n_features, device=x.device, dtype=pixel_mass.dtype)
    feature_mass.index_add_(1, features.flatten(), pixel_mass.reshape(len(x), -1))
    subset_mass = feature_mass @ in_subset.to(feature_mass.dtype).T
    return pearson_rows(subset_mass.double(), drops.double()).float()


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row pair of ``a`` and ``b`` ``(B, N)`` -> ``(B,)``; NaN (with a warning) where a row
    is constant up to float32 rounding (its spread is below ``1e-6`` of its largest magnitude)."""
    flat = _is_flat(a) | _is_flat(b)
    if flat.any():
        warnings.warn(
            f"{int(flat.sum())} of {len(a)} samples have constant attribution sums or score drops over the subsets "
            f"(first: {flat.nonzero().flatten()[:5].tolist()}); their muFidelity is NaN",
            UserWarning,
            stacklevel=3,
        )
    return torch.where(flat, torch.nan, pearson(a, b))


def _is_flat(values: torch.Tensor) -> torch.Tensor:
    spread = (values - values.mean(dim=1, keepdim=True)).norm(dim=1) / values.shape[1] ** 0.5
    return spread <= 1e-6 * values.abs().amax(dim=1)
