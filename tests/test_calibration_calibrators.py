"""Temperature scaling, Dirichlet calibration and ReCalX on sources whose miscalibration is known."""

import pytest
import torch
from torch import nn

from xaitrust.calibration import (
    Calibrator,
    DirichletCalibration,
    ReCalX,
    TemperatureScaling,
    density_ece,
    ece,
    kl_calibration_error,
    level_bins,
    nll,
)
from xaitrust.errors import XaitrustError
from xaitrust.perturb import masked_logits


def calibrated_logits_source(n, k=10, seed=0):
    """log p for classifier-like p ~ Dirichlet, labels ~ Categorical(p): softmax of these logits is calibrated."""
    generator = torch.Generator().manual_seed(seed)
    predicted = torch.randint(0, k, (n,), generator=generator)
    p = torch.distributions.Dirichlet(0.2 + 4.0 * nn.functional.one_hot(predicted, k).double()).sample()
    p = p.clamp_min(1e-12) / p.clamp_min(1e-12).sum(dim=1, keepdim=True)
    return p.log(), torch.multinomial(p, 1, generator=generator).squeeze(1)


@pytest.mark.parametrize("true_temperature", [0.5, 2.0])
def test_temperature_scaling_recovers_a_known_temperature(true_temperature):
    logits, labels = calibrated_logits_source(3000)
    fit_logits, test_logits = logits[:1500] / true_temperature, logits[1500:] / true_temperature
    scaler = TemperatureScaling().fit(fit_logits, labels[:1500])
    assert scaler.temperature_ == pytest.approx(1 / true_temperature, rel=0.06)
    test_labels = labels[1500:]
    before, after = test_logits.softmax(1), scaler(test_logits).exp()
    assert kl_calibration_error(after, test_labels) < 0.02 < 0.08 < kl_calibration_error(before, test_labels)
    assert density_ece(after, test_labels) < 0.03 < 0.08 < density_ece(before, test_labels)
    assert ece(after, test_labels) < 0.04
    assert torch.equal(after.argmax(1), test_logits.argmax(1))


def test_dirichlet_fits_a_linear_miscalibration_better_than_temperature():
    # the model's log-probabilities are a known linear map of calibrated ones: class-dependent scale and offset
    logits, labels = calibrated_logits_source(4000, k=4, seed=1)
    scale = torch.tensor([2.0, 0.5, 1.0, 1.5], dtype=torch.float64)
    offset = torch.tensor([0.5, -0.5, 1.0, 0.0], dtype=torch.float64)
    distorted = logits.log_softmax(1) * scale + offset
    with pytest.warns(UserWarning, match="changes the predicted class"):
        dirichlet = DirichletCalibration(reg_lambda=1e-4, reg_mu=1e-4).fit(distorted[:2000], labels[:2000])
    temperature = TemperatureScaling().fit(distorted[:2000], labels[:2000])
    held_out, held_labels = distorted[2000:], labels[2000:]
    dirichlet_nll = nll(dirichlet(held_out).exp(), held_labels)
    temperature_nll = nll(temperature(held_out).exp(), held_labels)
    calibrated_nll = nll(logits[2000:].softmax(1), held_labels)
    assert dirichlet_nll < temperature_nll - 0.05
    assert dirichlet_nll == pytest.approx(calibrated_nll, abs=0.02)
    assert 0 < dirichlet.changed_argmax_ == pytest.approx(dirichlet.argmax_change_rate(distorted[:2000]))


