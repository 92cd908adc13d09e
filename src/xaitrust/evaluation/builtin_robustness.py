"""The robustness and randomisation metrics of ``xaitrust.metrics.robustness`` and ``xaitrust.metrics.randomisation``
in the registry. Each registration only calls those modules; the maths, its references and how it departs from
Quantus live there. Every metric here but ``prediction_consistency`` explains again (the explainer on perturbed images, another
class or randomised copies of the model), with the evaluation's explained score, reduction and seed.
"""

from __future__ import annotations

from ..metrics.randomisation import (
    efficient_mprt,
    model_parameter_randomisation,
    random_logit,
    randomisation_similarity,
    smooth_mprt,
)
from ..metrics.robustness import consistency, continuity, relative_stability, sensitivity
from .registry import register_metric

YEH = "Yeh, Hsieh, Suggala, Inouye & Ravikumar, On the (in)fidelity and sensitivity of explanations, NeurIPS 2019"
AGARWAL = "Agarwal et al., Rethinking stability for attribution-based explanations, 2022"
HEDSTROM = "Hedström et al., Sanity checks revisited, XAI in Action workshop, NeurIPS 2023"
NEIGHBOURS = "`n_neighbours` neighbours x' of x, each value moved by U(-`radius`, `radius`)"


def _sensitivity(statistic: str):
    """Max- or Avg-Sensitivity (one body for both)."""

    def value(model, x, target, explainer, *, output, seed, reduction, n_neighbours: int = 50, radius: float = 0.2,
              relative: bool = True):
        return sensitivity(explainer, model, x, target, statistic=statistic, n_neighbours=n_neighbours,
                           radius=radius, relative=relative, output=output, reduction=reduction, seed=seed)

    return value


SENSITIVITY = ("{statistic} over " + NEIGHBOURS + " of ||e(x') - e(x)||_2 / ||e(x)||_2 (without the division when "
               "`relative` is false), e the map.")
register_metric(
    _sensitivity("max"), name="max_sensitivity", higher_is_better=False,
    description=SENSITIVITY.format(statistic="Maximum"), source=YEH,
)
register_metric(
    _sensitivity("mean"), name="avg_sensitivity", higher_is_better=False,
    description=SENSITIVITY.format(statistic="Mean"),
    source=f"{YEH}; Bhatt, Weller & Moura, Evaluating and aggregating feature-based model explanations, IJCAI 2020",
)


def _continuity(model, x, target, explainer, *, output, reduction, shifts=(-3, -2, -1, 1, 2, 3), fill: float = 0.0):
    return continuity(explainer, model, x, target, shifts=shifts, fill=fill, output=output, reduction=reduction)


register_metric(
    _continuity, name="continuity", higher_is_better=False,
    description="max over the translations x' of x by `shifts` pixels to the right (negative: left; empty columns "
    "set to `fill`) of ||e(x) - e(x')||_1 / ||x - x'||_2, e the map.",
    source="Montavon, Samek & Mueller, Methods for interpreting and understanding deep neural networks, Digital "
    "Signal Processing 73, 2018",
)


def _relative_stability(against: str):
    """Relative Input or Output Stability (one body for both)."""

    def value(model, x, target, explainer, *, output, seed, reduction, n_neighbours: int = 50, radius: float = 0.2,
              p: float = 2, eps: float = 1e-6):
        return relative_stability(explainer, model, x, target, against=against, n_neighbours=n_neighbours,
                                  radius=radius, p=p, eps=eps, output=output, reduction=reduction, seed=seed)

    return value


RELATIVE = ("max over the " + NEIGHBOURS + " predicted as x's class of ||(e(x) - e(x')) / e(x)||_p / "
            "max({denominator}, `eps`), divisions element-wise (a zero entry divides by `eps`); NaN if every "
            "neighbour changes class.")
register_metric(
    _relative_stability("input"), name="relative_input_stability", higher_is_better=False,
    description=RELATIVE.format(denominator="||(x - x') / x||_p"), source=AGARWAL,
)
register_metric(
    _relative_stability("output"), name="relative_output_stability", higher_is_better=False,
    description=RELATIVE.format(denominator="||h(x) - h(x')||_p, h the logits"), source=AGARWAL,
)


