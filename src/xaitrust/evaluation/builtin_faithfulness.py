"""The faithfulness metrics of Quantus's family (``xaitrust.metrics.faithfulness_peers`` and
``xaitrust.metrics.faithfulness_regions``) in the registry, after ``builtin``'s.

Each registration only calls those modules; the maths, the papers and how Quantus 0.6 differs live there. The
superpixels of ``irof`` depend on the images only and are computed once per evaluation (``SharedWork``).
"""

from __future__ import annotations

from ..metrics.faithfulness_peers import (
    SENSITIVITY_FRACTIONS,
    average_drop,
    faithfulness_correlation,
    faithfulness_estimate,
    increase_in_confidence,
    infidelity,
    monotonicity_arya,
    monotonicity_correlation,
    sensitivity_n,
)
from ..metrics.faithfulness_regions import (
    ROAD_FRACTIONS,
    irof,
    region_perturbation,
    road,
    selectivity,
)
from ..perturb.segments import superpixel_segmentation
from .registry import register_metric


def _faithfulness_correlation(model, x, target, attributions, *, output, seed, batch_size, subset_size=None,
                              n_runs: int = 100, baseline="black"):
    return faithfulness_correlation(model, x, attributions, target, subset_size, n_runs, baseline, output, seed,
                                    batch_size=batch_size)


register_metric(
    _faithfulness_correlation, name="faithfulness_correlation", higher_is_better=True,
    description="Pearson correlation, over `n_runs` random subsets S of `subset_size` pixels (None: 224, at most half "
    "the image), between sum_{i in S} attribution_i and the score's drop when S takes the `baseline` value ('black': "
    "the image's smallest value): muFidelity with Quantus's parameters.",
    source="Bhatt, Weller & Moura, IJCAI 2020 (as Quantus's FaithfulnessCorrelation)",
)


def _faithfulness_estimate(model, x, target, attributions, *, output, seed, batch_size, replacement="zero",
                           patch_size=None):
    return faithfulness_estimate(model, x, attributions, target, replacement, patch_size, output, seed,
                                 batch_size=batch_size)


register_metric(
    _faithfulness_estimate, name="faithfulness_estimate", higher_is_better=True,
    description="Pearson correlation, over the pixels (or `patch_size` patches) i, between attribution_i and the "
    "score's drop when feature i alone takes the `replacement` value.",
    source="Alvarez-Melis & Jaakkola, NeurIPS 2018",
)


def _monotonicity(model, x, target, maps, *, output, seed, ties, batch_size, replacement="zero",
                  features_in_step: int = 1):
    return monotonicity_arya(model, x, maps, target, replacement, features_in_step, output, seed, ties=ties,
                             batch_size=batch_size)


register_metric(
    _monotonicity, name="monotonicity", higher_is_better=True,
    description="1 where the score never decreases while the pixels are put back into the `replacement` image, "
    "`features_in_step` at a time, least important first; else 0.",
    source="Arya et al., One Explanation Does Not Fit All, 2019 (AIX360's monotonicity_metric)",
)


def _monotonicity_correlation(model, x, target, maps, *, output, seed, batch_size, replacement="uniform",
                              n_samples: int = 10, patch_size=None):
    return monotonicity_correlation(model, x, maps, target, replacement, n_samples, patch_size, output, seed,
                                    batch_size=batch_size)


register_metric(
    _monotonicity_correlation, name="monotonicity_correlation", higher_is_better=True,
    description="Spearman correlation, over the pixels (or `patch_size` patches) i, between |map_i| and the mean "
    "over `n_samples` draws of the squared change of the score when feature i alone takes the `replacement` value.",
    source="Nguyen & Martinez, On Quantitative Aspects of Model Interpretability, 2020",
)


def _infidelity(model, x, target, attributions, *, output, seed, batch_size, n_squares: int = 200,
                max_side: int = 10, replacement="zero", optimal_scaling: bool = False):
    return infidelity(model, x, attributions, target, n_squares, max_side, replacement, optimal_scaling, output,
                      seed, batch_size=batch_size)


register_metric(
    _infidelity, name="infidelity", higher_is_better=False,
    description="Mean over `n_squares` random squares S (side 1 to `max_side`) of (sum_{i in S} attribution_i - "
    "(f(x) - f(x with S set to `replacement`)))^2; `optimal_scaling` first rescales the attributions by the "
    "least-squares factor, as the reference code does.",
    source="Yeh et al., On the (In)fidelity and Sensitivity of Explanations, NeurIPS 2019",
)


