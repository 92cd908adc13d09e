"""The localisation, complexity and axiomatic metrics the peer benchmarks (Quantus) offer, in the registry.

Each registration only calls ``xaitrust.metrics`` (``localisation_peers``, ``complexity``, ``axiomatic``); the maths,
its references and how it compares with Quantus 0.6 live there. The object localisation score (Kohlbrenner et al.
2020, Quantus's Attribution Localisation) is ``localization`` of ``builtin``; Focus is that score on mosaics.
"""

from __future__ import annotations

from ..metrics.axiomatic import completeness_gap, input_invariance, non_sensitivity
from ..metrics.complexity import complexity, effective_complexity, sparseness
from ..metrics.localisation_peers import (
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    roc_auc,
    top_k_intersection,
)
from ..metrics.localization import localization
from .registry import register_metric

ARRAS = "Arras, Osman & Samek, CLEVR-XAI, Information Fusion 2022"
NGUYEN = "Nguyen & Rodríguez Martínez, On quantitative aspects of model interpretability, 2020"
RANKED = "pixels ranked by map value, ties as `ties`"

register_metric(
    top_k_intersection, name="top_k_intersection", higher_is_better=True,
    description=f"|top-k pixels ∩ mask| / k: the share of the map's k top pixels ({RANKED}) inside the ground-truth "
    "mask; `k` is a number of pixels or a fraction of the image (default 2%).",
    source="Theiner, Müller-Budack & Ewerth, Interpretable semantic photo geolocation, WACV 2022",
)
register_metric(
    relevance_rank_accuracy, name="relevance_rank_accuracy", higher_is_better=True,
    description=f"|top-K pixels ∩ mask| / |mask| with K = |mask| ({RANKED}): the share of the mask among the map's "
    "K top pixels.",
    source=ARRAS,
)
register_metric(
    relevance_mass_accuracy, name="relevance_mass_accuracy", higher_is_better=True,
    description="sum_{p in mask} m_p / sum_p m_p: the share of the map's mass inside the ground-truth mask (NaN where "
    "the map's total is not positive).",
    source=ARRAS,
)
register_metric(
    roc_auc, name="roc_auc", higher_is_better=True,
    description="Area under the ROC curve of the map scoring the mask's pixels: the probability that a mask pixel "
    "outscores a background pixel, ties counting 1/2 (0.5: no better than chance).",
    source="Fawcett, An introduction to ROC analysis, Pattern Recognition Letters 2006",
)
register_metric(
    localization, name="focus", higher_is_better=True,
    description="On 2x2 mosaics with two tiles of the target class (xaitrust.metrics.localisation_peers.make_mosaics, "
    "whose masks mark those tiles): sum_{p in target tiles} max(m_p, 0) / sum_p max(m_p, 0), the share of positive "
    "relevance on the target's tiles (0.5: no better than chance).",
    source="Arias-Duart et al., Focus! Rating XAI methods and finding biases, FUZZ-IEEE 2022",
)
register_metric(
    sparseness, name="sparseness", higher_is_better=True,
    description="Gini index of the map's magnitudes, sum_i (2i - n - 1) v_(i) / (n sum v) with v = |m| sorted "
    "increasingly: 0 for a uniform map, (n - 1) / n for a single pixel.",
    source="Chalasani et al., Concise explanations of neural networks using adversarial training, ICML 2020",
)
register_metric(
    complexity, name="complexity", higher_is_better=False,
    description="Entropy -sum_p P_p ln P_p of the fractional contributions P_p = |m_p| / sum |m|: ln(n) for a "
    "uniform map, 0 for a single pixel.",
    source="Bhatt, Weller & Moura, Evaluating and aggregating feature-based model explanations, IJCAI 2020",
)
register_metric(
    effective_complexity, name="effective_complexity", higher_is_better=False,
    description=f"The fewest top pixels k ({RANKED}; k on a grid of `steps`) such that, with every other pixel "
    "uniform noise, the target's score stays within `tolerance` of its clean value on average over `n_samples` "
    "noise draws.",
    source=NGUYEN,
)
register_metric(
    completeness_gap, name="completeness_axiom", higher_is_better=False,
    description="|sum_i a_i - (f(x) - f(x'))|: how far the raw attributions are from adding up to the explained "
    "score's difference between the image and the `baseline` x' (0: complete). Not `completeness`, which is Gupta & "
    "Arora's insertion game.",
    source="Sundararajan, Taly & Yan, Axiomatic attribution for deep networks, ICML 2017, Proposition 1",
)


def _input_invariance(model, x, target, explainer, *, output, reduction, shift: float = -1.0):
    return input_invariance(explainer, model, x, target, shift, output=output, reduction=reduction)


register_metric(
    _input_invariance, name="input_invariance", higher_is_better=False,
    description="||e(f, x) - e(f', x + shift)||_1 / ||e(f, x)||_1, f' the model whose first layer absorbs the shift "
    "(f'(x + shift) = f(x)); the explainer explains both (0: input invariant).",
    source="Kindermans et al., The (un)reliability of saliency methods, 2017",
)


def _non_sensitivity(model, x, maps, target, *, output, seed, batch_size, eps: float = 1e-5, n_samples: int = 4):
    return non_sensitivity(model, x, maps, target, eps, n_samples, output=output, seed=seed, batch_size=batch_size)


register_metric(
    _non_sensitivity, name="non_sensitivity", higher_is_better=False,
    description="|A_0 Δ F_0|: the number of pixels whose attribution is zero while replacing them (by `n_samples` "
    "uniform noise values) moves the score, plus those with non-zero attribution that do not move it (0: the zeros "
    "of the map are exactly the pixels the model ignores).",
    source=NGUYEN,
)
