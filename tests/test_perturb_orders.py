"""Rank tensors for RankedMasks: map orders, tie-breaking, random superpixel orders, step counts."""

import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.perturb.engine import RankedMasks
from xaitrust.perturb.orders import (
    counts_from_fractions,
    random_segment_ranks,
    ranks_from_maps,
    uniform_fractions,
)


def test_most_and_least_important_first_rank_values_with_stable_ties():
    maps = torch.tensor([[[1.0, 3.0], [3.0, 0.0]]])
    assert ranks_from_maps(maps, "most-important-first").flatten().tolist() == [2, 0, 1, 3]
    assert ranks_from_maps(maps, "least-important-first").flatten().tolist() == [1, 2, 3, 0]


def test_random_ties_only_reorder_equal_values():
    maps = torch.tensor([[[5.0, 1.0, 1.0, 1.0, 1.0, 0.0]]])
    orders = {tuple(ranks_from_maps(maps, ties="random", seed=seed).flatten().tolist()) for seed in range(8)}
    assert len(orders) > 1
    for ranks in orders:
        assert ranks[0] == 0 and ranks[5] == 5 and sorted(ranks[1:5]) == [1, 2, 3, 4]


def test_constant_map_is_ranked_randomly_and_reproducibly():
    maps = torch.zeros(2, 4, 4)
    first = ranks_from_maps(maps, seed=3)
    assert torch.equal(first, ranks_from_maps(maps, seed=3))
    assert not torch.equal(first, ranks_from_maps(maps, seed=4))
    assert not torch.equal(first[0].flatten(), torch.arange(16))
    assert torch.equal(first[0].flatten().sort().values, torch.arange(16))


def test_random_order_is_a_seeded_permutation_per_image():
    maps = torch.rand(3, 5, 5)
    ranks = ranks_from_maps(maps, "random", seed=1)
    assert torch.equal(ranks, ranks_from_maps(maps.clone(), "random", seed=1))
    assert not torch.equal(ranks, ranks_from_maps(maps, "random", seed=2))
    assert not torch.equal(ranks[0], ranks[1])
    assert all(torch.equal(r.flatten().sort().values, torch.arange(25)) for r in ranks)
    # placeholder maps carry no identity: the images given as seed_from tell them apart
    placeholder = ranks_from_maps(torch.zeros(3, 5, 5), "random", seed=1, seed_from=torch.rand(3, 1, 5, 5))
    assert not torch.equal(placeholder[0], placeholder[1])


def test_segment_ranks_share_one_rank_per_segment_and_skip_missing_ids():
    segments = torch.tensor([[[0, 0, 7], [3, 3, 7]]])
    ranks, n_segments = random_segment_ranks(segments, n_orders=4, seed=0)
    assert ranks.shape == (4, 1, 2, 3) and n_segments.tolist() == [3, 3, 3, 3]
    for row in ranks[:, 0]:
        assert row[0, 0] == row[0, 1] and row[1, 0] == row[1, 1] and row[0, 2] == row[1, 2]
        assert sorted({int(v) for v in row.flatten()}) == [0, 1, 2]
    many = torch.arange(8).reshape(1, 2, 4)
    orders = {tuple(r.flatten().tolist()) for r in random_segment_ranks(many, n_orders=4, seed=0)[0]}
    assert len(orders) == 4


def test_ranked_masks_remove_whole_superpixels_with_per_image_counts():
    segments = torch.tensor([[[0, 0], [1, 1]], [[0, 1], [2, 3]]])
    ranks, n_segments = random_segment_ranks(segments, seed=0)
    counts = counts_from_fractions(torch.tensor([0.0, 0.5, 1.0]), n_segments)
    assert counts.tolist() == [[0, 1, 2], [0, 2, 4]]
    masks = RankedMasks(ranks, counts)
    keep = masks.keep(torch.tensor([0, 1, 1]), torch.tensor([1, 1, 2]))
    assert keep[0].sum() == 2 and (keep[0, 0, 0, 0] == keep[0, 0, 0, 1])
    assert keep[1].sum() == 2 and keep[2].sum() == 0


def test_step_counts_round_fractions():
    assert uniform_fractions(4).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert counts_from_fractions(uniform_fractions(4), 10).tolist() == [0, 2, 5, 8, 10]
    with pytest.raises(XaitrustError, match="steps"):
        uniform_fractions(0)


def test_bad_order_name_is_rejected():
    with pytest.raises(XaitrustError, match="order must be one of"):
        ranks_from_maps(torch.rand(1, 2, 2), "best-first")
