"""Localisation, ground-truth alignment and pointing game on maps whose answers are known."""

import numpy as np
import pytest
import scipy.stats
import torch

from xaitrust.errors import XaitrustError
from xaitrust.metrics.localization import gt_alignment, localization, pointing_game


@pytest.fixture
def mask():
    masks = torch.zeros(1, 8, 8, dtype=torch.bool)
    masks[0, 2:4, 2:4] = True
    return masks


def test_localization_is_the_positive_share_inside_the_mask(mask):
    maps = torch.zeros(3, 8, 8)
    maps[0, 2:4, 2:4] = 1.0  # all inside
    maps[1, 2, 2], maps[1, 7, 7] = 3.0, 1.0  # 3 of 4 inside
    maps[2, 2, 2], maps[2, 7, 7], maps[2, 0, 0] = 1.0, 1.0, -5.0  # negative attribution does not count
    torch.testing.assert_close(localization(maps, mask.expand(3, -1, -1)), torch.tensor([1.0, 0.75, 0.5]))


def test_localization_without_positive_attribution_is_nan(mask):
    with pytest.warns(UserWarning, match="no positive attribution"):
        assert torch.isnan(localization(-torch.rand(1, 8, 8), mask)).all()


def test_gt_alignment_is_spearman_with_the_mask(mask):
    maps = torch.rand(2, 8, 8)
    maps[1] = mask[0].float() * 2 + 1  # a map that is the mask itself
    expected = scipy.stats.spearmanr(maps[0].flatten(), mask[0].flatten().float()).statistic
    scores = gt_alignment(maps, mask.expand(2, -1, -1))
    assert scores[0].item() == pytest.approx(expected, abs=1e-6)
    assert scores[1].item() == pytest.approx(1.0, abs=1e-6)


def test_gt_alignment_with_an_empty_mask_is_nan():
    with pytest.warns(UserWarning, match="constant"):
        assert torch.isnan(gt_alignment(torch.rand(1, 8, 8), torch.zeros(1, 8, 8, dtype=torch.bool))).all()


def test_localization_and_pointing_game_with_an_empty_mask_are_nan(mask):
    masks = torch.cat([mask, torch.zeros_like(mask)])  # the second image has no object
    maps = torch.rand(2, 8, 8)
    for score in (localization, pointing_game):
        with pytest.warns(UserWarning, match="1 mask\\(s\\) are empty"):
            values = score(maps, masks)
        assert not torch.isnan(values[0]) and torch.isnan(values[1])


def test_pointing_game_hits_misses_and_tolerance(mask):
    maps = torch.zeros(3, 8, 8)
    maps[0, 3, 3] = 1.0  # inside
    maps[1, 5, 5] = 1.0  # two pixels away (Chebyshev) from the mask
    maps[2, 7, 0] = 1.0  # far away
    masks = mask.expand(3, -1, -1)
    torch.testing.assert_close(pointing_game(maps, masks), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(pointing_game(maps, masks, tolerance=1), torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(pointing_game(maps, masks, tolerance=2), torch.tensor([1.0, 1.0, 0.0]))


def test_pointing_game_on_a_constant_map_is_nan(mask):
    with pytest.warns(UserWarning, match="constant"):
        assert np.isnan(pointing_game(torch.ones(1, 8, 8), mask).item())


def test_mask_shape_must_match(mask):
    with pytest.raises(XaitrustError, match=r"masks must be \(N, H, W\) = \(2, 8, 8\)"):
        localization(torch.rand(2, 8, 8), mask)
    with pytest.raises(XaitrustError, match="NaN"):
        pointing_game(torch.full((1, 8, 8), float("nan")), mask)
