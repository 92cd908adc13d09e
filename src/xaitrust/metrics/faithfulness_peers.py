"""Faithfulness metrics that remove single features, random subsets or the whole map at once, as defined by the
papers Quantus (Hedström et al., 2023) collects; the metrics that remove regions in order of relevance are in
``xaitrust.metrics.faithfulness_regions``.

- ``faithfulness_estimate`` (Alvarez-Melis & Jaakkola, 2018): Pearson correlation, over the features, between each
  feature's attribution and the score's drop when that feature alone takes the baseline value.
- ``monotonicity_arya`` (Arya et al., 2019, AIX360): whether the score never decreases while the features are put
  back into the baseline image one by one, least important first.
- ``monotonicity_correlation`` (Nguyen & Martinez, 2020): Spearman correlation, over the features, between each
  feature's absolute attribution and the expected squared change of the score when it alone is replaced.
- ``infidelity`` (Yeh et al., 2019): mean squared error between the attribution mass of removed squares and the
  score's drop when they are removed (optionally after the reference code's optimal scaling of the explanation).
- ``sensitivity_n`` (Ancona et al., 2018): muFidelity's correlation at several subset sizes n.
- ``average_drop`` and ``increase_in_confidence`` (Chattopadhay et al., 2018, Grad-CAM++): the confidence of the image
  multiplied by its min-max normalised map against the image's.

Faithfulness Correlation (Bhatt, Weller & Moura, 2020) is muFidelity (``xaitrust.metrics.mu_fidelity``): Bhatt et al.
define faithfulness correlation as ``Corr_{S, |S| = k}(sum_{i in S} g_i, f(x) - f(x_{[x_S = xbar_S]}))`` and Fel et
al.'s muFidelity is that definition. ``faithfulness_correlation`` is ``mu_fidelity`` with Quantus's parameters (an
absolute subset size, its number of runs, the image's smallest value as baseline, the logit); the registry names
both.

Features. A feature is a pixel (all its channels together) or, with ``patch_size``, a square patch
(``xaitrust.perturb.segments.patches``); its attribution is the sum over its pixels and channels. Quantus treats every
channel of a pixel as a feature of its own: the two agree on single-channel images.

Baselines. ``replacement`` takes every ``xaitrust.perturb.make_replacement`` value, plus Quantus's per-image
baselines ``"black"`` (the image's smallest value), ``"white"`` (its largest) and ``"image-mean"`` (its per-channel
mean), which, unlike the batch statistics, do not depend on the other images.
"""

from __future__ import annotations

import warnings

import torch

from ..errors import XaitrustError
from ..perturb.engine import MaskSet, RankedMasks, TensorMasks, masked_scores
from ..perturb.orders import ranks_from_maps
from ..perturb.replacement import seeded_replacement
from ..perturb.segments import patches
from ..validation import check_attributions, check_count, check_images, check_maps
from .correlation import pearson, spearman
from .mu_fidelity import _is_flat, mu_fidelity

#: Quantus's baselines computed from each image alone: name -> ``(B, C, H, W)`` images -> broadcastable tensor.
IMAGE_BASELINES = {
    "black": lambda x: x.amin(dim=(1, 2, 3), keepdim=True),
    "white": lambda x: x.amax(dim=(1, 2, 3), keepdim=True),
    "image-mean": lambda x: x.mean(dim=(2, 3), keepdim=True),
}
#: Quantus's subset size of Faithfulness Correlation, in pixels.
QUANTUS_SUBSET_SIZE = 224
#: Subset sizes of ``sensitivity_n``, as fractions of the features.
SENSITIVITY_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8)


def replacement_for(x: torch.Tensor, replacement, seed: int):
    """``replacement`` for the images ``x``: the per-image baselines of ``IMAGE_BASELINES`` as tensors, any other
    value as ``xaitrust.perturb.replacement.seeded_replacement`` fixes it (``"uniform"`` noise drawn from ``seed``)."""
    if isinstance(replacement, str) and replacement in IMAGE_BASELINES:
        return IMAGE_BASELINES[replacement](x)
    return seeded_replacement(x, replacement, seed)


def pixel_features(x: torch.Tensor, patch_size: int | None) -> tuple[torch.Tensor, int]:
    """Feature ids ``(H, W)`` of the images ``x`` and their number: one per pixel (``patch_size=None``, row-major) or
    one per ``patch_size`` square patch."""
    if patch_size is None:
        return torch.arange(x.shape[2] * x.shape[3], device=x.device).reshape(x.shape[2:]), x.shape[2] * x.shape[3]
    features = patches(x.shape[2:], check_count(patch_size, "patch_size"), device=x.device)
    return features, int(features.max()) + 1


