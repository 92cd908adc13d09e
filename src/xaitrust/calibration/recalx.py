"""ReCalX (Decker, Tresp & Buettner, "Why uncertainty calibration matters for reliable perturbation-based
explanations", Algorithm 1): temperature scaling per perturbation-level bin.

[0, 1] is split into ``n_bins`` equal-width bins of perturbation level. For every calibration image and every bin
``b``, ``samples_per_bin`` perturbed copies are drawn ("Sample S with lambda(S) in B_b: random subset with desired
pert. level"): a fraction of the features uniformly in the bin, then a uniformly random subset of features of that
size, replaced by the baseline (zero by default, as in the paper; xaitrust models take images in [0, 1] and normalise
them themselves, so "zero" is black; ``replacement="mean"`` is the zero of the model's normalised input, the reading of
"zero" for models that are fed normalised tensors). One temperature ``T_b`` per bin minimises the NLL of the perturbed
copies that fall in bin ``b``, by L-BFGS on ``log T_b`` (``xaitrust.calibration.temperature.fit_temperatures``). The
calibrated model then computes ``softmax(z(x) / T_b(x))`` where ``b`` is the bin of the input's perturbation level:

    bin(level) = min(floor(level * n_bins + 1e-6), n_bins - 1)

so a clean input (level 0) uses bin 0's temperature, and a fully replaced one (level 1) the last bin's. Like temperature
scaling, ReCalX never changes the predicted class.

The features (``grouping``): single pixels (the paper's Fig. 1 axis, "share of replaced pixels with zeros"), square
patches of side ``patch_size``, or SLIC superpixels (``n_segments``, ``compactness``, ``sigma``, ``min_segments``:
the options, names and defaults of the surrogate explainers, ``xaitrust.explainers.surrogate``). The paper asks for
calibration "under all subset perturbations pi(., S) used in the explanation process", so to recalibrate a model for
KernelSHAP or LIME give ReCalX the explainer's own feature groups (``grouping="superpixels"`` with the explainer's
segmentation options; the ReCalX protocol does this).

The level. The paper defines ``lambda(S) = (d - |S|) / d``, the fraction of the ``d`` features perturbed. Here a
perturbed input's level is the fraction of its pixels replaced (``xaitrust.calibration.perturbed``), both when fitting
(each copy is assigned to a bin by its realised level) and at prediction time, where the masked-evaluation engine
passes that same pixel fraction, ``1 - mean(keep)``, for every coalition an explainer evaluates. For pixels it is the
paper's ``lambda(S)``; for superpixels it is its pixel-weighted version, the only level the engine can give a model.

The level of an input is given by its caller: the masked-evaluation engine passes ``perturbation_level`` to any model
with ``accepts_perturbation_level = True``. When it is not given, ``level_when_missing`` decides: ``"clean"`` (default)
treats the input as unperturbed (level 0); ``"baseline-fraction"`` estimates it as the fraction of pixels equal to a
constant baseline (``replacement`` zero or a number) in every channel - which over-estimates it for images whose own
pixels often equal the baseline (e.g. the black background of Fashion-MNIST), hence not the default.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import XaitrustError
from .base import CalibratedModel, Calibrator, register
from .checks import check_labels, check_logits
from .perturbed import GROUPINGS, SEGMENTATION_OPTIONS, perturbed_logits
from .temperature import fit_temperatures

LEVELS_WHEN_MISSING = ("clean", "baseline-fraction")
BIN_TOLERANCE = 1e-6


def level_bins(levels: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin index of each perturbation level (module docstring)."""
    return torch.floor(levels * n_bins + BIN_TOLERANCE).long().clamp(0, n_bins - 1)


