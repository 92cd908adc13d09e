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
    monkeypatch.setattr(figures, "_save", lambda fig, path: fig)


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
