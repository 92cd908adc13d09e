"""Axioms an attribution method may satisfy, measured per image: completeness, non-sensitivity, input invariance.

- Completeness (Sundararajan, Taly & Yan, "Axiomatic attribution for deep networks", ICML 2017, sec. 3, Proposition
  1): the attributions add up to the difference of the score between the input and the baseline,
  ``sum_i a_i(x) = f(x) - f(x')``. ``completeness_gap`` measures the violation, ``|sum_i a_i - (f(x) - f(x'))|``, on
  the raw attributions ``(B, C, H, W)`` (every channel of every pixel), with ``f`` the explained score and ``x'`` the
  ``baseline`` (a replacement: zero, a constant, the mean, a blur or seeded noise); 0 when the axiom holds. This is not
  xaitrust's ``completeness`` metric (Gupta & Arora's insertion game). Quantus 0.6 (``Completeness``) returns whether
  the sum equals the difference exactly (float equality: ``True`` where the gap is exactly 0), on logits, after
  max-normalising the attributions by default, which breaks the sum unless ``normalise=False``; its "black" baseline
  is each image's minimum, not 0.
- Non-sensitivity (Nguyen & Rodríguez Martínez, "On quantitative aspects of model interpretability", arXiv 2007.07584,
  2020): features the model does not depend on should get zero attribution, and only they. With ``A_0`` the
  pixels of zero attribution (``|m_p| <= eps max|m|``) and ``F_0`` the pixels whose value does not change the score
  (``|f(x) - f(x with pixel p replaced)| <= eps`` for every one of ``n_samples`` uniform noise values, seeded, all
  channels of the pixel at once), ``non_sensitivity = |A_0 Δ F_0|``, the number of pixels in one set but not the
  other; 0 is best. Quantus 0.6 (``NonSensitivity``) tests each channel value on its own with one replacement, the
  image's minimum ("black"), which misses a dependence on a pixel already at its minimum; with one channel, no pixel
  at the image's minimum and one noise value it counts the same pixels (checked in the tests).
- Input invariance (Kindermans et al., "The (un)reliability of saliency methods", arXiv 1711.00867, 2017; in
  Explainable AI, LNCS 11700, 2019): shift the input by a constant, ``x + shift``, and give the model a first layer
  that absorbs the shift (Kindermans et al. lower the first layer's bias, ``b - W shift``), so that the shifted model
  on the shifted input computes exactly what the model computes on the input. An input-invariant method explains
  both the same. ``input_invariance`` is the relative L1 distance of the two explanations, ``||e(f, x) - e(f_shift,
  x + shift)||_1 / ||e(f, x)||_1``; 0 for an invariant method (gradients, SmoothGrad), positive for methods that read
  the input's value or a fixed reference (gradient times input, Integrated Gradients and DeepLIFT with a black
  baseline, LRP, occlusion by zero). The shifted model subtracts the shift from its input before anything else (a
  forward pre-hook, for the duration of the call): every layer with weights then sees what it sees in the original
  model, as under the bias change, so every explainer, whose attributions depend on the model through its outputs
  and the activations of its layers, gets what the bias change would give it (a model's ``input_mean``, which LRP
  and the "mean" replacement read, stays as it is, as under the bias change). Unlike a change of bias it is also
  exact for convolutions with zero padding, whose padded zeros are not shifted. Quantus 0.6 (``InputInvariance``)
  returns whether all attributions agree within 1e-4, comparing the given attributions with those of a model whose
  first convolution's bias is lowered by the smallest response of the convolution to the shift
  (``torch.unique(...)[0]``), a border value when it pads with zeros: that model then differs from the original near
  the borders.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import XaitrustError
from ..outputs import check_output
from ..perturb.engine import masked_scores, model_device
from ..perturb.masks import WindowMasks
from ..perturb.replacement import NOISE_SEED_OFFSET, seeded_replacement
from ..validation import (
    check_attributions,
    check_count,
    check_images,
    check_maps,
    check_target,
    outside_unit_range_allowed,
)
from ._explain import explain_maps


def completeness_gap(
    model: torch.nn.Module,
    x: torch.Tensor,
    attributions: torch.Tensor,
    target,
    baseline="zero",
    *,
    output: str = "logit",
    seed: int = 0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``|sum attributions - (f(x) - f(baseline))|`` ``(B,)`` for raw attributions ``(B, C, H, W)`` of ``x``."""
    x = check_images(x)
    attributions = check_attributions(attributions, x)
    ends = torch.stack([torch.ones(1, *x.shape[2:]), torch.zeros(1, *x.shape[2:])])  # the image, then the baseline
    scores = masked_scores(model, x, ends, target, replacement=seeded_replacement(x, baseline, seed), output=output,
                           batch_size=batch_size).double()
    total = attributions.double().flatten(1).sum(dim=1).to(scores.device)
    return (total - (scores[:, 0] - scores[:, 1])).abs().to(attributions.dtype)