def feature_mass(values: torch.Tensor, features: torch.Tensor, n_features: int) -> torch.Tensor:
    """Sum of ``values`` ``(B, C, H, W)`` or ``(B, H, W)`` over each feature's pixels (and channels): ``(B, F)``."""
    pixels = values.sum(dim=1) if values.ndim == 4 else values
    mass = torch.zeros(len(values), n_features, device=values.device, dtype=torch.float64)
    return mass.index_add_(1, features.flatten(), pixels.reshape(len(values), -1).double())


def defined_correlation(a: torch.Tensor, b: torch.Tensor, method: str, metric: str) -> torch.Tensor:
    """Pearson (``method="pearson"``) or Spearman correlation of each row pair ``(B, N)`` -> ``(B,)``, NaN with a
    warning where a row is constant up to float32 rounding (no correlation is defined)."""
    flat = _is_flat(a) | _is_flat(b)
    if flat.any():
        warnings.warn(
            f"{int(flat.sum())} of {len(a)} samples have constant attributions or score changes over the features "
            f"(first: {flat.nonzero().flatten()[:5].tolist()}); their {metric} is NaN",
            UserWarning,
            stacklevel=3,
        )
    correlation = pearson(a, b) if method == "pearson" else spearman(a, b)
    return torch.where(flat.to(correlation.device), torch.nan, correlation)


class SingleFeatureMasks(MaskSet):
    """Mask 0 keeps every pixel; mask ``m >= 1`` removes feature ``m - 1`` alone (``features``: ids ``(H, W)`` in
    ``[0, n_features)``), the same for every image."""

    def __init__(self, features: torch.Tensor, n_features: int) -> None:
        self.features = features
        self.num_masks = n_features + 1

    def keep(self, image_index, mask_index):
        removed = mask_index.to(self.features.device)[:, None, None] - 1
        return (self.features[None] != removed).float().unsqueeze(1)


class SquareMasks(MaskSet):
    """Masks removing one square each, the same for every image: square ``m`` has side ``sides[m]`` and its top-left
    pixel at ``(tops[m], lefts[m])``."""

    def __init__(self, image_size, tops: torch.Tensor, lefts: torch.Tensor, sides: torch.Tensor) -> None:
        self.height, self.width = (int(s) for s in image_size)
        self.tops, self.lefts, self.sides = tops, lefts, sides
        self.num_masks = len(sides)

    def keep(self, image_index, mask_index):
        mask_index = mask_index.to(self.sides.device)
        rows = torch.arange(self.height, device=self.sides.device) - self.tops[mask_index, None]
        cols = torch.arange(self.width, device=self.sides.device) - self.lefts[mask_index, None]
        side = self.sides[mask_index, None]
        inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
        return (~inside).float().unsqueeze(1)


def random_squares(image_size, n_squares: int, max_side: int, seed: int, device=None) -> SquareMasks:
    """``n_squares`` squares drawn from ``seed``: side uniform in ``1..min(max_side, H, W)``, then the position uniform
    among those that fit in the image."""
    height, width = (int(s) for s in image_size)
    n_squares, max_side = check_count(n_squares, "n_squares"), check_count(max_side, "max_side")
    generator = torch.Generator().manual_seed(int(seed))
    sides = torch.randint(1, min(max_side, height, width) + 1, (n_squares,), generator=generator)
    tops = (torch.rand(n_squares, generator=generator) * (height - sides + 1)).long()
    lefts = (torch.rand(n_squares, generator=generator) * (width - sides + 1)).long()
    return SquareMasks(image_size, tops.to(device), lefts.to(device), sides.to(device))


def _single_feature_scores(model, x, target, features, n_features, replacement, output, batch_size) -> torch.Tensor:
    """Scores ``(B, 1 + F)``: the clean image's, then with each feature alone replaced."""
    return masked_scores(model, x, SingleFeatureMasks(features, n_features), target, replacement=replacement,
                         output=output, batch_size=batch_size)


