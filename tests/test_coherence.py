"""Otsu threshold against scikit-image and the Otsu-TV of known binary patterns."""

import numpy as np
import pytest
import torch
from skimage.filters import threshold_otsu

from xaitrust.errors import XaitrustError
from xaitrust.explainers.reduce import normalize_maps
from xaitrust.metrics._validation import ConstantMapWarning
from xaitrust.metrics.binarize import otsu_threshold
from xaitrust.metrics.coherence import binary_total_variation, otsu_tv


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_otsu_threshold_matches_scikit_image(dtype):
    generator = torch.Generator().manual_seed(0)
    maps = torch.rand(60, 14, 14, generator=generator, dtype=dtype) ** 3
    maps[:20] = (maps[:20] * 4).round()  # few grey levels: many ties
    for batch in (maps, normalize_maps(maps)):
        reference = [threshold_otsu(m) for m in batch.numpy()]
        np.testing.assert_array_equal(otsu_threshold(batch).numpy(), reference)


def test_binary_total_variation_counts_label_changes():
    square = torch.zeros(1, 8, 8, dtype=torch.bool)
    square[0, 2:5, 2:5] = True
    checker = (torch.arange(4).reshape(-1, 1) + torch.arange(4)) % 2 == 0
    torch.testing.assert_close(binary_total_variation(torch.stack([square[0], torch.zeros(8, 8, dtype=torch.bool)])), torch.tensor([12.0, 0.0]))
    assert binary_total_variation(checker[None]).item() == 24.0  # every one of the 2 * 4 * 3 neighbour pairs differs


def test_otsu_tv_of_a_blob_and_of_noise():
    blob = torch.zeros(1, 16, 16)
    blob[0, 4:8, 4:8] = 1.0
    blob[0, 10:, :] = 0.125  # a dim band, below the centre of its histogram bin: background for Otsu
    noise = torch.rand(1, 16, 16)
    scores = otsu_tv(torch.cat([blob, noise]))
    assert scores[0].item() == 16.0
    assert scores[1] > 100


def test_otsu_tv_is_nan_for_constant_maps_and_rejects_nan():
    with pytest.warns(ConstantMapWarning):
        scores = otsu_tv(torch.stack([torch.ones(6, 6), torch.eye(6)]))
    assert np.isnan(scores[0].item()) and scores[1].item() == 20.0
    with pytest.raises(XaitrustError, match="NaN"):
        otsu_tv(torch.full((1, 6, 6), float("nan")))
