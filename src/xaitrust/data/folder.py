"""The user's own images: one sub-folder per class, read with Pillow.

Layout: ``root/<class>/<image>`` (class names are the sub-folder names, sorted; the data is split into train and test
by a stratified seeded holdout of ``test_fraction``), or ``root/train/<class>/...`` together with
``root/test/<class>/...`` (the folder's own split; the classes are the train sub-folders). Images are read as
greyscale when every image file is greyscale, as RGB otherwise (alpha dropped), unless ``channels`` forces 1 or 3;
8-bit values are divided by 255 (16-bit and float images are refused). All images must share one size unless
``image_size`` asks to resize them (bilinear).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import DatasetNotFoundError, XaitrustError
from .dataset import ImageDataset
from .splits import holdout_split

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
GREY_MODES = {"1", "L", "LA"}
HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _class_folders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def _collect(folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    """Image paths and labels of ``folder/<class>/*`` for the given classes; each class folder must hold images."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = folder / name
        if not class_dir.is_dir():
            continue
        images = _images_in(class_dir)
        if not images:
            raise XaitrustError(
                f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); add some or remove it"
            )
        paths += images
        labels += [label] * len(images)
    return paths, labels


def _open(path: Path) -> Image.Image:
    """The image at ``path``, opened lazily; unreadable or non-8-bit images raise a clear error, and so do images
    beyond Pillow's decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, whose warning is taken as a refusal: such a
    file could take gigabytes to decode)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise XaitrustError(
            f"image {path} is too large to read safely ({error}); shrink it, or remove it from the folder"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise XaitrustError(f"cannot read image {path} ({error}); remove or replace it") from None
    if image.mode in HIGH_DEPTH_MODES:
        image.close()
        raise XaitrustError(f"image {path} has {image.mode!r} pixels; only 8-bit images are read, convert it first")
    return image


def _is_grey(path: Path) -> bool:
    with _open(path) as image:
        return image.mode in GREY_MODES


def _read_images(paths: list[Path], mode: str, image_size: tuple[int, int] | None) -> np.ndarray:
    """Images ``(N, H, W, C)`` as uint8, converted to ``mode`` and resized to ``image_size`` (H, W) if given."""
    arrays = []
    for path in paths:
        with _open(path) as image:
            try:
                image = image.convert(mode)  # decodes the pixels: a truncated or corrupt file fails here
            except (OSError, SyntaxError) as error:
                raise XaitrustError(f"cannot decode image {path} ({error}); remove or replace it") from None
            if image_size is not None:
                image = image.resize((image_size[1], image_size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.uint8).reshape(image.height, image.width, -1)
        if arrays and array.shape != arrays[0].shape:
            raise XaitrustError(
                f"images differ in size: {paths[0]} is {arrays[0].shape[1]}x{arrays[0].shape[0]} but {path} is "
                f"{array.shape[1]}x{array.shape[0]} (width x height); pass image_size=(H, W) to resize them all"
            )
        arrays.append(array)
    return np.stack(arrays)


def _mode(paths: list[Path], channels: int | None) -> str:
    if channels is None:
        channels = 1 if all(_is_grey(path) for path in paths) else 3
    if channels not in (1, 3):
        raise XaitrustError(f"channels must be 1 (greyscale) or 3 (RGB); got {channels!r}")
    return "L" if channels == 1 else "RGB"


def _image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise XaitrustError(f"image_size must be a positive int or a pair (H, W) of them; got {image_size!r}")
    return size


def _layout(root: Path) -> tuple[dict[str, Path] | None, list[str]]:
    """The folders of ``root``'s own train and test splits (None when it has none) and the class names."""
    has_split = {name: (root / name).is_dir() for name in ("train", "test")}
    if any(has_split.values()) and not all(has_split.values()):
        present, absent = ("train", "test") if has_split["train"] else ("test", "train")
        raise XaitrustError(f"{root} has a {present}/ folder but no {absent}/ folder; provide both, or neither")
    own_split = {name: root / name for name in has_split} if has_split["train"] else None
    class_root = own_split["train"] if own_split else root
    classes = [path.name for path in _class_folders(class_root)]
    if not classes:
        raise XaitrustError(
            f"{class_root} holds no class sub-folders; put the images of each class in {class_root}/<class>/"
        )
    if own_split:
        unknown = sorted({path.name for path in _class_folders(own_split["test"])} - set(classes))
        if unknown:
            raise XaitrustError(f"{own_split['test']} has class folders {unknown} that {class_root} lacks")
    return own_split, classes


def load_image_folder(
    root: str | Path,
    split: str = "train",
    image_size=None,
    channels: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> ImageDataset:
    """The ``split`` of the image folder ``root`` (see the module docstring for the layout)."""
    if root is None:
        raise XaitrustError("the folder dataset needs root=PATH, a folder with one sub-folder of images per class")
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist or is not a folder")
    own_split, classes = _layout(root)
    size = _image_size(image_size)
    every_folder = list(own_split.values()) if own_split else [root]
    mode = _mode([path for folder in every_folder for path in _collect(folder, classes)[0]], channels)
    folder = own_split[split] if own_split else root
    paths, labels = _collect(folder, classes)
    if not paths:
        raise XaitrustError(f"{folder} holds no images in its class sub-folders")
    dataset = ImageDataset(
        x=torch.from_numpy(_read_images(paths, mode, size)).permute(0, 3, 1, 2).float().div_(255.0),
        y=torch.tensor(labels, dtype=torch.long),
        classes=classes,
        name=root.name,
        split=split,
        source=str(root),
    )
    if own_split:
        return dataset
    train, test = holdout_split(dataset, test_fraction, seed)
    return train if split == "train" else test
