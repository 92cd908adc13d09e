"""The one container every dataset of xaitrust is returned in."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import XaitrustError


def _within_unit_interval(x: torch.Tensor) -> bool:
    """Whether every value is finite and in [0, 1], in one pass (NaN fails both comparisons, infinities one)."""
    low, high = torch.aminmax(x)
    return bool(low >= 0) and bool(high <= 1)


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
        if not isinstance(self.x, torch.Tensor) or self.x.ndim != 4:
            raise XaitrustError(f"x must be a tensor of shape (N, C, H, W); got {getattr(self.x, 'shape', type(self.x))}")
        if not self.x.dtype.is_floating_point:
            raise XaitrustError(f"x must be a float tensor with values in [0, 1]; got dtype {self.x.dtype}")
        self.x = self.x.float()
        self.y = torch.as_tensor(self.y)
        if self.y.dtype.is_floating_point or self.y.ndim != 1 or len(self.y) != len(self.x):
            raise XaitrustError(f"y must be an integer tensor of shape ({len(self.x)},); got {tuple(self.y.shape)} {self.y.dtype}")
        self.y = self.y.long()
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.classes)):
            raise XaitrustError(
                f"labels must lie in [0, {len(self.classes) - 1}] for {len(self.classes)} classes; "
                f"got {self.y.min().item()}..{self.y.max().item()}"
            )
        if len(self.x) and not _within_unit_interval(self.x):
            raise XaitrustError("x must hold finite values in [0, 1]; rescale the images (e.g. divide 8-bit values by 255)")
        self.index = torch.arange(len(self.x)) if self.index is None else torch.as_tensor(self.index).long()
        if self.index.shape != (len(self.x),):
            raise XaitrustError(f"index must have shape ({len(self.x)},); got {tuple(self.index.shape)}")
        if self.masks is not None:
            self.masks = torch.as_tensor(self.masks).bool()
            expected = (len(self.x), *self.x.shape[2:])
            if tuple(self.masks.shape) != expected:
                raise XaitrustError(f"masks must have shape {expected} (N, H, W); got {tuple(self.masks.shape)}")

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
