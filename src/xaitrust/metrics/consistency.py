"""Mean generalizability (MeGe) and relative consistency (ReCo) of explanations (Fel, Vigouroux, Cadène & Serre, "How
Good is your Explanation? Algorithmic Stability Measures to Assess the Quality of Explanations for Deep Neural
Networks", sec. 3 and appendices A, D), with bootstrap intervals and the noise floor of ReCo.

k models are cross-trained: model ``i`` is trained on every fold but ``V_i``. For each sample ``x`` of fold ``V_i``
and each other model ``j != i`` (Algorithm 1: ``f_j`` was trained on ``x``, ``f_i`` was not), the distance
``delta_x^(i,j) = d(phi_x^(i), phi_x^(j))`` between their explanations goes to

* ``S=``  when both models classify ``x`` correctly (eq. 3),
* ``S!=`` when exactly one of them does (eq. 4, XOR);

pairs where both are wrong are discarded. Then

* ``MeGe = (1 + mean(S=))^-1`` (eq. 5): 1 when explanations do not move at all when ``x`` leaves the training set;
* ``ReCo = max_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (eq. 6) with ``S = S= u S!=``;
* ``ReCo_AUC = (1 / |S|) sum_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (appendix D), each element of S counted once.

TPR and TNR (``rates``). The text names "the true positive rate TPR" and "TNR", calls ReCo "the maximal balanced
accuracy" and wants "to assess the quality of these explanations independently of the accuracy of the predictor";
the printed formulas divide by the distances on each side of the threshold instead: ``TPR(gamma) = |{d in S= : d <=
gamma}| / |{d in S : d <= gamma}|`` and ``TNR(gamma) = |{d in S!= : d > gamma}| / |{d in S : d > gamma}|``. Those are
precisions, and they depend on the sizes of S= and S!=, i.e. on the accuracy: with many more S= than S!= distances,
the threshold just below the largest distance scores ``TPR + TNR - 1 = |S=| / (|S| - 1) + 1 - 1`` whenever that
distance is in S!=, so the single largest distance sets ReCo near 1 even for random maps. xaitrust follows the text:

* ``rates="balanced-accuracy"`` (default): ``TPR(gamma) = |{d in S= : d <= gamma}| / |S=|`` and
  ``TNR(gamma) = |{d in S!= : d > gamma}| / |S!=|``, so ``TPR + TNR - 1 = F=(gamma) - F!=(gamma)`` with ``F`` the
  empirical distribution functions of the two sets (Youden's J). ReCo is then the one-sided two-sample
  Kolmogorov-Smirnov statistic ``max_gamma F=(gamma) - F!=(gamma)`` (``scipy.stats.ks_2samp(S=, S!=,
  alternative="greater")``), in [0, 1] (0 at ``gamma = max S``).
* ``rates="as-written"``: eq. 6 with the printed ratios. At ``gamma = max S`` no distance lies above the threshold;
  the paper leaves that 0/0 undefined and xaitrust counts it as ``TNR = 0``.

The authors' code (Xplique, ``xplique.metrics.MeGe.evaluate``) uses rates too: ``tpr = tp / (tp + fn)`` with ``tp =
|S= < gamma|``, ``fn = |S= > gamma|``, and ``tnr = tn / (tn + fp)`` with ``tn = |S!= > gamma|``, ``fp = |S!= <
gamma|``. It differs from xaitrust in three details: its inequalities are strict on both sides (a distance equal to
the threshold counts in neither rate), it scans only every ``(|S| // 20 + 1)``-th sorted distance (about 20
thresholds, so its maximum can fall short of the exact one xaitrust takes over every threshold, from one sort and
cumulative counts, ties evaluated after the whole tie), and it takes the distance ``sqrt(1 - |rho|)`` where the paper's
text says "one minus the absolute value of the Spearman rank correlation" (xaitrust's ``"spearman"`` distance). ReCo
depends on the order of the distances only, so the square root leaves it unchanged; MeGe is lower with it
(``sqrt(d) >= d`` on [0, 1]).

Uncertainty (``bootstrap_intervals``, ``reco_noise_floor``): the explained images are the sample, so the intervals
resample images (with replacement, every pair of a drawn image counted as often as it is drawn); the noise floor is
the ReCo of sets of the same sizes whose distances carry no information about the set they fall in.

Empty ``S=`` (or ``S!=``) leaves these undefined: the scores are NaN with an ``UndefinedScoreWarning``. NaN distances
(a constant map has no Spearman correlation) are left out of the scores with a warning that counts them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..statistics import percentile_interval
from ..validation import check_count, check_finite
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


RATES = ("balanced-accuracy", "as-written")

#: Largest number of (replicate, distance) entries held at once by the bootstrap and the noise floor (float64).
_CHUNK_ENTRIES = 2**21


def _check_rates(rates: str) -> None:
    if rates not in RATES:
        raise XaitrustError(f"rates must be one of {', '.join(RATES)}; got {rates!r}")


def _separation(values: torch.Tensor, eq_weight: torch.Tensor, neq_weight: torch.Tensor, rates: str) -> torch.Tensor:
    """``TPR(gamma) + TNR(gamma) - 1`` ``(B, M)`` at every threshold ``gamma = values[t]`` (``(M,)``, ascending).

    ``eq_weight`` / ``neq_weight`` ``(B, M)`` say how many times each distance counts in S= and in S!= for each of
    ``B`` versions of the sets (0/1 for the observed sets, multiplicities for bootstrap resamples, permuted labels for
    the noise floor). The counts at a threshold include its whole tie (taken at the tie's last position). Thresholds
    that are not in a version of the sets give meaningless values there; the callers mask them.
    """
    last_of_tie = torch.searchsorted(values, values, right=True) - 1
    eq_below = eq_weight.cumsum(dim=1)[:, last_of_tie]
    neq_below = neq_weight.cumsum(dim=1)[:, last_of_tie]
    n_eq, n_neq = eq_weight.sum(dim=1, keepdim=True), neq_weight.sum(dim=1, keepdim=True)
    neq_above = n_neq - neq_below
    if rates == "balanced-accuracy":
        return eq_below / n_eq + neq_above / n_neq - 1
    below = eq_below + neq_below
    above = n_eq + n_neq - below
    return eq_below / below + torch.where(above > 0, neq_above / above.clamp(min=1), 0.0) - 1


def balanced_accuracy_curve(
    s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "balanced-accuracy"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``TPR(gamma) + TNR(gamma) - 1`` at every element ``gamma`` of ``S = S= u S!=``, sorted by gamma.

    ``rates="balanced-accuracy"`` (default): ``TPR = |S= <= gamma| / |S=|``, ``TNR = |S!= > gamma| / |S!=|``, the
    rates the paper's text names (see the module docstring); ``rates="as-written"``: eq. 6 as printed,
    ``TPR = |S= <= gamma| / |S <= gamma|``, ``TNR = |S!= > gamma| / |S > gamma|`` (0 above the largest distance).

    Returns ``(thresholds, values)``, both ``(|S|,)``; tied thresholds share the value of the whole tie. Raises on
    empty sets (``reco`` and ``reco_auc`` turn that into NaN).
    """
    _check_rates(rates)
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        raise XaitrustError(f"S= and S!= must both be non-empty; got {len(s_eq)} and {len(s_neq)} distances")
    values = torch.cat([s_eq, s_neq])
    is_eq = torch.cat([torch.ones(len(s_eq)), torch.zeros(len(s_neq))]).double()
    order = torch.argsort(values, stable=True)
    is_eq = is_eq[order][None]
    return values[order], _separation(values[order], is_eq, 1 - is_eq, rates)[0]


def reco(s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "balanced-accuracy") -> float:
    """ReCo ``= max_{gamma in S} TPR(gamma) + TNR(gamma) - 1`` (eq. 6, ``rates`` as in ``balanced_accuracy_curve``);
    NaN with a warning when a set is empty."""
    _check_rates(rates)
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        return _undefined("S= or S!= is empty: ReCo needs distances of both kinds and is NaN")
    return float(balanced_accuracy_curve(s_eq, s_neq, rates)[1].max())


def reco_auc(s_eq: torch.Tensor, s_neq: torch.Tensor, rates: str = "balanced-accuracy") -> float:
    """ReCo_AUC ``= mean over gamma in S of TPR(gamma) + TNR(gamma) - 1`` (appendix D, ``rates`` as in
    ``balanced_accuracy_curve``); NaN when a set is empty."""
    _check_rates(rates)
    s_eq, s_neq = _finite_pair(s_eq, s_neq)
    if len(s_eq) == 0 or len(s_neq) == 0:
        return _undefined("S= or S!= is empty: ReCo_AUC needs distances of both kinds and is NaN")
    return float(balanced_accuracy_curve(s_eq, s_neq, rates)[1].mean())


#: The scores ``bootstrap_intervals`` resamples: MeGe and ReCo under both readings of TPR and TNR.
BOOTSTRAPPED = ("mege", "reco", "reco_as_written")


def _resampled_scores(values: torch.Tensor, is_eq: torch.Tensor, sample: torch.Tensor,
                      counts: torch.Tensor) -> torch.Tensor:
    """MeGe, ReCo and ReCo as written ``(3, B)`` of the sets resampled by ``counts`` ``(B, N)``: how many times each
    of the ``N`` images is drawn (its distances count that many times). ``values`` are sorted, ``is_eq`` and
    ``sample`` follow them. NaN for a resample without S= (MeGe, ReCo) or without S!= (ReCo)."""
    weight = counts[:, sample]
    eq_weight, neq_weight = weight * is_eq, weight * ~is_eq
    n_eq = eq_weight.sum(dim=1)
    mege_values = 1 / (1 + (eq_weight * values).sum(dim=1) / n_eq)
    present = weight > 0
    recos = [_separation(values, eq_weight, neq_weight, rates).masked_fill(~present, -torch.inf).amax(dim=1)
             for rates in RATES]
    defined = (n_eq > 0) & (neq_weight.sum(dim=1) > 0)
    return torch.stack([mege_values, *(value.masked_fill(~defined, torch.nan) for value in recos)])


def bootstrap_intervals(
    sets: CrossFoldDistances, n_images: int, n_bootstrap: int = 1000, ci: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of MeGe and ReCo (``rates`` ``"balanced-accuracy"``: key ``"reco"``;
    ``"as-written"``: key ``"reco_as_written"``) over the explained images.

    The ``n_images`` explained images (``sets.sample`` indexes them) are drawn ``n_images`` times with replacement,
    ``n_bootstrap`` times from ``seed``; each drawn image brings all its pairs (each pair of an image drawn twice counts
    twice), and the scores of each resample are computed at once from weighted cumulative counts over the distances
    sorted once. The interval is the ``(1 - ci) / 2`` and ``(1 + ci) / 2`` quantiles of the resampled scores
    (``xaitrust.statistics.percentile_interval``). The resamples come from a torch generator seeded by ``seed``
    rather than from ``xaitrust.statistics.bootstrap_indices`` (NumPy's generator): other draws would move every
    interval this function has reported, for no gain in correctness.
    ReCo is a maximum over thresholds: a resample's curve is noisier than the observed one, so resampled ReCo is biased
    upwards and its interval can sit mostly above the observed value (e.g. 0.187 [0.110, 0.437] for Saliency on the
    mege-reco quick profile); read it as the spread of ReCo over image samples, and the noise floor
    (``reco_noise_floor``) as the test of whether a ReCo shows any consistency at all.
    Non-finite distances are left out, as in ``mege`` and ``reco``. Resamples without S= (or S!=) leave a score
    undefined and are left out of its quantiles with an ``UndefinedScoreWarning``; the interval is NaN when no
    resample defines the score.
    """
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap")
    n_images = check_count(n_images, "n_images")
    if not 0 < ci < 1:
        raise XaitrustError(f"ci must be a confidence level in (0, 1); got {ci}")
    finite = torch.isfinite(sets.distance)
    if len(sets.sample) and sets.sample.max() >= n_images:
        raise XaitrustError(f"n_images must count every explained image; the pairs index image "
                            f"{int(sets.sample.max())} but n_images is {n_images}")
    values, order = sets.distance[finite].double().sort(stable=True)
    is_eq, sample = sets.both_correct[finite][order], sets.sample[finite][order]
    generator = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, n_images, (n_bootstrap, n_images), generator=generator, dtype=torch.int32)
    rows = max(1, _CHUNK_ENTRIES // max(len(values), n_images))
    scores = []
    for start in range(0, n_bootstrap, rows):
        chunk = draws[start:start + rows].long()
        counts = torch.zeros(len(chunk), n_images, dtype=torch.float64).scatter_add_(
            1, chunk, torch.ones(chunk.shape, dtype=torch.float64))
        scores.append(_resampled_scores(values, is_eq, sample, counts))
    scores = torch.cat(scores, dim=1)
    intervals = {}
    for name, replicates in zip(BOOTSTRAPPED, scores):
        defined = replicates[~replicates.isnan()]
        if len(defined) < len(replicates):
            missing = "no S= pair" if name == "mege" else "no S= or no S!= pair"
            warnings.warn(f"{len(replicates) - len(defined)} of {len(replicates)} bootstrap resamples leave {name} "
                          f"undefined ({missing}) and are left out of its interval", UndefinedScoreWarning,
                          stacklevel=2)
        intervals[name] = percentile_interval(defined.numpy(), ci)
    return intervals


def reco_noise_floor(
    n_eq: int, n_neq: int, rates: str = "balanced-accuracy", n_draws: int = 1000, seed: int = 0
) -> torch.Tensor:
    """ReCo ``(n_draws,)`` of sets of ``n_eq`` S= and ``n_neq`` S!= distances that carry no information: which
    distances fall in S= is a uniformly random choice of ``n_eq`` of the ``n_eq + n_neq`` (exchangeable distances,
    e.g. those of an uninformative map or distance, without ties).

    ReCo depends on the order of the distances only, so this is its null distribution for sets of these sizes; its
    mean and upper quantiles are the floor a ReCo must clear to show any consistency. With
    ``rates="balanced-accuracy"`` the null ReCo is the one-sided two-sample Kolmogorov-Smirnov statistic, whose
    tail is ``P(ReCo >= t) ~ exp(-2 t^2 n_eq n_neq / (n_eq + n_neq))`` for large sets (Smirnov), e.g. a 95% quantile
    of ``sqrt(ln(20) / 2 * (1 / n_eq + 1 / n_neq))``: the smaller set sets the floor. ``rates="as-written"`` has no
    closed form; the largest distance falls in S!= with probability ``n_neq / (n_eq + n_neq)``, and then ReCo is at
    least ``n_eq / (n_eq + n_neq - 1)``, so its 95% quantile reaches that value as soon as S!= holds 5% of S.
    The pairs of one image share its maps, so real distances are not quite exchangeable; the floor ignores that.
    """
    _check_rates(rates)
    n_draws = check_count(n_draws, "n_draws")
    n_eq, n_neq = check_count(n_eq, "n_eq"), check_count(n_neq, "n_neq")
    size = n_eq + n_neq
    values = torch.arange(size, dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    rows = max(1, _CHUNK_ENTRIES // size)
    floors = []
    for start in range(0, n_draws, rows):
        ranks = torch.rand(min(rows, n_draws - start), size, generator=generator).argsort(dim=1)
        is_eq = (ranks < n_eq).double()  # the S= distances sit at n_eq random positions of the sorted S
        floors.append(_separation(values, is_eq, 1 - is_eq, rates).amax(dim=1))
    return torch.cat(floors)


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
