"""Robustness of explanations: nearby inputs of the same class should get nearby explanations; and, in ``consistency``
(Dasgupta et al. 2022), inputs explained alike should be predicted alike.

Each metric but ``consistency`` explains an image ``x`` and a set of perturbed copies ``x'`` of it in one batched pass
(all copies of all images together, ``explain_maps``) and compares ``e(x)`` with each ``e(x')``. ``e`` is the map
after the evaluation's reduction (``reduction=None``: the raw attributions), flattened. Both ``e(x)`` and ``e(x')``
come from the explainer in the same pass, so they are computed alike.

Random neighbours (``uniform_neighbours``): ``x' = x + delta`` with every pixel and channel of ``delta`` uniform in
``[-radius, radius]`` (the L-infinity ball, as ``sample_eps_Inf`` of Yeh et al.'s code), not clipped to [0, 1]. Each
image draws from its own generator seeded by ``seed`` and its bytes (``xaitrust.seeding.image_seed``), so its
neighbours, and its value, do not depend on the batch it comes in.

**Max- and Avg-Sensitivity** (Yeh, Hsieh, Suggala, Inouye & Ravikumar 2019, "On the (in)fidelity and sensitivity of
explanations", NeurIPS; the average of Bhatt, Weller & Moura 2020, "Evaluating and aggregating feature-based model
explanations", IJCAI)::

    SENS_MAX(x) = max_{||x' - x||_inf <= r} ||e(x') - e(x)||_2 / ||e(x)||_2
    SENS_AVG(x) = E_{x' ~ U(B_inf(x, r))}  ||e(x') - e(x)||_2 / ||e(x)||_2

estimated over ``n_neighbours`` random neighbours. The paper defines sensitivity as the norm of the difference; its
experiments (the authors' code, ``get_exp_sens``) divide it by ``||e(x)||_2`` so that explanations of different scales
compare, which ``relative=True`` (the default) does; ``relative=False`` gives the difference itself. ``r = 0.2`` and
50 neighbours are the paper's MNIST settings. Quantus 0.6 (``MaxSensitivity``, ``AvgSensitivity``) computes the
relative form on the same neighbourhood (200 samples by default); the values agree on shared neighbours.

**Continuity** (Montavon, Samek & Mueller 2018, "Methods for interpreting and understanding deep neural networks",
Digital Signal Processing 73, "explanation continuity")::

    C(x) = max_{x' != x} ||e(x) - e(x')||_1 / ||x - x'||_2

over the horizontal translations ``x'`` of ``x`` by ``shifts`` pixels (positive: to the right; the columns left empty
take the value ``fill``), the perturbation with which the paper illustrates continuity (a digit slid sideways).
Translations equal to ``x`` (nothing to divide by) are left out; NaN if all are. Quantus 0.6 (``Continuity``) takes the
same maximum over ``nr_steps`` translations spanning the whole width, pads with each image's minimum ("black"), and by
default takes the absolute value of explanations divided by the largest ``|value|`` of the whole batch (so an image's
value depends on its batch); on the same shifts, padding and maps the values agree.

**Relative Input / Output / Representation Stability** (Agarwal, Johnson, Pawelczyk, Krishna, Saxena, Zitnik &
Lakkaraju 2022, "Rethinking stability for attribution-based explanations")::

    RIS(x) = max_{x'} ||(e(x) - e(x')) / e(x)||_p / max(||(x - x') / x||_p, eps)
    ROS(x) = max_{x'} ||(e(x) - e(x')) / e(x)||_p / max(||h(x) - h(x')||_p, eps)
    RRS(x) = max_{x'} ||(e(x) - e(x')) / e(x)||_p / max(||(L(x) - L(x')) / L(x)||_p, eps)

over the neighbours ``x'`` the model assigns to the same class as ``x`` (NaN when none is); divisions are element-wise
(percent changes), ``h`` are the logits and ``L`` a layer's activations (``layer_activations``: by default the input of
the last layer with weights, i.e. the penultimate representation). The paper leaves the division by a zero entry
undefined: a zero entry of ``e(x)``, ``x`` or ``L(x)`` divides by ``eps`` instead (as Quantus does), so a map or an
image with exact zeros (a black pixel, a dead ReLU) weighs heavily. The neighbourhood ``N_x`` is left to the user by
the paper; here it is the random neighbourhood above. Quantus 0.6 (``RelativeInputStability`` and its two siblings)
draws its neighbours from ``U(0.02, 0.2)`` added to every pixel (one sign only), returns NaN for an image as soon as
one neighbour changes class (its maximum runs over NaN) instead of leaving that neighbour out, adds ``eps`` to a
denominator only when it is exactly zero, and by default concatenates the outputs of every layer as the
representation; on shared neighbours of unchanged class, the same representation and the same maps the values agree.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from ..chunks import LOGITS_BATCH_SIZE, batched_logits
from ..errors import XaitrustError
from ..outputs import check_output
from ..perturb.engine import model_device
from ..seeding import image_seed
from ..training.degrade import parameterized_layers
from ..validation import check_count, check_images, check_maps, check_target, outside_unit_range_allowed
from ._explain import explain_maps

STATISTICS = ("max", "mean")
STABILITIES = ("input", "output", "representation")


def per_image_draws(x: torch.Tensor, seed: int, draw: Callable[[torch.Generator], torch.Tensor]) -> torch.Tensor:
    """``draw(generator)`` for each image of ``x``, stacked, on ``x``'s device: the generator is seeded by ``seed``
    and the image's bytes, so an image's draws do not depend on the other images of its batch."""
    generator = torch.Generator()
    draws = []
    for image in x:  # a cheap draw per image; the explainer calls on what is drawn dominate
        generator.manual_seed(image_seed(seed, image))
        draws.append(draw(generator))
    return torch.stack(draws).to(x.device)


def uniform_neighbours(x: torch.Tensor, n: int, radius: float, seed: int) -> torch.Tensor:
    """``n`` neighbours ``(B, n, C, H, W)`` of each image, every value moved by ``U(-radius, radius)``."""
    noise = per_image_draws(x, seed, lambda generator: torch.rand((n, *x.shape[1:]), generator=generator,
                                                                  dtype=x.dtype))
    return x.unsqueeze(1) + radius * (2 * noise - 1)


def _check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < math.inf:
        raise XaitrustError(f"{name} must be a positive finite number; got {value!r}")
    return float(value)


def check_explained_inputs(model, x, target, output: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` checked and on the model's device, ``target`` as one class per image, ``output`` a known score."""
    check_output(output)
    x = check_images(x).to(model_device(model))
    return x, check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)


