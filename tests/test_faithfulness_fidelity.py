"""MIF/LIF and the area between them, muFidelity, completeness and soundness against closed-form oracles."""

import math

import numpy as np
import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.metrics.curves import PerturbationCurves
from xaitrust.metrics.completeness import completeness_soundness
from xaitrust.metrics.fidelity import FPA_FRACTIONS, area_between, mif_lif
from xaitrust.metrics.mu_fidelity import mu_fidelity
from xaitrust.testing.oracles import LinearModel, PixelModel


def _linear_case(size=20, batch=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(1, size, size, generator=generator) + 1.0
    x = torch.rand(batch, 1, size, size, generator=generator)
    return LinearModel(weight), x, weight * x


def test_mif_and_lif_curves_of_a_linear_model_are_exact():
    model, x, contributions = _linear_case()  # 400 pixels: every 5% step removes exactly 20
    flat = contributions.flatten(1)
    total = flat.sum(dim=1, keepdim=True)
    counts = [round(f * 400) for f in FPA_FRACTIONS]
    result = mif_lif(model, x, contributions[:, 0], 0)
    for curves, descending in ((result.mif.curves, True), (result.lif.curves, False)):
        ordered = flat.gather(1, flat.argsort(dim=1, descending=descending, stable=True))
        removed = torch.stack([ordered[:, :c].sum(dim=1) for c in counts], dim=1)
        torch.testing.assert_close(curves, (total - removed) / total)
    assert result.mif.fractions.tolist() == pytest.approx([0.05 * k for k in range(20)])


def test_area_between_is_lif_minus_mif_in_percent():
    model, x, contributions = _linear_case()
    result = mif_lif(model, x, contributions[:, 0], 0)
    area = area_between(result.mif.curves, result.lif.curves)
    per_sample = 100 * (result.lif.area - result.mif.area)
    torch.testing.assert_close(area.per_sample.float(), per_sample)
    assert area.value == pytest.approx(per_sample.mean().item(), rel=1e-5)
    assert area.value > 0
    swapped = area_between(result.lif.curves, result.mif.curves, percent=False)
    assert swapped.value == pytest.approx(-area.value / 100, rel=1e-5)


def test_area_between_on_synthetic_curves_and_its_interval_coverage():
    fractions = torch.tensor(FPA_FRACTIONS, dtype=torch.float64)
    rng = np.random.default_rng(0)
    true_value = (0.8 - 0.2) * 95.0
    covered = {"normal": 0, "bootstrap": 0}
    trials = 200
    for trial in range(trials):
        noise = torch.as_tensor(rng.normal(0, 0.3, size=(40, 1)))
        mif = torch.full((40, 20), 0.2, dtype=torch.float64) + noise
        lif = torch.full((40, 20), 0.8, dtype=torch.float64)
        for method in covered:
            result = area_between(mif, lif, fractions, ci_method=method, n_bootstrap=400, seed=trial)
            covered[method] += result.ci_low <= true_value <= result.ci_high
    assert 0.9 <= covered["normal"] / trials <= 0.99
    assert 0.88 <= covered["bootstrap"] / trials <= 0.99
    half = 1.959963984540054 * 0.3 * 95 / np.sqrt(40)
    assert result.ci_high - result.ci_low == pytest.approx(2 * half, rel=0.35)


def test_area_between_leaves_out_images_whose_clean_score_is_not_positive():
    fractions = torch.tensor(FPA_FRACTIONS, dtype=torch.float64)
    mif = torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64)[:, None].expand(3, 20)
    lif = torch.full((3, 20), 0.8, dtype=torch.float64)
    with pytest.warns(UserWarning, match="1 of 3 samples have a clean score <= 0"):
        result = area_between(mif, lif, fractions, clean_score=torch.tensor([1.0, 2.0, -0.5]))
    assert result.n == 2 and torch.isnan(result.per_sample[2])
    assert result.value == pytest.approx((0.6 + 0.4) / 2 * 95)
    broken = mif.clone()
    broken[0, 3] = float("nan")  # a broken curve is not an undefined normalisation: A must not hide it
    with pytest.warns(UserWarning, match="clean score <= 0"):
        assert math.isnan(area_between(broken, lif, fractions, clean_score=torch.tensor([1.0, 2.0, -0.5])).value)
    # normalised curves carry their clean scores: zero-mean weights give some images a negative logit
    generator = torch.Generator().manual_seed(1)
    weight, x = torch.randn(1, 8, 8, generator=generator), torch.rand(8, 1, 8, 8, generator=generator)
    with pytest.warns(UserWarning, match="<= 0"):
        curves = mif_lif(LinearModel(weight), x, (weight * x)[:, 0], 0)
        between = area_between(curves.mif, curves.lif)
    undefined = curves.mif.clean_score <= 0
    assert undefined.any() and torch.equal(torch.isnan(between.per_sample), undefined)
    assert between.n == int((~undefined).sum())