def faithfulness_correlation(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    subset_size: int | None = None,
    n_runs: int = 100,
    baseline="black",
    output: str = "logit",
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Faithfulness Correlation (Bhatt, Weller & Moura, *Evaluating and Aggregating Feature-based Model
    Explanations*, IJCAI 2020), per sample ``(B,)``:

        mu_F = Corr_{S, |S| = subset_size} ( sum_{i in S} a_i , f(x) - f(x_{[x_S = baseline]}) )

    which is muFidelity's definition: this is ``mu_fidelity`` over ``n_runs`` random subsets of ``subset_size``
    pixels (an absolute size, fewer than the image's pixels), with Quantus's defaults: 100 runs, the ``"black"``
    baseline (each image's smallest value), the logit, and ``subset_size=None``: Quantus's 224 pixels, or half the
    pixels of images holding fewer than 448 (Quantus refuses those). Quantus draws each image's subsets apart
    (``np.random.choice``) and treats every channel as a feature; given the same subsets of a single-channel image,
    the two agree.
    """
    check_images(x)
    n_pixels = x.shape[2] * x.shape[3]
    subset_size = min(QUANTUS_SUBSET_SIZE, n_pixels // 2) if subset_size is None else subset_size
    subset_size, n_runs = check_count(subset_size, "subset_size"), check_count(n_runs, "n_runs")
    if subset_size >= n_pixels:
        raise XaitrustError(f"subset_size must be smaller than the {n_pixels} pixels of an image; got {subset_size}")
    if n_runs < 2:
        raise XaitrustError(f"n_runs must be at least 2 to compute a correlation; got {n_runs}")
    return mu_fidelity(model, x, attributions, target, subset_size / n_pixels, n_runs,
                       replacement_for(x, baseline, seed), None, output, seed, batch_size=batch_size)


def faithfulness_estimate(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    replacement="zero",
    patch_size: int | None = None,
    output: str = "probability",
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Faithfulness Estimate (Alvarez-Melis & Jaakkola, *Towards Robust Interpretability with Self-Explaining Neural
    Networks*, NeurIPS 2018), per sample ``(B,)``:

        rho( [a_i]_i , [f(x) - f(x with feature i set to the baseline)]_i )

    Pearson's correlation over the features ``i`` (pixels, or patches of ``patch_size``) between the attribution
    ``a_i`` (summed over the feature's pixels and channels) and the drop of the target's score when that feature
    alone takes the ``replacement`` value; ``1 + F`` forward passes per image. NaN (with a warning) where the
    attributions or the drops do not vary. Quantus's ``FaithfulnessEstimate`` with ``features_in_step=1`` is the
    same on single-channel images (it takes channels as separate features).
    """
    check_images(x)
    attributions = check_attributions(attributions, x).to(x.device)
    features, n_features = pixel_features(x, patch_size)
    scores = _single_feature_scores(model, x, target, features, n_features, replacement_for(x, replacement, seed),
                                    output, batch_size)
    drops = scores[:, :1].double() - scores[:, 1:].double()
    return defined_correlation(feature_mass(attributions, features, n_features), drops, "pearson",
                               "faithfulness estimate").float()


def monotonicity_correlation(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    replacement="uniform",
    n_samples: int = 10,
    patch_size: int | None = None,
    output: str = "probability",
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Monotonicity (Nguyen & Martinez, *On Quantitative Aspects of Model Interpretability*, 2020), per sample
    ``(B,)``:

        rho_S( [|a_i|]_i , [E_r (f(x) - f(x with feature i set to r))^2]_i )

    Spearman's rank correlation over the features ``i`` (pixels, or patches of ``patch_size``) between the absolute
    attribution (summed over the feature) and the expected squared change of the target's score when that feature
    alone is replaced. The expectation is the mean over ``n_samples`` noise images (``replacement="uniform"``, drawn
    from ``seed``, ``seed + 1``, ...); a deterministic replacement needs one. NaN (with a warning) where either side
    does not vary. Quantus's ``MonotonicityCorrelation`` (``features_in_step=1``) divides the changes by ``f(x)^2``,
    which leaves the ranks unchanged, and draws one uniform value per image and step: with a constant baseline the
    two agree on single-channel images.
    """
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    n_samples = check_count(n_samples, "n_samples")
    features, n_features = pixel_features(x, patch_size)
    draws = n_samples if isinstance(replacement, str) and replacement == "uniform" else 1
    squared = 0.0
    for draw in range(draws):  # one batched pass over images x features per noise image
        scores = _single_feature_scores(model, x, target, features, n_features,
                                        replacement_for(x, replacement, seed + draw), output, batch_size).double()
        squared = squared + (scores[:, :1] - scores[:, 1:]) ** 2
    return defined_correlation(feature_mass(maps.abs(), features, n_features), squared / draws, "spearman",
                               "monotonicity correlation").float()


def monotonicity_arya(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    replacement="zero",
    features_in_step: int = 1,
    output: str = "probability",
    seed: int = 0,
    *,
    ties: str = "stable",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Monotonicity (Arya et al., *One Explanation Does Not Fit All*, 2019, AIX360's ``monotonicity_metric``), per
    sample ``(B,)``: 1.0 where the target's score never decreases,

        f(x_1) <= f(x_2) <= ... <= f(x_n),

    while the pixels are put back into the ``replacement`` image ``features_in_step`` at a time in increasing order of
    the map (``x_k`` holds the ``k * features_in_step`` least important pixels of ``x``, the last one all of them),
    else 0.0. ``ceil(H W / features_in_step)`` forward passes per image; equal map values are ordered by ``ties``.
    Quantus 0.6's ``Monotonicity`` sets the chosen pixels of the baseline image to the baseline value again (its
    perturbation function replaces them) instead of putting ``x``'s values back: its input never changes, and every
    map passes.
    """
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    step = check_count(features_in_step, "features_in_step")
    n_pixels = maps[0].numel()
    counts = torch.arange(step, n_pixels + step, step).clamp(max=n_pixels)
    ranks = ranks_from_maps(maps, "least-important-first", seed=seed, ties=ties)
    scores = masked_scores(model, x, RankedMasks(ranks, counts, mode="insert"), target,
                           replacement=replacement_for(x, replacement, seed), output=output, batch_size=batch_size)
    return (scores.diff(dim=1) >= 0).all(dim=1).float()


def infidelity(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    n_squares: int = 200,
    max_side: int = 10,
    replacement="zero",
    optimal_scaling: bool = False,
    output: str = "probability",
    seed: int = 0,
    *,
    masks: MaskSet | torch.Tensor | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Infidelity (Yeh et al., *On the (In)fidelity and Sensitivity of Explanations*, NeurIPS 2019), per sample
    ``(B,)``, with square removal (the paper's and its reference code's perturbation for images):

        INFD = E_I [ (I^T a - (f(x) - f(x - I)))^2 ]

    ``I`` removes a square of pixels (sets it to the ``replacement`` value) and ``I^T a`` is the attribution of the
    removed pixels (summed over them and their channels): the explanation is read as an attribution, as the
    reference code reads its explanations (it multiplies gradients by the input for square removal). The expectation
    is the mean over ``n_squares`` squares drawn from ``seed`` (``random_squares``: side uniform in
    ``1..max_side``, the reference code's sides, position uniform), the same for every image; ``masks`` (keep masks
    ``(M, 1|C, H, W)`` or a ``MaskSet`` shared by every image) replaces them.

    The definition compares the attributions with the score's drops as they are, so attributions must be on the
    scale of ``output`` (those of the explained score are). ``optimal_scaling`` first scales the explanation by
    ``beta = E[I^T a * df] / E[(I^T a)^2]``, the scale minimising the infidelity, as the reference code does for
    every explanation ("performs optimal scaling for each explanation before calculating the infidelity score"): it
    compares explanations of different scales, but ``beta`` may be negative, so a map and its negation score the
    same. Quantus's ``Infidelity`` does not scale, multiplies the attributions by the removed amount ``x - x'`` (the
    gradient reading of ``I``) and removes its patches cumulatively in raster order; given ``a * (x - r)`` and those
    masks, the two agree.
    """
    check_images(x)
    attributions = check_attributions(attributions, x).to(x.device)
    if masks is None:
        masks = random_squares(x.shape[2:], n_squares, max_side, seed, device=x.device)
    elif isinstance(masks, torch.Tensor):
        if masks.ndim != 4:
            raise XaitrustError(
                f"infidelity's masks are shared by every image: (M, 1|C, H, W); got {tuple(masks.shape)}"
            )
        masks = TensorMasks(masks)
    replacement = replacement_for(x, replacement, seed)
    clean = masked_scores(model, x, torch.ones(1, 1, *x.shape[2:]), target, output=output, batch_size=batch_size)
    scores = masked_scores(model, x, masks, target, replacement=replacement, output=output, batch_size=batch_size)
    drops = clean.double() - scores.double()
    removed_mass = _removed_mass(attributions, masks)
    if optimal_scaling:
        beta = (removed_mass * drops).mean(dim=1, keepdim=True) / (removed_mass**2).mean(dim=1, keepdim=True)
        removed_mass = removed_mass * torch.nan_to_num(beta, nan=0.0, posinf=0.0, neginf=0.0)
    return ((removed_mass - drops) ** 2).mean(dim=1).float()


def _removed_mass(attributions: torch.Tensor, masks: MaskSet, block: int = 256) -> torch.Tensor:
    """``sum_p a_p (1 - keep_m,p)`` for every image and mask of ``masks`` (shared by every image): ``(B, M)``,
    float64, the masks built ``block`` at a time."""
    values = attributions if attributions.ndim == 4 else attributions.unsqueeze(1)
    flat = values.double()
    parts = []
    for start in range(0, masks.num_masks, block):
        index = torch.arange(start, min(start + block, masks.num_masks), device=values.device)
        removed = 1.0 - masks.keep(torch.zeros_like(index), index).to(flat)
        removed = removed.expand(-1, values.shape[1], -1, -1) if removed.shape[1] != values.shape[1] else removed
        parts.append(flat.flatten(1) @ removed.flatten(1).T)
    return torch.cat(parts, dim=1)


def sensitivity_n(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    fractions=SENSITIVITY_FRACTIONS,
    n_subsets: int = 100,
    baseline=0.0,
    output: str = "probability",
    seed: int = 0,
    *,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Sensitivity-n (Ancona et al., *Towards Better Understanding of Gradient-Based Attribution Methods for Deep
    Neural Networks*, ICLR 2018), per sample and subset size ``(B, len(fractions))``:

        PCC_{S, |S| = n} ( sum_{i in S} a_i , f(x) - f(x_{[x_S = baseline]}) )

    Pearson's correlation over ``n_subsets`` random subsets of ``n = round(fraction * H W)`` pixels between their
    attribution sum and the drop of the target's score when they take the ``baseline`` value, for each of
    ``fractions``. An attribution satisfies sensitivity-n when the two are equal for every subset of size n (the
    correlation is then 1); at one n this is muFidelity (``xaitrust.metrics.mu_fidelity``, which computes each column
    with the same subsets drawn from ``seed``). Quantus's ``SensitivityN`` differs: it removes pixels cumulatively in
    the map's order, one pixel per step, and correlates across the images of the batch, at each step, the cumulative
    score drop with the attribution of that step's pixel alone.
    """
    try:
        fractions = [float(f) for f in fractions]
    except (TypeError, ValueError):
        raise XaitrustError(f"fractions must be numbers in (0, 1), the subset sizes; got {fractions!r}") from None
    if not fractions:
        raise XaitrustError("fractions must hold at least one subset size (a fraction of the pixels in (0, 1))")
    columns = [mu_fidelity(model, x, attributions, target, fraction, n_subsets, baseline, None, output, seed,
                           batch_size=batch_size) for fraction in fractions]  # one batched pass per subset size
    return torch.stack(columns, dim=1)


def confidence_change(
    model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, target, *, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Y, O)`` ``(B,)`` each: the softmax confidence of the target class on the image and on the image multiplied
    by its min-max normalised map ``E = (m - min m) / (max m - min m)`` (Chattopadhay et al., 2018); a
    constant map is taken as all ones (nothing masked)."""
    check_images(x)
    maps = check_maps(maps, x).to(x.device)
    low = maps.amin(dim=(1, 2), keepdim=True)
    spread = maps.amax(dim=(1, 2), keepdim=True) - low
    normalised = torch.where(spread > 0, (maps - low) / torch.where(spread > 0, spread, 1.0), 1.0)
    keep = torch.cat([torch.ones_like(normalised[:, None]), normalised[:, None]], dim=1).unsqueeze(2)
    scores = masked_scores(model, x, keep, target, replacement="zero", output="probability", batch_size=batch_size)
    return scores[:, 0], scores[:, 1]


def average_drop(model, x, maps, target, *, batch_size: int | None = None) -> torch.Tensor:
    """Average Drop (Chattopadhay et al., *Grad-CAM++*, WACV 2018), per sample ``(B,)`` in
    percent: ``100 * max(0, Y - O) / Y``, with ``Y`` the target's softmax confidence on the image and ``O`` on the
    image multiplied by its min-max normalised map (``confidence_change``); the paper's Average Drop is the mean over
    images. Lower is better."""
    clean, masked = confidence_change(model, x, maps, target, batch_size=batch_size)
    return 100.0 * (clean - masked).clamp(min=0) / clean


def increase_in_confidence(model, x, maps, target, *, batch_size: int | None = None) -> torch.Tensor:
    """Increase in Confidence (Chattopadhay et al., *Grad-CAM++*, WACV 2018), per sample
    ``(B,)``: 100 where the target's softmax confidence on the image multiplied by its min-max normalised map exceeds
    the confidence on the image (``Y < O``), else 0; its mean over images is the paper's percentage. Higher is
    better."""
    clean, masked = confidence_change(model, x, maps, target, batch_size=batch_size)
    return 100.0 * (clean < masked).float()
