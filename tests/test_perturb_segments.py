"""SLIC superpixels on noisy images: smoothing defaults, the patch-grid fallback and its flags, options."""

import math
import warnings

import numpy as np
import pytest
import torch
from skimage.segmentation import slic

from xaitrust.data.shapes import make_shapes
from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.metrics.curves import PerturbationCurves
from xaitrust.metrics.faithfulness import better_than_random, random_superpixel_deletion
from xaitrust.perturb.segments import (
    Segmentation,
    fallback_patch_size,
    feature_groups,
    feature_segmentation,
    patches,
    slic_seeds,
    superpixel_segmentation,
    superpixels,
)
from xaitrust.testing.oracles import PatchModel


def counts(ids: torch.Tensor) -> torch.Tensor:
    return ids.flatten(1).max(dim=1).values + 1


def noisy_shapes(noise: float, n: int = 12) -> torch.Tensor:
    """32 x 32 RGB shapes on a smooth texture with Gaussian pixel noise of sd ``noise``."""
    return make_shapes(n=n, size=32, channels=3, noise=noise, seed=0, split="test").x


def uniform_noise(n: int = 6, channels: int = 3, size: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(0))


def smooth_and_noise() -> torch.Tensor:
    """A smooth colour gradient (SLIC keeps its seeds) and uniform noise (SLIC collapses without smoothing)."""
    ramp = torch.linspace(0, 1, 32).expand(32, 32)
    smooth = torch.stack([ramp, ramp.T, 1 - ramp])
    return torch.stack([smooth, uniform_noise(1)[0]])


# ---------------------------------------------------------------------------------------------------- counts


@pytest.mark.parametrize("noise", [0.1, 0.2])
def test_noisy_rgb_images_keep_most_of_their_seeds(noise):
    x = noisy_shapes(noise)
    assert slic_seeds((32, 32), 50) == 36 and slic_seeds((32, 32), 100) == 121
    # measured with the defaults: 28-35 (sd 0.1) and 26-34 (sd 0.2) of 36 seeds; 109-121 of 121
    fifty = superpixel_segmentation(x, 50)
    assert counts(fifty.ids).min() >= 24 and counts(fifty.ids).float().median() >= 28
    assert not fifty.fallback.any()
    hundred = superpixel_segmentation(x, 100)
    assert counts(hundred.ids).min() >= 95 and not hundred.fallback.any()


def test_without_smoothing_noisy_rgb_images_collapse_and_fall_back_to_patches():
    x = noisy_shapes(0.2)
    raw = superpixel_segmentation(x, 50, sigma=0.0, min_segments=1)  # no fallback: SLIC's own counts
    assert counts(raw.ids).max() <= 5  # measured 1-3 of 36 seeds
    with pytest.warns(UserWarning, match=r"fewer than 18 segments .* on 12 of 12 images, down to 1 of its 36 seeds: pixel noise"):
        fallen = superpixel_segmentation(x, 50, sigma=0.0)
    assert fallen.fallback.all()
    assert torch.equal(fallen.ids, patches((32, 32), 5).expand(12, -1, -1))


def test_pure_noise_gets_superpixels_with_the_default_smoothing():
    x = uniform_noise()
    assert counts(superpixel_segmentation(x, 50).ids).min() >= 20  # measured 26-31
    assert counts(superpixel_segmentation(x, 50, sigma=0.0, min_segments=1).ids).max() == 1


def test_defaults_are_scikit_image_slic_with_smoothing_for_rgb_and_without_for_greyscale():
    rgb = noisy_shapes(0.1, n=2)
    for image, ids in zip(rgb, superpixels(rgb, 50)):
        reference = slic(image.permute(1, 2, 0).double().numpy(), n_segments=50, compactness=10.0, sigma=1.0,
                         start_label=0)
        assert np.array_equal(ids.numpy(), np.unique(reference, return_inverse=True)[1].reshape(reference.shape))
    grey = make_shapes(n=2, size=32, channels=1, noise=0.05, seed=0, split="test").x
    for image, ids in zip(grey, superpixels(grey, 50)):
        reference = slic(image[0].double().numpy(), n_segments=50, compactness=0.1, sigma=0.0, start_label=0,
                         channel_axis=None)
        assert np.array_equal(ids.numpy(), np.unique(reference, return_inverse=True)[1].reshape(reference.shape))


