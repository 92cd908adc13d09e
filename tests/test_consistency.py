"""MeGe / ReCo (Fel et al. 2022): Algorithm 1, eqs. 5-6 and ReCo_AUC against hand computations and slow references;
bootstrap intervals against explicit resamples; the noise floor against the Kolmogorov-Smirnov null."""


import numpy as np
import pytest
import scipy.stats
import torch

from xaitrust.errors import XaitrustError
from xaitrust.metrics.consistency import (
    CrossFoldDistances,
    UndefinedScoreWarning,
    _resampled_scores,
    balanced_accuracy_curve,
    bootstrap_intervals,
    cross_fold_distances,
    mege,
    reco,
    reco_auc,
    reco_noise_floor,
    separation_histograms,
)


def _random_case(k=3, n=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    maps = torch.rand(k, n, 6, 6, generator=generator)
    maps[..., :2, :] = 0  # ties, as in flat saliency backgrounds
    labels = torch.randint(0, 3, (n,), generator=generator)
    predictions = torch.randint(0, 3, (k, n), generator=generator)
    folds = torch.arange(n) % k
    return maps, predictions, labels, folds


def _reference_sets(maps, predictions, labels, folds):
    """Algorithm 1 written as its loops, with SciPy's Spearman."""
    k = len(maps)
    rows = []
    for i in range(k):
        for x in np.flatnonzero(folds.numpy() == i):
            for j in range(k):
                if j == i:
                    continue
                rho = scipy.stats.spearmanr(maps[i, x].flatten().numpy(), maps[j, x].flatten().numpy()).statistic
                ok_i, ok_j = predictions[i, x] == labels[x], predictions[j, x] == labels[x]
                if ok_i or ok_j:
                    rows.append((int(x), i, j, bool(ok_i and ok_j), 1 - abs(rho)))
    return sorted(rows)


def test_cross_fold_distances_match_the_algorithm_loop():
    maps, predictions, labels, folds = _random_case()
    sets = cross_fold_distances(maps, predictions, labels, folds)
    ours = sorted(
        zip(sets.sample.tolist(), sets.unseen_model.tolist(), sets.seen_model.tolist(), sets.both_correct.tolist(), sets.distance.tolist())
    )
    reference = _reference_sets(maps, predictions, labels, folds)
    assert [row[:4] for row in ours] == [row[:4] for row in reference]
    np.testing.assert_allclose([row[4] for row in ours], [row[4] for row in reference], atol=1e-5)
    # the unseen model is always the sample's own fold
    assert torch.equal(sets.unseen_model, folds[sets.sample])
    assert len(sets.s_eq) + len(sets.s_neq) == len(reference)


def test_identical_fold_models_give_mege_one():
    maps, _, labels, folds = _random_case(k=4, n=20)
    same = maps[:1].expand(4, -1, -1, -1).contiguous()
    sets = cross_fold_distances(same, labels.expand(4, -1), labels, folds)
    assert len(sets.s_neq) == 0 and len(sets.s_eq) == 20 * 3
    assert torch.all(sets.s_eq < 1e-6)  # 0 up to float32 rounding of the standardised ranks
    assert mege(sets.s_eq) == pytest.approx(1.0, abs=1e-6)


def test_mege_formula():
    assert mege(torch.tensor([0.2, 0.4, 0.6])) == pytest.approx(1 / 1.4)


def test_reco_perfectly_separated_sets():
    s_eq, s_neq = torch.tensor([0.1, 0.2]), torch.tensor([0.5, 0.6])
    assert reco(s_eq, s_neq) == pytest.approx(1.0)
    assert reco(s_eq, s_neq, rates="as-written") == pytest.approx(1.0)
    # rates: gamma = 0.1: 1/2 + 2/2 - 1; 0.2: 1; 0.5: 1 + 1/2 - 1; 0.6: 1 + 0 - 1
    assert reco_auc(s_eq, s_neq) == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    # as written: gamma = 0.1: 1 + 2/3 - 1; 0.2: 1; 0.5: 2/3 + 1 - 1; 0.6: 2/4 + 0 - 1 (nothing above the largest)
    assert reco_auc(s_eq, s_neq, rates="as-written") == pytest.approx((2 / 3 + 1 + 2 / 3 - 0.5) / 4)
    # swapped sets: rates give 0 (at the largest threshold), the printed shares go negative
    assert reco(s_neq, s_eq) == 0.0
    assert reco(s_neq, s_eq, rates="as-written") < 0


def _brute_force(s_eq, s_neq, reduce):
    values = torch.cat([s_eq, s_neq]).tolist()
    scores = []
    for gamma in values:
        below = [v for v in values if v <= gamma]
        above = [v for v in values if v > gamma]
        tpr = sum(v <= gamma for v in s_eq.tolist()) / len(below)
        tnr = sum(v > gamma for v in s_neq.tolist()) / len(above) if above else 0.0
        scores.append(tpr + tnr - 1)
    return reduce(scores)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reco_as_written_equals_brute_force_over_every_threshold(seed):
    generator = torch.Generator().manual_seed(seed)
    s_eq = torch.randint(0, 30, (40,), generator=generator).double() / 30  # many ties
    s_neq = torch.randint(10, 40, (25,), generator=generator).double() / 30
    assert reco(s_eq, s_neq, rates="as-written") == pytest.approx(_brute_force(s_eq, s_neq, max))
    assert reco_auc(s_eq, s_neq, rates="as-written") == pytest.approx(
        _brute_force(s_eq, s_neq, lambda s: sum(s) / len(s)))
    thresholds, values = balanced_accuracy_curve(s_eq, s_neq, rates="as-written")
    assert torch.all(thresholds.diff() >= 0) and len(values) == 65


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reco_defaults_to_the_rates_and_is_the_one_sided_kolmogorov_smirnov_statistic(seed):
    generator = torch.Generator().manual_seed(seed)
    s_eq = torch.randint(0, 30, (40,), generator=generator).double() / 30  # many ties
    s_neq = torch.randint(10, 40, (25,), generator=generator).double() / 30
    ks = scipy.stats.ks_2samp(s_eq.numpy(), s_neq.numpy(), alternative="greater").statistic
    assert reco(s_eq, s_neq) == pytest.approx(ks)
    # brute force of TPR = |S= <= g| / |S=|, TNR = |S!= > g| / |S!=| over every threshold
    values = torch.cat([s_eq, s_neq])
    curve = [float((s_eq <= g).double().mean() + (s_neq > g).double().mean() - 1) for g in values.sort().values]
    assert reco_auc(s_eq, s_neq) == pytest.approx(sum(curve) / len(curve))
    torch.testing.assert_close(balanced_accuracy_curve(s_eq, s_neq)[1], torch.tensor(curve, dtype=torch.float64))


def test_empty_sets_give_nan_with_warning():
    with pytest.warns(UndefinedScoreWarning):
        assert np.isnan(reco(torch.tensor([0.1]), torch.tensor([])))
    with pytest.warns(UndefinedScoreWarning):
        assert np.isnan(reco_auc(torch.tensor([]), torch.tensor([0.3])))
    with pytest.warns(UndefinedScoreWarning):
        assert np.isnan(mege(torch.tensor([])))


def test_nan_distances_are_left_out_with_a_warning():
    with pytest.warns(UserWarning, match="1 of 3 distances in S="):
        assert mege(torch.tensor([0.5, float("nan"), 0.5])) == pytest.approx(1 / 1.5)


def test_constant_maps_warn_and_give_nan_distances():
    maps, _, labels, folds = _random_case()
    maps[1, 0] = 0.0
    with pytest.warns(UserWarning, match="constant"):
        sets = cross_fold_distances(maps, labels.expand(3, -1), labels, folds)
    assert torch.isnan(sets.distance[sets.sample == 0]).sum() == 1


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m, p, l, f: (m.masked_fill(m > 0.9, float("nan")), p, l, f), "NaN"),
        (lambda m, p, l, f: (m, p[:, :5], l, f), "predictions"),
        (lambda m, p, l, f: (m, p, l, f + 5), "folds"),
        (lambda m, p, l, f: (m[:1], p[:1], l, f * 0), "k = 2"),
        (lambda m, p, l, f: (m[0], p, l, f), "maps"),
    ],
)
def test_bad_inputs_raise(change, message):
    with pytest.raises(XaitrustError, match=message):
        cross_fold_distances(*change(*_random_case()))


