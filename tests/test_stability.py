"""Local Lipschitz estimate on linear oracles, and SSIM between two models' maps against scikit-image."""

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer
from xaitrust.metrics.stability import local_lipschitz, map_ssim, sample_in_ball
from xaitrust.testing.oracles import LinearModel


@pytest.fixture
def linear():
    weight = torch.linspace(-2.0, 1.5, 2 * 5 * 5).reshape(1, 2, 5, 5)
    return LinearModel(weight), weight


def test_neighbours_lie_uniformly_in_the_ball():
    x = torch.rand(3, 1, 4, 4)
    points = sample_in_ball(x, 2000, 0.05, seed=0)
    radii = (points - x.unsqueeze(1)).flatten(2).norm(dim=2)
    assert radii.max() <= 0.05 + 1e-6
    # uniform in a 16-dimensional ball: P(r <= t * radius) = t^16, so the median radius is 0.05 * 0.5^(1/16)
    assert radii.median().item() == pytest.approx(0.05 * 0.5 ** (1 / 16), rel=0.01)


def test_each_image_has_its_own_neighbours_whatever_its_batch():
    x = torch.rand(3, 1, 4, 4)
    offsets = sample_in_ball(x, 5, 0.05, seed=1) - x.unsqueeze(1)
    assert not torch.allclose(offsets[0], offsets[1])  # independent directions for different images
    torch.testing.assert_close(offsets[1:], sample_in_ball(x[1:], 5, 0.05, seed=1) - x[1:].unsqueeze(1))
    assert not torch.allclose(offsets, sample_in_ball(x, 5, 0.05, seed=2) - x.unsqueeze(1))


def test_constant_gradient_has_zero_lipschitz_constant(linear):
    model, _ = linear
    x = torch.rand(4, 2, 5, 5)
    estimate = local_lipschitz(get_explainer("saliency"), model, x, 0, n_neighbours=10)
    torch.testing.assert_close(estimate, torch.zeros(4))


def test_gradient_times_input_of_a_linear_model(linear):
    model, weight = linear
    x = torch.rand(3, 2, 5, 5)
    estimate = local_lipschitz(get_explainer("gradient-input"), model, x, 0, n_neighbours=40, seed=3)
    # e(x) = w * x, so the ratio for a neighbour x + delta is ||w * delta|| / ||delta|| <= max |w|
    delta = sample_in_ball(x, 40, 0.05, seed=3) - x.unsqueeze(1)
    expected = ((weight * delta).flatten(2).norm(dim=2) / delta.flatten(2).norm(dim=2)).amax(dim=1)
    torch.testing.assert_close(estimate, expected, rtol=1e-4, atol=1e-5)
    assert torch.all(estimate <= weight.abs().max()) and torch.all(estimate > 0.5)


def test_lipschitz_is_deterministic_and_independent_of_the_chunk_size(linear):
    model, _ = linear
    x = torch.rand(3, 2, 5, 5)
    explainer = get_explainer("gradient-input")
    first = local_lipschitz(explainer, model, x, 0, n_neighbours=8, seed=1, batch_size=5)
    again = local_lipschitz(explainer, model, x, 0, n_neighbours=8, seed=1, batch_size=256)
    other = local_lipschitz(explainer, model, x, 0, n_neighbours=8, seed=2)
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)


def test_lipschitz_on_reduced_normalised_maps(linear):
    model, _ = linear
    x = torch.rand(2, 2, 5, 5)
    raw = local_lipschitz(get_explainer("gradient-input"), model, x, 0, n_neighbours=6, reduction="sum")
    normalised = local_lipschitz(get_explainer("gradient-input"), model, x, 0, n_neighbours=6, reduction="sum", normalize=True)
    assert torch.all(raw > 0) and not torch.allclose(raw, normalised)


def test_lipschitz_rejects_bad_inputs(linear):
    model, _ = linear
    with pytest.raises(XaitrustError, match="NaN"):
        local_lipschitz(get_explainer("saliency"), model, torch.full((1, 2, 5, 5), float("nan")), 0)
    with pytest.raises(XaitrustError, match="radius"):
        local_lipschitz(get_explainer("saliency"), model, torch.rand(1, 2, 5, 5), 0, radius=0)


def test_map_ssim_matches_scikit_image_on_normalised_maps():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(4, 10, 10, generator=generator, dtype=torch.float64) * 5 - 1
    b = a + torch.rand(4, 10, 10, generator=generator, dtype=torch.float64)

    def normalise(m):
        return (m - m.min()) / (m.max() - m.min())

    reference = [structural_similarity(normalise(x), normalise(y), data_range=1.0) for x, y in zip(a.numpy(), b.numpy())]
    np.testing.assert_allclose(map_ssim(a, b).numpy(), reference, atol=1e-10)
    with pytest.raises(XaitrustError, match="same shape"):
        map_ssim(a, b[:2])


def test_local_lipschitz_of_a_batch_equals_its_images_one_by_one():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    model.num_classes = 3
    x, target = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    explainer = get_explainer("saliency")
    batch = local_lipschitz(explainer, model, x, target, n_neighbours=6, seed=3)
    single = torch.cat([local_lipschitz(explainer, model, x[i : i + 1], target[i : i + 1], n_neighbours=6, seed=3)
                        for i in range(4)])
    torch.testing.assert_close(batch, single)
