"""The user's own data: image folders (Pillow) and ``.npz`` files."""

import numpy as np
import pytest
import torch
from PIL import Image

from xaitrust.data import load_dataset
from xaitrust.errors import DatasetNotFoundError, XaitrustError


def save_grey(path, value, size=(5, 6)):
    """A greyscale PNG of ``size`` (H, W) whose pixel (0, 0) holds ``value`` and the rest ``value // 2``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full(size, value // 2, dtype=np.uint8)
    array[0, 0] = value
    Image.fromarray(array, mode="L").save(path)


def make_folder(root, per_class=5):
    for label, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            save_grey(root / name / f"{i}.png", 100 * label + 10 * i)


def test_folder_classes_values_and_holdout(tmp_path):
    make_folder(tmp_path)
    train, test = load_dataset("folder", root=tmp_path), load_dataset("folder", root=tmp_path, split="test")
    assert train.classes == ["cat", "dog"] and train.x.shape == (8, 1, 5, 6) and len(test) == 2
    assert torch.bincount(test.y).tolist() == [1, 1]
    values = sorted((torch.cat([train.x, test.x])[:, 0, 0, 0] * 255).round().long().tolist())
    assert values == [0, 10, 20, 30, 40, 100, 110, 120, 130, 140]
    labels = torch.cat([train.y, test.y])
    assert torch.equal(labels, (torch.cat([train.x, test.x])[:, 0, 0, 0] * 255 >= 100).long())
    assert train.x[0, 0, 1, 1].item() == pytest.approx((train.x[0, 0, 0, 0].item() * 255 // 2) / 255)


def test_folder_with_its_own_split_and_rgb(tmp_path):
    make_folder(tmp_path / "train", per_class=3)
    save_grey(tmp_path / "test" / "dog" / "a.png", 200)
    Image.new("RGB", (6, 5), (255, 0, 128)).save(tmp_path / "test" / "dog" / "b.png")
    test = load_dataset("folder", root=tmp_path, split="test")
    assert test.x.shape == (2, 3, 5, 6) and test.y.tolist() == [1, 1] and test.classes == ["cat", "dog"]
    assert (test.x[1, :, 2, 2] * 255).round().tolist() == [255, 0, 128]
    assert load_dataset("folder", root=tmp_path, split="train").x.shape == (6, 3, 5, 6)  # RGB for both splits
    grey = load_dataset("folder", root=tmp_path, split="test", channels=1)
    assert grey.x.shape == (2, 1, 5, 6) and grey.x[0, 0, 0, 0].item() == pytest.approx(200 / 255)


def test_folder_sizes_must_agree_unless_resized(tmp_path):
    make_folder(tmp_path, per_class=3)
    save_grey(tmp_path / "dog" / "big.png", 50, size=(10, 12))
    with pytest.raises(XaitrustError, match=r"is 6x5 but .*big\.png is 12x10 .* pass image_size"):
        load_dataset("folder", root=tmp_path)
    resized = load_dataset("folder", root=tmp_path, image_size=(4, 4))
    assert resized.x.shape[1:] == (1, 4, 4)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda root: (root / "cat").mkdir(), "class folder .*cat holds no images"),
        (lambda root: None, "holds no class sub-folders"),
        (lambda root: make_folder(root / "train"), "has a train/ folder but no test/ folder"),
        (lambda root: (make_folder(root), (root / "cat" / "0.png").write_text("-")), r"cannot read image .*0\.png"),
    ],
)
def test_folder_errors(tmp_path, build, message):
    build(tmp_path)
    with pytest.raises(XaitrustError, match=message):
        load_dataset("folder", root=tmp_path)


def test_folder_missing_root(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("folder", root=tmp_path / "nowhere")
    with pytest.raises(XaitrustError, match="needs root=PATH"):
        load_dataset("folder")


def test_npz_round_trip_channels_last_with_masks_and_classes(tmp_path):
    n = 20
    x = np.zeros((n, 4, 4, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) * 10
    x[:, 1, 2, 2] = 255
    y = np.arange(n) % 2
    masks = np.zeros((n, 4, 4), dtype=np.uint8)
    masks[:, 1, 2] = 1
    np.savez(tmp_path / "mine.npz", x=x, y=y, masks=masks, classes=np.array(["no", "yes"]))
    train, test = (load_dataset("npz", root=tmp_path / "mine.npz", split=s) for s in ("train", "test"))
    assert (len(train), len(test)) == (16, 4) and train.classes == ["no", "yes"] and train.name == "mine"
    both_x, both_y = torch.cat([train.x, test.x]), torch.cat([train.y, test.y])
    order = torch.argsort(both_x[:, 0, 0, 0])
    assert torch.equal((both_x[order, 0, 0, 0] * 255).round().long(), torch.arange(n) * 10)
    assert torch.equal(both_y[order], torch.from_numpy(y))
    assert torch.all(train.x[:, 2, 1, 2] == 1.0) and train.masks.sum().item() == 16 and train.masks[:, 1, 2].all()


def test_npz_own_split_channels_first_floats(tmp_path):
    rng = np.random.default_rng(0)
    x_train, x_test = rng.random((6, 1, 3, 3), dtype=np.float32), rng.random((3, 1, 3, 3), dtype=np.float32)
    np.savez(tmp_path / "d.npz", x_train=x_train, y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=x_test,
             y_test=np.array([0, 0, 3]))
    test = load_dataset("npz", root=tmp_path / "d.npz", split="test")
    assert torch.equal(test.x, torch.from_numpy(x_test)) and test.classes == ["0", "1", "2", "3"]
    assert load_dataset("npz", root=tmp_path / "d.npz").classes == ["0", "1", "2", "3"]  # names cover both splits


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0, 1, 2, 0]), "classes": np.array(["a", "b"])},
         r"d\.npz: y must lie in \[0, 1\] for 2 classes; got 0\.\.2"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0, -1, 1, 0])}, "negative label -1"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0.0, 1.0, 1.0, 0.0])}, "integer class indices"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0, 1, 1])}, "4 images but y holds 3 labels"),
        ({"x": np.zeros((4, 4), np.uint8), "y": np.array([0, 1, 1, 0])}, r"has shape \(4, 4\); expected"),
        ({"x": np.zeros((4, 2, 2, 5), np.uint8), "y": np.array([0, 1, 1, 0])}, "has 5 channels, expected 1 or 3"),
        ({"x": np.full((4, 2, 2), 2.0), "y": np.array([0, 1, 1, 0])},
         r"x must hold images with values in \[0, 1\]; got values from 2 to 2"),
        ({"x": np.zeros((4, 2, 2), np.int32), "y": np.array([0, 1, 1, 0])}, "store uint8"),
        ({"x": np.zeros((4, 2, 2), np.uint8), "y": np.array([0, 1, 1, 0]), "masks": np.zeros((4, 3, 3))},
         r"masks must be \(N, H, W\) = \(4, 2, 2\)"),
        ({"images": np.zeros((4, 2, 2), np.uint8)}, r"holds arrays \['images'\]; expected x and y"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(XaitrustError, match=message):
        load_dataset("npz", root=tmp_path / "d.npz")


def test_npz_missing_or_unreadable_file(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("npz", root=tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_text("not a zip")
    with pytest.raises(XaitrustError, match="cannot read .*bad.npz as an .npz file"):
        load_dataset("npz", root=tmp_path / "bad.npz")
