"""Stratified k folds, stratified subsets, the calibration hold-out and the train/test hold-out."""

import pytest
import torch

from xaitrust.data import ImageDataset, calibration_split, holdout_split, stratified_kfold, stratified_sample
from xaitrust.errors import XaitrustError

LABELS = torch.tensor([0] * 10 + [1] * 7 + [2] * 13)[torch.randperm(30, generator=torch.Generator().manual_seed(1))]


def numbered_dataset(labels: torch.Tensor) -> ImageDataset:
    """A dataset whose image i holds the value i / N everywhere, so samples can be traced through splits."""
    n = len(labels)
    x = (torch.arange(n, dtype=torch.float32) / n).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    return ImageDataset(x=x, y=labels, classes=["a", "b", "c"], name="numbered", split="test")


def ids(dataset: ImageDataset, total: int) -> list[int]:
    return (dataset.x[:, 0, 0, 0] * total).round().long().tolist()


def test_kfold_is_balanced_within_every_class_and_overall():
    folds = stratified_kfold(LABELS, k=3, seed=0)
    assert folds.dtype == torch.int64 and folds.shape == (30,)
    assert sorted(torch.cat([torch.nonzero(folds == f)[:, 0] for f in range(3)]).tolist()) == list(range(30))
    assert torch.equal(torch.bincount(folds), torch.tensor([10, 10, 10]))
    for label, size in ((0, 10), (1, 7), (2, 13)):
        counts = torch.bincount(folds[LABELS == label], minlength=3)
        assert counts.sum().item() == size and (counts.max() - counts.min()).item() <= 1


def test_kfold_is_seeded():
    assert torch.equal(stratified_kfold(LABELS, 5, seed=2), stratified_kfold(LABELS, 5, seed=2))
    assert not torch.equal(stratified_kfold(LABELS, 5, seed=2), stratified_kfold(LABELS, 5, seed=3))


def test_kfold_errors():
    with pytest.raises(XaitrustError, match="k must be an integer of at least 2"):
        stratified_kfold(LABELS, 1)
    with pytest.raises(XaitrustError, match="class 1 has only 7; use k <= 7"):
        stratified_kfold(LABELS, 8)
    with pytest.raises(XaitrustError, match="cannot split an empty set of labels"):
        stratified_kfold(torch.tensor([], dtype=torch.long), 2)
    with pytest.raises(XaitrustError, match="1-D integer tensor"):
        stratified_kfold(torch.zeros(4), 2)


def test_stratified_sample_follows_class_shares():
    labels = torch.tensor([0] * 40 + [1] * 20 + [2] * 40)
    chosen = stratified_sample(labels, 25, seed=4)
    assert torch.equal(torch.bincount(labels[chosen]), torch.tensor([10, 5, 10]))
    assert torch.equal(chosen, torch.sort(chosen).values) and len(set(chosen.tolist())) == 25
    assert not torch.equal(chosen, stratified_sample(labels, 25, seed=5))


def test_calibration_split_is_disjoint_stratified_and_sized():
    data = numbered_dataset(LABELS)
    calibration, rest = calibration_split(data, 10, seed=0)
    assert (len(calibration), len(rest)) == (10, 20)
    assert calibration.split == "calibration" and rest.split == "test"
    assert sorted(ids(calibration, 30) + ids(rest, 30)) == list(range(30))
    assert ids(calibration, 30) == sorted(ids(calibration, 30))
    assert torch.equal(calibration.y, LABELS[ids(calibration, 30)])
    # positions (rank + 0.5) / class size: the 10 smallest are 3 of 10, 2 of 7 and 5 of 13
    assert torch.bincount(calibration.y, minlength=3).tolist() == [3, 2, 5]
    fraction, _ = calibration_split(data, 0.5, seed=0)
    assert len(fraction) == 15 and torch.bincount(fraction.y).tolist() in ([5, 4, 6], [5, 3, 7])


@pytest.mark.parametrize(
    "size, message",
    [(0, "would leave an empty split"), (30, "would leave an empty split"), (1.0, "strictly between 0 and 1"),
     (True, "must be a sample count"), ("10", "must be a sample count")],
)
def test_calibration_split_errors(size, message):
    with pytest.raises(XaitrustError, match=message):
        calibration_split(numbered_dataset(LABELS), size)


def test_holdout_split_names_and_partitions():
    train, test = holdout_split(numbered_dataset(LABELS), 0.2, seed=0)
    assert (train.split, test.split) == ("train", "test")
    assert (len(train), len(test)) == (24, 6)
    assert sorted(ids(train, 30) + ids(test, 30)) == list(range(30))
    with pytest.raises(XaitrustError, match="test_fraction must be a float in \\(0, 1\\); got 1"):
        holdout_split(numbered_dataset(LABELS), 1)
