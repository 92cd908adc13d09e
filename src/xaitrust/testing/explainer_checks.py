"""``check_explainer``: the contract every explainer must meet, checked on oracle models.

The explainer runs on ``TwoPixelNet`` oracles (``xaitrust.testing.oracles``): 12x12 images with 1 and 3 channels in
which pixel (3, 8) alone drives class 0's score and pixel (8, 3) alone drives class 1's, a batch of three images
explained for the classes ``(0, 1, 0)`` with ``output="logit"``. The checks:

- ``output``: attributions are a float tensor of the images' shape ``(B, C, H, W)``, finite, on the model's device,
  for 1-channel and 3-channel images: what every metric and reduction reads.
- ``batch_invariance``: explaining the batch gives each image the attributions it gets when explained alone, to
  ``BATCH_TOLERANCE`` of its largest |attribution|. Explained for ``output="probability"``, whose gradients differ in
  scale from image to image, so that a method scaling by the whole batch shows. The tolerance admits rounding
  (batched and single passes may use float kernels that round differently, which iterative methods amplify); a
  dependence on the other images is far larger. Explainers with random draws meet it by seeding each image's draws
  (``xaitrust.seeding``) or by sharing one draw across the batch (SmoothGrad's noise, RISE's masks). Without it, an
  image's map would change with the batch size or the images next to it.
- ``determinism``: two calls give identical attributions, whatever the state of torch's global generator:
  randomness comes from the explainer's own seed, so the same config gives the same maps.
- ``side_effects``: the call leaves the model as it found it (every module's train/eval flag, parameters, buffers
  such as batch-norm statistics, no ``.grad`` left on a parameter), the images and targets unmodified, and torch's
  global generator untouched. The model is given in train mode with its head in eval mode, so a method that runs it
  in train mode changes its batch-norm statistics, and one that restores a single flag for the whole model loses the
  head's.
- ``direction``: the pixel driving the target's score has the largest |attribution| (summed over channels; ties
  allowed, e.g. the window of occlusion or the superpixel of LIME holding the pixel, but not a constant map). Every
  other pixel leaves both scores unchanged, so a method that fails this points at pixels that do not matter.
- ``target``: explaining the other class gives another map for every image: the two classes are driven by
  different pixels, so a map that does not change explains something other than the target.

What an explainer promises is its ``ExplainerContract``; the built-in explainers that do not promise all of the
above are in ``CONTRACTS`` with the reason, and a check that does not apply is reported as skipped with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import XaitrustError
from ..explainers.base import as_explainer
from ..explainers.cam import GradCAM, GradCAMPlusPlus
from ..explainers.random_baseline import RandomAttribution
from .oracles import TwoPixelNet
from .results import CheckFailure, CheckResult, SideEffects, finish, largest_difference, run_check, skipped

SIZE = (12, 12)
TARGETS = (0, 1, 0)
#: Largest difference between an image's attributions in a batch and alone, relative to its largest |attribution|.
BATCH_TOLERANCE = 1e-4
#: Relative tolerance within which two |attributions| count as tied (direction) or equal (target).
TIE_TOLERANCE = 1e-6
#: Images on which an ``"uncorrelated"`` explainer's ranking of the driving pixel is averaged.
UNCORRELATED_IMAGES = 32
DIRECTIONS = ("locates", "uncorrelated", "exempt")


@dataclass(frozen=True)
class ExplainerContract:
    """What an explainer promises, and so what ``check_explainer`` asserts; the default is the full contract.

    Attributes:
        batch_invariant: an image's attributions do not depend on the other images of its batch.
        direction: ``"locates"``: on the oracle, the pixel driving the target's score has the largest
            |attribution|; ``"uncorrelated"``: the maps carry no information about that pixel (a random baseline):
            its rank among the pixels, averaged over 32 images, is that of chance (mean percentile 0.5 within four
            standard errors); ``"exempt"``: neither (say why).
        follows_target: explaining another class gives another map.
        why: why the explainer does not promise the full contract, shown in the checks it skips.
    """

    batch_invariant: bool = True
    direction: str = "locates"
    follows_target: bool = True
    why: str = ""

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise XaitrustError(f"direction must be one of {', '.join(DIRECTIONS)}; got {self.direction!r}")
        if not self.why and (not self.batch_invariant or self.direction == "exempt" or not self.follows_target):
            raise XaitrustError("an explainer that does not promise the full contract must say why (why=...)")


_CAM = ExplainerContract(
    direction="exempt",
    why="a CAM map is the CAM layer's feature maps weighted by their pooled gradients and upsampled: it shows where "
    "the layer's features are active (on the oracle, every pixel above the ReLU's threshold), not which input pixel "
    "drives the score",
)
#: The built-in explainers that do not promise the full contract (subclasses inherit their entry).
CONTRACTS: dict[type, ExplainerContract] = {
    GradCAM: _CAM,
    GradCAMPlusPlus: _CAM,
    RandomAttribution: ExplainerContract(
        direction="uncorrelated", follows_target=False,
        why="the random baseline never calls the model: its maps are noise, uncorrelated with the evidence and the "
        "same for every class",
    ),
}


def contract_of(explainer) -> ExplainerContract:
    """The contract of an ``Explainer``: the entry of ``CONTRACTS`` for its class or nearest base class, else the
    full contract."""
    for cls in type(explainer).__mro__:
        if cls in CONTRACTS:
            return CONTRACTS[cls]
    return ExplainerContract()


def check_explainer(explainer, *, contract: ExplainerContract | None = None, raise_on_failure: bool = False,
                    device="cpu", **params) -> list[CheckResult]:
    """Run every contract check on ``explainer`` and return one ``CheckResult`` per check.

    Args:
        explainer: anything ``xaitrust.explainers.base.as_explainer`` accepts: a registered name,
            ``path/to/file.py:Name``, an ``Explainer`` class or instance, a Captum attribution class or a callable
            ``(model, x, target) -> attributions``.
        contract: what the explainer promises; default: its entry in ``CONTRACTS``, else the full contract.
        raise_on_failure: raise a ``ContractError`` listing the failed checks instead of returning them.
        device: where the oracle models and images live.
        params: the explainer's parameters (e.g. fewer samples or steps, to check it quickly).
    """
    built = as_explainer(explainer, **params)
    name = explainer if isinstance(explainer, str) else (built.name or type(built).__name__)
    subject = f"explainer {name!r}"
    contract = contract or contract_of(built)
    runs = _Runs(built, torch.device(device))
    results = [
        run_check(subject, "output", runs.check_output),
        run_check(subject, "batch_invariance", runs.check_batch_invariance) if contract.batch_invariant
        else skipped(subject, "batch_invariance", contract.why),
        run_check(subject, "determinism", runs.check_determinism),
        run_check(subject, "side_effects", runs.check_side_effects),
        skipped(subject, "direction", contract.why) if contract.direction == "exempt"
        else run_check(subject, "direction",
                       runs.check_locates if contract.direction == "locates" else runs.check_uncorrelated),
        run_check(subject, "target", runs.check_target) if contract.follows_target
        else skipped(subject, "target", contract.why),
    ]
    return finish(results, raise_on_failure)


class _Runs:
    """The explainer's calls on the oracles, each made once and shared by the checks."""

    def __init__(self, explainer, device: torch.device) -> None:
        self.explainer, self.device = explainer, device
        self.nets = {channels: TwoPixelNet(channels, SIZE).to(device) for channels in (1, 3)}
        self.images = {channels: net.images(len(TARGETS)).to(device) for channels, net in self.nets.items()}
        self.targets = torch.tensor(TARGETS, device=device)
        self._done: dict[tuple, torch.Tensor] = {}

    def explain(self, channels: int = 1, other_class: bool = False, image: int | None = None,
                global_seed: int = 0, output: str = "logit") -> torch.Tensor:
        """Attributions of ``output`` for the oracle's images (one ``image`` alone, or the batch) and ``TARGETS``
        (the other class of each with ``other_class``), made once (``call``)."""
        key = (channels, other_class, image, global_seed, output)
        if key not in self._done:
            x, targets = self.images[channels], 1 - self.targets if other_class else self.targets
            if image is not None:
                x, targets = x[image : image + 1], targets[image : image + 1]
            self._done[key] = self.call(self.nets[channels], x, targets, output, global_seed)
        return self._done[key]

    def call(self, net, x, targets, output: str = "logit", global_seed: int = 0):
        """``explainer(net, x, targets, output)`` with torch's global generator seeded with ``global_seed`` for the
        call and given back its state afterwards."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(global_seed)
            return self.explainer(net, x, targets, output)

    def maps(self, channels: int = 1, other_class: bool = False) -> torch.Tensor:
        """``|attributions|`` summed over channels, ``(B, H, W)``."""
        return _maps(self.explain(channels, other_class), self.images[channels])

    def check_output(self) -> str:
        shapes = []
        for channels in (1, 3):
            attributions, x = self.explain(channels), self.images[channels]
            if not isinstance(attributions, torch.Tensor):
                raise CheckFailure(f"returned a {type(attributions).__name__}, not a tensor")
            if tuple(attributions.shape) != tuple(x.shape):
                raise CheckFailure(f"attributions of shape {tuple(attributions.shape)} for images {tuple(x.shape)}; "
                                   "expected the images' shape (B, C, H, W)")
            if not attributions.dtype.is_floating_point:
                raise CheckFailure(f"attributions of dtype {attributions.dtype}; expected a float dtype")
            if attributions.device != self.device:
                raise CheckFailure(f"attributions on {attributions.device}; the model is on {self.device}")
            bad = ~torch.isfinite(attributions.flatten(1)).all(dim=1)
            if bad.any():
                raise CheckFailure(f"NaN or infinite attributions for images {bad.nonzero().flatten().tolist()} "
                                   f"({channels} channel(s))")
            shapes.append(str(tuple(attributions.shape)))
        return f"{' and '.join(shapes)} {attributions.dtype} attributions on {attributions.device}, finite"

    def check_batch_invariance(self) -> str:
        batch, worst = self.explain(output="probability"), 0.0
        for image in range(len(TARGETS)):
            alone = self.explain(image=image, output="probability")[0]
            relative = largest_difference(batch[image], alone) / max(float(alone.abs().max()), torch.finfo().tiny)
            if relative > BATCH_TOLERANCE:
                raise CheckFailure(
                    f"image {image} explained in a batch of {len(TARGETS)} differs from it explained alone by up to "
                    f"{relative:.3g} of its largest |attribution| (tolerance {BATCH_TOLERANCE:g}): its map depends on "
                    "the other images of the batch"
                )
            worst = max(worst, relative)
        return (f"each image's attributions in a batch of {len(TARGETS)} equal those alone to {worst:.2g} of its "
                f"largest |attribution| (tolerance {BATCH_TOLERANCE:g})")

    def check_determinism(self) -> str:
        difference = largest_difference(self.explain(global_seed=0), self.explain(global_seed=1))
        if difference != 0:
            raise CheckFailure(f"two calls with the same inputs differ by up to {difference:.3g} (torch's global "
                               "generator seeded 0, then 1): the same config must give the same maps, randomness "
                               "coming from the explainer's own seed")
        return "two calls (torch's global generator seeded 0, then 1) give identical attributions"

    def check_side_effects(self) -> str:
        net = TwoPixelNet(1, SIZE).to(self.device)
        net.train()
        net.head.eval()  # mixed flags: each module must get its own back
        x, targets = self.images[1].clone(), self.targets.clone()
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            snapshot = SideEffects(net, {"the images": x, "the targets": targets})
            self.explainer(net, x, targets, "logit")
            changes = snapshot.changes()
        if changes:
            raise CheckFailure("; ".join(changes))
        return ("model flags (train, head in eval), parameters, buffers, gradients, images, targets and torch's global "
                "generator unchanged")

    def check_locates(self) -> str:
        most_tied = 1
        for channels in (1, 3):
            maps = self.maps(channels)
            for image, target in enumerate(TARGETS):
                row, col = self.nets[channels].pixels[target]
                values, top = maps[image], float(maps[image].max())
                value = float(values[row, col])
                where = f"image {image} ({channels} channel(s), class {target})"
                if not top > 0 or not bool((values < value * (1 - TIE_TOLERANCE)).any()):
                    raise CheckFailure(f"{where}: the map is constant ({top:.3g} everywhere): it locates nothing")
                if value < top * (1 - TIE_TOLERANCE):
                    peak = divmod(int(values.argmax()), SIZE[1])
                    raise CheckFailure(
                        f"{where}: the largest |attribution| {top:.3g} is at {peak}, the pixel driving the score "
                        f"{(row, col)} has {value:.3g} (every other pixel leaves the score unchanged)"
                    )
                most_tied = max(most_tied, int((values >= value * (1 - TIE_TOLERANCE)).sum()))
        return (f"the pixel driving the target's score has the largest |attribution| in all {2 * len(TARGETS)} maps "
                f"(shared by at most {most_tied} pixel(s))")

    def check_uncorrelated(self) -> str:
        net = self.nets[1]
        x = net.images(UNCORRELATED_IMAGES, seed=1).to(self.device)
        maps = _maps(self.call(net, x, torch.zeros(len(x), dtype=torch.long, device=self.device)), x).flatten(1)
        row, col = net.pixels[0]
        value = maps[:, row * SIZE[1] + col : row * SIZE[1] + col + 1]
        percentile = float(((maps < value).double().mean(dim=1) + 0.5 * (maps == value).double().mean(dim=1)).mean())
        error = (1 / 12 / UNCORRELATED_IMAGES) ** 0.5  # standard error of a mean of uniform percentiles
        if abs(percentile - 0.5) > 4 * error:
            raise CheckFailure(f"the pixel driving the score has a mean percentile of {percentile:.3f} among the "
                               f"pixels over {UNCORRELATED_IMAGES} images; chance is 0.5 +- {error:.3f}: the maps "
                               "carry information about the evidence")
        return (f"the pixel driving the score has a mean percentile of {percentile:.3f} over {UNCORRELATED_IMAGES} "
                f"images (chance 0.5 +- {error:.3f})")

    def check_target(self) -> str:
        maps, other = self.maps(), self.maps(other_class=True)
        smallest = float("inf")
        for image, target in enumerate(TARGETS):
            scale = max(float(maps[image].abs().max()), float(other[image].abs().max()), torch.finfo().tiny)
            relative = largest_difference(maps[image], other[image]) / scale
            if relative <= TIE_TOLERANCE:
                raise CheckFailure(f"image {image}: the maps for classes {target} and {1 - target} are equal (largest "
                                   f"difference {relative:.3g} of the largest |attribution|), though different "
                                   "pixels drive the two classes")
            smallest = min(smallest, relative)
        return (f"the maps for the two classes differ in every image (by at least {smallest:.3g} of the largest "
                "|attribution|)")


def _maps(attributions, x: torch.Tensor) -> torch.Tensor:
    """``|attributions|`` summed over channels, ``(B, H, W)``, once they have the images' shape."""
    if not isinstance(attributions, torch.Tensor) or tuple(attributions.shape) != tuple(x.shape):
        raise CheckFailure(f"attributions of shape {tuple(getattr(attributions, 'shape', ()))}, not the images' "
                           f"{tuple(x.shape)}: no map to check (see the output check)")
    return attributions.abs().sum(dim=1)
