"""The user's own arrays in a NumPy ``.npz`` file.

Keys: ``x`` and ``y`` (split into train and test by a stratified seeded holdout of ``test_fraction``), or ``x_train``,
``y_train``, ``x_test``, ``y_test`` (the file's own split); optional ``masks`` (or ``masks_train`` / ``masks_test``)
and ``classes`` (an array of names; by default ``"0"`` .. ``str(max(y))``).

``x`` is ``(N, H, W)``, ``(N, C, H, W)`` or ``(N, H, W, C)`` with ``C`` in {1, 3}: ``layout="auto"`` reads a 4-D
array as channels-first when its second axis has size 1 or 3 and as channels-last otherwise; pass ``layout="NCHW"``
or ``"NHWC"`` to say it. uint8 values are divided by 255; float values must already lie in [0, 1]. ``y`` holds
integer class indices, ``masks`` is ``(N, H, W)`` (non-zero = object pixel).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetNotFoundError, XaitrustError
from .dataset import ImageDataset
from .splits import holdout_split

LAYOUTS = ("auto", "NCHW", "NHWC")


def _images(x: np.ndarray, layout: str, where: str) -> torch.Tensor:
    """Float images ``(N, C, H, W)`` in [0, 1] from an array in any of the accepted layouts."""
    if layout not in LAYOUTS:
        raise XaitrustError(f"layout must be one of {', '.join(LAYOUTS)}; got {layout!r}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        channels_first = layout == "NCHW" or (layout == "auto" and x.shape[1] in (1, 3))
        x = x if channels_first else x.transpose(0, 3, 1, 2)
    else:
        raise XaitrustError(f"{where} has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)")
    if x.shape[1] not in (1, 3):
        raise XaitrustError(
            f"{where} read as (N, C, H, W) = {x.shape} has {x.shape[1]} channels, expected 1 or 3; "
            "pass layout='NCHW' or 'NHWC' if the channel axis was guessed wrong"
        )
    if x.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0)
    if not np.issubdtype(x.dtype, np.floating):
        raise XaitrustError(f"{where} has dtype {x.dtype}; store uint8 (0-255) or float values in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _labels(y: np.ndarray, where: str) -> torch.Tensor:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise XaitrustError(
            f"{where} must be a 1-D array of integer class indices; got shape {y.shape}, dtype {y.dtype}"
        )
    if len(y) and y.min() < 0:
        raise XaitrustError(f"{where} holds negative label {y.min()}; labels are class indices 0, 1, ...")
    return torch.from_numpy(y.astype(np.int64))


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` file. Nothing is unpickled (``allow_pickle=False``): an array of Python objects is
    refused with a message naming it, and so is a file that is not an ``.npz`` archive."""
    if not path.is_file():
        raise DatasetNotFoundError(f"npz file {path} does not exist; pass root=FILE.npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise XaitrustError(f"cannot read {path} as an .npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise XaitrustError(f"{path} holds a single array, not an .npz archive; save the arrays with np.savez")
    arrays = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
                raise XaitrustError(
                    f"cannot read array {key!r} of {path} ({error}); arrays are read without unpickling, so store "
                    "numbers, or text as a string array (np.array(names, dtype=str)), never Python objects"
                ) from None
    return arrays


def _build(arrays: dict, suffix: str, classes: list[str], layout: str, path: Path, split: str) -> ImageDataset:
    """The dataset made of ``x<suffix>``, ``y<suffix>`` and optional ``masks<suffix>``."""
    x = _images(arrays[f"x{suffix}"], layout, f"{path}: x{suffix}")
    y = _labels(arrays[f"y{suffix}"], f"{path}: y{suffix}")
    if len(y) != len(x):
        raise XaitrustError(f"{path}: x{suffix} holds {len(x)} images but y{suffix} holds {len(y)} labels")
    if len(y) == 0:
        raise XaitrustError(f"{path}: x{suffix} holds no images")
    masks = arrays.get(f"masks{suffix}")
    try:
        return ImageDataset(
            x=x,
            y=y,
            classes=classes,
            masks=None if masks is None else torch.from_numpy(masks != 0),
            name=path.stem,
            split=split,
            source=str(path),
        )
    except XaitrustError as error:
        raise XaitrustError(f"{path}: {error}") from None


def _classes(arrays: dict, label_keys: list[str], path: Path) -> list[str]:
    """The stored class names, or ``"0"`` .. ``str(largest label)`` over every label array of the file."""
    if "classes" in arrays:
        return [str(name) for name in arrays["classes"].reshape(-1)]
    labels = [_labels(arrays[key], f"{path}: {key}") for key in label_keys]
    largest = max((int(y.max()) for y in labels if len(y)), default=0)
    return [str(label) for label in range(largest + 1)]


def load_npz(
    root: str | Path, split: str = "train", layout: str = "auto", test_fraction: float = 0.2, seed: int = 0
) -> ImageDataset:
    """The ``split`` of the arrays in the ``.npz`` file ``root`` (see the module docstring for the keys)."""
    if root is None:
        raise XaitrustError("the npz dataset needs root=FILE.npz holding arrays x and y")
    path = Path(root)
    arrays = _load_arrays(path)
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        classes = _classes(arrays, ["y_train", "y_test"], path)
        return _build(arrays, f"_{split}", classes, layout, path, split)
    if not {"x", "y"} <= arrays.keys():
        raise XaitrustError(
            f"{path} holds arrays {sorted(arrays)}; expected x and y (or x_train, y_train, x_test, y_test)"
        )
    full = _build(arrays, "", _classes(arrays, ["y"], path), layout, path, "all")
    train, test = holdout_split(full, test_fraction, seed)
    return train if split == "train" else test