@pytest.mark.filterwarnings("ignore:Dirichlet calibration changes")
def test_dirichlet_regularisation_is_chosen_by_cross_validation():
    # A real class-dependent distortion with plenty of data: weak regularisation wins and recovers the calibrated NLL.
    logits, labels = calibrated_logits_source(4000, k=4, seed=1)
    distorted = logits.log_softmax(1) * torch.tensor([2.0, 0.5, 1.0, 1.5], dtype=torch.float64) + torch.tensor(
        [1.5, -1.5, 3.0, 0.0], dtype=torch.float64)  # ODIR leaves the diagonal free: the offsets need a small mu
    chosen = DirichletCalibration().fit(distorted[:2000], labels[:2000])
    assert chosen.reg_lambda_ == chosen.reg_mu_ <= 1e-2
    assert nll(chosen(distorted[2000:]).exp(), labels[2000:]) == pytest.approx(
        nll(logits[2000:].softmax(1), labels[2000:]), abs=0.02)
    # Already calibrated, 10 classes and few samples: 110 free parameters overfit unless regularised hard.
    logits, labels = calibrated_logits_source(1200, k=10, seed=3)
    chosen = DirichletCalibration().fit(logits[:200], labels[:200])
    loose = DirichletCalibration(reg_lambda=1e-4, reg_mu=1e-4).fit(logits[:200], labels[:200])
    assert chosen.reg_lambda_ >= 1.0
    held_out = [nll(c(logits[200:]).exp(), labels[200:]) for c in (chosen, loose)]
    assert held_out[0] < held_out[1] - 0.05
    few, few_labels = logits[:12], torch.arange(12) % 4  # 3 samples of each of 4 classes: 3 folds, not 5
    with pytest.warns(UserWarning, match="only 3 calibration samples: cross-validation uses 3 folds"):
        DirichletCalibration().fit(few[:, :4], few_labels)
    with pytest.raises(XaitrustError, match="at least 2 calibration samples of every class"):
        DirichletCalibration().fit(few[:5, :4], few_labels[:5])
    with pytest.raises(XaitrustError, match="give both reg_lambda and reg_mu, or neither"):
        DirichletCalibration(reg_lambda=0.1)
    with pytest.raises(XaitrustError, match="cv_folds must be an integer >= 2"):
        DirichletCalibration(cv_folds=1)


