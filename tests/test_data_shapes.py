"""The synthetic shapes dataset: ground-truth masks, determinism, class information only in the object."""

import pytest
import torch
import torch.nn.functional as F

from xaitrust.data import load_dataset
from xaitrust.data.shapes import CHUNK, CLASSES, CLEARANCE
from xaitrust.errors import XaitrustError


@pytest.fixture(scope="module")
def clean():
    """Shapes without pixel noise, so that object and distractor colours can be read back exactly."""
    return load_dataset("shapes", n=600, noise=0.0, seed=3)


def test_masks_are_non_empty_and_inside_the_image():
    data = load_dataset("shapes", n=CHUNK + 76, size=16)  # more than one rendering chunk
    assert data.x.shape == (CHUNK + 76, 1, 16, 16) and data.masks.shape == (CHUNK + 76, 16, 16)
    assert data.masks.sum(dim=(1, 2)).min().item() >= 5
    border = data.masks[:, 0].any() | data.masks[:, -1].any() | data.masks[:, :, 0].any() | data.masks[:, :, -1].any()
    assert not border.item()
    assert torch.bincount(data.y).max() - torch.bincount(data.y).min() <= 1


def test_object_pixels_carry_one_colour_and_distractors_keep_clear(clean):
    x, masks = clean.x[:, 0], clean.masks
    inside = torch.where(masks, x, torch.nan)
    low, high = inside.nan_to_num(2.0).amin(dim=(1, 2)), inside.nan_to_num(-1.0).amax(dim=(1, 2))
    assert torch.equal(low, high) and low.min().item() >= 0.5
    ring = F.max_pool2d(masks.float()[:, None], 2 * CLEARANCE + 1, 1, CLEARANCE)[:, 0].bool() & ~masks
    assert x[ring].max().item() <= 0.45  # only background texture next to the object, no distractor
    distractor_pixels = ((x >= 0.5) & ~masks).sum(dim=(1, 2)).float()
    assert distractor_pixels.mean().item() > 5  # distractors are there ...
    per_class = torch.stack([distractor_pixels[clean.y == c].mean() for c in range(len(CLASSES))])
    assert (per_class / distractor_pixels.mean() - 1).abs().max().item() < 0.3  # ... equally in every class


def test_shape_of_the_mask_tells_the_class(clean):
    masks = clean.masks
    box = masks.any(dim=2).sum(dim=1) * masks.any(dim=1).sum(dim=1)
    fill = masks.sum(dim=(1, 2)) / box
    by_name = {name: fill[clean.y == c] for c, name in enumerate(CLASSES)}
    assert torch.all(by_name["square"] == 1.0)
    assert by_name["circle"].min() > 0.7 and by_name["triangle"].max() < 0.65
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    area = masks.sum(dim=(1, 2))
    centre_row = (masks * rows).sum(dim=(1, 2)) / area
    centre_col = (masks * cols).sum(dim=(1, 2)) / area
    centre = masks[torch.arange(len(masks)), centre_row.round().long(), centre_col.round().long()]
    ring = clean.y == CLASSES.index("ring")
    assert not centre[ring].any() and centre[clean.y == CLASSES.index("circle")].all()


def test_object_pixels_stand_out_from_the_rest():
    data = load_dataset("shapes", n=300)
    object_mean = data.x[:, 0][data.masks].mean().item()
    other_mean = data.x[:, 0][~data.masks].mean().item()
    assert object_mean - other_mean > 0.3


def test_seeded_and_splits_differ():
    first = load_dataset("shapes", n=20, seed=5)
    again = load_dataset("shapes", n=20, seed=5)
    assert torch.equal(first.x, again.x) and torch.equal(first.masks, again.masks) and torch.equal(first.y, again.y)
    assert not torch.equal(first.x, load_dataset("shapes", n=20, seed=6).x)
    test = load_dataset("shapes", n=20, seed=5, split="test")
    assert test.split == "test" and not torch.equal(first.masks, test.masks)
    assert (first.x[:, None] - test.x[None]).abs().flatten(2).amax(dim=2).min().item() > 0.1  # no shared image


def test_rgb_variant_colours_are_independent_of_class():
    data = load_dataset("shapes", n=600, channels=3, noise=0.0)
    assert data.x.shape == (600, 3, 32, 32)
    colours = torch.stack([data.x[i, :, data.masks[i]][:, 0] for i in range(len(data))])  # one object pixel each
    assert (colours.amax(dim=1) - colours.amin(dim=1)).mean().item() > 0.1  # coloured, not grey
    per_class = torch.stack([colours[data.y == c].mean(dim=0) for c in range(len(CLASSES))])
    assert (per_class - colours.mean(dim=0)).abs().max().item() < 0.05
    assert colours.min().item() >= 0.5


@pytest.mark.parametrize(
    "options, message",
    [
        ({"channels": 2}, "channels must be 1"),
        ({"size": 8}, "size must be an integer of at least 16"),
        ({"n": 0}, "n .samples per split. must be a positive integer"),
        ({"noise": -0.1}, r"noise .* must lie in \[0, 0.5\]"),
    ],
)
def test_bad_options(options, message):
    with pytest.raises(XaitrustError, match=message):
        load_dataset("shapes", **options)
