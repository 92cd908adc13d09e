"""Seeded, class-stratified splits: k folds, a held-out share (train/test, calibration) and subsets.

All of them start from one ordering: the samples sorted by class, in a seeded random order within each class.
Dealing that ordering round-robin into ``k`` folds gives folds whose sizes differ by at most one, both overall and
within every class. Picking the ``m`` samples whose position within their class, ``(rank + 0.5) / class_size``, is
smallest gives a subset whose class shares match the data's (proportional allocation; ties broken at random).
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from .dataset import ImageDataset


def _labels(y) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise XaitrustError(f"labels must be a 1-D integer tensor; got shape {tuple(y.shape)} and dtype {y.dtype}")
    if len(y) == 0:
        raise XaitrustError("cannot split an empty set of labels")
    if y.min() < 0:
        raise XaitrustError(f"labels must be non-negative class indices; got {y.min().item()}")
    return y.long()


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _class_sorted_order(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Sample indices sorted by class, in random order within each class."""
    permutation = torch.randperm(len(y), generator=generator)
    return permutation[torch.argsort(y[permutation], stable=True)]


def stratified_kfold(y, k: int, seed: int = 0) -> torch.Tensor:
    """The fold ``0..k-1`` of every sample, int64 ``(N,)``: folds stratified by class and seeded.

    Within every class the fold sizes differ by at most one, and so do the overall fold sizes. Every class must have
    at least ``k`` samples so that each fold sees each class.
    """
    y = _labels(y)
    if not isinstance(k, int) or k < 2:
        raise XaitrustError(f"k must be an integer of at least 2 folds; got {k!r}")
    counts = torch.bincount(y)
    smallest = counts[counts > 0].min().item()
    if k > smallest:
        rare = int(torch.nonzero(counts == smallest)[0])
        raise XaitrustError(
            f"k={k} folds need at least {k} samples of every class, but class {rare} has only {smallest}; "
            f"use k <= {smallest} or more data"
        )
    order = _class_sorted_order(y, _generator(seed))
    folds = torch.empty(len(y), dtype=torch.long)
    folds[order] = torch.arange(len(y)) % k
    return folds


def stratified_sample(y, size: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of ``size`` samples whose class shares follow those of ``y`` (proportional allocation)."""
    y = _labels(y)
    if not 0 < size <= len(y):
        raise XaitrustError(f"cannot pick {size} samples out of {len(y)}; choose a size between 1 and {len(y)}")
    generator = _generator(seed)
    order = _class_sorted_order(y, generator)
    counts = torch.bincount(y)
    class_start = torch.cumsum(counts, 0) - counts
    sorted_labels = y[order]
    position = (torch.arange(len(y)) - class_start[sorted_labels] + 0.5) / counts[sorted_labels]
    shuffle = torch.randperm(len(y), generator=generator)
    chosen = order[shuffle[torch.argsort(position[shuffle], stable=True)][:size]]
    return torch.sort(chosen).values


def _split_size(size, total: int, what: str) -> int:
    """An int count, or a float fraction of ``total``, checked to leave both parts non-empty."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise XaitrustError(f"{what} must be a sample count (int) or a fraction (float in (0, 1)); got {size!r}")
    if isinstance(size, float):
        if not 0.0 < size < 1.0:
            raise XaitrustError(f"{what} as a fraction must lie strictly between 0 and 1; got {size}")
        size = round(size * total)
    if not 0 < size < total:
        raise XaitrustError(
            f"{what} of {size} samples out of {total} would leave an empty split; "
            f"choose between 1 and {total - 1} samples"
        )
    return size


def _carve(dataset: ImageDataset, size, seed: int, what: str, split: str) -> tuple[ImageDataset, ImageDataset]:
    size = _split_size(size, len(dataset), what)
    chosen = stratified_sample(dataset.y, size, seed)
    rest = torch.ones(len(dataset), dtype=torch.bool)
    rest[chosen] = False
    return dataset.subset(chosen, split=split), dataset.subset(torch.nonzero(rest).squeeze(1))


def calibration_split(dataset: ImageDataset, size, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """Carve a stratified, seeded calibration split out of ``dataset`` (usually the test data).

    Args:
        size: number of calibration samples (int) or their fraction of ``dataset`` (float in (0, 1)).

    Returns:
        ``(calibration, remaining)``: disjoint datasets covering ``dataset``; the first has split ``"calibration"``,
        the second keeps the original split name. Samples keep their original order.
    """
    return _carve(dataset, size, seed, "calibration size", "calibration")


def holdout_split(dataset: ImageDataset, test_fraction: float, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
    """A stratified, seeded train/test split of data that comes without one: ``(train, test)``.

    ``test_fraction`` (a float in (0, 1)) of the samples, rounded, go to the test split.
    """
    if not isinstance(test_fraction, float):
        raise XaitrustError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    test, train = _carve(dataset, test_fraction, seed, "test_fraction", "test")
    train.split = "train"
    return train, test
