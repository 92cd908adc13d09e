"""Sanity checks for saliency maps (Adebayo et al. 2018, summarised in Loreth's thesis, sec. 4.6).

* Model parameter randomisation, cascading: the layers of a trained model are re-initialised one after the other
  from the output down to the input, cumulatively ("complete randomization of network weights up to that block
  inclusive"), and the maps of each step are compared with the maps of the trained model. A method whose maps stay
  similar does not depend on what the model learned and fails the check. Re-initialisation uses each layer's own
  ``reset_parameters`` (PyTorch's default initialisation, i.e. "a randomly initialized untrained network of the same
  architecture"), seeded, on a copy of the model (``xaitrust.training.degrade.reinitialize_layers``). MeGe's
  Gaussian weight noise N(0, 0.5) is a different degradation (``xaitrust.training.randomize_weights``).
* Data randomisation: maps of a model trained on shuffled labels against those of the normally trained model; the
  training is the protocol's job, this compares the maps.

Similarities, per sample (1 = identical): ``"spearman"``, Spearman's rho between the maps (average ranks), and
``"ssim"``, SSIM between min-max-normalised maps (``map_ssim``). Adebayo et al. report both on absolute-valued maps,
which is what the default ``"abs-sum"`` reduction gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..outputs import check_output
from ..perturb.engine import model_device
from ..training.degrade import parameterized_layers, reinitialize_layers
from ..validation import check_images, check_target
from ._explain import explain_maps
from ._validation import warn_constant_maps
from .correlation import spearman
from .distances import check_map_pair
from .stability import map_ssim


def _spearman_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = check_map_pair(a, b)
    warn_constant_maps(torch.cat([a, b]), "their Spearman similarity is NaN")
    return spearman(a.flatten(1), b.flatten(1))


SIMILARITIES = {"spearman": _spearman_similarity, "ssim": map_ssim}


def _check_similarities(similarity) -> tuple[str, ...]:
    names = (similarity,) if isinstance(similarity, str) else tuple(similarity)
    unknown = [name for name in names if name not in SIMILARITIES]
    if unknown or not names:
        raise XaitrustError(f"similarity must name some of {', '.join(SIMILARITIES)}; got {similarity!r}")
    return names


def map_similarities(maps_a: torch.Tensor, maps_b: torch.Tensor, similarity=("spearman", "ssim")) -> dict[str, torch.Tensor]:
    """``{name: (N,)}``: each named similarity between paired maps ``(N, H, W)``."""
    return {name: SIMILARITIES[name](maps_a, maps_b) for name in _check_similarities(similarity)}


@dataclass(frozen=True)
class CascadingRandomization:
    """``steps[s]`` names the layer re-initialised last at step ``s`` (``"original"`` for step 0) and
    ``similarity[name]`` is ``(len(steps), B)``: similarity of each step's maps to the trained model's maps."""

    steps: list[str]
    similarity: dict[str, torch.Tensor]


def cascading_randomization(
    model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target,
    *,
    layers: list[str] | None = None,
    similarity=("spearman", "ssim"),
    output: str = "logit",
    reduction: str = "abs-sum",
    seed: int = 0,
    batch_size: int = 256,
) -> CascadingRandomization:
    """Cascading model-parameter randomisation test; ``model`` is left untouched.

    Args:
        layers: names of the layers to re-initialise, in order (default: every layer with a weight, from the output
            down, ``xaitrust.training.degrade.parameterized_layers``). Step ``s`` re-initialises ``layers[:s]``.
        explainer: called as ``explainer(model, x, target, output)`` -> attributions ``(B, C, H, W)``.
        reduction: how attributions become maps (``xaitrust.explainers.reduce``).
    """
    check_output(output)
    names = _check_similarities(similarity)
    x = check_images(x).to(model_device(model))
    target = check_target(target, len(x), getattr(model, "num_classes", None), device=x.device)
    layers = [name for name, _ in parameterized_layers(model)] if layers is None else list(layers)
    if not layers:
        raise XaitrustError("the model has no layer with a weight to re-initialise; pass layers=[...]")

    def maps_of(network):
        return explain_maps(explainer, network, x, target, output=output, reduction=reduction, batch_size=batch_size)

    original = maps_of(model)
    rows = {name: [SIMILARITIES[name](original, original)] for name in names}
    for step in range(1, len(layers) + 1):
        maps = maps_of(reinitialize_layers(model, layers[:step], seed=seed))
        for name in names:
            rows[name].append(SIMILARITIES[name](original, maps))
    return CascadingRandomization(["original", *layers], {name: torch.stack(values) for name, values in rows.items()})


def data_randomization_similarity(
    maps_normal: torch.Tensor, maps_shuffled: torch.Tensor, similarity=("spearman", "ssim")
) -> dict[str, torch.Tensor]:
    """Data randomisation test: ``{name: (N,)}`` similarity of the maps of a model trained on shuffled labels to the
    maps of the normally trained model, for the same inputs. High similarity means the method fails the check."""
    return map_similarities(maps_normal, maps_shuffled, similarity)
