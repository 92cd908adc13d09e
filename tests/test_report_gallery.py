"""The image gallery: every map drawn under its method's name, scaled as documented, in its image's strip; the image
titled with its dataset index, true and predicted class and confidence; per image the curves of every method, the
random control dashed black; one PNG per block of images, the same bytes for the same inputs."""

import numpy as np
import pandas as pd
import pytest
import torch

from xaitrust.errors import XaitrustError
from xaitrust.report import gallery
from xaitrust.report.gallery import (
    IMAGES_PER_FIGURE,
    gallery_section,
    image_titles,
    method_colours,
    plot_gallery,
    shown_map,
)
from xaitrust.report.html import write_report

CLASSES = ["cat", "dog", "frog"]
N, H, W, S = 6, 5, 4, 7


def inputs(n=N, methods=("saliency", "gradient-input", "random"), insertion=True):
    """Images, their table, maps (method k of image i: a ramp rolled by 3 i + k, so that every map is told apart
    after scaling, minus 5 for the signed gradient-input) and curves (method k of image i: constant i + k / 10 on
    deletion, minus that on insertion)."""
    x = torch.linspace(0, 1, n * 3 * H * W).reshape(n, 3, H, W)
    samples = pd.DataFrame({"sample": [100 + 7 * i for i in range(n)], "label": [i % 3 for i in range(n)],
                            "prediction": [(i + 1) % 3 for i in range(n)],
                            "confidence": [0.5 + 0.05 * i for i in range(n)]})
    ramp = torch.arange(H * W, dtype=torch.float32).reshape(H, W)
    maps = {m: torch.stack([ramp.flatten().roll(3 * i + k).reshape(H, W) - 5 * (m == "gradient-input")
                            for i in range(n)]) for k, m in enumerate(methods)}
    fractions = torch.linspace(0, 1, S)
    curves = {}
    for k, m in enumerate(methods):
        level = (torch.arange(n, dtype=torch.float64) + k / 10)[:, None].expand(n, S)
        curves[m] = {"fractions": fractions, "deletion": level, **({"insertion": -level} if insertion else {})}
    return x, samples, maps, curves


@pytest.fixture
def drawn(monkeypatch):
    """Make ``plot_gallery`` hand back its figure instead of writing and closing it."""
    monkeypatch.setattr(gallery, "save_figure", lambda fig, path: fig)
    figures = []
    yield figures
    for fig in figures:
        gallery.plt.close(fig)


def test_a_map_without_negative_values_is_min_max_scaled_on_inferno():
    shown, cmap, vmin, vmax = shown_map(torch.tensor([[2.0, 4.0], [3.0, 6.0]]))
    np.testing.assert_allclose(shown, [[0.0, 0.5], [0.25, 1.0]])
    assert (cmap, vmin, vmax) == ("inferno", 0.0, 1.0)


def test_a_map_with_negative_values_is_divided_by_its_largest_magnitude_on_a_diverging_map():
    shown, cmap, vmin, vmax = shown_map(torch.tensor([[-2.0, 1.0], [0.0, 4.0]]))
    np.testing.assert_allclose(shown, [[-0.5, 0.25], [0.0, 1.0]])  # 0 stays at the white centre
    assert (cmap, vmin, vmax) == ("RdBu_r", -1.0, 1.0)


def test_a_constant_map_is_drawn_as_zeros():
    shown, cmap, _, _ = shown_map(torch.full((2, 3), 5.0))
    assert cmap == "inferno" and not shown.any()


def test_every_method_has_its_own_colour_and_the_random_control_is_black():
    methods = [f"m{k}" for k in range(17)] + ["random"]
    colours = method_colours(methods)
    assert colours["random"] == (0.0, 0.0, 0.0)
    assert len(set(colours.values())) == 18


def test_image_titles_name_the_dataset_index_the_classes_and_the_confidence():
    _, samples, _, _ = inputs(n=2)
    assert image_titles(samples, CLASSES) == ["#100 true cat\npred dog (0.50)", "#107 true dog\npred frog (0.55)"]


