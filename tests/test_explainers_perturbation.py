"""Perturbation explainers (RISE, Meaningful Perturbation, occlusion, KernelSHAP, LIME, random) and their mask sets."""

import itertools
import math
import re
import warnings

import numpy as np
import pytest
import torch
from captum.attr import Occlusion as CaptumOcclusion
from skimage.segmentation import slic
from torch import nn

from xaitrust.errors import XaitrustError
from xaitrust.explainers import available_explainers, get_explainer
from xaitrust.perturb.masks import CoalitionMasks, RiseMasks, WindowMasks, mask_weighted_sum
from xaitrust.perturb.segments import check_segments, feature_groups, patches, superpixels
from xaitrust.testing.oracles import LinearModel, PatchModel

PATCH = (slice(4, 8), slice(8, 12))


def patch_model():
    """Class 0's logit is the sum of the 4x4 patch ``PATCH`` of channel 0; class 1's is 0."""
    return PatchModel(*PATCH, scale=16.0)


class SmallCnn(nn.Module):
    def __init__(self, channels=1, num_classes=3, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.num_classes = num_classes
        self.body = nn.Sequential(
            nn.Conv2d(channels, 4, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16, num_classes),
        )

    def forward(self, x):
        return self.body(x)


class LevelRecorder(nn.Module):
    """A perturbation-aware model that records the levels it is given."""

    accepts_perturbation_level = True
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.inner = patch_model()
        self.levels = []

    def forward(self, x, perturbation_level):
        self.levels.append(perturbation_level.detach().clone())
        return self.inner(x)


def patch_images(n=2, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return 0.2 + 0.8 * torch.rand(n, 1, size, size, generator=generator)


def bright_patch_images(n=2):
    """Dark images with the model's patch bright: SLIC cuts it out as its own superpixel, and blurring dims it."""
    x = torch.full((n, 1, 16, 16), 0.2)
    x[:, :, PATCH[0], PATCH[1]] = 0.9
    return x


def all_masks(masks):
    """Every mask of a set shared by all images: ``(M, 1, H, W)``."""
    return masks.keep(torch.zeros(masks.num_masks, dtype=torch.long), torch.arange(masks.num_masks))


def patch_share(attribution):
    """Share of the positive attribution mass that lies on the model's patch, per image."""
    positive = attribution.clamp_min(0).sum(dim=1)
    return positive[:, PATCH[0], PATCH[1]].flatten(1).sum(1) / positive.flatten(1).sum(1)


@pytest.fixture(autouse=True)
def _fixed_chunk_size(monkeypatch):
    """Skip the engine's per-model chunk-size probe (a forward pass with hooks on every layer): one chunk size for
    every model of these tests."""
    monkeypatch.setattr("xaitrust.perturb.engine.auto_batch_size", lambda *args, **kwargs: 256)


# ---------------------------------------------------------------------------------------------------- registry


def test_every_perturbation_explainer_is_registered():
    names = {info.name for info in available_explainers()}
    assert {"rise", "meaningful-perturbation", "occlusion", "kernelshap", "lime", "random"} <= names


# ---------------------------------------------------------------------------------------------------- segments


def test_patches_number_groups_row_by_row_with_smaller_edge_patches():
    ids = patches((5, 7), 3)
    assert ids.tolist() == [
        [0, 0, 0, 1, 1, 1, 2],
        [0, 0, 0, 1, 1, 1, 2],
        [0, 0, 0, 1, 1, 1, 2],
        [3, 3, 3, 4, 4, 4, 5],
        [3, 3, 3, 4, 4, 4, 5],
    ]


def test_superpixels_match_scikit_image_slic_up_to_renumbering():
    x = torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    ours = superpixels(x, n_segments=12)
    for image, segments in zip(x, ours):
        reference = slic(image.permute(1, 2, 0).double().numpy(), n_segments=12, compactness=10.0, sigma=1.0,
                         start_label=0)
        _, renumbered = np.unique(reference, return_inverse=True)
        assert np.array_equal(segments.numpy(), renumbered.reshape(reference.shape))


def test_superpixels_split_a_two_tone_grayscale_image_along_its_edge():
    x = torch.zeros(1, 1, 12, 12)
    x[..., 6:] = 1.0
    segments = superpixels(x, n_segments=4)[0]
    left, right = set(segments[:, :6].unique().tolist()), set(segments[:, 6:].unique().tolist())
    assert not left & right
    assert sorted(left | right) == list(range(len(left | right)))  # renumbered 0 .. n - 1


def test_superpixels_warn_when_the_image_holds_far_fewer_segments_than_asked():
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match=r"segments per image \(median .*\) for the 200 asked: images of 8 x 8"):
        superpixels(x, n_segments=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        superpixels(x, n_segments=16)


def test_segment_errors_are_clear():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(XaitrustError, match="integer"):
        check_segments(torch.zeros(8, 8), x)
    with pytest.raises(XaitrustError, match=r"\(H, W\) or \(B, H, W\)"):
        check_segments(torch.zeros(3, 8, 8, dtype=torch.long), x)
    with pytest.raises(XaitrustError, match="feature groups"):
        feature_groups(x, "pixels")
    with pytest.raises(XaitrustError, match="patch size"):
        patches((8, 8), 0)
    assert check_segments(patches((8, 8), 4), x).shape == (2, 8, 8)


# ---------------------------------------------------------------------------------------------------- mask sets


def test_rise_masks_are_blended_grids_with_the_keep_probability_as_mean():
    masks = RiseMasks((28, 28), num_masks=2000, grid_size=8, keep_prob=0.6, seed=3)
    keep = all_masks(masks)
    assert keep.shape == (2000, 1, 28, 28)
    assert keep.min() >= 0 and keep.max() <= 1
    assert abs(keep.mean().item() - 0.6) < 0.02
    assert ((keep > 0.01) & (keep < 0.99)).float().mean() > 0.2  # upsampled, not binary
    full = all_masks(RiseMasks((10, 10), num_masks=5, keep_prob=1.0))
    assert torch.allclose(full, torch.ones_like(full))


def test_rise_masks_are_rebuilt_identically_for_any_chunking():
    masks = RiseMasks((12, 12), num_masks=40, grid_size=4, seed=7)
    whole = all_masks(masks)
    parts = torch.cat([masks.keep(torch.full((n,), 3), torch.arange(s, s + n)) for s, n in ((0, 13), (13, 27))])
    assert torch.equal(whole, parts)
    other = all_masks(RiseMasks((12, 12), num_masks=40, grid_size=4, seed=8))
    assert not torch.equal(whole, other)


def test_rise_masks_too_large_to_keep_are_rebuilt_per_chunk_identically(monkeypatch):
    kept = RiseMasks((12, 12), num_masks=40, grid_size=4, seed=7)
    monkeypatch.setattr("xaitrust.perturb.masks.MASK_BLOCK_BYTES", 1000)
    rebuilt = RiseMasks((12, 12), num_masks=40, grid_size=4, seed=7)
    assert kept.built is not None and rebuilt.built is None
    index = torch.tensor([5, 0, 39, 5])
    assert torch.equal(kept.keep(index, index), rebuilt.keep(index, index))


def test_window_masks_cover_every_pixel_and_cut_the_last_windows_at_the_edge():
    windows = WindowMasks((7, 7), window=3, stride=2)
    assert windows.num_masks == 9
    removed = 1 - all_masks(windows)
    assert removed.sum(dim=(1, 2, 3)).tolist() == [9.0] * 9
    assert (removed.sum(dim=0) > 0).all()
    cut = 1 - WindowMasks((6, 6), window=3, stride=2).keep(torch.zeros(1, dtype=torch.long), torch.tensor([8]))
    assert cut[0, 0, 4:, 4:].sum() == 4 and cut.sum() == 4  # the corner window keeps only its 2x2 inside part


def test_coalition_masks_keep_the_pixels_of_kept_groups():
    segments = torch.tensor([[[0, 0, 1], [2, 2, 1]], [[1, 1, 1], [0, 0, 0]]])
    coalitions = torch.tensor([[[1, 0, 1], [0, 1, 0]], [[0, 1, 0], [1, 0, 0]]])
    masks = CoalitionMasks(coalitions, segments)
    keep = masks.keep(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    assert keep[:, 0].tolist() == [
        [[1, 1, 0], [1, 1, 0]],
        [[0, 0, 1], [0, 0, 1]],
        [[1, 1, 1], [0, 0, 0]],
        [[0, 0, 0], [1, 1, 1]],
    ]
    with pytest.raises(XaitrustError, match="segment ids reach"):
        CoalitionMasks(coalitions[:, :, :1], segments)


def test_mask_weighted_sum_equals_the_dense_sum_for_any_block_size():
    masks = RiseMasks((9, 9), num_masks=23, grid_size=3, seed=1)
    dense = all_masks(masks)
    weights = torch.randn(4, 23)
    expected = torch.einsum("bm,mchw->bchw", weights, dense)
    for block_size in (None, 1, 7, 23):
        assert torch.allclose(mask_weighted_sum(weights, masks, block_size), expected, atol=1e-5)


# ---------------------------------------------------------------------------------------------------- RISE


def test_rise_equals_a_naive_loop_over_the_same_masks():
    model = SmallCnn(channels=2)
    x = torch.rand(2, 2, 6, 6)
    explainer = get_explainer("rise", n_masks=30, grid_size=3, keep_prob=0.5, interpolation="bilinear", seed=4)
    ours = explainer(model, x, torch.tensor([0, 2]), output="probability")
    masks = all_masks(RiseMasks((6, 6), 30, 3, 0.5, "bilinear", seed=4))
    expected = torch.zeros(2, 1, 6, 6)
    with torch.no_grad():
        for b, target in enumerate((0, 2)):
            for mask in masks:
                expected[b] += torch.softmax(model(x[b : b + 1] * mask), dim=1)[0, target] * mask
    expected /= 0.5 * 30
    assert torch.allclose(ours, expected.expand(-1, 2, -1, -1), atol=1e-5)


def test_rise_puts_its_mass_on_the_patch_the_model_reads():
    rise = get_explainer("rise", n_masks=1000, grid_size=4, seed=0)(patch_model(), patch_images(), 0)
    above_mean = rise - rise.mean(dim=(2, 3), keepdim=True)
    assert (patch_share(above_mean) > 0.3).all()  # the patch is 1/16 of the image
    top = rise[:, 0].flatten(1).topk(8).indices
    assert ((top // 16 >= 4) & (top // 16 < 8) & (top % 16 >= 8) & (top % 16 < 12)).all()


# ---------------------------------------------------------------------------------------------------- occlusion


@pytest.mark.parametrize("size, window, stride", [(12, 3, 2), (10, 4, 4), (9, 2, 1)])
def test_occlusion_equals_captum_occlusion(size, window, stride):
    model = SmallCnn(channels=3).eval()
    x = torch.rand(3, 3, size, size)
    target = torch.tensor([0, 1, 2])
    ours = get_explainer("occlusion", window=window, stride=stride, replacement=0.25)(model, x, target)
    captum = CaptumOcclusion(model).attribute(
        x, sliding_window_shapes=(3, window, window), strides=(1, stride, stride), baselines=0.25, target=target
    )
    assert torch.allclose(ours, captum, atol=1e-5)


def test_occlusion_is_zero_far_from_the_patch_and_largest_on_it():
    attribution = get_explainer("occlusion", window=2, stride=2)(patch_model(), patch_images(), 0)
    assert torch.equal(attribution[:, :, :4], torch.zeros_like(attribution[:, :, :4]))
    assert (patch_share(attribution) == 1).all()


# ---------------------------------------------------------------------------------------------------- KernelSHAP, LIME


def group_contributions(model, x, segments):
    """``sum_{p in g} w(p) * x(p)`` per group ``g``: a linear model's exact Shapley values (zero baseline)."""
    contribution = (model.weight * x).sum(dim=1)
    return torch.stack([contribution[:, segments == g].sum(dim=1) for g in range(int(segments.max()) + 1)], dim=1)


def per_group(attribution, segments):
    """``(B, F)``: the value every pixel of each group holds (checked equal across the group and the channels)."""
    values = []
    for g in range(int(segments.max()) + 1):
        inside = attribution[:, :, segments == g].flatten(1)
        assert torch.equal(inside, inside[:, :1].expand_as(inside))
        values.append(inside[:, 0])
    return torch.stack(values, dim=1)


@pytest.mark.parametrize("n_samples", [254, 30])  # all coalitions of 8 groups; a small sample
def test_kernelshap_recovers_exact_group_contributions_of_a_linear_model(n_samples):
    model = LinearModel(torch.randn(2, 8, 16))
    x = torch.rand(3, 2, 8, 16)
    ours = get_explainer("kernelshap", n_samples=n_samples, features="patches", patch_size=4)(model, x, 0)
    segments = patches((8, 16), 4)
    assert torch.allclose(per_group(ours, segments), group_contributions(model, x, segments).detach(), atol=1e-4)


def brute_force_shapley(model, x, target, segments, n_groups):
    """Shapley values ``sum_S |S|! (F-|S|-1)! / F! (v(S + g) - v(S))`` by evaluating every coalition."""
    coalitions = list(itertools.product((0, 1), repeat=n_groups))
    keep = torch.tensor(coalitions, dtype=torch.float32)[:, segments].unsqueeze(1)
    with torch.no_grad():
        scores = torch.softmax(model(x * keep), dim=1)[:, target]
    values = dict(zip(coalitions, scores))
    phi = torch.zeros(n_groups)
    for coalition, value in values.items():
        size = sum(coalition)
        for g in range(n_groups):
            if not coalition[g]:
                joined = coalition[:g] + (1,) + coalition[g + 1 :]
                weight = math.factorial(size) * math.factorial(n_groups - size - 1) / math.factorial(n_groups)
                phi[g] += weight * (values[joined] - value).item()
    return phi, (values[(1,) * n_groups] - values[(0,) * n_groups]).item()


def test_kernelshap_with_every_coalition_gives_exact_shapley_values_of_a_nonlinear_model():
    model = SmallCnn()
    x = torch.rand(1, 1, 8, 16)
    explainer = get_explainer("kernelshap", n_samples=300, features="patches", patch_size=4)
    ours = explainer(model, x, 1, output="probability")
    segments = patches((8, 16), 4)
    expected, total = brute_force_shapley(model, x, 1, segments, 8)
    values = per_group(ours, segments)[0]
    assert torch.allclose(values, expected, atol=1e-5)
    assert values.sum().item() == pytest.approx(total, abs=1e-5)


def test_sampled_kernelshap_is_efficient_on_superpixels():
    model = SmallCnn()
    x = torch.rand(2, 1, 16, 16)
    ours = get_explainer("kernelshap", n_samples=64, n_segments=20)(model, x, 0)
    segments = superpixels(x, 20)
    with torch.no_grad():
        total = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    for b in range(2):
        assert per_group(ours[b : b + 1], segments[b]).sum().item() == pytest.approx(total[b].item(), abs=1e-4)


def test_surrogate_least_squares_gives_the_minimum_norm_solution_of_a_rank_deficient_system():
    from xaitrust.explainers.surrogate import least_squares

    a = torch.tensor([[[1.0, 1.0], [1.0, 1.0]]], dtype=torch.float64)  # rank 1: x1 + x2 = 2 has many solutions
    b = torch.tensor([[[2.0], [2.0]]], dtype=torch.float64)
    solution, rank_deficient = least_squares(a, b)
    torch.testing.assert_close(solution, torch.linalg.pinv(a) @ b)
    assert rank_deficient.tolist() == [True]
    assert least_squares(torch.eye(2, dtype=torch.float64)[None], b)[1].tolist() == [False]


def test_lime_without_ridge_recovers_group_contributions_of_a_linear_model():
    model = LinearModel(torch.randn(1, 8, 16))
    x = torch.rand(2, 1, 8, 16)
    ours = get_explainer("lime", n_samples=60, features="patches", patch_size=4, ridge=0.0)(model, x, 0)
    segments = patches((8, 16), 4)
    assert torch.allclose(per_group(ours, segments), group_contributions(model, x, segments).detach(), atol=1e-4)
    shrunk = get_explainer("lime", n_samples=60, features="patches", patch_size=4, ridge=5.0)(model, x, 0)
    assert shrunk.abs().sum() < 0.95 * ours.abs().sum()


@pytest.mark.parametrize("name", ["kernelshap", "lime"])
def test_surrogates_put_their_mass_on_the_patch_the_model_reads(name):
    attribution = get_explainer(name, n_samples=200, n_segments=16)(patch_model(), bright_patch_images(), 0)
    assert (patch_share(attribution) > 0.9).all()
    unregularised = {"ridge": 0.0} if name == "lime" else {}
    exact = get_explainer(name, n_samples=50, features="patches", patch_size=4, **unregularised)
    assert (patch_share(exact(patch_model(), patch_images(), 0)) > 0.999).all()


# ---------------------------------------------------------------------------------------------------- MP


def test_meaningful_perturbation_deletes_exactly_the_patch_the_model_reads(one_torch_thread):
    explainer = get_explainer("meaningful-perturbation", steps=40, replacement="zero")
    with one_torch_thread():  # hundreds of tiny steps: a second thread only waits
        attribution = explainer(patch_model(), patch_images(), 0)
    inside = attribution[:, 0, PATCH[0], PATCH[1]]
    outside = attribution[:, 0].clone()
    outside[:, PATCH[0], PATCH[1]] = 0
    assert (inside.mean(dim=(1, 2)) > 0.95).all()
    assert (outside.flatten(1).mean(dim=1) < 0.05).all()


def test_meaningful_perturbation_blurs_away_the_bright_patch_the_model_reads(one_torch_thread):
    explainer = get_explainer("meaningful-perturbation", steps=60)  # deleted pixels are blurred
    with one_torch_thread():
        attribution = explainer(patch_model(), bright_patch_images(), 0)
    assert attribution.min() >= 0 and attribution.max() <= 1
    inside = attribution[:, 0, PATCH[0], PATCH[1]].flatten(1).mean(dim=1)
    assert (inside > 0.5).all() and (inside > 4 * attribution[:, 0].flatten(1).mean(dim=1)).all()


# ---------------------------------------------------------------------------------------------------- shared properties

BATCHED = [
    ("rise", {"n_masks": 60, "grid_size": 3}),
    ("occlusion", {"window": 3, "stride": 2}),
    ("kernelshap", {"n_samples": 40, "n_segments": 12}),
    ("lime", {"n_samples": 40, "n_segments": 12}),
    ("meaningful-perturbation", {"steps": 10, "mask_size": 6}),
    ("random", {}),
]


@pytest.mark.parametrize("name, params", BATCHED, ids=[name for name, _ in BATCHED])
def test_explaining_a_batch_equals_explaining_each_image_alone(name, params):
    model = SmallCnn()
    x = torch.rand(3, 1, 12, 12)
    target = torch.tensor([0, 2, 1])
    explainer = get_explainer(name, **params)
    batch = explainer(model, x, target, output="probability")
    alone = torch.cat([explainer(model, x[b : b + 1], target[b : b + 1], output="probability") for b in range(3)])
    assert batch.abs().max() > 0
    assert torch.allclose(batch, alone, atol=1e-5)


SEEDED = [p for p in BATCHED if p[0] in ("rise", "kernelshap", "lime", "random")]


@pytest.mark.parametrize("name, params", SEEDED, ids=[name for name, _ in SEEDED])
def test_the_seed_fixes_the_result(name, params):
    model = SmallCnn()
    x = torch.rand(2, 1, 12, 12)
    first = get_explainer(name, seed=5, **params)(model, x, 0)
    again = get_explainer(name, seed=5, **params)(model, x, 0)
    other = get_explainer(name, seed=6, **params)(model, x, 0)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_random_maps_of_different_images_are_independent_across_calls():
    explainer = get_explainer("random")
    x = torch.rand(4, 1, 8, 8)
    first, second = explainer(SmallCnn(), x[:2], 0), explainer(SmallCnn(), x[2:], 0)
    maps = torch.cat([first, second]).flatten(1)
    assert torch.corrcoef(maps).fill_diagonal_(0).abs().max() < 0.6  # 64 pixels: |r| of independent maps ~ 0.13
    assert torch.equal(explainer(SmallCnn(), x[:1], 0), first[:1])


def test_random_maps_are_noise_of_the_chosen_law_without_calling_the_model():
    class Refuses(nn.Module):
        num_classes = 2

        def forward(self, x):
            raise AssertionError("the random baseline must not call the model")

    uniform = get_explainer("random")(Refuses(), torch.rand(4, 3, 16, 16), 0)
    normal = get_explainer("random", distribution="normal")(Refuses(), torch.rand(4, 3, 16, 16), 0)
    assert uniform.shape == (4, 3, 16, 16) and uniform.min() >= 0 and uniform.max() < 1
    assert abs(uniform.mean().item() - 0.5) < 0.02
    assert normal.min() < 0 and abs(normal.std().item() - 1) < 0.05


@pytest.mark.parametrize(
    "name, params",
    [("rise", {"n_masks": 20, "grid_size": 3}), ("kernelshap", {"n_samples": 20, "features": "patches"})],
)
def test_a_perturbation_aware_model_receives_each_masked_images_level(name, params):
    model = LevelRecorder()
    x = patch_images(n=1)
    get_explainer(name, batch_size=7, **params)(model, x, 0)
    levels = torch.cat(model.levels)
    if name == "rise":
        masks = all_masks(RiseMasks((16, 16), 20, 3, 0.6, "bicubic", seed=0))
    else:
        coalitions, _ = get_explainer(name, **params).coalitions(torch.tensor([16]), 16)
        coalition_masks = CoalitionMasks(coalitions, patches((16, 16), 4)[None])
        masks = coalition_masks.keep(torch.zeros(22, dtype=torch.long), torch.arange(22))
        assert levels[0] == 0 and levels[1] == 1  # the full and the empty coalition
    assert torch.allclose(levels, 1 - masks.mean(dim=(1, 2, 3)), atol=1e-6)


def test_meaningful_perturbation_tells_a_perturbation_aware_model_its_level(one_torch_thread):
    model = LevelRecorder()
    with one_torch_thread():
        get_explainer("meaningful-perturbation", steps=5, replacement="zero")(model, patch_images(n=2), 0)
    levels = torch.stack(model.levels)
    assert levels.shape == (5, 2)
    assert torch.equal(levels[0], torch.zeros(2))  # the mask starts by keeping everything
    assert (levels[-1] > 0.01).all() and (levels[-1] < 0.5).all()


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("rise", {"keep_prob": 0.0}, "keep_prob"),
        ("rise", {"interpolation": "nearest"}, "interpolation"),
        ("rise", {"n_masks": 0}, "positive"),
        ("occlusion", {"window": 2, "stride": 3}, "stride"),
        ("occlusion", {"window": 0}, "window"),
        ("occlusion", {"window": 2.5}, "window"),
        ("kernelshap", {"features": "pixels"}, "features"),
        ("lime", {"n_samples": 0}, "n_samples"),
        ("lime", {"kernel_width": 0.0}, "kernel_width"),
        ("meaningful-perturbation", {"steps": 0}, "steps"),
        ("meaningful-perturbation", {"tv_exponent": 0.5}, "tv_exponent"),
        ("random", {"distribution": "poisson"}, "distribution"),
        ("rise", {"masks": 10}, "allowed"),
        ("rise", {"n_masks": 20.0}, "rise: n_masks must be a positive integer"),
        ("rise", {"replacement": "zeros"}, "rise: replacement must be one of zero, mean, blur, uniform, a number"),
        ("occlusion", {"window": (3, 0)}, "occlusion: window must be a positive integer or a pair of them"),
        ("occlusion", {"batch_size": 0}, "occlusion: batch_size must be a positive integer"),
        ("kernelshap", {"n_samples": 20.5}, "kernelshap: n_samples must be a positive integer"),
        ("kernelshap", {"compactness": -1.0}, "kernelshap: compactness must be a finite number > 0"),
        ("meaningful-perturbation", {"steps": 2.0}, "meaningful-perturbation: steps must be a positive integer"),
        ("meaningful-perturbation", {"learning_rate": 0}, "meaningful-perturbation: learning_rate must be .* > 0"),
        ("random", {"seed": "0"}, "random: seed must be an integer"),
    ],
)
def test_bad_parameters_are_refused_with_a_clear_message(name, params, message):
    with pytest.raises(XaitrustError, match=message):
        get_explainer(name, **params)


def bad_values_of_every_parameter():
    """``(explainer, parameter, bad value)`` for the number and choice parameters of every registered explainer (the
    gradient ones too), from their defaults: an integer given as an integral float, a float as NaN, a choice as an
    unknown name, and an automatic batch size as 0."""
    cases = []
    for info in available_explainers():
        for parameter, default in info.parameters.items():
            if isinstance(default, int):
                bad = float(default)
            elif isinstance(default, float):
                bad = math.nan
            elif isinstance(default, str):
                bad = "no-such-choice"
            elif parameter == "batch_size":
                bad = 0
            else:
                continue
            cases.append(pytest.param(info.name, parameter, bad, id=f"{info.name}-{parameter}"))
    return cases


@pytest.mark.parametrize("name, parameter, bad", bad_values_of_every_parameter())
def test_every_explainer_refuses_a_bad_number_or_choice_when_built(name, parameter, bad):
    with pytest.raises(XaitrustError, match=rf"^{re.escape(name)}: {parameter} must be "):
        get_explainer(name, **{parameter: bad})


def test_numpy_integers_and_reals_are_taken_as_plain_numbers():
    explainer = get_explainer(
        "rise", n_masks=np.int64(20), grid_size=np.int32(3), keep_prob=np.float32(0.5), seed=np.int64(1)
    )
    assert (explainer.n_masks, explainer.grid_size, explainer.keep_prob, explainer.seed) == (20, 3, 0.5, 1)
    assert all(type(value) is int for value in (explainer.n_masks, explainer.grid_size, explainer.seed))
    assert get_explainer("occlusion", window=(np.int64(3), 3), stride=np.int64(2)).window == (3, 3)
    x = patch_images(n=1)
    expected = get_explainer("rise", n_masks=20, grid_size=3, keep_prob=0.5, seed=1)(patch_model(), x, 0)
    assert torch.equal(explainer(patch_model(), x, 0), expected)


def test_a_window_larger_than_the_image_is_refused_when_explaining():
    with pytest.raises(XaitrustError, match="must fit in the image"):
        get_explainer("occlusion", window=9, stride=1)(patch_model(), torch.rand(1, 1, 8, 8), 0)