def explain_with_neighbours(explainer, model, x, target, neighbours, *, output, reduction, batch_size):
    """Explanations of ``x`` ``(B, D)`` and of its ``neighbours`` ``(B, n, C, H, W)`` ``(B, n, D)``, flattened, from one
    batched pass over all of them (neighbours may leave [0, 1])."""
    n = neighbours.shape[1]
    inputs = torch.cat([x, neighbours.flatten(0, 1)])
    targets = torch.cat([target, target.repeat_interleave(n)])
    with outside_unit_range_allowed():
        flat = explain_maps(explainer, model, inputs, targets, output=output, reduction=reduction,
                            batch_size=batch_size).flatten(1)
    return flat[: len(x)], flat[len(x) :].reshape(len(x), n, -1)


def sensitivity(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    *,
    statistic: str = "max",
    n_neighbours: int = 50,
    radius: float = 0.2,
    relative: bool = True,
    output: str = "logit",
    reduction: str | None = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Max- (``statistic="max"``) or Avg-Sensitivity (``"mean"``) of ``explainer`` at each image -> ``(B,)``.

    Args:
        explainer: called as ``explainer(model, x, target, output)``, returning attributions ``(B, C, H, W)``.
        relative: divide by ``||e(x)||_2`` (NaN for an all-zero explanation).
        reduction: a name from ``xaitrust.explainers.reduce``; ``None`` compares raw attributions.
        batch_size: images per explainer call.
    """
    if statistic not in STATISTICS:
        raise XaitrustError(f"statistic must be one of {', '.join(STATISTICS)}; got {statistic!r}")
    x, target = check_explained_inputs(model, x, target, output)
    neighbours = uniform_neighbours(x, check_count(n_neighbours, "n_neighbours"), _check_positive(radius, "radius"),
                                    seed)
    base, moved = explain_with_neighbours(explainer, model, x, target, neighbours, output=output,
                                          reduction=reduction, batch_size=batch_size)
    change = (moved - base.unsqueeze(1)).norm(dim=2)
    if relative:
        scale = base.norm(dim=1, keepdim=True)
        change = change / scale.where(scale > 0, torch.nan)
    return change.amax(dim=1) if statistic == "max" else change.mean(dim=1)


def translations(x: torch.Tensor, shifts, fill: float = 0.0) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` slid horizontally by each of ``shifts`` pixels (positive: to the right), the columns
    left empty set to ``fill``: ``(B, S, C, H, W)``."""
    width = x.shape[-1]
    shifts = torch.as_tensor(list(shifts), device=x.device).reshape(-1, 1)
    source = torch.arange(width, device=x.device).reshape(1, -1) - shifts  # (S, W): the column each one reads
    moved = x[..., source.clamp(0, width - 1)]  # (B, C, H, S, W)
    moved = torch.where((source >= 0) & (source < width), moved, fill)
    return moved.permute(0, 3, 1, 2, 4)


def _check_shifts(shifts, width: int) -> tuple[int, ...]:
    try:
        values = tuple(shifts)
    except TypeError:
        values = None
    if (not values or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in values)
            or any(s == 0 or abs(s) > width for s in values)):
        raise XaitrustError(
            f"shifts must be a non-empty sequence of non-zero whole numbers of pixels within the image width "
            f"({width}); got {shifts!r}"
        )
    return tuple(int(s) for s in values)