# ---------------------------------------------------------------------------------------------------- fallback


def test_only_the_collapsed_image_falls_back_and_is_flagged():
    x = smooth_and_noise()
    with pytest.warns(UserWarning, match=r"on 1 of 2 images") as record:
        segmentation = superpixel_segmentation(x, 50, sigma=0.0)
    message = str(record[0].message)
    assert "sigma, now 0" in message and "compactness (now 10)" in message and "32 x 32 pixels" not in message
    assert isinstance(segmentation, Segmentation)
    assert segmentation.fallback.tolist() == [False, True]
    assert counts(segmentation.ids).tolist()[1] == 49 and counts(segmentation.ids)[0] >= 18
    assert torch.equal(segmentation.ids[1], patches((32, 32), 5))


def test_a_constant_image_falls_back_when_more_segments_are_required_than_slic_can_make():
    x = torch.full((1, 3, 32, 32), 0.5)
    assert counts(superpixel_segmentation(x, 50).ids).item() == 36  # colour carries nothing: the seed grid
    with pytest.warns(UserWarning, match="fewer than 40 segments"):
        forced = superpixel_segmentation(x, 50, min_segments=40)
    assert forced.fallback.tolist() == [True] and counts(forced.ids).item() == 49


def test_fallback_patches_hold_about_the_number_of_segments_asked():
    assert fallback_patch_size((32, 32), 50) == 5  # 7 x 7 = 49 patches
    assert fallback_patch_size((32, 32), 100) == 3  # 11 x 11 = 121
    assert fallback_patch_size((28, 28), 100) == 3  # 10 x 10 = 100
    assert fallback_patch_size((8, 8), 200) == 1
    assert slic_seeds((28, 28), 100) == 81 and slic_seeds((8, 8), 200) == 64


def test_patches_and_given_options_never_fall_back():
    x = uniform_noise(2)
    assert not feature_segmentation(x, "patches", patch_size=4).fallback.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not superpixel_segmentation(x, 50, sigma=0.0, min_segments=1).fallback.any()


def test_a_small_image_warns_about_its_size_not_about_noise():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"images of 8 x 8 pixels hold only 64 SLIC seeds") as record:
        segmentation = superpixel_segmentation(x, 200)
    assert not segmentation.fallback.any() and len(record) == 1


# ---------------------------------------------------------------------------------------------------- invariance