def test_unknown_distance_raises():
    with pytest.raises(XaitrustError, match="unknown distance"):
        cross_fold_distances(*_random_case(), distance="cosine")


def test_other_distance_is_used_for_every_pair():
    maps, predictions, labels, folds = _random_case()
    sets = cross_fold_distances(maps, predictions, labels, folds, distance="l1")
    expected = (maps[sets.unseen_model, sets.sample] - maps[sets.seen_model, sets.sample]).abs().sum(dim=(1, 2))
    torch.testing.assert_close(sets.distance, expected)


def test_separation_histograms_are_densities_on_shared_edges():
    s_eq, s_neq = torch.tensor([0.0, 0.1, 0.1, 0.2]), torch.tensor([0.8, 1.0])
    histograms = separation_histograms(s_eq, s_neq, bins=5)
    width = 0.2
    torch.testing.assert_close(histograms["edges"], torch.linspace(0, 1, 6, dtype=torch.float64))
    torch.testing.assert_close((histograms["s_eq"] * width).sum(), torch.tensor(1.0, dtype=torch.float64))
    assert histograms["s_eq"][0] == pytest.approx(3 / 4 / width) and histograms["s_neq"][4] == pytest.approx(1 / width)


def test_balanced_accuracy_rates_are_insensitive_to_set_sizes_unlike_the_printed_ones():
    # 90 S= and 10 S!= distances drawn from the same distribution, plus one S!= at the very top: no separation.
    generator = torch.Generator().manual_seed(0)
    s_eq = torch.rand(90, generator=generator)
    s_neq = torch.cat([torch.rand(9, generator=generator), torch.tensor([2.0])])
    as_written = reco(s_eq, s_neq, rates="as-written")
    balanced = reco(s_eq, s_neq)
    assert as_written >= 90 / 99 - 1e-9  # threshold just below the top S!=: TPR = 90/99, TNR = 1
    assert balanced < 0.5
    # Perfect separation is 1 under both readings.
    assert reco(torch.tensor([0.1, 0.2]), torch.tensor([0.5, 0.6]), rates="balanced-accuracy") == pytest.approx(1.0)
    # Brute force of Youden's J over every threshold.
    values = torch.cat([s_eq, s_neq])
    brute = max(float((s_eq <= g).float().mean() + (s_neq > g).float().mean() - 1) for g in values)
    assert balanced == pytest.approx(brute)