@register
class ReCalX(Calibrator):
    """One temperature per perturbation-level bin (``temperatures_``, ``(n_bins,)``); see the module docstring."""

    name = "recalx"
    learned_names = ("temperatures_",)

    def __init__(
        self,
        n_bins: int = 10,
        samples_per_bin: int = 10,
        replacement: str | float = "zero",
        grouping: str = "pixels",
        patch_size: int = 4,
        n_segments: int = 50,
        compactness: float | None = None,
        sigma: float | None = None,
        min_segments: int | None = None,
        level_when_missing: str = "clean",
        seed: int = 0,
    ) -> None:
        if not isinstance(n_bins, int) or n_bins < 1 or not isinstance(samples_per_bin, int) or samples_per_bin < 1:
            raise XaitrustError(f"n_bins and samples_per_bin must be positive integers; got {n_bins!r}, {samples_per_bin!r}")
        if grouping not in GROUPINGS:
            raise XaitrustError(f"grouping must be one of {', '.join(GROUPINGS)}; got {grouping!r}")
        if level_when_missing not in LEVELS_WHEN_MISSING:
            raise XaitrustError(f"level_when_missing must be one of {', '.join(LEVELS_WHEN_MISSING)}; got {level_when_missing!r}")
        if level_when_missing == "baseline-fraction" and not (replacement == "zero" or isinstance(replacement, (int, float))):
            raise XaitrustError("level_when_missing='baseline-fraction' needs a constant baseline (zero or a number)")
        self.n_bins, self.samples_per_bin = n_bins, samples_per_bin
        self.replacement, self.grouping, self.patch_size, self.n_segments = replacement, grouping, patch_size, n_segments
        self.compactness, self.sigma, self.min_segments = compactness, sigma, min_segments
        self.level_when_missing, self.seed = level_when_missing, seed

    def settings(self) -> dict:
        return {
            "n_bins": self.n_bins, "samples_per_bin": self.samples_per_bin, "replacement": self.replacement,
            "grouping": self.grouping, **self.segmentation(), "level_when_missing": self.level_when_missing,
            "seed": self.seed,
        }

    def segmentation(self) -> dict:
        """The options of the feature groups (``xaitrust.calibration.perturbed.SEGMENTATION_OPTIONS``)."""
        return {name: getattr(self, name) for name in SEGMENTATION_OPTIONS}

    def fit(self, model: nn.Module, x: torch.Tensor, labels, batch_size: int | None = None) -> ReCalX:
        """Algorithm 1 on calibration images ``x`` ``(N, C, H, W)`` with ``labels`` ``(N,)``: ``N * n_bins *
        samples_per_bin`` perturbed forward passes of the (uncalibrated) ``model``, then one temperature per bin."""
        labels = check_labels(labels, len(x), getattr(model, "num_classes", int(torch.as_tensor(labels).max()) + 1))
        generator = torch.Generator().manual_seed(int(self.seed))
        rows = len(x) * self.samples_per_bin
        lower = torch.arange(self.n_bins, dtype=torch.float64) / self.n_bins
        fractions = lower + torch.rand(rows, self.n_bins, generator=generator, dtype=torch.float64) / self.n_bins
        logits, levels = perturbed_logits(
            model, x, fractions, repeats=self.samples_per_bin, grouping=self.grouping,
            segmentation=self.segmentation(), replacement=self.replacement, seed=self.seed + 1, batch_size=batch_size,
        )
        copies = labels.repeat_interleave(self.samples_per_bin)[:, None].expand(-1, self.n_bins)
        return self.fit_logits(logits.flatten(0, 1), copies.flatten(), levels.flatten())

    def fit_logits(self, logits, labels, levels) -> ReCalX:
        """Fit the bin temperatures from logits ``(N, K)`` of perturbed inputs, their labels and levels ``(N,)``."""
        logits, labels = check_logits(logits, labels)
        bins = level_bins(self._check_levels(levels, len(logits)).cpu(), self.n_bins)
        empty = (torch.bincount(bins, minlength=self.n_bins) == 0).nonzero().flatten().tolist()
        if empty:
            # With few features (e.g. a handful of superpixels) no subset size may fall in a narrow bin.
            warnings.warn(f"no perturbed copy fell in level bin(s) {empty} of {self.n_bins}: they keep temperature 1; "
                          "use fewer bins or a finer grouping", stacklevel=2)
        self.temperatures_ = fit_temperatures(logits, labels, bins, self.n_bins)
        return self

    def calibrated_logits(self, logits: torch.Tensor, perturbation_level=None) -> torch.Tensor:
        """``logits / T_b`` with ``b`` the bin of each row's level (a number or ``(N,)``; None means clean, level 0)."""
        levels = self._check_levels(0.0 if perturbation_level is None else perturbation_level, len(logits))
        levels = levels.to(logits.device)
        temperatures = self.temperatures_.to(device=logits.device, dtype=logits.dtype)
        return logits / temperatures[level_bins(levels, self.n_bins)][:, None]

    def wrap(self, model: nn.Module) -> PerturbationAwareModel:
        self._require_fitted()
        return PerturbationAwareModel(model, self)

    def missing_levels(self, x: torch.Tensor) -> torch.Tensor:
        """The levels ``(B,)`` assumed for images given without one (``level_when_missing``)."""
        if self.level_when_missing == "clean":
            return torch.zeros(len(x), device=x.device)
        baseline = 0.0 if self.replacement == "zero" else float(self.replacement)
        return (x == baseline).all(dim=1).flatten(1).float().mean(dim=1)

    @staticmethod
    def _check_levels(levels, n: int) -> torch.Tensor:
        levels = torch.as_tensor(levels)
        levels = (levels if levels.dtype.is_floating_point else levels.double()).detach()
        levels = levels.expand(n) if levels.ndim == 0 else levels
        if levels.shape != (n,) or not torch.isfinite(levels).all() or levels.min() < 0 or levels.max() > 1:
            raise XaitrustError(f"perturbation levels must be a number or a ({n},) tensor of values in [0, 1]")
        return levels


class PerturbationAwareModel(CalibratedModel):
    """A ReCalX-calibrated model: ``forward(x, perturbation_level=None)`` scales the logits by each input's bin
    temperature. The engine passes the level (``accepts_perturbation_level``); otherwise ``level_when_missing``."""

    accepts_perturbation_level = True

    def forward(self, x: torch.Tensor, perturbation_level=None) -> torch.Tensor:
        if perturbation_level is None:
            perturbation_level = self.calibrator.missing_levels(x)
        return self.calibrator.calibrated_logits(self.model(x), perturbation_level=perturbation_level)