def test_segments_do_not_depend_on_the_batch_and_repeat_exactly():
    x = torch.cat([smooth_and_noise(), noisy_shapes(0.2, n=2)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = superpixel_segmentation(x, 50, sigma=0.0)
        again = superpixel_segmentation(x, 50, sigma=0.0)
        alone = [superpixel_segmentation(x[b : b + 1], 50, sigma=0.0) for b in range(len(x))]
    assert batch.fallback.tolist() == [False, True, True, True]
    assert torch.equal(batch.ids, again.ids) and torch.equal(batch.fallback, again.fallback)
    assert torch.equal(batch.ids, torch.cat([s.ids for s in alone]))
    assert torch.equal(batch.fallback, torch.cat([s.fallback for s in alone]))
    default = superpixel_segmentation(x, 50)
    assert torch.equal(default.ids[2:], superpixel_segmentation(x[2:], 50).ids)


def test_plain_id_functions_match_the_segmentation():
    x = smooth_and_noise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        segmentation = superpixel_segmentation(x, 30, sigma=0.0, compactness=20.0)
        assert torch.equal(superpixels(x, 30, 20.0, 0.0), segmentation.ids)
        assert torch.equal(feature_groups(x, n_segments=30, compactness=20.0, sigma=0.0), segmentation.ids)


# ---------------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    "options, parameter",
    [
        ({"n_segments": 0}, "n_segments"),
        ({"n_segments": 2.5}, "n_segments"),
        ({"n_segments": True}, "n_segments"),
        ({"compactness": 0.0}, "compactness"),
        ({"compactness": math.nan}, "compactness"),
        ({"sigma": -0.5}, "sigma"),
        ({"sigma": math.inf}, "sigma"),
        ({"min_segments": 0}, "min_segments"),
        ({"min_segments": 1.5}, "min_segments"),
    ],
)
def test_bad_options_are_refused_with_the_parameter_named(options, parameter):
    with pytest.raises(XaitrustError, match=rf"^{parameter} must be"):
        superpixel_segmentation(uniform_noise(1), **options)
    if parameter != "n_segments":
        with pytest.raises(XaitrustError, match=rf"^{parameter} must be"):
            random_superpixel_deletion(PatchModel(slice(0, 4), slice(0, 4)), uniform_noise(1), 0, **options)


@pytest.mark.parametrize("name", ["kernelshap", "lime"])
@pytest.mark.parametrize(
    "options, message",
    [
        ({"sigma": -1.0}, "sigma must be a finite number >= 0"),
        ({"min_segments": 0}, "min_segments must be a positive integer"),
        ({"min_segments": 2.0}, "min_segments must be a positive integer"),
    ],
)
def test_surrogate_explainers_refuse_bad_segmentation_options_when_built(name, options, message):
    with pytest.raises(XaitrustError, match=rf"^{name}: {message}"):
        get_explainer(name, **options)


# ---------------------------------------------------------------------------------------------------- consumers


@pytest.mark.parametrize("name", ["kernelshap", "lime"])
def test_surrogate_explainers_record_which_images_fell_back(name):
    model = PatchModel(slice(8, 16), slice(8, 16))
    x = smooth_and_noise()
    explainer = get_explainer(name, n_samples=16, n_segments=50, sigma=0.0)
    assert explainer.params()["sigma"] == 0.0 and explainer.params()["min_segments"] is None
    with pytest.warns(UserWarning, match="on 1 of 2 images"):
        attributions = explainer(model, x, 0)
    with pytest.warns(UserWarning, match="on 1 of 2 images"):
        assert explainer.segmentation(x).fallback.tolist() == [False, True]
    # the fallen-back image is explained on the 7 x 7 patch grid: one value per patch
    grid = patches((32, 32), 5)
    for patch in range(49):
        values = attributions[1, 0][grid == patch]
        assert torch.all(values == values[0])
    smoothed = get_explainer(name, n_samples=16, n_segments=50)
    assert smoothed.segmentation(x).fallback.tolist() == [False, False]
    on_patches = get_explainer(name, n_samples=16, features="patches")
    assert on_patches.segmentation(x).fallback.tolist() == [False, False]


def test_the_random_superpixel_baseline_reports_its_fallback():
    model = PatchModel(slice(8, 16), slice(8, 16))
    x = smooth_and_noise()
    settings = dict(n_orders=2, steps=10, replacement="zero")
    with pytest.warns(UserWarning, match="on 1 of 2 images"):
        baseline = random_superpixel_deletion(model, x, 0, 50, sigma=0.0, **settings)
    assert isinstance(baseline, PerturbationCurves) and baseline.fallback.tolist() == [False, True]
    maps = torch.rand(2, 32, 32)
    reused = better_than_random(model, x, maps, 0, 50, steps=10, replacement="zero", baseline=baseline)
    assert reused.fallback.tolist() == [False, True]
    smoothed = better_than_random(model, x, maps, 0, 50, **settings)
    assert smoothed.fallback.tolist() == [False, False]
    given = random_superpixel_deletion(model, x, 0, segments=patches((32, 32), 8), **settings)
    assert given.fallback.tolist() == [False, False]
    plain = PerturbationCurves(baseline.curves, baseline.fractions, baseline.area, baseline.clean_score, True)
    with pytest.raises(XaitrustError, match="baseline must be the result of random_superpixel_deletion"):
        better_than_random(model, x, maps, 0, steps=10, replacement="zero", baseline=plain)
