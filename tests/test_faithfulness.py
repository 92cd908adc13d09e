"""Deletion, insertion and Better-Than-Random against closed-form oracles."""

import warnings

import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.metrics._validation import ConstantMapWarning
from xaitrust.metrics.faithfulness import better_than_random, deletion, insertion
from xaitrust.testing.oracles import LinearModel, PatchModel, PixelModel


def _linear_case(seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, 4, 4, generator=generator) + 1.5  # mostly positive, so the clean logit is positive
    x = torch.rand(3, 1, 4, 4, generator=generator)
    return LinearModel(weight), x, (weight * x)[:, 0]


def _cumulative_contributions(contributions, order):
    """w * x summed in rank order: entry k is the sum of the first k pixels, k = 0 .. d."""
    ordered = contributions.flatten(1).gather(1, order)
    return torch.cat([torch.zeros(len(ordered), 1), ordered.cumsum(dim=1)], dim=1)


def test_deletion_and_insertion_curves_of_a_linear_model_are_cumulative_sums_in_rank_order():
    model, x, contributions = _linear_case()
    order = contributions.flatten(1).argsort(dim=1, descending=True, stable=True)
    cumulative = _cumulative_contributions(contributions, order)
    total = cumulative[:, -1:]
    removed = deletion(model, x, contributions, 0, steps=16, replacement="zero", output="logit", normalize=False)
    inserted = insertion(model, x, contributions, 0, steps=16, replacement="zero", output="logit", normalize=False)
    torch.testing.assert_close(removed.curves, total - cumulative)
    torch.testing.assert_close(inserted.curves, cumulative)
    torch.testing.assert_close(removed.clean_score, total[:, 0])
    normalized = deletion(model, x, contributions, 0, steps=16, replacement="zero", output="logit")
    torch.testing.assert_close(normalized.curves, (total - cumulative) / total)
    torch.testing.assert_close(normalized.area, torch.trapezoid((total - cumulative) / total, dx=1 / 16, dim=1))


@pytest.mark.parametrize("position", [0, 5, 15])
def test_deletion_area_when_the_score_vanishes_with_one_pixel(position):
    # the pixel (1, 2) sits at rank `position`: the normalised curve is 1 up to step `position`, then 0
    model = PixelModel(1, 2, scale=3.0)
    x = 0.5 + 0.5 * torch.rand(1, 1, 4, 4)
    maps = -torch.arange(16.0)  # pixel k has rank k ...
    maps[[6, position]] = maps[[position, 6]]  # ... except that pixel 6 = (1, 2) and pixel `position` swap
    maps = maps.reshape(1, 4, 4)
    result = deletion(model, x, maps, 0, steps=16, replacement="zero", output="logit")
    expected_curve = (torch.arange(17) <= position).float()
    torch.testing.assert_close(result.curves[0], expected_curve)
    assert result.area.item() == pytest.approx((position + 0.5) / 16)


