"""Distances between maps against SciPy / scikit-image and the MeGe paper's two sanity tests."""

import numpy as np
import pytest
import scipy.stats
import torch
from skimage.metrics import structural_similarity

from xaitrust.errors import XaitrustError
from xaitrust.metrics.correlation import average_ranks, spearman
from xaitrust.metrics.distance_sanity import distance_sanity_tests
from xaitrust.metrics.distances import DISTANCES, MapDistance, get_distance
from xaitrust.metrics.ssim import ssim


def _maps(n=6, size=9, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, size, size, generator=generator, dtype=dtype), torch.rand(n, size, size, generator=generator, dtype=dtype)


def test_average_ranks_match_scipy_with_ties():
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 5, (30, 50), generator=generator).float()
    values[3] = 1.0  # a constant row
    np.testing.assert_array_equal(average_ranks(values).numpy(), scipy.stats.rankdata(values.numpy(), axis=1))
    tied_free = torch.rand(4, 100, generator=generator, dtype=torch.float64)
    np.testing.assert_array_equal(average_ranks(tied_free).numpy(), scipy.stats.rankdata(tied_free.numpy(), axis=1))


def test_spearman_distance_matches_scipy_with_ties():
    a, b = _maps(n=8)
    a[:, :4] = 0.0
    b[:, 5:] = b[:, 5:].round(decimals=1)
    rho = [scipy.stats.spearmanr(x.flatten(), y.flatten()).statistic for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(spearman(a.flatten(1), b.flatten(1)).numpy(), rho, atol=1e-6)
    np.testing.assert_allclose(get_distance("spearman")(a, b).numpy(), 1 - np.abs(rho), atol=1e-6)
    assert get_distance("spearman")(a, -a).max() < 1e-6  # anti-correlated maps are as close as identical ones


@pytest.mark.parametrize("dtype, data_range, win_size, tol", [(torch.float64, 1.0, 7, 1e-10), (torch.float32, 2.0, 5, 1e-5)])
def test_ssim_matches_scikit_image(dtype, data_range, win_size, tol):
    a, b = _maps(n=5, size=12, dtype=dtype)
    b = 0.6 * a + 0.4 * b
    ours = ssim(a, b, data_range=data_range, win_size=win_size)
    reference = [structural_similarity(x, y, data_range=data_range, win_size=win_size) for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(ours.numpy(), reference, atol=tol)
    assert ssim(a, a).min() == pytest.approx(1.0)


def test_ssim_rejects_small_images():
    with pytest.raises(XaitrustError, match="at least 7x7"):
        ssim(torch.rand(2, 5, 5), torch.rand(2, 5, 5))


def test_wasserstein_on_a_row_matches_scipy():
    a, b = torch.rand(4, 1, 11), torch.rand(4, 1, 11)
    positions = np.arange(11)
    reference = [scipy.stats.wasserstein_distance(positions, positions, x[0], y[0]) for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(get_distance("wasserstein")(a, b).numpy(), reference, atol=1e-9)


def test_wasserstein_moves_mass_across_the_image():
    a, b = torch.zeros(2, 6, 7), torch.zeros(2, 6, 7)
    a[0, 1, 1], b[0, 4, 5] = 2.0, 1.0  # a point moved by (3, 4): Manhattan ground distance 7
    a[1, 0, 0], a[1, 5, 6], b[1, 0, 6] = 1.0, -1.0, 3.0  # half the mass travels 6, half 5
    torch.testing.assert_close(get_distance("wasserstein")(a, b), torch.tensor([7.0, 5.5], dtype=torch.float64))


def test_dice_l1_l2_known_values():
    a, b = torch.zeros(1, 8, 8), torch.zeros(1, 8, 8)
    a[0, :2, :4] = 1.0  # 8 foreground pixels
    b[0, :2, 2:6] = 1.0  # 8 pixels, 4 shared
    assert get_distance("dice")(a, b).item() == pytest.approx(1 - 2 * 4 / 16)
    assert get_distance("l1")(a, b).item() == pytest.approx(8.0)
    assert get_distance("l2")(a, b).item() == pytest.approx(8.0**0.5)
    assert get_distance("ssim")(a, a).item() == pytest.approx(0.0, abs=1e-6)


def test_distances_are_batch_invariant():
    a, b = _maps(n=4, size=8)
    for name in ("spearman", "dice", "ssim", "l1", "l2"):
        together = get_distance(name)(a, b)
        alone = torch.cat([get_distance(name)(a[i : i + 1], b[i : i + 1]) for i in range(4)])
        torch.testing.assert_close(together, alone, msg=name)


def test_bad_pairs_raise():
    a, b = _maps()
    with pytest.raises(XaitrustError, match="same shape"):
        get_distance("l1")(a, b[:, :5])
    with pytest.raises(XaitrustError, match="NaN"):
        get_distance("l1")(a, b.masked_fill(b > 0.9, float("nan")))
    with pytest.raises(XaitrustError, match="unknown distance 'cosine'; available: spearman"):
        get_distance("cosine")


def test_sanity_tests_pass_for_spearman_and_norms_and_catch_a_blind_distance():
    results = distance_sanity_tests(["spearman", "l1", "l2"], n_positions=40, repeats=10)
    for name in ("spearman", "l1", "l2"):
        assert results[name].passes, name
        assert torch.all(results[name].noise.mean(dim=1).diff() > 0), name
    # a distance between sorted pixel values ignores where the point is: it fails the moving-point test
    blind = MapDistance("sorted-values", "", lambda m: m.flatten(1).sort(dim=1).values, lambda a, b: (a - b).abs().sum(dim=1))
    outcome = distance_sanity_tests([blind], n_positions=40, repeats=10)["sorted-values"]
    assert not outcome.passes_moving_point and outcome.passes_noise


def test_wasserstein_passes_both_sanity_tests():
    outcome = distance_sanity_tests(["wasserstein"], size=16, radius=3.0, n_positions=12, sigmas=(0.1, 0.3, 1.0), repeats=3)["wasserstein"]
    assert outcome.passes and outcome.moving_point_drop == 0.0
    # the point moves 0..(16 - 1 - 2 * 6) = 3 pixels; W1 (Manhattan) grows with it, up to resampling
    assert outcome.moving_point[-1].item() == pytest.approx(3.0, abs=0.1)


def test_registry_lists_the_paper_candidates():
    assert set(DISTANCES) == {"spearman", "wasserstein", "dice", "ssim", "l1", "l2"}
