"""ReCalX on a trained Fashion-MNIST model: calibration error by perturbation level on held-out data; the CLI; the\nfeature groups and levels ReCalX perturbs, the same as the surrogate explainers'."""

import json

import pytest
import torch
from click.testing import CliRunner

from xaitrust.calibration import Calibrator, ReCalX, calibration_error_by_level
from xaitrust.calibration.perturbed import feature_segments, perturbed_logits
from xaitrust.calibration.plots import plot_error_by_level_panels
from xaitrust.cli import cli
from xaitrust.data import calibration_split
from xaitrust.data.shapes import make_shapes
from xaitrust.errors import XaitrustError
from xaitrust.explainers import get_explainer


@pytest.fixture(scope="module")
def fashion_split(fashion_quick_model):
    model, test = fashion_quick_model
    calibration, rest = calibration_split(test, 300, seed=0)
    return model, calibration, rest.subset(slice(0, 400))


def test_recalx_lowers_kl_error_at_every_level_on_held_out_data(fashion_split):
    model, calibration, held_out = fashion_split
    recalx = ReCalX(samples_per_bin=3, seed=0).fit(model, calibration.x, calibration.y)
    assert (recalx.temperatures_[1:] > recalx.temperatures_[:-1]).all()  # more perturbed: more over-confident
    levels = (0.05, 0.25, 0.45, 0.65, 0.85)
    before = calibration_error_by_level(model, held_out.x, held_out.y, levels, samples_per_level=2, seed=1)
    after = calibration_error_by_level(recalx.wrap(model), held_out.x, held_out.y, levels, samples_per_level=2, seed=1)
    for b, a in zip(before, after):
        assert a["accuracy"] == b["accuracy"]  # temperatures never change the predicted class
        if b["perturbation_level"] < 0.1:
            # Nearly clean inputs: the model is close to calibrated already (KL error about 0.03), and with two
            # perturbations per image the draws move ReCalX's paired change by about 0.01 (-0.025 to +0.006 over
            # evaluation seeds 1-5), so ReCalX must only not make it worse beyond that noise.
            assert a["kl_calibration_error"] < b["kl_calibration_error"] + 0.01
        else:
            assert a["kl_calibration_error"] < 0.5 * b["kl_calibration_error"], b["perturbation_level"]
    assert max(r["kl_calibration_error"] for r in after) < 0.5 * max(r["kl_calibration_error"] for r in before)


def test_calibrate_command_fits_saves_and_reports(tmp_path, fashion_quick_model):
    from xaitrust.training import save_checkpoint

    model, _ = fashion_quick_model
    save_checkpoint(model, tmp_path, {"dataset": "fashion-mnist"})
    result = CliRunner().invoke(cli, ["calibrate", "--model", str(tmp_path), "--calibration-size", "500", "--limit", "1500"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "calibration-temperature-summary.json").read_text())
    assert summary["held_out_size"] == 1000
    # The quick model is close to calibrated: a temperature fitted on 500 images moves held-out NLL by noise only
    # (0.46858 -> 0.46862 here), so the test asks that it does not make it worse beyond that.
    assert summary["after"]["nll"] < summary["before"]["nll"] + 1e-3
    assert summary["after"]["accuracy"] == summary["before"]["accuracy"]
    assert (tmp_path / "calibration-temperature-reliability.png").stat().st_size > 5000
    assert f"{summary['after']['nll']:.4f}" in result.output
    bad = CliRunner().invoke(cli, ["calibrate", "--model", str(tmp_path), "--calibration-size", "2000", "--limit", "1500"])
    assert bad.exit_code == 2 and "error:" in bad.output


class LevelRecorder(torch.nn.Module):
    """A perturbation-aware model that records the levels the masked-evaluation engine gives it."""

    accepts_perturbation_level = True
    num_classes = 3

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, perturbation_level=None):
        self.seen.append(perturbation_level.clone())
        return torch.stack([x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3)), -x.mean(dim=(1, 2, 3))], dim=1)


@pytest.fixture(scope="module")
def shapes():
    return make_shapes(n=6, size=32, seed=3)


