"""The one container every dataset of xaitrust is returned in."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import XaitrustError
from ..validation import check_images, check_labels, check_masks


@dataclass
class ImageDataset:
    """Images with labels (and, for synthetic data, ground-truth object masks).

    Attributes:
        x: float32 ``(N, C, H, W)``, values in [0, 1] (the model normalises inputs itself).
        y: int64 ``(N,)`` class indices in ``[0, len(classes))``.
        classes: class names.
        masks: optional bool ``(N, H, W)``, True on the pixels of the class-defining object.
        name: dataset name, recorded in checkpoints and run folders.
        split: ``"train"``, ``"test"``, ``"calibration"``, ... (free text).
        source: where the data came from (a path, or a description for generated data).
        info: free metadata; ``load_dataset`` records how the data was loaded under ``info["load"]`` (dataset name,
            resolved root, options), which checkpoints keep so later commands find the data again.
        index: int64 ``(N,)``, each sample's position in the data as loaded (the split of a data set that comes with
            splits, else the whole file or folder); subsets keep it, so results can be joined back to the images.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: list[str]
    masks: torch.Tensor | None = None
    name: str = "dataset"
    split: str = "train"
    source: str = ""
    info: dict = field(default_factory=dict)
    index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.x = check_images(self.x, "x", allow_empty=True).float()
        self.y = check_labels(self.y, len(self.x), len(self.classes), name="y")
        self.index = torch.arange(len(self.x)) if self.index is None else torch.as_tensor(self.index).long()
        if self.index.shape != (len(self.x),):
            raise XaitrustError(f"index must have shape ({len(self.x)},); got {tuple(self.index.shape)}")
        if self.masks is not None:
            self.masks = check_masks(self.masks, (len(self.x), *self.x.shape[2:])).bool()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.x.shape[2:])

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean ``(C,)`` over all pixels of all images."""
        return self.x.mean(dim=(0, 2, 3))

    @property
    def std(self) -> torch.Tensor:
        """Per-channel standard deviation ``(C,)`` over all pixels of all images."""
        return self.x.std(dim=(0, 2, 3))

    def subset(self, indices, split: str | None = None) -> "ImageDataset":
        """The samples at ``indices`` (a tensor, list or slice), as a new dataset sharing the metadata."""
        indices = torch.as_tensor(indices) if not isinstance(indices, slice) else indices
        return ImageDataset(
            x=self.x[indices],
            y=self.y[indices],
            classes=list(self.classes),
            masks=None if self.masks is None else self.masks[indices],
            name=self.name,
            split=split or self.split,
            source=self.source,
            info=dict(self.info),
            index=self.index[indices],
        )
