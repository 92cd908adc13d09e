"""The step ``explain`` and ``evaluate`` share: a checkpoint's model and a seeded choice of its test images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError


@dataclass
class CheckpointImages:
    model: torch.nn.Module
    classes: list[str]
    indices: torch.Tensor
    x: torch.Tensor
    labels: torch.Tensor
    predicted: torch.Tensor
    dataset: str


def checkpoint_images(checkpoint, dataset: str | None, data_root, n_images: int, seed: int) -> CheckpointImages:
    """Load the model in ``checkpoint`` and ``n_images`` test images of its dataset (``dataset`` overrides the one the
    checkpoint records), chosen by a seeded permutation and kept in index order, with the model's predictions."""
    from ..data import load_dataset
    from ..training import load_metadata, load_model

    metadata = load_metadata(checkpoint)
    model = load_model(checkpoint)
    dataset = dataset or metadata.get("dataset")
    if not dataset:
        raise XaitrustError("the checkpoint does not record its dataset; pass --dataset")
    test = load_dataset(dataset, data_root, "test")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(test.x), generator=generator)[: min(n_images, len(test.x))].sort().values
    x = test.x[indices]
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    return CheckpointImages(model, test.classes, indices, x, test.y[indices], predicted, dataset)