def non_sensitivity(
    model: torch.nn.Module,
    x: torch.Tensor,
    maps: torch.Tensor,
    target,
    eps: float = 1e-5,
    n_samples: int = 4,
    *,
    output: str = "logit",
    seed: int = 0,
    batch_size: int | None = None,
) -> torch.Tensor:
    """``|A_0 Δ F_0|`` ``(B,)``: pixels of zero attribution that move the score, plus pixels of non-zero attribution
    that do not (``eps`` bounds both zeros: of the map relative to its largest magnitude, of the score change)."""
    x = check_images(x)
    maps = check_maps(maps, x)
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps >= 0:
        raise XaitrustError(f"eps must be a non-negative number; got {eps!r}")
    n_samples = check_count(n_samples, "n_samples")
    pixels = WindowMasks(x.shape[2:], 1, 1, device=x.device)  # mask p replaces pixel p (row-major), all channels
    whole = torch.ones(1, 1, *x.shape[2:])
    settings = {"target": target, "output": output, "batch_size": batch_size}

    def change(values: torch.Tensor) -> torch.Tensor:
        # the clean image composed with the same noise, so that every kept pixel is rounded as in the masked images
        clean = masked_scores(model, x, whole, replacement=values, **settings)
        return (masked_scores(model, x, pixels, replacement=values, **settings) - clean).abs()

    generator = torch.Generator().manual_seed(int(seed) + NOISE_SEED_OFFSET)
    noise = torch.rand((n_samples, 1, *x.shape[1:]), generator=generator).to(x)
    sensitive = torch.stack([change(values) for values in noise]).amax(dim=0) > eps
    magnitudes = maps.abs().flatten(1).to(sensitive.device)
    zero = magnitudes <= eps * magnitudes.amax(dim=1, keepdim=True)
    return (zero == sensitive).sum(dim=1).to(maps.dtype)


@contextmanager
def _shifted_input(model: torch.nn.Module, shift: float) -> Iterator[torch.nn.Module]:
    """``model`` computing on ``x + shift`` what it computes on ``x``: a forward pre-hook subtracts the shift from its
    input for the duration of the block."""
    handle = model.register_forward_pre_hook(lambda module, args: (args[0] - shift, *args[1:]))
    try:
        yield model
    finally:
        handle.remove()


def input_invariance(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    shift: float = -1.0,
    *,
    output: str = "logit",
    reduction: str | None = "abs-sum",
    batch_size: int = 256,
) -> torch.Tensor:
    """``||e(f, x) - e(f_shift, x + shift)||_1 / ||e(f, x)||_1`` ``(B,)`` for ``explainer`` ``e`` (maps reduced with
    ``reduction``, or raw attributions with ``None``); NaN (with a warning) where ``e(f, x)`` is all zero."""
    check_output(output)
    x = check_images(x).to(model_device(model))
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not -float("inf") < shift < float("inf"):
        raise XaitrustError(f"shift must be a finite number; got {shift!r}")
    settings = {"output": output, "reduction": reduction, "batch_size": batch_size}
    original = explain_maps(explainer, model, x, target, **settings).flatten(1)
    with _shifted_input(model, float(shift)) as shifted, outside_unit_range_allowed():
        moved = explain_maps(explainer, shifted, x + shift, target, **settings).flatten(1)
    scale = original.abs().sum(dim=1)
    if (scale == 0).any():
        warnings.warn(f"{int((scale == 0).sum())} explanation(s) are all zero: their input invariance is NaN",
                      UserWarning, stacklevel=2)
    return (moved - original).abs().sum(dim=1) / torch.where(scale > 0, scale, torch.nan)