def test_insertion_starts_at_the_replaced_image_and_ends_at_one():
    model, x, contributions = _linear_case(1)
    result = insertion(model, x, contributions, 0, steps=8, replacement=0.5, output="logit")
    start = (0.5 * model.weight).sum() / (model.weight * x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(result.curves[:, 0], start)
    torch.testing.assert_close(result.curves[:, -1], torch.ones(3))
    assert result.fractions.tolist() == [k / 8 for k in range(9)]


def test_deletion_is_batch_and_chunk_invariant_with_the_default_blur():
    model = PatchModel(slice(1, 5), slice(2, 6))
    x = torch.rand(5, 1, 8, 8)
    maps = torch.rand(5, 8, 8)
    together = deletion(model, x, maps, 0, steps=20, batch_size=7)
    alone = torch.stack([deletion(model, x[i : i + 1], maps[i : i + 1], 0, steps=20, batch_size=1000).area[0] for i in range(5)])
    torch.testing.assert_close(together.area, alone)
    assert together.curves[:, 0].eq(1).all()


def test_better_than_random_is_one_for_the_perfect_map_and_zero_for_its_inverse():
    model = PatchModel(slice(4, 8), slice(4, 8))
    x = torch.rand(6, 1, 16, 16)
    perfect = torch.zeros(6, 16, 16)
    perfect[:, 4:8, 4:8] = 1
    perfect += 0.01 * torch.rand(6, 16, 16)
    good = better_than_random(model, x, perfect, 0, n_superpixels=20, replacement="zero")
    bad = better_than_random(model, x, -perfect, 0, n_superpixels=20, replacement="zero")
    assert good.ratio == 1.0 and bad.ratio == 0.0
    assert good.better.all() and not bad.better.any()
    torch.testing.assert_close(good.random.area, bad.random.area)
    assert torch.all(good.deletion.area < good.random.area) and torch.all(bad.deletion.area > bad.random.area)


def test_random_baseline_averages_orders_and_depends_only_on_the_seed():
    model = PatchModel(slice(0, 4), slice(0, 4))
    x = torch.rand(2, 1, 8, 8)
    segments = torch.arange(16).reshape(4, 4).repeat_interleave(2, 0).repeat_interleave(2, 1).expand(2, -1, -1)
    maps = torch.rand(2, 8, 8)
    settings = dict(n_orders=3, segments=segments, steps=16, replacement="zero", output="logit")
    one = better_than_random(model, x, maps, 0, seed=5, **settings)
    again = better_than_random(model, x, maps, 0, seed=5, **settings)
    other = better_than_random(model, x, maps, 0, seed=6, **settings)
    torch.testing.assert_close(one.random.curves, again.random.curves)
    assert not torch.allclose(one.random.area, other.random.area)
    # with 16 blocks and 16 steps each step removes one block: the mean curve's end is 0 logit / clean logit
    assert one.random.curves[:, -1].abs().max() < 1e-6 and one.random.curves[:, 0].eq(1).all()


def test_nan_maps_and_wrong_shapes_are_errors():
    model, x, contributions = _linear_case()
    broken = contributions.clone()
    broken[1, 0, 0] = float("nan")
    with pytest.raises(XaitrustError, match=r"NaN or infinite values for 1 sample\(s\) \(first: \[1\]\)"):
        deletion(model, x, broken, 0)
    with pytest.raises(XaitrustError, match=r"must have shape \(B, H, W\) = \(3, 4, 4\)"):
        insertion(model, x, contributions[:, :3], 0)


def test_constant_maps_warn_and_are_ranked_like_a_random_order():
    model, x, _ = _linear_case()
    with pytest.warns(ConstantMapWarning, match="3 of 3 maps are constant"):
        result = deletion(model, x, torch.zeros(3, 4, 4), 0, steps=16, replacement="zero", output="logit", normalize=False)
    pixel_order = torch.arange(16).expand(3, -1)
    row_major = (model.weight * x).sum(dim=(1, 2, 3))[:, None] - _cumulative_contributions((model.weight * x)[:, 0], pixel_order)
    assert not torch.allclose(result.curves, row_major)


def test_non_positive_clean_logit_warns_about_normalisation():
    x = torch.rand(2, 1, 4, 4)
    with pytest.warns(UserWarning, match="2 of 2 clean logit scores are <= 0"):
        deletion(LinearModel(-torch.ones(1, 4, 4)), x, x[:, 0], 0, steps=4, output="logit", replacement="zero")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deletion(LinearModel(torch.ones(1, 4, 4)), x, x[:, 0], 0, steps=4, output="logit", replacement="zero")


def test_uniform_noise_replacement_is_fixed_by_the_seed():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    model.num_classes = 3
    x, maps = torch.rand(3, 1, 4, 4), torch.rand(3, 4, 4)
    area = lambda seed: deletion(model, x, maps, 0, steps=4, replacement="uniform", seed=seed).area  # noqa: E731
    torch.manual_seed(1)
    first = area(0)
    torch.manual_seed(2)  # the global random state must not matter
    torch.testing.assert_close(area(0), first, rtol=0, atol=0)
    assert not torch.equal(area(1), first)
    btr = better_than_random(model, x, maps, 0, n_superpixels=4, n_orders=2, steps=4, replacement="uniform", seed=0)
    torch.testing.assert_close(btr.deletion.area, first, rtol=0, atol=0)