@pytest.mark.parametrize("options", [{}, {"n_segments": 30, "sigma": 0.5}])
def test_recalx_superpixels_are_the_surrogate_explainers_own(shapes, options):
    # Given an explainer's segmentation options (or none, the defaults of both), ReCalX replaces exactly the feature
    # groups the explainer switches off: 50 superpixels by default, as KernelSHAP and LIME (ReCalX asked SLIC for 100).
    recalx = ReCalX(grouping="superpixels", **options)
    for method in ("kernelshap", "lime"):
        expected = get_explainer(method, **options).segmentation(shapes.x).ids
        assert torch.equal(feature_segments(shapes.x, "superpixels", **recalx.segmentation()), expected)


def test_fit_levels_are_the_levels_the_engine_gives_when_explaining(shapes):
    # ReCalX bins each perturbed copy by its realised level; the engine passes the calibrated model the fraction of
    # pixels replaced. For superpixels of unequal size that differs from the fraction of superpixels replaced, so the
    # two must be computed the same way.
    model = LevelRecorder()
    _, levels = perturbed_logits(model, shapes.x, torch.tensor([0.3, 0.7]), repeats=2, grouping="superpixels",
                                 segmentation={"n_segments": 20}, batch_size=8)
    assert torch.allclose(torch.cat(model.seen).double(), levels.flatten().double(), atol=1e-6)
    assert not torch.allclose(levels, torch.tensor([0.3, 0.7], dtype=torch.float64).expand_as(levels), atol=1e-3)


def test_segmentation_settings_are_saved_and_loaded(tmp_path):
    options = {"n_segments": 30, "compactness": 5.0, "sigma": 0.5, "min_segments": 3}
    recalx = ReCalX(n_bins=2, grouping="superpixels", **options)
    recalx.temperatures_ = torch.tensor([1.0, 2.0], dtype=torch.float64)
    loaded = Calibrator.load(recalx.save(tmp_path / "recalx"))
    assert loaded.segmentation() == {"patch_size": 4, **options} and loaded.grouping == "superpixels"
    # A calibrator saved before the SLIC options were settings loads with the explainers' defaults for them.
    meta = json.loads((tmp_path / "recalx.json").read_text())
    for name in ("compactness", "sigma", "min_segments"):
        del meta["settings"][name]
    (tmp_path / "recalx.json").write_text(json.dumps(meta))
    assert Calibrator.load(tmp_path / "recalx").segmentation()["sigma"] is None


def test_unknown_segmentation_options_are_refused(shapes):
    with pytest.raises(XaitrustError, match="unknown segmentation option.*n_segment.*known: patch_size"):
        perturbed_logits(LevelRecorder(), shapes.x, [0.5], grouping="superpixels", segmentation={"n_segment": 30})


def test_error_by_level_reports_extra_kl_modes_and_the_pixel_level(shapes):
    data = make_shapes(n=40, size=32, seed=4)
    rows = calibration_error_by_level(LevelRecorder(), data.x, data.y % 3, [0.25, 0.75], grouping="superpixels",
                                      segmentation={"n_segments": 20}, kl_mode="canonical",
                                      also_kl_modes=("top-label", "classwise"))
    for row in rows:
        assert {"kl_calibration_error", "kl_calibration_error_top_label", "kl_calibration_error_classwise"} <= set(row)
        assert abs(row["pixel_level"] - row["perturbation_level"]) < 0.1
    with pytest.raises(XaitrustError, match="also_kl_modes must name modes among top-label, classwise, canonical"):
        calibration_error_by_level(LevelRecorder(), data.x, data.y % 3, [0.5], also_kl_modes=("full",))


def test_panels_of_error_by_level_are_drawn(tmp_path):
    rows = [{"perturbation_level": level, "kl": level / 2} for level in (0.1, 0.5, 0.9)]
    path = plot_error_by_level_panels({"superpixels": {"a": rows, "b": rows}, "pixels": {"a": rows}},
                                      tmp_path / "panels.png", "kl")
    assert path.stat().st_size > 5000
    with pytest.raises(XaitrustError, match="curve 'a' of panel 'pixels' has no 'ece' values"):
        plot_error_by_level_panels({"pixels": {"a": rows}}, tmp_path / "bad.png", "ece")
    with pytest.raises(XaitrustError, match="at least one panel"):
        plot_error_by_level_panels({}, tmp_path / "none.png", "kl")