def test_area_between_rejects_mismatched_curves_and_levels():
    curves = torch.rand(4, 20)
    with pytest.raises(XaitrustError, match="same shape"):
        area_between(curves, torch.rand(3, 20))
    with pytest.raises(XaitrustError, match=r"must be \(B, 20\)"):
        area_between(torch.rand(4, 19), torch.rand(4, 19))
    with pytest.raises(XaitrustError, match="confidence level"):
        area_between(curves, curves, ci=95)
    assert np.isnan(area_between(curves[:1], curves[:1]).ci_low)


@pytest.mark.parametrize("patch_size", [None, 4])
def test_mu_fidelity_is_one_for_gradient_times_input_of_a_linear_model(patch_size):
    model, x, contributions = _linear_case(size=8)
    values = mu_fidelity(model, x, contributions, 0, n_subsets=50, patch_size=patch_size)
    torch.testing.assert_close(values, torch.ones(3), atol=1e-5, rtol=0)


def test_mu_fidelity_of_unrelated_attributions_is_far_from_one_and_seeded():
    model, x, _ = _linear_case(size=8)
    noise = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    first = mu_fidelity(model, x, noise, 0, seed=1)
    assert torch.all(first.abs() < 0.6)
    torch.testing.assert_close(first, mu_fidelity(model, x, noise, 0, seed=1))
    assert not torch.allclose(first, mu_fidelity(model, x, noise, 0, seed=2))
    torch.testing.assert_close(first[1:], mu_fidelity(model, x[1:], noise[1:], 0, seed=1))


def test_mu_fidelity_with_a_noise_baseline_is_fixed_by_the_seed():
    model, x, _ = _linear_case(size=8)
    noise = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    first = mu_fidelity(model, x, noise, 0, baseline="uniform", seed=1)
    torch.manual_seed(123)  # the global random state must not matter
    torch.testing.assert_close(first, mu_fidelity(model, x, noise, 0, baseline="uniform", seed=1))
    torch.testing.assert_close(first[1:], mu_fidelity(model, x[1:], noise[1:], 0, baseline="uniform", seed=1))


def test_mu_fidelity_of_a_constant_map_is_nan_with_a_warning():
    model, x, _ = _linear_case(size=8)
    with pytest.warns(UserWarning, match="1 of 3 samples have constant"):
        values = mu_fidelity(model, x, torch.cat([torch.ones(1, 8, 8), torch.rand(2, 8, 8)]), 0)
    assert torch.isnan(values[0]) and not torch.isnan(values[1:]).any()


def test_completeness_and_soundness_of_the_insertion_game():
    # score depends on one pixel only: p(class 0) = sigmoid(4 * x[1, 2]) and 1/2 while that pixel is 0
    model = PixelModel(1, 2, scale=4.0)
    x = torch.full((1, 1, 4, 4), 0.75)
    clean = torch.sigmoid(torch.tensor(3.0)).item()
    first = torch.zeros(1, 4, 4)
    first[0, 1, 2] = 1
    result = completeness_soundness(model, x, first, 0)
    assert result.g_auc.item() == pytest.approx(clean) and result.alpha_mean == pytest.approx(1.0)
    assert result.beta_mean == pytest.approx(1.0)
    last = 1 - first
    g_last = (15 * 0.5 + clean) / 16
    result = completeness_soundness(model, x, last, 0)
    assert result.g_auc.item() == pytest.approx(g_last)
    assert result.alpha.item() == pytest.approx(g_last / clean) and result.beta.item() == pytest.approx(1.0)
    # one map per label: label 1 (probability 1 - clean) inserted last gives g = (15 / 2 + 1 - clean) / 16 > 1 - clean
    both = completeness_soundness(model, x, torch.stack([first, last], dim=1), torch.tensor([[0, 1]]))
    g_label1 = (15 * 0.5 + 1 - clean) / 16
    assert both.alpha.item() == pytest.approx(1.0)
    assert both.beta.item() == pytest.approx((1 - clean) / g_label1)
    assert both.g_auc.shape == (1, 2)


def test_area_between_reads_the_fractions_the_curves_were_measured_at():
    fractions = torch.linspace(0, 1, 20)

    def curves(values):
        return PerturbationCurves(values, fractions, values.mean(dim=1), torch.ones(len(values)), True)

    mif, lif = curves(torch.zeros(3, 20)), curves(torch.ones(3, 20))
    assert area_between(mif, lif).value == pytest.approx(100.0)  # x in percent over [0, 1]
    assert area_between(mif.curves, lif.curves).value == pytest.approx(95.0)  # FPA's default 0-95%
    with pytest.raises(XaitrustError, match="other fractions"):
        area_between(mif, lif, torch.linspace(0, 0.95, 20))