def test_each_strip_shows_its_image_every_map_under_its_name_and_the_curves(drawn):
    x, samples, maps, curves = inputs(n=2)
    fig = plot_gallery(None, x, image_titles(samples, CLASSES), maps, curves)
    drawn.append(fig)
    per_image = 1 + len(maps) + 2  # image, maps, deletion and insertion panels
    assert len(fig.axes) == 2 * per_image + 1  # and the legend
    for i in range(2):
        strip = fig.axes[i * per_image:(i + 1) * per_image]
        assert strip[0].get_title() == image_titles(samples, CLASSES)[i]
        np.testing.assert_allclose(strip[0].images[0].get_array(), x[i].permute(1, 2, 0).numpy())
        for k, (method, values) in enumerate(maps.items()):
            ax = strip[1 + k]
            assert ax.get_title().replace("-\n", "-") == method
            image = ax.images[0]
            np.testing.assert_allclose(image.get_array(), shown_map(values[i])[0])
            assert image.get_cmap().name == ("RdBu_r" if method == "gradient-input" else "inferno")
        deletion, insertion = strip[-2:]
        assert deletion.get_title().startswith("deletion") and insertion.get_title().startswith("insertion")
        for panel, sign in ((deletion, 1), (insertion, -1)):
            levels = [line.get_ydata()[0] for line in panel.lines]
            np.testing.assert_allclose(levels, [sign * (i + k / 10) for k in range(len(curves))])
            random_line = panel.lines[list(curves).index("random")]
            assert random_line.get_linestyle() == "--" and random_line.get_color() == (0.0, 0.0, 0.0)
    legend = fig.axes[-1].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == list(curves)


def test_a_gallery_without_insertion_curves_draws_the_deletion_panel_alone(drawn):
    x, samples, maps, curves = inputs(n=1, insertion=False)
    fig = plot_gallery(None, x, image_titles(samples, CLASSES), maps, curves)
    drawn.append(fig)
    assert len(fig.axes) == 1 + len(maps) + 1 + 1
    assert fig.axes[-2].get_title().startswith("deletion")


def test_the_section_writes_one_png_per_block_of_images(tmp_path):
    x, samples, maps, curves = inputs()
    section = gallery_section(tmp_path, x, samples, CLASSES, maps, curves, n_images=5)
    assert section.title == "Image gallery"
    assert IMAGES_PER_FIGURE == 4
    assert list(section.figures) == ["Images 1-4 of 5: the maps of every method and the image's curves",
                                     "Image 5 of 5: the maps of every method and the image's curves"]
    assert [p.name for p in section.figures.values()] == ["gallery-1-4.png", "gallery-5-5.png"]
    for path in section.figures.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(section.paragraphs) == 2 and "deletion curve" in section.paragraphs[1]
    write_report(tmp_path / "report.html", "gallery", [], [section], "")
    assert "Image gallery" in (tmp_path / "report.html").read_text()


def test_the_section_shows_at_most_the_images_it_has_and_the_same_bytes_twice(tmp_path):
    x, samples, maps, curves = inputs(n=2)
    first = gallery_section(tmp_path / "a", x, samples, CLASSES, maps, curves)
    second = gallery_section(tmp_path / "b", x, samples, CLASSES, maps, curves)
    assert list(first.figures) == ["Images 1-2 of 2: the maps of every method and the image's curves"]
    assert [p.read_bytes() for p in first.figures.values()] == [p.read_bytes() for p in second.figures.values()]


def test_galleries_of_several_models_share_a_folder(tmp_path):
    x, samples, maps, curves = inputs(n=1)
    sections = [gallery_section(tmp_path, x, samples, CLASSES, maps, curves, model=model)
                for model in ("uncalibrated", "calibrated")]
    assert [section.title for section in sections] == ["Image gallery (uncalibrated model)",
                                                       "Image gallery (calibrated model)"]
    paths = [path for section in sections for path in section.figures.values()]
    assert [path.name for path in paths] == ["gallery-uncalibrated-1-1.png", "gallery-calibrated-1-1.png"]
    with pytest.raises(XaitrustError, match="names the figure files"):
        gallery_section(tmp_path, x, samples, CLASSES, maps, curves, model="../up")


@pytest.mark.parametrize("mistake, message", [
    (lambda x, s, m, c: (x, s.iloc[:-1], m, c), "one row per image"),
    (lambda x, s, m, c: (x, s.drop(columns="confidence"), m, c), "columns sample, label, prediction, confidence"),
    (lambda x, s, m, c: (x, s.assign(prediction=3), m, c), "class indices"),
    (lambda x, s, m, c: (x, s, {}, c), "at least one method"),
    (lambda x, s, m, c: (x, s, {**m, "saliency": m["saliency"][:, :-1]}, c), "maps\\['saliency'\\]"),
    (lambda x, s, m, c: (x, s, m, {"saliency": {"fractions": c["saliency"]["fractions"]}}), "'deletion'"),
    (lambda x, s, m, c: (x, s, m, {"saliency": {**c["saliency"], "deletion": c["saliency"]["deletion"][:, :-1]}}),
     "shape \\(N, S\\)"),
    (lambda x, s, m, c: (x * 255, s, m, c), "values in \\[0, 1\\]"),
])
def test_mistakes_say_what_to_fix(tmp_path, mistake, message):
    x, samples, maps, curves = mistake(*inputs())
    with pytest.raises(XaitrustError, match=message):
        gallery_section(tmp_path, x, samples, CLASSES, maps, curves)
    assert not list(tmp_path.iterdir())