def continuity(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    *,
    shifts=(-3, -2, -1, 1, 2, 3),
    fill: float = 0.0,
    output: str = "logit",
    reduction: str | None = "abs-sum",
    batch_size: int = 256,
) -> torch.Tensor:
    """Continuity ``max_s ||e(x) - e(x_s)||_1 / ||x - x_s||_2`` over horizontal translations ``x_s`` -> ``(B,)``
    (module docstring); ``fill`` in [0, 1] is the value of the columns a translation leaves empty."""
    x, target = check_explained_inputs(model, x, target, output)
    shifts = _check_shifts(shifts, x.shape[-1])
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real) or not 0 <= fill <= 1:
        raise XaitrustError(f"fill must be a number in [0, 1] (an image value); got {fill!r}")
    moved_images = translations(x, shifts, fill)
    base, moved = explain_with_neighbours(explainer, model, x, target, moved_images, output=output,
                                          reduction=reduction, batch_size=batch_size)
    change = (moved - base.unsqueeze(1)).abs().sum(dim=2)
    step = (moved_images - x.unsqueeze(1)).flatten(2).norm(dim=2)
    ratios = torch.where(step > 0, change / step.where(step > 0, 1), -torch.inf).amax(dim=1)
    return ratios.where(ratios > -torch.inf, torch.nan)


def _representation_layer(model: torch.nn.Module, layer: str | None) -> tuple[torch.nn.Module, bool]:
    """The module whose activations are the representation, and whether they are its input (the default: the input
    of the last layer with weights) rather than its output (a layer named by the user)."""
    if layer is None:
        layers = parameterized_layers(model)
        if not layers:
            raise XaitrustError("the model has no layer with weights whose input could be the representation; name "
                                "one with layer=...")
        return layers[0][1], True
    modules = dict(model.named_modules())
    if layer not in modules:
        raise XaitrustError(f"no layer named {layer!r} in the model; its layers: {', '.join(n for n in modules if n)}")
    return modules[layer], False


