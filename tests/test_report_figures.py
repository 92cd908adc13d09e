"""Curve figures: the mean curve with a band of the Student-t 95% confidence interval of the mean (sample std), no
band where a point has fewer than two values, and a legend saying what the band is."""

import math

import numpy as np
import pytest
import torch

from xaitrust.report import figures
from xaitrust.report.figures import curve_band, plot_curves


def test_curve_band_is_the_t_interval_of_each_point():
    values = np.array([[1.0, 0.0, 7.0], [2.0, 2.0, np.nan], [3.0, 4.0, np.nan]])
    mean, half = curve_band(values)
    np.testing.assert_allclose(mean, [2.0, 2.0, 7.0])
    # Point 0: std 1 over 3 values; point 1: std 2 over 3 values; point 2: one value, no interval.
    np.testing.assert_allclose(half[:2], [4.302653 / math.sqrt(3), 2 * 4.302653 / math.sqrt(3)], rtol=1e-6)
    assert math.isnan(half[2])


def shown_figure(monkeypatch):
    """Make ``plot_curves`` hand back its figure instead of writing and closing it."""
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: fig)


def test_plot_curves_shades_the_t_interval_and_says_so(monkeypatch):
    shown_figure(monkeypatch)
    x = torch.tensor([0.0, 1.0])
    fig = plot_curves(None, {"a": (x, torch.tensor([[1.0, 0.0], [2.0, 2.0], [3.0, 4.0]]))}, "x", "y")
    ax = fig.axes[0]
    (band,) = ax.collections
    top = band.get_paths()[0].vertices[:, 1].max()
    assert top == pytest.approx(2.0 + 2 * 4.302653 / math.sqrt(3), rel=1e-6)
    assert "95% CI" in ax.get_legend().get_title().get_text()
    figures.plt.close(fig)


def test_plot_curves_draws_no_band_from_a_single_curve(monkeypatch):
    shown_figure(monkeypatch)
    fig = plot_curves(None, {"a": (torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 0.5]]))}, "x", "y")
    ax = fig.axes[0]
    assert not ax.collections and "CI" not in ax.get_legend().get_title().get_text()
    figures.plt.close(fig)


def test_plot_curves_writes_a_png(tmp_path):
    path = plot_curves(tmp_path / "c.png", {"a": (torch.arange(3.0), torch.rand(4, 3))}, "x", "y", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_box_panels_draws_one_panel_per_key_with_a_box_per_group_and_its_count(monkeypatch):
    shown_figure(monkeypatch)
    panels = {"a": {"before": np.array([1.0, 2.0, 3.0, np.nan]), "after": np.array([0.5, 0.7])},
              "b": {"before": np.array([10.0, 20.0])}}
    fig = figures.plot_box_panels(None, panels, "L")
    left, right = fig.axes
    assert (left.get_title(), right.get_title()) == ("a", "b")
    assert [t.get_text() for t in left.get_xticklabels()] == ["before\n(n=3)", "after\n(n=2)"]  # NaN left out
    assert [t.get_text() for t in right.get_xticklabels()] == ["before\n(n=2)", "after\n(n=0)"]  # empty slot
    spans = [(np.ptp(line.get_xdata()), tuple(line.get_ydata())) for line in left.lines if len(line.get_xdata()) == 2]
    assert [y for width, y in spans if width == pytest.approx(0.6)] == [(2.0, 2.0), (0.6, 0.6)]  # the medians
    assert left.get_ylabel() == "L" and right.get_ylabel() == ""
    figures.plt.close(fig)


def test_plot_box_panels_hides_the_unused_slots_of_the_last_row(monkeypatch):
    shown_figure(monkeypatch)
    fig = figures.plot_box_panels(None, {k: {"m": np.arange(3.0)} for k in "abcde"}, "L", per_row=3)
    assert [ax.get_visible() for ax in fig.axes] == [True] * 5 + [False]
    figures.plt.close(fig)


def test_plot_intervals_draws_each_estimate_with_its_interval_and_the_reference_line(monkeypatch):
    shown_figure(monkeypatch)
    estimates = {"own": {"x": (0.5, 0.1), "y": (-0.2, float("nan"))}, "common": {"x": (0.25, 0.05)}}
    fig = figures.plot_intervals(None, estimates, "difference", reference=0.0)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y"]
    assert ax.get_ylim() == (1.5, -0.5)  # first item on top
    own, common = ax.containers
    np.testing.assert_allclose(own.lines[0].get_xdata(), [0.5, -0.2])
    bars = own.lines[2][0].get_segments()
    np.testing.assert_allclose([segment[:, 0] for segment in bars], [[0.4, 0.6], [-0.2, -0.2]])  # NaN: no bar
    np.testing.assert_allclose(common.lines[0].get_xdata(), [0.25])
    assert own.lines[0].get_ydata()[0] < 0 < common.lines[0].get_ydata()[0]  # the series side by side in a row
    assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [0.0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["own", "common"]
    figures.plt.close(fig)


def test_new_figures_write_pngs(tmp_path):
    boxes = figures.plot_box_panels(tmp_path / "b.png", {"a": {"m": np.arange(4.0)}}, "L", "t")
    intervals = figures.plot_intervals(tmp_path / "i.png", {"s": {"a": (0.1, 0.02)}}, "d", "t")
    assert boxes.read_bytes()[:8] == intervals.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
