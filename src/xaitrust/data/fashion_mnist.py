"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 greyscale images of 10 clothing classes, 60000 train / 10000 test.

The four IDX files are looked for in ``root`` when it is given (the folder itself or its ``fashion-mnist/``
subfolder); otherwise in ``$XAITRUST_DATA`` (same rule), then in ``/usr/share/datasets/fashion-mnist`` where the
Debian package ``dataset-fashion-mnist`` installs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetNotFoundError, XaitrustError
from .dataset import ImageDataset
from .idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx_gz

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
ENVIRONMENT_VARIABLE = "XAITRUST_DATA"
INSTALL_HINT = (
    "install them with `apt-get install dataset-fashion-mnist`, or put the four files "
    f"({', '.join(name for pair in FILES.values() for name in pair)}) in a folder and set "
    f"{ENVIRONMENT_VARIABLE} to it (or to its parent holding a fashion-mnist/ subfolder), or pass root=FOLDER"
)


def candidate_dirs(root: str | Path | None = None) -> list[Path]:
    """The folders searched, in order: ``root`` (and ``root/fashion-mnist``) if given, else ``$XAITRUST_DATA`` (and
    its ``fashion-mnist`` subfolder) if set, then the Debian package's folder."""
    if root is not None:
        return [Path(root), Path(root) / "fashion-mnist"]
    candidates = []
    if os.environ.get(ENVIRONMENT_VARIABLE):
        base = Path(os.environ[ENVIRONMENT_VARIABLE])
        candidates += [base, base / "fashion-mnist"]
    return candidates + [SYSTEM_DIR]


def find_fashion_mnist(root: str | Path | None = None) -> Path | None:
    """The first candidate folder holding all four files, or None."""
    names = [name for pair in FILES.values() for name in pair]
    for folder in candidate_dirs(root):
        if all((folder / name).is_file() for name in names):
            return folder
    return None


def load_fashion_mnist(root: str | Path | None = None, split: str = "train") -> ImageDataset:
    """The ``split`` ("train" or "test") of Fashion-MNIST as float images ``(N, 1, 28, 28)`` in [0, 1] (bytes / 255)."""
    folder = find_fashion_mnist(root)
    if folder is None:
        looked = ", ".join(str(path) for path in candidate_dirs(root))
        raise DatasetNotFoundError(f"Fashion-MNIST files not found (looked in {looked}); {INSTALL_HINT}")
    images_path, labels_path = (folder / name for name in FILES[split])
    images = read_idx_gz(images_path, IMAGES_MAGIC)
    labels = read_idx_gz(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise XaitrustError(f"{images_path} holds images of size {images.shape[1:]}, Fashion-MNIST's are (28, 28)")
    if len(images) != len(labels):
        raise XaitrustError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
            "the two files do not belong together, download them again"
        )
    if labels.max() >= len(CLASSES):
        raise XaitrustError(f"{labels_path} holds label {labels.max()}, Fashion-MNIST has classes 0-9 only")
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div_(255.0)
    y = torch.from_numpy(labels.astype("int64"))
    return ImageDataset(x=x, y=y, classes=list(CLASSES), name="fashion-mnist", split=split, source=str(folder))