def _sensitivity_n(model, x, target, attributions, *, output, seed, batch_size, fractions=SENSITIVITY_FRACTIONS,
                   n_subsets: int = 100, baseline=0.0):
    return sensitivity_n(model, x, attributions, target, fractions, n_subsets, baseline, output, seed,
                         batch_size=batch_size).mean(dim=1)


register_metric(
    _sensitivity_n, name="sensitivity_n", higher_is_better=True,
    description="Mean over the subset sizes n = `fractions` of the pixels of the Pearson correlation, over "
    "`n_subsets` random subsets S of n pixels, between sum_{i in S} attribution_i and the score's drop when S takes "
    "the `baseline` value.",
    source="Ancona et al., ICLR 2018",
)


def _region_perturbation(model, x, target, maps, *, output, seed, ties, batch_size, patch_size: int = 9,
                         steps: int = 100, replacement="uniform"):
    return region_perturbation(model, x, maps, target, patch_size, steps, replacement, "most-important-first", output,
                               seed, ties=ties, batch_size=batch_size).value


register_metric(
    _region_perturbation, name="region_perturbation", higher_is_better=True,
    description="AOPC = mean over k = 0..L of f(x) - f(x with the k most relevant `patch_size` squares (highest map "
    "sum) set to `replacement`), L = min(`steps`, squares).",
    source="Samek et al., IEEE TNNLS 2017",
)


def _selectivity(model, x, target, maps, *, output, seed, ties, batch_size, patch_size: int = 8, replacement="zero"):
    return selectivity(model, x, maps, target, patch_size, replacement, output, seed, ties=ties,
                       batch_size=batch_size).value


register_metric(
    _selectivity, name="selectivity", higher_is_better=False,
    description="Area under the score's curve while the `patch_size` squares are set to `replacement` one by one, "
    "highest map sum first, over the fraction of squares removed in [0, 1].",
    source="Montavon, Samek & Mueller, Digital Signal Processing 2018",
)


def _irof(model, x, target, maps, work, *, output, seed, ties, batch_size, n_segments: int = 100,
          replacement="image-mean"):
    segments = work.call(superpixel_segmentation, x, n_segments).ids
    return irof(model, x, maps, target, n_segments, replacement, output, seed, segments=segments, ties=ties,
                batch_size=batch_size).value


register_metric(
    _irof, name="irof", higher_is_better=True,
    description="1 - area under f(x_l) / f(x) while the `n_segments` SLIC superpixels are set to `replacement` "
    "(the image's mean) one by one, highest mean map value first, over the fraction removed in [0, 1].",
    source="Rieger & Hansen, IROF, ICLR 2020 workshop",
)


def _road(order: str):
    """The ROAD accuracy of ``order`` ("most-important-first" or "least-important-first"): one body for both."""

    def accuracy(model, x, target, maps, *, seed, ties, batch_size, fractions=ROAD_FRACTIONS, noise: float = 0.01):
        return road(model, x, maps, target, order, fractions, noise, seed, ties=ties, batch_size=batch_size).accuracy

    return accuracy


ROAD_SOURCE = "Rong et al., A Consistent and Efficient Evaluation Strategy for Attribution Methods, ICML 2022"
ROAD_DESCRIPTION = ("Share of the removal `fractions` at which the model still predicts the target once that fraction "
                    "of the pixels, {which} first, is filled by noisy linear imputation (noise `noise`).")
register_metric(
    _road("most-important-first"), name="road_morf", higher_is_better=False,
    description=ROAD_DESCRIPTION.format(which="most relevant"), source=ROAD_SOURCE,
)
register_metric(
    _road("least-important-first"), name="road_lerf", higher_is_better=True,
    description=ROAD_DESCRIPTION.format(which="least relevant"), source=ROAD_SOURCE,
)

GRAD_CAM_PP = "Chattopadhay et al., Grad-CAM++, WACV 2018"


def _average_drop(model, x, target, maps, *, batch_size):
    return average_drop(model, x, maps, target, batch_size=batch_size)


register_metric(
    _average_drop, name="average_drop", higher_is_better=False, output="probability",
    description="100 * max(0, Y - O) / Y: Y the target's softmax confidence on the image, O on the image times its "
    "min-max normalised map.",
    source=GRAD_CAM_PP,
)


def _increase_in_confidence(model, x, target, maps, *, batch_size):
    return increase_in_confidence(model, x, maps, target, batch_size=batch_size)


register_metric(
    _increase_in_confidence, name="increase_in_confidence", higher_is_better=True, output="probability",
    description="100 where the target's softmax confidence on the image times its min-max normalised map exceeds "
    "that on the image, else 0.",
    source=GRAD_CAM_PP,
)
