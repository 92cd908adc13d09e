"""Mean generalizability (MeGe) and relative consistency (ReCo) of explanations (Fel et al. 2022, "How Good is your
Explanation?", sec. 3 and appendices A, D).

k models are cross-trained: model ``i`` is trained on every fold but ``V_i``. For each sample ``x`` of fold ``V_i``
and each other model ``j != i`` (Algorithm 1: ``f_j`` was trained on ``x``, ``f_i`` was not), the distance
``delta_x^(i,j) = d(phi_x^(i), phi_x^(j))`` between their explanations goes to

* ``S=``  when both models classify ``x`` correctly (eq. 3),
* ``S!=`` when exactly one of them does (eq. 4, XOR);

pairs where both are wrong are discarded. Then

* ``MeGe = (1 + mean(S=))^-1`` (eq. 5): 1 when explanations do not move at all when ``x`` leaves the training set;
* ``ReCo = max_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (eq. 6) with ``S = S= u S!=`` and, as the paper defines
  them, ``TPR(gamma) = |{d in S= : d <= gamma}| / |{d in S : d <= gamma}|`` and
  ``TNR(gamma) = |{d in S!= : d > gamma}| / |{d in S : d > gamma}|``. At ``gamma = max S`` no distance lies above
  the threshold; the paper leaves that 0/0 undefined and xaitrust counts it as ``TNR = 0``. The maximum is exact:
  every threshold in S is evaluated from one sort and cumulative counts (ties evaluated after the whole tie);
* ``ReCo_AUC = (1 / |S|) sum_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (appendix D), each element of S counted once.

Empty ``S=`` (or ``S!=``) leaves these undefined: the scores are NaN with an ``UndefinedScoreWarning``. NaN distances
(a constant map has no Spearman correlation) are left out of the scores with a warning that counts them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..validation import check_finite
from ._validation import warn_constant_maps
from .distances import MapDistance, get_distance


class UndefinedScoreWarning(UserWarning):
    """A score is NaN because the set it is computed from is empty."""


@dataclass(frozen=True)
class CrossFoldDistances:
    """The distances Algorithm 1 keeps, one entry per (sample, model pair) with at least one correct model.

    ``sample`` indexes the samples, ``unseen_model`` is ``i`` (the model whose training set left the sample out, i.e.
    the sample's fold), ``seen_model`` is ``j``, and ``both_correct`` says whether the distance is in S= or S!=.
    """

    distance: torch.Tensor
    sample: torch.Tensor
    unseen_model: torch.Tensor
    seen_model: torch.Tensor
    both_correct: torch.Tensor

    @property
    def s_eq(self) -> torch.Tensor:
        """S=: distances where both models are correct."""
        return self.distance[self.both_correct]

    @property
    def s_neq(self) -> torch.Tensor:
        """S!=: distances where exactly one model is correct."""
        return self.distance[~self.both_correct]


def _check_inputs(maps, predictions, labels, folds):
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or not maps.dtype.is_floating_point:
        got = getattr(maps, "shape", type(maps))
        raise XaitrustError(f"maps must be a float tensor (k, N, H, W), one map per model and sample; got {got}")
    k, n = maps.shape[:2]
    if k < 2:
        raise XaitrustError(f"cross-fold distances need at least k = 2 models; got {k}")
    for name, value, shape in (("predictions", predictions, (k, n)), ("labels", labels, (n,)), ("folds", folds, (n,))):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape or value.dtype.is_floating_point:
            got = getattr(value, "shape", type(value))
            raise XaitrustError(f"{name} must be an integer tensor of shape {shape}; got {got}")
    if n and (folds.min() < 0 or folds.max() >= k):
        raise XaitrustError(
            f"folds must hold the fold index 0..{k - 1} of every sample; got {folds.min().item()}..{folds.max().item()}"
        )
    if not torch.isfinite(maps.sum()):  # one reduction; the per-sample scan only runs to name the bad samples
        check_finite(maps.reshape(k * n, -1), "maps")


def cross_fold_distances(
    maps: torch.Tensor,
    predictions: torch.Tensor,
    labels: torch.Tensor,
    folds: torch.Tensor,
    distance: str | MapDistance = "spearman",
) -> CrossFoldDistances:
    """S= and S!= of Algorithm 1 with their sample and model indices.

    Args:
        maps: ``(k, N, H, W)``: the map of model ``m`` for sample ``n`` (all models explain all samples).
        predictions: ``(k, N)`` predicted classes; labels: ``(N,)`` true classes.
        folds: ``(N,)`` the fold of each sample; model ``i`` was trained without fold ``i``.
        distance: a name from ``xaitrust.metrics.distances.DISTANCES`` or a ``MapDistance``.

    Each map is prepared once (e.g. ranked), then each of the ``k (k - 1)`` ordered model pairs compares all the
    samples of its fold in one batched call (pairs where both models are wrong are compared, then dropped).
    Entries are ordered by unseen model, seen model, then sample.
    """
    _check_inputs(maps, predictions, labels, folds)
    distance = get_distance(distance)
    k, n = maps.shape[:2]
    warn_constant_maps(
        maps.reshape(k * n, *maps.shape[2:]),
        "distances that are undefined for them (e.g. Spearman) are NaN and left out of MeGe/ReCo"
    )
    prepared = distance.prepare(maps.reshape(k * n, *maps.shape[2:]))
    prepared = prepared.reshape(k, n, *prepared.shape[1:])
    correct = predictions.to(labels.device) == labels
    parts = []
    for i in range(k):
        members = (folds == i).nonzero().flatten()
        fold_maps = prepared[:, members]
        for j in range(k):
            if j == i:
                continue
            correct_i, correct_j = correct[i, members], correct[j, members]
            kept = correct_i | correct_j
            values = distance.compare(fold_maps[i], fold_maps[j])[kept]
            chosen = members[kept]
            both = (correct_i & correct_j)[kept]
            parts.append((values, chosen, torch.full_like(chosen, i), torch.full_like(chosen, j), both))
    fields = [torch.cat([part[f] for part in parts]) for f in range(5)]
    return CrossFoldDistances(*fields)


def _finite(values: torch.Tensor, name: str) -> torch.Tensor:
    values = torch.as_tensor(values).reshape(-1).double()
    finite = torch.isfinite(values)
    if not finite.all():
        message = f"{int((~finite).sum())} of {len(values)} distances in {name} are NaN/inf and are left out"
        warnings.warn(message, UserWarning, stacklevel=3)
    return values[finite]


def _finite_pair(s_eq, s_neq) -> tuple[torch.Tensor, torch.Tensor]:
    return _finite(s_eq, "S="), _finite(s_neq, "S!=")


def _undefined(message: str) -> float:
    warnings.warn(message, UndefinedScoreWarning, stacklevel=3)
    return float("nan")


def mege(s_eq: torch.Tensor) -> float:
    """MeGe ``= 1 / (1 + mean(S=))`` (eq. 5); NaN with a warning when S= is empty."""
    s_eq = _finite(s_eq, "S=")
    if len(s_eq) == 0:
        return _undefined("S= is empty (no sample is classified correctly by two models): MeGe is NaN")
    return float(1 / (1 + s_eq.mean()))


RATES = ("as-written", "balanced-accuracy")


def balanced_accuracy_curve(
    s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "as-written"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TPR(gamma) + TNR(gamma) - 1`` at every element ``gamma`` of ``S = S= u S!=``, sorted by gamma.

    ``rates="as-written"`` takes TPR and TNR exactly as section 3.5 prints them: ``TPR = |S= <= gamma| / |S <= gamma|``
    and ``TNR = |S!= > gamma| / |S > gamma|`` (shares of each side of the threshold; TNR is 0 above the largest
    distance, where the paper leaves 0/0 undefined). Those are precisions rather than rates, so with unbalanced sets
    (many more S= than S!=) the maximum approaches ``|S=| / |S|`` whenever the largest distance is in S!=, even for
    random maps. ``rates="balanced-accuracy"`` takes the usual rates the paper names: ``TPR = |S= <= gamma| / |S=|``
    and ``TNR = |S!= > gamma| / |S!=|`` (Youden's J, insensitive to the sets' sizes).

    Returns ``(thresholds, values)``, both ``(|S|,)``; tied thresholds share the value of the whole tie. Raises on
    empty sets (``reco`` and ``reco_auc`` turn that into NaN).
    """
    if rates not in RATES:
        raise XaitrustError(f"rates must be one of {', '.join(RATES)}; got {rates!r}")
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        raise XaitrustError(f"S= and S!= must both be non-empty; got {len(s_eq)} and {len(s_neq)} distances")
    values = torch.cat([s_eq, s_neq])
    is_eq = torch.cat([torch.ones(len(s_eq)), torch.zeros(len(s_neq))]).double()
    order = torch.argsort(values, stable=True)
    thresholds, is_eq = values[order], is_eq[order]
    # The counts at a threshold include its whole tie: take them at the tie's last position.
    last_of_tie = torch.searchsorted(thresholds, thresholds, right=True) - 1
    below = (last_of_tie + 1).double()
    eq_below = is_eq.cumsum(dim=0)[last_of_tie]
    above = len(values) - below
    neq_above = len(s_neq) - (below - eq_below)
    if rates == "balanced-accuracy":
        return thresholds, eq_below / len(s_eq) + neq_above / len(s_neq) - 1
    tpr = eq_below / below
    tnr = torch.where(above > 0, neq_above / above.clamp(min=1), 0.0)
    return thresholds, tpr + tnr - 1


def reco(s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "as-written") -> float:
    """ReCo ``= max_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (eq. 6, ``rates`` as in ``balanced_accuracy_curve``);
    NaN with a warning when a set is empty."""
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        return _undefined("S= or S!= is empty: ReCo needs distances of both kinds and is NaN")
    return float(balanced_accuracy_curve(s_eq, s_neq, rates)[1].max())


def reco_auc(s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "as-written") -> float:
    """ReCo_AUC ``= mean over gamma in S of TPR(gamma) + TNR(gamma) - 1`` (appendix D, ``rates`` as in
    ``balanced_accuracy_curve``); NaN when a set is empty."""
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        return _undefined("S= or S!= is empty: ReCo_AUC needs distances of both kinds and is NaN")
    return float(balanced_accuracy_curve(s_eq, s_neq, rates)[1].mean())


def separation_histograms(s_eq: torch.Tensor, s_neq: torch.Tensor, bins: int = 50) -> dict[str, torch.Tensor]:
    """Histograms of S= and S!= on shared bin edges (the paper's Fig. 10): ``{"edges", "s_eq", "s_neq"}``.

    Counts are normalised to densities (each histogram integrates to 1) so that sets of different sizes compare.
    """
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    values = torch.cat([s_eq, s_neq])
    if len(values) == 0:
        raise XaitrustError("S= and S!= are both empty: there is nothing to draw")
    low, high = float(values.min()), float(values.max())
    edges = torch.linspace(low, high if high > low else low + 1, bins + 1, dtype=torch.float64)
    width = edges[1] - edges[0]

    def density(part):
        counts = torch.histc(part, bins=bins, min=float(edges[0]), max=float(edges[-1]))
        return counts / (counts.sum() * width) if len(part) else counts

    return {"edges": edges, "s_eq": density(s_eq), "s_neq": density(s_neq)}