def layer_activations(model: torch.nn.Module, x: torch.Tensor, layer: str | None = None,
                      batch_size: int = LOGITS_BATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """The logits ``(N, K)`` of ``x`` and the activations ``(N, D)`` (flattened) of ``layer`` (a module name; the
    output of that module) or, by default, the input of the model's last layer with weights (the penultimate
    representation), from the same forward passes (``batched_logits``)."""
    module, of_input = _representation_layer(model, layer)
    captured = []

    def keep(module, inputs, output):
        captured.append((inputs[0] if of_input else output).flatten(1))

    handle = module.register_forward_hook(keep)
    try:
        logits = batched_logits(model, x, batch_size, device=model_device(model))
    finally:
        handle.remove()
    activations = torch.cat(captured) if captured else torch.empty(0)
    if activations.shape[0] != len(x):
        raise XaitrustError(f"layer {layer!r} ran {len(captured)} times for {len(x)} images: choose a layer that the "
                            "model calls once per forward pass")
    return logits, activations


def _percent_change(reference: torch.Tensor, moved: torch.Tensor, eps: float) -> torch.Tensor:
    """``(reference - moved) / reference`` element-wise, a zero entry of ``reference`` dividing by ``eps``."""
    return (reference - moved) / torch.where(reference == 0, eps, reference)


def relative_stability(
    explainer,
    model: torch.nn.Module,
    x: torch.Tensor,
    target,
    *,
    against: str = "input",
    layer: str | None = None,
    n_neighbours: int = 50,
    radius: float = 0.2,
    p: float = 2,
    eps: float = 1e-6,
    output: str = "logit",
    reduction: str | None = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Relative Input (``against="input"``), Output (``"output"``) or Representation (``"representation"``, of
    ``layer``, ``layer_activations``) Stability of ``explainer`` at each image -> ``(B,)`` (module docstring)."""
    if against not in STABILITIES:
        raise XaitrustError(f"against must be one of {', '.join(STABILITIES)}; got {against!r}")
    if layer is not None and against != "representation":
        raise XaitrustError(f"layer names the representation of against='representation'; remove it for {against!r}")
    p, eps = _check_positive(p, "p"), _check_positive(eps, "eps")
    x, target = check_explained_inputs(model, x, target, output)
    n = check_count(n_neighbours, "n_neighbours")
    neighbours = uniform_neighbours(x, n, _check_positive(radius, "radius"), seed)
    base, moved = explain_with_neighbours(explainer, model, x, target, neighbours, output=output,
                                          reduction=reduction, batch_size=batch_size)
    explanation_change = _percent_change(base.unsqueeze(1), moved, eps).norm(p=p, dim=2)
    every = torch.cat([x, neighbours.flatten(0, 1)])
    if against == "representation":
        logits, states = layer_activations(model, every, layer)
    else:
        logits = batched_logits(model, every, device=model_device(model))
        states = every.flatten(1) if against == "input" else logits
    logits, states = logits.to(x.device), states.to(x.device)
    state, moved_states = states[: len(x)].unsqueeze(1), states[len(x) :].reshape(len(x), n, -1)
    difference = moved_states - state if against == "output" else _percent_change(state, moved_states, eps)
    ratios = explanation_change / difference.norm(p=p, dim=2).clamp(min=eps)
    predicted = logits.argmax(dim=1)
    same_class = predicted[len(x) :].reshape(len(x), n) == predicted[: len(x)].unsqueeze(1)
    largest = torch.where(same_class, ratios, -torch.inf).amax(dim=1)
    return largest.where(same_class.any(dim=1), torch.nan)


def top_pixels(maps: torch.Tensor, k: int) -> torch.Tensor:
    """The positions of the ``k`` highest values of each map ``(B, H, W)``, as a sorted ``(B, k)`` index set (equal
    values ranked by position): the discrete explanation ``consistency`` compares."""
    flat = maps.flatten(1)
    if k > flat.shape[1]:
        raise XaitrustError(f"k must be at most the number of pixels ({flat.shape[1]}); got {k}")
    return flat.argsort(dim=1, descending=True, stable=True)[:, :k].sort(dim=1).values


def consistency(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, *, k: int = 5,
                batch_size: int = LOGITS_BATCH_SIZE) -> torch.Tensor:
    """Consistency of each image's explanation among the evaluated images -> ``(B,)``.

    Dasgupta, Frost & Moshkovitz 2022 ("Framework for evaluating faithfulness of local explanations", ICML):
    ``m_c(x) = Pr_{x' ~ mu}[f(x') = f(x) | e(x') = e(x)]``, the chance that an input explained the same way gets the
    same prediction. ``mu`` is the empirical distribution of the evaluated images (``x`` among them), ``f`` the
    predicted class and ``e`` a discrete explanation, here the set of the ``k`` most important pixels of the map
    (``top_pixels``): the paper's measure is for discrete explanations, and real-valued maps are almost never equal.
    An explanation no other image shares is consistent (value 1), as the paper's definition makes any explanation that
    identifies its input (the reason it pairs consistency with sufficiency). An image's value depends on the other
    images evaluated with it, by definition. Quantus 0.6 (``Consistency``) leaves ``x`` out of ``mu`` (0 where no other
    image shares the explanation), computes within each batch of ``batch_size`` images, and discretises by the signs
    of the first five values of the flattened absolute map (all positive or zero: it mostly compares which of those five
    pixels are zero); with the same discretisation and one batch, Quantus's value is ``(n m_c - 1) / (n - 1)`` for
    ``n`` images sharing the explanation.
    """
    x = check_images(x).to(model_device(model))
    explanations = top_pixels(check_maps(maps, x).to(x.device), check_count(k, "k"))
    predicted = batched_logits(model, x, batch_size, device=x.device).argmax(dim=1)
    same_explanation = (explanations.unsqueeze(1) == explanations.unsqueeze(0)).all(dim=2)
    agreeing = same_explanation & (predicted.unsqueeze(1) == predicted.unsqueeze(0))
    return agreeing.sum(dim=1) / same_explanation.sum(dim=1)
