"""Randomisation tests as per-image metrics: an explanation of what a model learned must change when the model does.

Randomised models are copies of the model whose weight layers (``xaitrust.training.degrade.parameterized_layers``)
get fresh parameters from their own initialisation (``reset_parameters``, seeded: ``reinitialize_layers``), so every
image sees the same randomised model, whatever its batch. Similarities between maps (``xaitrust.metrics.sanity``):
``"spearman"``, Spearman's rank correlation, and ``"ssim"``, SSIM of min-max normalised maps; the maps are those of the
evaluation's reduction (``"abs-sum"``: the absolute maps Adebayo et al. compare).

**Model parameter randomisation test, MPRT** (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, "Sanity checks
for saliency maps", NeurIPS). Cascading: the layers are re-initialised from the output down,
cumulatively (step ``l`` randomises the top ``l`` layers); independent: one layer at a time, the others as trained.
The paper shows the similarity at every step; the value per image is their mean over the ``L`` steps::

    MPRT(x) = 1/L sum_l s(e_f(x), e_{f_l}(x))

``f`` the model, ``f_l`` its ``l``-th randomised copy, ``s`` the similarity. Lower is better: the maps depend on the
learned parameters. Quantus 0.6 (``MPRT``) re-seeds before each layer (every layer draws the same random numbers)
and, asked for the average (``return_average_correlation``), also averages in the similarity of the given maps to
the recomputed ones (its entry ``"original"``; the code skips a key named ``"orig"``); its per-layer similarities
equal these on the same randomised models.

**Full-model randomisation** (Adebayo et al. 2018, the last step of the cascading test, every weight layer
re-initialised): the similarity between the maps already computed for the model and the maps of the same explainer
on its fully randomised copy, so that the test costs one explanation::

    R(x) = s(e_f(x), e_{f_rand}(x))

Lower is better: a map that stays similar when the model has learned nothing shows the input or the architecture
rather than what the model learned (the random explainer, seeded by the image, scores 1). On a model with one weight
layer it equals the cascading MPRT.

**Smooth MPRT** (Hedström, Weber, Krakowczyk, Bareeva, Motzkus, Samek, Lapuschkin & Höhne 2023, "Sanity checks
revisited: an exploration to repair the model parameter randomisation test", XAI in Action workshop, NeurIPS):
noise is averaged out of the explanations before they are compared, between the model and its fully
randomised copy (every weight layer re-initialised)::

    sMPRT(x) = s(ê_f(x), ê_{f_rand}(x)),   ê(x) = 1/N sum_i e(x + delta_i),   delta_i ~ N(0, sigma^2),
    sigma = noise * (max x - min x)

averaging the raw attributions, then reducing. Lower is better. Quantus 0.6 (``SmoothMPRT``) makes its last sample
the clean input (N - 1 noisy ones), explains with ``quantus.explain`` whatever ``explain_func`` is given, and compares
with the un-smoothed maps when maps are passed in; with ``noise=0`` (no smoothing) the values agree.

**Efficient MPRT** (same paper): the relative rise in explanation complexity from the model to its fully randomised
copy::

    eMPRT(x) = (H(e_{f_rand}(x)) - H(e_f(x))) / H(e_f(x))

``H`` the discrete entropy (natural logarithm) of the histogram of the map's values in ``n_bins`` equal bins between
its minimum and maximum. Higher is better: the explanation of a random model should be disordered. NaN where the
trained model's map is constant (zero entropy). Quantus 0.6 (``EfficientMPRT``) agrees (100 bins by default in
both).

**Random logit** (Sixt, Granz & Landgraf 2020, "When explanations lie: why many modified BP attributions fail",
ICML): the similarity (SSIM, as the paper) between the map of the explained class and the map of another
class, drawn uniformly among the others for each image (from a generator seeded by ``seed`` and the image's bytes).
Lower is better: the explanation depends on the class. Quantus 0.6 (``RandomLogit``) computes SSIM over the
flattened maps (a one-dimensional signal, the data range of the pair) rather than over the images, and draws the
other classes from NumPy's global generator re-seeded for each batch (so an image's class depends on its position);
with the same image similarity and class the values agree.
"""

from __future__ import annotations

import numbers

import torch

from ..chunks import batched_logits
from ..errors import XaitrustError
from ..explainers.reduce import reduce_attributions
from ..perturb.engine import model_device
from ..training.degrade import parameterized_layers, reinitialize_layers
from ..validation import check_count, outside_unit_range_allowed
from ._explain import explain_maps
from .robustness import check_explained_inputs, per_image_draws
from .sanity import SIMILARITIES

VARIANTS = ("cascading", "independent")


def _similarity(name: str):
    if name not in SIMILARITIES:
        raise XaitrustError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {name!r}")
    return SIMILARITIES[name]


def _weight_layers(model: torch.nn.Module, layers=None) -> list[str]:
    if isinstance(layers, str):
        raise XaitrustError(f"layers must be a list of layer names; got the string {layers!r} (write [{layers!r}])")
    names = [name for name, _ in parameterized_layers(model)] if layers is None else list(layers)
    if not names:
        raise XaitrustError("the model has no layer with weights to randomise; name some with layers=[...]")
    return names


