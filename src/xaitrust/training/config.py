"""The training recipe: optimiser, learning-rate schedule, epochs, batch size, augmentation and seed.

A ``TrainConfig`` is plain data: it round-trips through JSON (``to_dict`` / ``from_dict``) and its ``fingerprint`` keys
checkpoints and caches, so the same recipe always finds the same files.

Augmentation defaults follow the papers: FPA (Brocki & Chung, Algorithm 1) with the small-image values
p = 0.5, p1_max = 0.25, p2 = 0.1, s_max = 3 (their large-image values are in ``FPA_LARGE_IMAGES``); random erasing
(Zhong et al. 2020, the FPA paper's "Rectangle" baseline) with p = 0.5, area in [0.02, 0.4] of the image, aspect
ratio in [0.3, 1/0.3]; horizontal flip with probability 0.5. Pixels removed by FPA and by random erasing are set to
``fpa_value`` / ``erasing_value`` in raw image units ([0, 1]), by default 0 (black). The FPA paper sets them to zero
in its network input: mid-grey for its [-1, 1]-scaled CIFAR-10 (0.5 here), the training mean for its z-scored Food101
(the per-channel mean of the training images here, since every xaitrust model z-scores its input with it).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields

from ..errors import XaitrustError

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "step", "cosine")
AUGMENTATIONS = ("flip", "fpa", "erasing")
LOSSES = ("cross-entropy", "tau-cross-entropy")
#: Where FPA places its squares (``xaitrust.training.augment.feature_perturbation``).
FPA_SQUARES = ("selected", "every-pixel")

#: FPA values the paper uses for ImageNet and Food101 (224 x 224 images); the ``TrainConfig`` defaults are its
#: CIFAR-10 (small-image) values.
FPA_LARGE_IMAGES = {"fpa_p": 0.5, "fpa_p1_max": 0.3, "fpa_p2": 0.01, "fpa_s_max": 10}


@dataclass(frozen=True)
class TrainConfig:
    """How to train a classifier.

    Attributes:
        optimizer: ``"sgd"`` (with ``momentum``) or ``"adam"``.
        lr: initial learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 penalty passed to the optimiser.
        schedule: ``"none"`` (constant), ``"step"`` (times ``gamma`` at every epoch in ``milestones``) or
            ``"cosine"`` (``lr * (1 + cos(pi * epoch / epochs)) / 2``, set at the start of each epoch).
        milestones, gamma: parameters of the step schedule.
        epochs, batch_size: length of training and mini-batch size (the last, smaller batch is kept).
        augmentation: ``"none"`` or names from ``flip``, ``fpa``, ``erasing`` joined by ``+`` (e.g. ``"flip+fpa"``,
            the FPA paper's recipe); applied in the order flip, fpa, erasing.
        flip_p: probability that an image is mirrored left-right.
        fpa_p, fpa_p1_max, fpa_p2, fpa_s_max: FPA (see ``xaitrust.training.augment.feature_perturbation``).
        fpa_squares: where FPA's squares start: ``"selected"`` (default, the paper's text: "with a probability of
            p^2 for each selected pixel") or ``"every-pixel"`` (the literal loop of its Algorithm 1).
        fpa_value: what FPA sets a removed pixel to, in raw image units: one number for every channel, or a tuple
            with one number per channel (e.g. the training images' per-channel mean). Default 0 (black).
        erasing_p, erasing_area, erasing_ratio, erasing_value: random erasing (see
            ``xaitrust.training.augment.random_erasing``); ``erasing_value`` is a number or a per-channel tuple like
            ``fpa_value``.
        seed: seeds the shuffling, the augmentation and dropout (and, through ``TrainingJob``, the model's init).
        loss: ``"cross-entropy"`` or ``"tau-cross-entropy"``, ``CE(tau * logits, y) / tau`` (Béthune, Boissin,
            Serrurier, Mamalet, Friedrich & González-Sanz 2022, "Pay attention to your loss: understanding
            misconceptions about 1-Lipschitz neural networks"; deel-torchlip's ``TauCrossEntropyLoss``): the loss of
            1-Lipschitz networks, whose logits cannot grow large enough for plain cross-entropy to be minimised.
        tau: the temperature of ``"tau-cross-entropy"`` (must stay 1 with ``"cross-entropy"``).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    epochs: int = 5
    batch_size: int = 128
    augmentation: str = "none"
    flip_p: float = 0.5
    fpa_p: float = 0.5
    fpa_p1_max: float = 0.25
    fpa_p2: float = 0.1
    fpa_s_max: int = 3
    fpa_squares: str = "selected"
    fpa_value: float | tuple[float, ...] = 0.0
    erasing_p: float = 0.5
    erasing_area: tuple[float, float] = (0.02, 0.4)
    erasing_ratio: tuple[float, float] = (0.3, 1 / 0.3)
    erasing_value: float | tuple[float, ...] = 0.0
    seed: int = 0
    loss: str = "cross-entropy"
    tau: float = 1.0

    def __post_init__(self) -> None:
        # JSON gives lists back; keep tuples so that configs compare and hash equal.
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        object.__setattr__(self, "erasing_area", tuple(float(a) for a in self.erasing_area))
        object.__setattr__(self, "erasing_ratio", tuple(float(r) for r in self.erasing_ratio))
        for name in ("fpa_value", "erasing_value"):
            object.__setattr__(self, name, _fill_value(name, getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise XaitrustError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise XaitrustError(f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        if self.fpa_squares not in FPA_SQUARES:
            raise XaitrustError(f"fpa_squares must be one of {', '.join(FPA_SQUARES)}; got {self.fpa_squares!r}")
        if not self.lr > 0:
            raise XaitrustError(f"lr must be positive; got {self.lr}")
        if self.loss not in LOSSES:
            raise XaitrustError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if not 0 < self.tau < math.inf:
            raise XaitrustError(f"tau must be a positive finite temperature; got {self.tau}")
        if self.loss == "cross-entropy" and self.tau != 1:
            raise XaitrustError(f"tau = {self.tau} only applies to loss 'tau-cross-entropy'; set that loss or tau = 1")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise XaitrustError(
                f"need weight_decay >= 0 and momentum in [0, 1); got {self.weight_decay}, {self.momentum}"
            )
        for name in ("epochs", "batch_size", "fpa_s_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise XaitrustError(f"{name} must be a positive integer; got {value!r}")
        self.augmentations()
        for name in ("flip_p", "fpa_p", "fpa_p1_max", "fpa_p2", "erasing_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise XaitrustError(f"{name} is a probability and must lie in [0, 1]; got {getattr(self, name)}")
        low, high = self.erasing_area
        if not 0 < low <= high < 1:
            raise XaitrustError(f"erasing_area must be (low, high) with 0 < low <= high < 1; got {self.erasing_area}")
        low, high = self.erasing_ratio
        if not 0 < low <= high:
            raise XaitrustError(f"erasing_ratio must be (low, high) with 0 < low <= high; got {self.erasing_ratio}")

    def augmentations(self) -> list[str]:
        """The augmentation names in the order they are applied (empty for ``"none"``)."""
        if self.augmentation == "none":
            return []
        names = self.augmentation.split("+")
        unknown = [name for name in names if name not in AUGMENTATIONS]
        if unknown or len(set(names)) != len(names):
            raise XaitrustError(
                f"augmentation must be 'none' or distinct names from {', '.join(AUGMENTATIONS)} joined by '+'; "
                f"got {self.augmentation!r}"
            )
        return [name for name in AUGMENTATIONS if name in names]

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise XaitrustError(f"unknown training option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def fingerprint(self) -> str:
        """Short SHA-256 of the canonical JSON of the config: equal configs, equal fingerprints."""
        return fingerprint(self.to_dict())


def _fill_value(name: str, value) -> float | tuple[float, ...]:
    """``value`` as a float, or a list/tuple as a tuple of floats (JSON gives lists back); a clear error unless every
    entry is a finite number."""
    values = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values]
    if not values or not all(numbers):
        raise XaitrustError(
            f"{name} must be a finite number or a non-empty list of finite numbers (one per channel), in raw image "
            f"units; got {value!r}"
        )
    floats = tuple(float(v) for v in values)
    return floats if isinstance(value, (list, tuple)) else floats[0]


def fingerprint(values) -> str:
    """First 16 hex digits of the SHA-256 of ``values`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
