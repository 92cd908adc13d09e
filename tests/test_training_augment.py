"""Statistics of the training augmentations against their closed forms."""

import json
import math

import pytest
import torch
from scipy import ndimage

from xaitrust.errors import XaitrustError
from xaitrust.training import TrainConfig, augment_batch, feature_perturbation, horizontal_flip, random_erasing
from xaitrust.training.augment import removed_share, square_cover


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_torch_thread):
    with one_torch_thread():
        yield


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


def fpa_zero_probability(p1_max, p2, s_max, height, width, squares="every-pixel"):
    """Expected share of zeroed pixels in a perturbed batch of non-zero images, border effects included.

    For a given p1, pixel (i, j) stays when it is not dropped (1 - p1) and no corner at offset (a, b) <= (i, j)
    covers it; a corner there covers it with probability q * P(s > max(a, b)) = q * (s_max - max(a, b)) / s_max, with
    q = p2 at every position ("every-pixel") or q = p1 * p2 at dropped pixels only ("selected", where the pixel's own
    corner adds nothing). The share is averaged over p1 ~ U(0, p1_max) by the midpoint rule.
    """
    grid = [(k + 0.5) / 400 * p1_max for k in range(400)]
    total = 0.0
    for p1 in grid:
        q = p2 if squares == "every-pixel" else p1 * p2
        kept = 0.0
        for i in range(height):
            for j in range(width):
                product = 1.0
                for a in range(min(i, s_max - 1) + 1):
                    for b in range(min(j, s_max - 1) + 1):
                        if squares == "selected" and a == b == 0:
                            continue
                        product *= 1 - q * (s_max - max(a, b)) / s_max
                kept += product
        total += 1 - (1 - p1) * kept / (height * width)
    return total / len(grid)


def test_flip_is_exact_mirror_and_chosen_with_probability_p():
    x = torch.rand(4000, 2, 5, 7)
    flipped = horizontal_flip(x, _generator(), p=0.3)
    mirrored = (flipped == x.flip(-1)).flatten(1).all(1)
    unchanged = (flipped == x).flatten(1).all(1)
    assert bool((mirrored ^ unchanged).all())  # every image is exactly one of the two
    assert abs(mirrored.float().mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 4000)
    assert torch.equal(horizontal_flip(x, _generator(), p=1.0), x.flip(-1))


def test_square_cover_places_exact_squares_cut_at_the_border():
    starts = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    sides = torch.ones(1, 1, 6, 6, dtype=torch.long)
    starts[0, 0, 1, 2], sides[0, 0, 1, 2] = True, 3
    starts[0, 0, 5, 4], sides[0, 0, 5, 4] = True, 2  # runs over the bottom border: only row 5, columns 4-5
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[1:4, 2:5] = True
    expected[5, 4:6] = True
    assert torch.equal(square_cover(starts, sides, s_max=3)[0, 0], expected)


def test_fpa_pixel_dropout_matches_expected_p1():
    x = torch.ones(4, 1, 8, 8)
    generator = _generator()
    shares = [1 - feature_perturbation(x, generator, p=1.0, p1_max=0.25, p2=0.0).mean().item() for _ in range(300)]
    assert abs(sum(shares) / len(shares) - 0.125) < 0.02  # E[p1] = p1_max / 2; sd of the mean ~0.0045


def test_fpa_squares_alone_match_the_closed_form():
    x = torch.ones(32, 1, 20, 20)
    shares = [1 - feature_perturbation(x, _generator(s), 1.0, 0.0, 0.05, 4, squares="every-pixel").mean().item()
              for s in range(20)]
    expected = fpa_zero_probability(0.0, 0.05, 4, 20, 20)
    assert abs(sum(shares) / len(shares) - expected) < 0.01
    assert expected > 0.25  # the check has teeth: squares cover far more than p2 alone


@pytest.mark.parametrize("squares", ["selected", "every-pixel"])
def test_fpa_paper_defaults_match_the_closed_form_and_keep_channels_together(squares):
    x = torch.ones(4, 3, 12, 12)
    generator = _generator()
    outputs = [feature_perturbation(x, generator, p=1.0, squares=squares) for _ in range(300)]
    share = sum(1 - out.mean().item() for out in outputs) / len(outputs)
    assert abs(share - fpa_zero_probability(0.25, 0.1, 3, 12, 12, squares)) < 0.02  # sd of the mean ~0.003
    assert all(bool((out == out[:, :1]).all()) for out in outputs)  # a pixel is zeroed in all its channels


def test_fpa_squares_start_only_at_selected_pixels_by_default():
    # The text: "with a probability of p^2 for each selected pixel, we create a non-informative square". Algorithm 1's
    # literal loop removes about 2.5 times as many pixels with the small-image values.
    selected = removed_share((4, 1, 28, 28), squares="selected", batches=1500)
    every = removed_share((4, 1, 28, 28), squares="every-pixel", batches=1500)
    assert abs(selected - fpa_zero_probability(0.25, 0.1, 3, 28, 28, "selected")) < 0.01
    assert abs(every - fpa_zero_probability(0.25, 0.1, 3, 28, 28, "every-pixel")) < 0.02
    assert every > 2 * selected
    assert TrainConfig().fpa_squares == "selected"
    x = torch.ones(16, 1, 28, 28)
    assert torch.equal(feature_perturbation(x, _generator(3), p=1.0),
                       feature_perturbation(x, _generator(3), p=1.0, squares="selected"))
    with pytest.raises(XaitrustError, match="fpa_squares"):
        TrainConfig(fpa_squares="everywhere")