def model_parameter_randomisation(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    *,
    variant: str = "cascading",
    layers=None,
    similarity: str = "spearman",
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """MPRT: the mean similarity ``(B,)`` between the maps of ``model`` and of its randomised copies (module docstring).

    Args:
        variant: ``"cascading"`` (top ``l`` layers randomised at step ``l``) or ``"independent"`` (layer ``l`` alone).
        layers: layer names, from the output down (default: every layer with weights, ``parameterized_layers``).
        explainer: called as ``explainer(model, x, target, output)`` -> attributions ``(B, C, H, W)``.
        batch_size: images per explainer call.
    """
    if variant not in VARIANTS:
        raise XaitrustError(f"variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
    compare = _similarity(similarity)
    x, target = check_explained_inputs(model, x, target, output)
    names = _weight_layers(model, layers)
    steps = [names[: step + 1] for step in range(len(names))] if variant == "cascading" else [[name] for name in names]

    def maps_of(network):
        return explain_maps(explainer, network, x, target, output=output, reduction=reduction, batch_size=batch_size)

    original = maps_of(model)
    return torch.stack([compare(original, maps_of(reinitialize_layers(model, step, seed=seed)))
                        for step in steps]).mean(dim=0)


def fully_randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A copy of ``model`` with every layer with weights re-initialised (``reinitialize_layers``)."""
    return reinitialize_layers(model, _weight_layers(model), seed=seed)


def randomisation_similarity(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    maps: torch.Tensor,
    *,
    similarity: str = "spearman",
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Full-model randomisation: similarity ``(B,)`` between ``maps`` ``(B, H, W)`` (``explainer``'s maps of ``x`` on
    ``model``, after ``reduction``) and the maps of ``explainer`` on ``fully_randomised(model, seed)`` (module
    docstring)."""
    compare = _similarity(similarity)
    x, target = check_explained_inputs(model, x, target, output)
    randomised = explain_maps(explainer, fully_randomised(model, seed), x, target, output=output, reduction=reduction,
                              batch_size=batch_size)
    return compare(torch.as_tensor(maps).to(randomised.device), randomised)


def smooth_mprt(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    *,
    n_samples: int = 50,
    noise: float = 0.1,
    similarity: str = "spearman",
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """sMPRT: similarity ``(B,)`` of the smoothed maps of ``model`` and of its fully randomised copy (module
    docstring); the ``n_samples`` noisy copies of an image are drawn once, from its own generator, for both."""
    compare = _similarity(similarity)
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not 0 <= noise < float("inf"):
        raise XaitrustError(f"noise must be a non-negative number (a share of each image's value range); got {noise!r}")
    x, target = check_explained_inputs(model, x, target, output)
    n = check_count(n_samples, "n_samples")
    flat = x.flatten(1)
    sigma = noise * (flat.amax(dim=1) - flat.amin(dim=1)).reshape(-1, 1, 1, 1, 1)
    gaussian = per_image_draws(x, seed, lambda generator: torch.randn((n, *x.shape[1:]), generator=generator,
                                                                      dtype=x.dtype))
    noisy, targets = (x.unsqueeze(1) + sigma * gaussian).flatten(0, 1), target.repeat_interleave(n)

    def smoothed_maps(network):
        with outside_unit_range_allowed():  # noisy copies leave [0, 1]
            raw = explain_maps(explainer, network, noisy, targets, output=output, reduction=None,
                               batch_size=batch_size)
        return reduce_attributions(raw.reshape(len(x), n, *raw.shape[1:]).mean(dim=1), reduction, inputs=x)

    return compare(smoothed_maps(model), smoothed_maps(fully_randomised(model, seed)))


def discrete_entropy(maps: torch.Tensor, n_bins: int = 100) -> torch.Tensor:
    """Entropy ``(B,)`` (natural logarithm) of the histogram of each map's values in ``n_bins`` equal bins from its
    minimum to its maximum (the last bin closed; a constant map falls in one bin: entropy 0)."""
    flat = maps.flatten(1).double()
    low, high = flat.amin(dim=1, keepdim=True), flat.amax(dim=1, keepdim=True)
    spread = high - low
    bins = ((flat - low) / spread.where(spread > 0, 1) * n_bins).floor().long().clamp(max=n_bins - 1)
    counts = torch.zeros(len(flat), n_bins, dtype=torch.float64, device=flat.device)
    counts.scatter_add_(1, bins, torch.ones_like(flat))
    share = counts / flat.shape[1]
    return -torch.special.xlogy(share, share).sum(dim=1)


def efficient_mprt(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    *,
    n_bins: int = 100,
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """eMPRT: relative rise ``(B,)`` of the maps' discrete entropy from ``model`` to its fully randomised copy
    (module docstring); NaN where the model's map is constant."""
    n_bins = check_count(n_bins, "n_bins")
    x, target = check_explained_inputs(model, x, target, output)

    def entropy_of(network):
        maps = explain_maps(explainer, network, x, target, output=output, reduction=reduction, batch_size=batch_size)
        return discrete_entropy(maps, n_bins)

    trained, randomised = entropy_of(model), entropy_of(fully_randomised(model, seed))
    return (randomised - trained) / trained.where(trained > 0, torch.nan)


def random_logit(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    *,
    similarity: str = "ssim",
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Random logit test: similarity ``(B,)`` between the map of ``target`` and the map of another class drawn
    uniformly for each image (module docstring)."""
    compare = _similarity(similarity)
    x, target = check_explained_inputs(model, x, target, output)
    classes = batched_logits(model, x[:1], device=model_device(model)).shape[1]
    if classes < 2:
        raise XaitrustError(f"the random logit test needs a model with at least 2 classes; this one has {classes}")
    drawn = per_image_draws(x, seed, lambda generator: torch.randint(classes - 1, (), generator=generator))
    other = drawn + (drawn >= target).long()  # uniform over the classes other than the target
    maps = explain_maps(explainer, model, torch.cat([x, x]), torch.cat([target, other]), output=output,
                        reduction=reduction, batch_size=batch_size)
    return compare(maps[: len(x)], maps[len(x) :])
