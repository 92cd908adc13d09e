"""scikit-learn's 8x8 handwritten digits (UCI optical recognition of handwritten digits, 1797 images, 10 classes).

The 17 grey levels 0..16 are scaled to [0, 1] by dividing by 16. The data has no train/test split of its own, so a
stratified seeded one is made (``test_fraction`` of the samples, 20% by default, go to the test split).
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as sklearn_load_digits

from .dataset import ImageDataset
from .splits import holdout_split

CLASSES = [str(digit) for digit in range(10)]


def load_digits(split: str = "train", test_fraction: float = 0.2, seed: int = 0) -> ImageDataset:
    """The ``split`` ("train" or "test") of the digits as float images ``(N, 1, 8, 8)`` in [0, 1]."""
    bunch = sklearn_load_digits()
    full = ImageDataset(
        x=torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1),
        y=torch.from_numpy(bunch.target).long(),
        classes=list(CLASSES),
        name="digits",
        source="scikit-learn load_digits",
    )
    train, test = holdout_split(full, test_fraction, seed)
    return train if split == "train" else test
