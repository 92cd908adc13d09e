"""The metrics of ``xaitrust.metrics`` in the registry, in the order an evaluation computes them.

Each registration only calls ``xaitrust.metrics``; the maths and its references live there. Computations that
several metrics read go through ``SharedWork``: ``better_than_random`` is registered before ``deletion_area`` so that,
computed together, the deletion curves BTR measures serve the deletion area; its random-superpixel baseline does not
depend on the explanation and is computed once per evaluation; ``completeness`` and ``soundness`` read one insertion
game.
"""

from __future__ import annotations

from ..errors import XaitrustError
from ..metrics import (
    area_between,
    better_than_random,
    completeness_soundness,
    deletion,
    gt_alignment,
    insertion,
    local_lipschitz,
    localization,
    map_ssim,
    mif_lif,
    mu_fidelity,
    otsu_tv,
    pointing_game,
)
from ..metrics.curves import PerturbationCurves
from ..metrics.faithfulness import random_superpixel_deletion
from ..metrics.fidelity import FPA_FRACTIONS
from .registry import MetricInputs, register_metric

C2I = "Scafarto, Posocco & Bonnefoy, Calibrate to Interpret"
GAME_DESCRIPTION = (
    "Pixels ranked by the map are {verb} in `steps` equal steps ({replaced}); the area under the target's score "
    "divided by the clean image's score, over the fraction of pixels {verb} in [0, 1]."
)


def _better_than_random(model, x, target, maps, work, *, output, seed, ties, batch_size, steps: int = 100,
                        replacement="blur", n_superpixels: int = 100, n_orders: int = 5, baseline=None):
    game = {"steps": steps, "replacement": replacement, "output": output, "batch_size": batch_size}
    if baseline is None:
        baseline = work.call(random_superpixel_deletion, model, x, target, n_superpixels, n_orders, seed, **game)
    result = better_than_random(model, x, maps, target, n_superpixels, n_orders, seed, ties=ties, baseline=baseline,
                                **game)
    _game_curves(work, deletion, model, x, maps, target, seed=seed, ties=ties, **game, computed=result.deletion)
    return result.better.float()


def _game_curves(work, game, model, x, maps, target, *, output, seed, ties, batch_size, steps, replacement,
                 computed=None):
    """The curves of ``game`` (``deletion`` or ``insertion``) of ``maps``, computed once per ``work``; ``computed``
    records curves obtained on the way (BTR's deletion curves)."""
    call = (game, model, x, maps, target)
    settings = {"steps": steps, "replacement": replacement, "output": output, "ties": ties, "seed": seed,
                "batch_size": batch_size}
    if computed is not None:
        work.remember(computed, *call, **settings)
    return work.call(*call, **settings)


#: The ranked games of the deletion and insertion areas, by name.
GAMES = {"deletion": deletion, "insertion": insertion}


def game_curves(inputs: MetricInputs, game: str, steps: int = 100, replacement="blur") -> PerturbationCurves:
    """The curves of the ranked ``game`` (``"deletion"`` or ``"insertion"``) behind ``deletion_area``,
    ``better_than_random`` and ``insertion_area`` on ``inputs``, measured with ``steps`` and ``replacement``: read
    from ``inputs.work`` when one of those metrics already measured them (else measured there once), for figures."""
    if game not in GAMES:
        raise XaitrustError(f"game must be one of {', '.join(GAMES)}; got {game!r}")
    return _game_curves(inputs.work, GAMES[game], inputs.model, inputs.x, inputs.maps, inputs.target,
                        output=inputs.output, seed=inputs.seed, ties=inputs.ties, batch_size=inputs.batch_size,
                        steps=steps, replacement=replacement)


register_metric(
    _better_than_random, name="better_than_random", higher_is_better=True,
    description="1 where the map's deletion area (blurred replacement) is strictly lower than the mean deletion area "
    "of `n_orders` random orders of the image's `n_superpixels` SLIC superpixels, else 0; its mean is the BTR ratio. "
    "`baseline` takes precomputed random curves (xaitrust.metrics.faithfulness.random_superpixel_deletion).",
    source=f"{C2I}, section 4.4",
)


def _ranked_game_area(game):
    """The area metric of ``deletion`` or ``insertion`` (one body for both)."""

    def area(model, x, target, maps, work, *, output, seed, ties, batch_size, steps: int = 100, replacement="blur"):
        return _game_curves(work, game, model, x, maps, target, output=output, seed=seed, ties=ties,
                            batch_size=batch_size, steps=steps, replacement=replacement).area

    return area


register_metric(
    _ranked_game_area(deletion), name="deletion_area", higher_is_better=False,
    description=GAME_DESCRIPTION.format(verb="removed", replaced="most important first, replaced by `replacement`"),
    source=f"Petsiuk, Das & Saenko, BMVC 2018 (RISE); blurred replacement and normalisation of {C2I}, section 4.4",
)
register_metric(
    _ranked_game_area(insertion), name="insertion_area", higher_is_better=True,
    description=GAME_DESCRIPTION.format(verb="put back", replaced="most important first, into the replaced image"),
    source=f"Petsiuk, Das & Saenko, BMVC 2018 (RISE); blurred replacement and normalisation of {C2I}, section 4.4",
)


def _mif_lif_area(model, x, target, maps, *, seed, ties, batch_size, replacement="zero", fractions=FPA_FRACTIONS):
    curves = mif_lif(model, x, maps, target, fractions, replacement, ties=ties, seed=seed, batch_size=batch_size)
    return area_between(curves.mif, curves.lif).per_sample


