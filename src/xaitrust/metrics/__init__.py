"""Evaluation metrics: pure functions over models, images and attribution maps, per sample and batched.

- Faithfulness: ``deletion``, ``insertion``, ``better_than_random``, ``mif_lif``, ``area_between``, ``mu_fidelity``,
  ``completeness_soundness``.
- Stability: ``local_lipschitz``, ``map_ssim``. Coherence: ``otsu_tv``.
- Consistency (MeGe/ReCo): ``cross_fold_distances``, ``mege``, ``reco``, ``reco_auc``, ``separation_histograms``.
- Localisation against ground truth: ``localization``, ``gt_alignment``, ``pointing_game``.
- Sanity checks: ``cascading_randomization``, ``data_randomization_similarity``.
- Map distances: ``xaitrust.metrics.distances``.
"""

from . import distances
from .coherence import otsu_tv
from .completeness import completeness_soundness
from .consistency import (
    cross_fold_distances,
    mege,
    reco,
    reco_auc,
    separation_histograms,
)
from .faithfulness import better_than_random, deletion, insertion
from .fidelity import area_between, mif_lif
from .localization import gt_alignment, localization, pointing_game
from .mu_fidelity import mu_fidelity
from .sanity import cascading_randomization, data_randomization_similarity
from .stability import local_lipschitz, map_ssim

__all__ = [
    "area_between",
    "better_than_random",
    "cascading_randomization",
    "completeness_soundness",
    "cross_fold_distances",
    "data_randomization_similarity",
    "deletion",
    "distances",
    "gt_alignment",
    "insertion",
    "local_lipschitz",
    "localization",
    "map_ssim",
    "mege",
    "mif_lif",
    "mu_fidelity",
    "otsu_tv",
    "pointing_game",
    "reco",
    "reco_auc",
    "separation_histograms",
]