def _relative_representation_stability(model, x, target, explainer, *, output, seed, reduction, layer=None,
                                        n_neighbours: int = 50, radius: float = 0.2, p: float = 2, eps: float = 1e-6):
    return relative_stability(explainer, model, x, target, against="representation", layer=layer,
                              n_neighbours=n_neighbours, radius=radius, p=p, eps=eps, output=output,
                              reduction=reduction, seed=seed)


register_metric(
    _relative_representation_stability, name="relative_representation_stability", higher_is_better=False,
    description=RELATIVE.format(denominator="||(L(x) - L(x')) / L(x)||_p, L the output of the module named `layer` "
                                "(default: the input of the last layer with weights)"),
    source=AGARWAL,
)


def _consistency(model, x, maps, *, k: int = 5):
    return consistency(model, x, maps, k=k)


register_metric(
    _consistency, name="prediction_consistency", higher_is_better=True,
    description="Share of the evaluated images (x included) whose maps have the same set of `k` most important pixels "
    "as x's map that the model assigns to x's class; 1 for a set no other image shares.",
    source="Dasgupta, Frost & Moshkovitz, Framework for evaluating faithfulness of local explanations, ICML 2022",
)


def _mprt(variant: str):
    """Cascading or independent MPRT (one body for both)."""

    def value(model, x, target, explainer, *, output, seed, reduction, layers=None, similarity="spearman"):
        return model_parameter_randomisation(model, explainer, x, target, variant=variant, layers=layers,
                                             similarity=similarity, output=output, reduction=reduction, seed=seed)

    return value


ADEBAYO = "Adebayo et al., Sanity checks for saliency maps, NeurIPS 2018"
MPRT = ("Mean over the randomisation steps of the `similarity` (spearman or ssim) between the map and the map of the "
        "model with {randomised} re-initialised (`layers`: weight layers from the output down).")
register_metric(
    _mprt("cascading"), name="mprt_cascading", higher_is_better=False,
    description=MPRT.format(randomised="its top 1, 2, ..., L layers"), source=ADEBAYO,
)
register_metric(
    _mprt("independent"), name="mprt_independent", higher_is_better=False,
    description=MPRT.format(randomised="one layer at a time"), source=ADEBAYO,
)


def _randomisation_similarity(model, x, target, maps, explainer, *, output, seed, reduction, similarity="spearman"):
    return randomisation_similarity(model, explainer, x, target, maps, similarity=similarity, output=output,
                                    reduction=reduction, seed=seed)


register_metric(
    _randomisation_similarity, name="randomisation_similarity", higher_is_better=False,
    description="`similarity` (spearman or ssim) between the map and the same explainer's map of the model with every "
    "weight layer re-initialised (full-model randomisation); near 1, the map ignores what the model learned.",
    source=f"{ADEBAYO} (full-model randomisation, the last cascading step)",
)


def _smooth_mprt(model, x, target, explainer, *, output, seed, reduction, n_samples: int = 50, noise: float = 0.1,
                 similarity="spearman"):
    return smooth_mprt(model, explainer, x, target, n_samples=n_samples, noise=noise, similarity=similarity,
                       output=output, reduction=reduction, seed=seed)


register_metric(
    _smooth_mprt, name="smooth_mprt", higher_is_better=False,
    description="`similarity` between the maps of the model and of its fully re-initialised copy, each averaged over "
    "`n_samples` copies of x + N(0, sigma^2) noise, sigma = `noise` * (max x - min x).",
    source=HEDSTROM,
)


def _efficient_mprt(model, x, target, explainer, *, output, seed, reduction, n_bins: int = 100):
    return efficient_mprt(model, explainer, x, target, n_bins=n_bins, output=output, reduction=reduction, seed=seed)


register_metric(
    _efficient_mprt, name="efficient_mprt", higher_is_better=True,
    description="(H(e_rand) - H(e)) / H(e): relative rise of the entropy of the map's histogram (`n_bins` equal bins) "
    "from the model to its fully re-initialised copy; NaN for a constant map.",
    source=HEDSTROM,
)


def _random_logit(model, x, target, explainer, *, output, seed, reduction, similarity="ssim"):
    return random_logit(model, explainer, x, target, similarity=similarity, output=output, reduction=reduction,
                        seed=seed)


register_metric(
    _random_logit, name="random_logit", higher_is_better=False,
    description="`similarity` (ssim or spearman) between the map of the target class and the map of a class drawn "
    "uniformly among the others for each image.",
    source="Sixt, Granz & Landgraf, When explanations lie, ICML 2020",
)