class Linear(nn.Module):
    """A tiny image classifier with the attributes explainers read."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        self.register_buffer("input_mean", torch.full((1, 1, 1, 1), 0.25))

    @property
    def cam_layer(self):
        return self.body[1]

    def forward(self, x):
        return self.body(x) * 3


@pytest.mark.filterwarnings("ignore:Dirichlet calibration changes")
@pytest.mark.parametrize("make", [lambda: TemperatureScaling(), lambda: DirichletCalibration()])
def test_wrapped_model_gives_gradients_and_delegates_attributes(make):
    model = Linear()
    x = torch.rand(64, 1, 4, 4)
    labels = model(x).argmax(1)
    labels[:8] = (labels[:8] + 1) % 3  # some mistakes, so the fitted calibration is not trivial
    calibrator = make().fit(model(x).detach(), labels)
    wrapped = calibrator.wrap(model)
    inputs = x.clone().requires_grad_(True)
    out = wrapped(inputs)
    out[:, 0].sum().backward()
    assert inputs.grad.abs().sum() > 0
    assert torch.allclose(out.log_softmax(1), calibrator(model(x)), atol=1e-6)
    assert wrapped.num_classes == 3 and wrapped.cam_layer is model.body[1]
    assert torch.equal(wrapped.input_mean, model.input_mean)
    if isinstance(calibrator, TemperatureScaling):
        assert torch.equal(out.argmax(1), model(x).argmax(1))


@pytest.mark.filterwarnings("ignore:Dirichlet calibration changes")
def test_save_load_round_trip(tmp_path):
    logits, labels = calibrated_logits_source(300, k=3)
    for calibrator in (TemperatureScaling().fit(logits * 2, labels), DirichletCalibration().fit(logits, labels)):
        path = calibrator.save(tmp_path / f"cal-{calibrator.name}")
        assert path.with_suffix(".safetensors").is_file()
        loaded = Calibrator.load(path)
        assert type(loaded) is type(calibrator) and loaded.settings() == calibrator.settings()
        assert torch.allclose(loaded(logits), calibrator(logits))
    with pytest.raises(XaitrustError, match="not a recalx"):
        ReCalX.load(tmp_path / "cal-temperature")
    with pytest.raises(XaitrustError, match="no saved calibrator"):
        Calibrator.load(tmp_path / "missing")


@pytest.mark.filterwarnings("ignore:Dirichlet calibration changes")
def test_calibrator_input_errors():
    with pytest.raises(XaitrustError, match="not fitted"):
        TemperatureScaling()(torch.zeros(2, 3))
    with pytest.raises(XaitrustError, match="NaN"):
        TemperatureScaling().fit(torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long))
    with pytest.raises(XaitrustError, match="labels must lie"):
        TemperatureScaling().fit(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))
    dirichlet = DirichletCalibration().fit(torch.randn(30, 3), torch.randint(0, 3, (30,)))
    with pytest.raises(XaitrustError, match="fitted on 3 classes"):
        dirichlet(torch.zeros(2, 4))
    with pytest.raises(XaitrustError, match="grouping"):
        ReCalX(grouping="hexagons")


def test_recalx_applies_the_bin_temperature_of_each_given_level():
    recalx = ReCalX(n_bins=4)
    recalx.temperatures_ = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=torch.float64)
    logits = torch.ones(6, 3) * torch.tensor([1.0, 0.0, -1.0])
    levels = torch.tensor([0.0, 0.2, 0.25, 0.6, 0.99, 1.0])
    scaled = recalx.calibrated_logits(logits, perturbation_level=levels)
    assert scaled[:, 0].tolist() == [1.0, 1.0, 0.5, 0.25, 0.125, 0.125]
    assert level_bins(torch.tensor([0.1 + 0.15]), 4).item() == 1 and level_bins(torch.tensor([1 - 0.75]), 4).item() == 1
    wrapped = recalx.wrap(Linear())
    assert wrapped.accepts_perturbation_level
    x = torch.rand(5, 1, 4, 4)
    keep = torch.ones(2, 1, 4, 4)
    keep[1, :, :2] = 0  # half the pixels replaced: level 0.5, bin 2, temperature 4
    through_engine = masked_logits(wrapped, x, keep, batch_size=3)
    raw = Linear.forward(wrapped.model, x * keep[1])
    assert torch.allclose(through_engine[:, 1], raw / 4, atol=1e-6)
    assert torch.allclose(through_engine[:, 0], wrapped.model(x), atol=1e-6)
    assert torch.allclose(wrapped(x), wrapped.model(x))  # no level given: clean, bin 0


def test_recalx_fits_one_temperature_per_bin_from_perturbed_logits():
    logits, labels = calibrated_logits_source(4000, k=5, seed=2)
    levels = torch.rand(4000, dtype=torch.float64)
    true = torch.tensor([1.0, 3.0], dtype=torch.float64)[(levels >= 0.5).long()]
    recalx = ReCalX(n_bins=2).fit_logits(logits / true[:, None], labels, levels)
    assert torch.allclose(recalx.temperatures_, 1 / torch.tensor([1.0, 3.0], dtype=torch.float64), rtol=0.08)


def test_perturbed_logits_with_noise_replacement_are_fixed_by_the_seed():
    from xaitrust.calibration.perturbed import perturbed_logits

    model, x = Linear(), torch.rand(4, 1, 4, 4)
    first, levels = perturbed_logits(model, x, torch.tensor([0.5]), repeats=2, replacement="uniform", seed=1)
    torch.manual_seed(123)  # the global random state must not matter
    again, _ = perturbed_logits(model, x, torch.tensor([0.5]), repeats=2, replacement="uniform", seed=1)
    torch.testing.assert_close(first, again)
    assert torch.all(levels == 0.5)


def test_recalx_warns_about_a_level_bin_no_copy_fell_in():
    logits, labels = calibrated_logits_source(400, k=5, seed=2)
    levels = torch.rand(400, dtype=torch.float64) * 0.5  # nothing above 0.5: bins 2 and 3 of 4 are empty
    with pytest.warns(UserWarning, match=r"level bin\(s\) \[2, 3\] of 4: they keep temperature 1"):
        recalx = ReCalX(n_bins=4).fit_logits(logits, labels, levels)
    assert recalx.temperatures_[2:].tolist() == [1.0, 1.0]


def test_a_group_at_chance_stops_at_the_bound_without_disturbing_the_others():
    from xaitrust.calibration.temperature import TEMPERATURE_MAX, fit_temperatures

    generator = torch.Generator().manual_seed(0)
    informative = torch.randn(400, 4, generator=generator, dtype=torch.float64) * 3
    labels = informative.argmax(dim=1)
    flip = torch.rand(400, generator=generator) < 0.2
    labels[flip] = torch.randint(0, 4, (int(flip.sum()),), generator=generator)
    noise = torch.randn(400, 4, generator=generator, dtype=torch.float64)
    noise_labels = torch.randint(0, 4, (400,), generator=generator)  # unrelated to the logits: best is uniform
    joint = fit_temperatures(torch.cat([informative, noise]), torch.cat([labels, noise_labels]),
                             torch.cat([torch.zeros(400), torch.ones(400)]).long(), n_groups=2)
    alone = fit_temperatures(informative, labels)
    assert torch.isfinite(joint).all()
    assert joint[0] == pytest.approx(alone[0].item(), rel=1e-4)
    assert joint[1] > 100 and joint[1] <= TEMPERATURE_MAX