def test_unknown_rates_are_refused():
    with pytest.raises(XaitrustError, match="rates must be one of balanced-accuracy, as-written; got 'precision'"):
        reco(torch.tensor([0.1]), torch.tensor([0.5]), rates="precision")


def _pairs(n_images=30, seed=0):
    """Cross-fold pairs of ``n_images`` images, 3 pairs each, S= distances lower than S!= on average; some ties."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.arange(n_images).repeat_interleave(3)
    both_correct = torch.rand(len(sample), generator=generator) < 0.7
    distance = (torch.rand(len(sample), generator=generator) + 0.5 * ~both_correct).mul(20).round() / 20
    zeros = torch.zeros_like(sample)
    return CrossFoldDistances(distance, sample, zeros, zeros, both_correct)


def test_resampled_scores_equal_the_scores_of_explicitly_resampled_sets():
    sets = _pairs(n_images=12)
    generator = torch.Generator().manual_seed(1)
    draws = torch.randint(0, 12, (6, 12), generator=generator)
    counts = torch.zeros(6, 12, dtype=torch.float64).scatter_add_(1, draws, torch.ones(6, 12, dtype=torch.float64))
    values, order = sets.distance.double().sort(stable=True)
    ours = _resampled_scores(values, sets.both_correct[order], sets.sample[order], counts)
    for b in range(6):
        # every pair of each drawn image, twice for an image drawn twice
        kept = torch.cat([(sets.sample == image).nonzero().flatten() for image in draws[b]])
        s_eq, s_neq = sets.distance[kept][sets.both_correct[kept]], sets.distance[kept][~sets.both_correct[kept]]
        expected = [mege(s_eq), reco(s_eq, s_neq), reco(s_eq, s_neq, rates="as-written")]
        np.testing.assert_allclose(ours[:, b].numpy(), expected, rtol=1e-12)


def test_bootstrap_intervals_are_seeded_bracket_the_scores_and_narrow_with_more_images():
    sets = _pairs(n_images=30)
    intervals = bootstrap_intervals(sets, 30, n_bootstrap=400, seed=3)
    assert intervals == bootstrap_intervals(sets, 30, n_bootstrap=400, seed=3)
    assert intervals != bootstrap_intervals(sets, 30, n_bootstrap=400, seed=4)
    scores = {"mege": mege(sets.s_eq), "reco": reco(sets.s_eq, sets.s_neq),
              "reco_as_written": reco(sets.s_eq, sets.s_neq, rates="as-written")}
    for name, (low, high) in intervals.items():
        assert low < scores[name] < high, name
    wide = bootstrap_intervals(sets, 30, n_bootstrap=400)["reco"]
    large = _pairs(n_images=600)
    narrow = bootstrap_intervals(large, 600, n_bootstrap=400)["reco"]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2  # width ~ 1 / sqrt(images): 20 times more, ~4.5 times less


def test_images_without_pairs_are_part_of_the_resampled_images():
    sets = _pairs(n_images=30)
    assert bootstrap_intervals(sets, 30, n_bootstrap=300) != bootstrap_intervals(sets, 60, n_bootstrap=300)


def test_bootstrap_leaves_out_resamples_without_s_neq_with_a_warning():
    sets = _pairs(n_images=4)
    sets = CrossFoldDistances(sets.distance, sets.sample, sets.unseen_model, sets.seen_model,
                              sets.sample > 0)  # only image 0 has S!= pairs: resamples without it have no S!=
    with pytest.warns(UndefinedScoreWarning) as record:
        intervals = bootstrap_intervals(sets, 4, n_bootstrap=200)
    messages = [str(warning.message) for warning in record]
    assert any(message.endswith("resamples leave reco undefined (no S= or no S!= pair) and are left out of its "
                                "interval") for message in messages), messages
    assert all(np.isfinite(bound) for bound in intervals["reco"])


@pytest.mark.parametrize("call, message", [
    (lambda sets: bootstrap_intervals(sets, 10), "n_images must count every explained image"),
    (lambda sets: bootstrap_intervals(sets, 30, n_bootstrap=0), "n_bootstrap must be a positive integer"),
    (lambda sets: bootstrap_intervals(sets, 30, ci=95), r"ci must be a confidence level in \(0, 1\)"),
    (lambda sets: reco_noise_floor(0, 5), "n_eq must be a positive integer"),
])
def test_bad_bootstrap_and_floor_arguments_raise(call, message):
    with pytest.raises(XaitrustError, match=message):
        call(_pairs())


def test_noise_floor_is_the_kolmogorov_smirnov_null_for_the_rates():
    n_eq, n_neq = 60, 15
    floor = reco_noise_floor(n_eq, n_neq, n_draws=4000, seed=0)
    assert torch.equal(floor, reco_noise_floor(n_eq, n_neq, n_draws=4000, seed=0))
    generator = torch.Generator().manual_seed(5)
    s_eq, s_neq = torch.rand(n_eq, generator=generator), torch.rand(n_neq, generator=generator) + 0.15
    observed = reco(s_eq, s_neq)
    exact = scipy.stats.ks_2samp(s_eq.numpy(), s_neq.numpy(), alternative="greater", method="exact").pvalue
    assert float((floor >= observed - 1e-12).double().mean()) == pytest.approx(exact, abs=0.03)
    # Smirnov's limit: 95% quantile ~ sqrt(ln(20) / 2 * (1 / n_eq + 1 / n_neq)), a little high for small sets
    limit = np.sqrt(np.log(20) / 2 * (1 / n_eq + 1 / n_neq))
    assert 0.85 * limit < float(floor.quantile(0.95)) <= limit


def test_noise_floor_as_written_is_set_by_the_sizes_of_the_sets():
    n_eq, n_neq = 300, 40  # S!= is 12% of S: the largest distance is in S!= more often than 5% of the time
    floor = reco_noise_floor(n_eq, n_neq, rates="as-written", n_draws=1000)
    assert float(floor.quantile(0.95)) >= n_eq / (n_eq + n_neq - 1) - 1e-12
    assert float(reco_noise_floor(n_eq, n_neq, n_draws=1000).quantile(0.95)) < 0.25


def test_bootstrap_intervals_are_the_percentiles_of_the_resampled_scores():
    sets, n_images, n_bootstrap, seed = _pairs(n_images=20), 20, 50, 7
    draws = torch.randint(0, n_images, (n_bootstrap, n_images), generator=torch.Generator().manual_seed(seed),
                          dtype=torch.int32).long()
    counts = torch.zeros(n_bootstrap, n_images, dtype=torch.float64).scatter_add_(
        1, draws, torch.ones(draws.shape, dtype=torch.float64))
    values, order = sets.distance.double().sort(stable=True)
    resampled = _resampled_scores(values, sets.both_correct[order], sets.sample[order], counts).numpy()
    intervals = bootstrap_intervals(sets, n_images, n_bootstrap=n_bootstrap, ci=0.9, seed=seed)
    for name, replicates in zip(("mege", "reco", "reco_as_written"), resampled):
        assert intervals[name] == pytest.approx(tuple(np.quantile(replicates, [0.05, 0.95])), rel=1e-12), name