def test_fpa_square_sides_lie_between_one_and_s_max():
    x = torch.ones(200, 1, 40, 40)
    out = feature_perturbation(x, _generator(), p=1.0, p1_max=0.0, p2=0.002, s_max=4, squares="every-pixel")
    sides = []
    for image in out[:, 0]:
        labels, count = ndimage.label(image == 0)
        for region in ndimage.find_objects(labels):
            height, width = (s.stop - s.start for s in region)
            patch = labels[region]
            if height == width and (patch > 0).all():
                sides.append(height)
    assert len(sides) > 500
    assert set(sides) == {1, 2, 3, 4}  # every side 1..s_max occurs, none larger (overlaps are rare at p2=0.002)


def test_fpa_perturbs_a_share_p_of_the_batches():
    x = torch.ones(2, 1, 6, 6)
    generator = _generator()
    changed = [bool((feature_perturbation(x, generator, 0.3, 0.5, 0.5) != x).any()) for _ in range(600)]
    assert abs(sum(changed) / 600 - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 600)


def test_random_erasing_erases_one_rectangle_of_the_allowed_area():
    height, width = 32, 24
    x = torch.ones(3000, 2, height, width)
    out = random_erasing(x, _generator(), p=0.5, area=(0.02, 0.4), ratio=(0.3, 1 / 0.3))
    erased = (out[:, 0] == 0)
    counts = erased.flatten(1).sum(1)
    hit = counts > 0
    assert abs(hit.float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 3000)
    areas = []
    for mask in erased[hit]:
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert mask.sum() == h * w and h < height and w < width  # a full rectangle, smaller than the image
        areas.append((h * w).item() / (height * width))
    # rounding the sides moves the area a little beyond [0.02, 0.4]
    assert 0.01 < min(areas) < 0.04 and 0.36 < max(areas) < 0.45
    assert torch.equal(out[:, 0], out[:, 1])


def test_augment_batch_follows_the_config_and_is_seeded():
    x = torch.rand(8, 1, 10, 10)
    assert augment_batch(x, TrainConfig(), _generator()) is x
    config = TrainConfig(augmentation="erasing+flip", erasing_p=1.0, flip_p=1.0)
    first, second = augment_batch(x, config, _generator(3)), augment_batch(x, config, _generator(3))
    assert torch.equal(first, second)
    assert ((first == 0).flatten(1).sum(1) > 0).all()
    with pytest.raises(XaitrustError, match="augmentation"):
        TrainConfig(augmentation="fpa+mixup")


def test_fpa_and_erasing_fill_removed_pixels_with_the_per_channel_value():
    x = 0.05 + 0.9 * torch.rand(16, 3, 12, 12, generator=_generator(1))  # no zeros, so black marks the removed pixels
    value = (0.2, 0.5, 0.8)
    fill = torch.tensor(value).reshape(1, 3, 1, 1)
    for augment in (lambda v, g: feature_perturbation(x, g, p=1.0, value=v),
                    lambda v, g: random_erasing(x, g, p=1.0, value=v)):
        black = augment(0.0, _generator(5))  # the old behaviour: removed pixels are 0 in every channel
        removed = (black == 0).all(dim=1, keepdim=True)
        assert removed.any() and not removed.all()
        assert torch.equal(black, torch.where(removed, torch.zeros(()), x))
        # Same draws, other value: the same pixels, now set to value[c] in channel c, the rest untouched.
        assert torch.equal(augment(value, _generator(5)), torch.where(removed, fill, x))
        assert torch.equal(augment(0.5, _generator(5)), torch.where(removed, torch.tensor(0.5), x))


def test_augment_batch_uses_the_configured_fill_values():
    x = 0.05 + 0.9 * torch.rand(8, 2, 10, 10, generator=_generator(2))
    for name, key in (("fpa", "fpa_value"), ("erasing", "erasing_value")):
        config = TrainConfig(augmentation=name, fpa_p=1.0, erasing_p=1.0, **{key: (0.25, 0.75)})
        out = augment_batch(x, config, _generator(3))
        removed = (out != x).any(dim=1)
        assert removed.any()
        assert (out[:, 0][removed] == 0.25).all() and (out[:, 1][removed] == 0.75).all()
    with pytest.raises(XaitrustError, match=r"one number or one per channel \(2\); got 3"):
        augment_batch(x, TrainConfig(augmentation="fpa", fpa_p=1.0, fpa_value=(0.1, 0.2, 0.3)), _generator())


def test_fill_values_round_trip_fingerprint_and_validate():
    config = TrainConfig(augmentation="fpa+erasing", fpa_value=[0.1, 0.2, 0.3], erasing_value=0.5)
    assert config.fpa_value == (0.1, 0.2, 0.3) and config.erasing_value == 0.5
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert TrainConfig(fpa_value=1).fpa_value == 1.0 and TrainConfig().fpa_value == 0.0
    fingerprints = {TrainConfig(fpa_value=v).fingerprint() for v in (0.0, 0.5, (0.5, 0.5, 0.5))}
    fingerprints |= {TrainConfig(erasing_value=v).fingerprint() for v in (0.5, (0.1, 0.2, 0.3))}
    assert len(fingerprints) == 5
    for name in ("fpa_value", "erasing_value"):
        for bad in (float("nan"), "grey", [], [0.1, None], True, float("inf")):
            with pytest.raises(XaitrustError, match=f"{name} must be a finite number or a non-empty list"):
                TrainConfig(**{name: bad})
