"""One entry point for every dataset: ``load_dataset(name, root, split, **options)`` and ``available_datasets()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import XaitrustError
from .dataset import ImageDataset
from .digits import load_digits
from .fashion_mnist import INSTALL_HINT, find_fashion_mnist, load_fashion_mnist
from .folder import load_image_folder
from .npz import load_npz
from .shapes import make_shapes
from .splits import stratified_sample

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What ``available_datasets`` reports about one dataset."""

    name: str
    description: str
    available: bool
    location: str


@dataclass(frozen=True)
class _Entry:
    description: str
    loader: Callable[..., ImageDataset]
    locate: Callable[[], tuple[bool, str]]


def _locate_fashion_mnist() -> tuple[bool, str]:
    folder = find_fashion_mnist()
    return (True, str(folder)) if folder else (False, f"not found: {INSTALL_HINT}")


_DATASETS = {
    "fashion-mnist": _Entry(
        "Fashion-MNIST: 28x28 greyscale clothing images, 10 classes, 60000 train / 10000 test",
        load_fashion_mnist,
        _locate_fashion_mnist,
    ),
    "digits": _Entry(
        "scikit-learn 8x8 handwritten digits, 10 classes, 1797 images split 80/20 (options: test_fraction, seed)",
        load_digits,
        lambda: (True, "bundled with scikit-learn"),
    ),
    "shapes": _Entry(
        "synthetic shapes with ground-truth object masks, 6 classes "
        "(options: n, size, channels, noise, seed)",
        make_shapes,
        lambda: (True, "generated on demand"),
    ),
    "folder": _Entry(
        "your images in class sub-folders (root=FOLDER; options: image_size, channels, test_fraction, seed)",
        load_image_folder,
        lambda: (True, "your folder, given as root"),
    ),
    "npz": _Entry(
        "your arrays x, y (optional masks, classes) in an .npz file (root=FILE; options: layout, test_fraction, seed)",
        load_npz,
        lambda: (True, "your file, given as root"),
    ),
}


def available_datasets() -> list[DatasetInfo]:
    """Every dataset ``load_dataset`` knows, with a description and where it was found (or how to get it)."""
    return [DatasetInfo(name, entry.description, *entry.locate()) for name, entry in _DATASETS.items()]


def load_dataset(name: str, root: str | Path | None = None, split: str = "train", **options) -> ImageDataset:
    """Load the ``split`` ("train" or "test") of dataset ``name`` as an ``ImageDataset``.

    Args:
        name: one of ``available_datasets()``: "fashion-mnist", "digits", "shapes", "folder", "npz".
        root: where the files are (fashion-mnist: a folder, searched by default; folder: the image folder; npz: the
            file). Generated and bundled datasets take no root.
        options: the dataset's own options (see its description), plus ``limit``: keep only ``limit`` samples, a
            stratified subset chosen with seed 0 (class shares as in the full split, original order kept) -- handy
            for fast runs. A limit at or above the split's size keeps everything.
    """
    if name not in _DATASETS:
        raise XaitrustError(f"unknown dataset {name!r}; available: {', '.join(_DATASETS)}")
    if split not in SPLITS:
        raise XaitrustError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    limit = options.pop("limit", None)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise XaitrustError(f"limit must be a positive number of samples; got {limit!r}")
    loader = _DATASETS[name].loader
    parameters = inspect.signature(loader).parameters
    allowed = [key for key in parameters if key not in ("root", "split")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise XaitrustError(
            f"unknown option(s) {unknown} for dataset {name!r}; allowed: {', '.join(allowed + ['limit'])}"
        )
    if "root" in parameters:
        options["root"] = root
    elif root is not None:
        raise XaitrustError(f"dataset {name!r} takes no root (it is {_DATASETS[name].locate()[1]}); drop root")
    dataset = loader(split=split, **options)
    given = {key: value for key, value in options.items() if key != "root"}
    dataset.info["load"] = {"dataset": name, "root": str(Path(root).resolve()) if root else None, "options": given}
    if limit is None or limit >= len(dataset):
        return dataset
    return dataset.subset(stratified_sample(dataset.y, limit, seed=0))