register_metric(
    _mif_lif_area, name="mif_lif_area", higher_is_better=True, output="logit",
    description="AUC(LIF) - AUC(MIF): pixels set to `replacement` least- or most-important first at `fractions` "
    "(0-95% in 5% steps), the target's logit divided by the clean logit, x in percent; NaN where the clean logit "
    "is <= 0.",
    source="Brocki & Chung, Feature Perturbation Augmentation, section 3",
)


def _mu_fidelity(model, x, target, attributions, *, output, seed, batch_size, subset_fraction: float = 0.15,
                 n_subsets: int = 200, baseline=0.0, patch_size=None):
    return mu_fidelity(model, x, attributions, target, subset_fraction, n_subsets, baseline, patch_size, output, seed,
                       batch_size=batch_size)


register_metric(
    _mu_fidelity, name="mu_fidelity", higher_is_better=True,
    description="Pearson correlation, over `n_subsets` random subsets S of `subset_fraction` of the pixels, between "
    "sum_{i in S} attribution_i and the score's drop when S takes the `baseline` value.",
    source="Bhatt, Weller & Moura, 2020; Fel et al., How Good is your Explanation?, appendix C, eq. 7",
)


def _completeness_part(part: str):
    """The metric reading ``part`` ("alpha" or "beta") of one shared ``completeness_soundness`` computation."""

    def value(model, x, target, maps, work, *, seed, ties, batch_size, steps=None, replacement="zero",
              eps1: float = 1e-6, eps2: float = 1e-6):
        result = work.call(completeness_soundness, model, x, maps, target, steps, replacement, eps1, eps2, ties=ties,
                           seed=seed, batch_size=batch_size)
        return getattr(result, part)

    return value


COMPLETENESS_SOURCE = "Gupta & Arora, 2019; Loreth (thesis), section 4.2"
GAME_AUC = ("g_AUC is the mean probability of the target over the insertion game that keeps the map's top s pixels "
            "(others set to `replacement`), s = 1..H*W (or `steps` of them)")
register_metric(
    _completeness_part("alpha"), name="completeness", higher_is_better=True, output="probability",
    description=f"alpha = min(max(g_AUC, eps1) / f(x), 1): the kept pixels still predict the class; {GAME_AUC}.",
    source=COMPLETENESS_SOURCE,
)
register_metric(
    _completeness_part("beta"), name="soundness", higher_is_better=True, output="probability",
    description=f"beta = min(max(f(x), eps2) / g_AUC, 1): the kept pixels are not over-confident; {GAME_AUC}.",
    source=COMPLETENESS_SOURCE,
)


def _otsu_tv(maps, *, nbins: int = 256):
    return otsu_tv(maps, nbins)


register_metric(
    _otsu_tv, name="otsu_tv", higher_is_better=False,
    description="Anisotropic total variation (label changes between 4-neighbours) of the min-max normalised map "
    "binarised by Otsu's threshold: a noisier, more fragmented map scores higher.",
    source=f"{C2I}, section 4.5",
)


def _local_lipschitz(model, x, target, explainer, *, output, seed, reduction, n_neighbours: int = 40,
                     radius: float = 0.05, normalize: bool = True, clip: bool = False):
    return local_lipschitz(explainer, model, x, target, n_neighbours=n_neighbours, radius=radius, output=output,
                           reduction=reduction, normalize=normalize, clip=clip, seed=seed)


register_metric(
    _local_lipschitz, name="local_lipschitz", higher_is_better=False,
    description="max_j ||e(x) - e(x_j)||_2 / ||x - x_j||_2 over `n_neighbours` points x_j uniform in the L2 ball of "
    "`radius` around x, e the reduced (and, with `normalize`, min-max normalised) map; the explainer explains every "
    "neighbour, and an explainer whose maps vary from call to call adds that variation to the estimate.",
    source=f"Alvarez-Melis & Jaakkola, 2018; {C2I}, section 4.6",
)


def _ssim_to_reference(maps, reference_maps, *, win_size: int = 7):
    return map_ssim(maps, reference_maps, win_size=win_size)


register_metric(
    _ssim_to_reference, name="ssim_to_uncalibrated", higher_is_better=True,
    description="SSIM between each min-max normalised map and the reference model's map of the same image (in the "
    "protocols, the uncalibrated model's).",
    source=f"{C2I}, section 4.3",
)

LOCALISATION_SOURCE = "Decker, Tresp & Buettner, ReCalX, section 5"
register_metric(
    localization, name="localization", higher_is_better=True,
    description="sum_{p in mask} max(m_p, 0) / sum_p max(m_p, 0): the share of the map's positive attribution inside "
    "the ground-truth mask.",
    source=f"Kohlbrenner et al., 2020 (as in Quantus); {LOCALISATION_SOURCE}",
)
register_metric(
    gt_alignment, name="gt_alignment", higher_is_better=True,
    description="Spearman rank correlation between the map and the ground-truth mask (or attention map).",
    source=f"Fel et al., 2022 (human alignment); {LOCALISATION_SOURCE}",
)
register_metric(
    pointing_game, name="pointing_game", higher_is_better=True,
    description="1 where the map's first maximum lies within `tolerance` pixels of the ground-truth mask, else 0.",
    source="Zhang et al., 2018",
)
