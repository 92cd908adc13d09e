"""The training loop: mini-batch training of an ``ImageClassifier`` on an in-memory ``ImageDataset`` with cross-entropy
or its temperature-scaled form for 1-Lipschitz networks (``TrainConfig.loss``, ``training_loss``).

Batches are slices of the dataset's tensors in a seeded random order (no DataLoader: the data already sits in memory).
Every random draw is seeded by ``config.seed``: the shuffling and the augmentation come from one ``torch.Generator``;
dropout and other layers that use the global CPU generator run inside ``torch.random.fork_rng`` seeded with the same
seed, so training leaves the caller's global RNG untouched. With ``checkpoint_dir`` the state after every epoch is
kept (``xaitrust.training.state``), a rerun resumes after the last finished epoch and gives the same weights as an
uninterrupted run, and a finished run is not repeated.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..chunks import batched_logits
from ..data.dataset import ImageDataset
from ..errors import XaitrustError
from .augment import augment_batch
from .checkpoint import checkpoint_files, save_checkpoint
from .config import TrainConfig
from .optim import build_optimizer, learning_rate, set_learning_rate
from .state import read_training_state, restore_training_state, save_training_state

EVAL_BATCH_SIZE = 1000


@dataclass
class TrainResult:
    """What ``train_model`` returns.

    Attributes:
        model: the trained model (the object passed in, in eval mode).
        config: the recipe.
        history: one record per epoch: ``epoch`` (1-based), ``lr``, ``train_loss`` and ``train_accuracy`` (on the
            augmented batches, in train mode), ``val_accuracy`` (when validation data was given), ``seconds``.
        metrics: the last epoch's ``train_loss``, ``train_accuracy`` and ``<val split>_accuracy`` (e.g.
            ``test_accuracy``).
        checkpoint_dir: where the checkpoint and the resumable state are, or None.
        start_epoch: epochs already done before this call (0: fresh; ``config.epochs``: reused a finished run).
        seconds: wall time of this call.
    """

    model: torch.nn.Module
    config: TrainConfig
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    checkpoint_dir: Path | None = None
    start_epoch: int = 0
    seconds: float = 0.0

    @property
    def reused(self) -> bool:
        """True when a finished run was found in ``checkpoint_dir`` and nothing was trained."""
        return self.start_epoch >= self.config.epochs


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """First 16 hex digits of the SHA-256 of the images and labels (identifies the data a state was trained on)."""
    digest = hashlib.sha256()
    for tensor in (dataset.x, dataset.y):
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().numpy()).cast("B"))
    return digest.hexdigest()[:16]


def evaluate_accuracy(model: torch.nn.Module, dataset: ImageDataset, batch_size: int = EVAL_BATCH_SIZE) -> float:
    """Share of ``dataset`` whose arg-max logit is the label (``xaitrust.chunks.batched_logits``: eval mode, no
    gradients, batches moved to the model's device)."""
    if len(dataset) == 0:
        raise XaitrustError("cannot measure accuracy on an empty dataset")
    predicted = batched_logits(model, dataset.x, batch_size, device=_device(model)).argmax(dim=1).cpu()
    return (predicted == dataset.y).sum().item() / len(dataset)


def _device(model: torch.nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


def _check_inputs(model: torch.nn.Module, train: ImageDataset, val: ImageDataset | None) -> None:
    if not isinstance(train, ImageDataset) or (val is not None and not isinstance(val, ImageDataset)):
        raise XaitrustError("train and val must be ImageDataset objects (see xaitrust.data.load_dataset)")
    if len(train) == 0:
        raise XaitrustError("the training set is empty")
    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(model, "set_normalization"):
        raise XaitrustError("train_model needs an xaitrust ImageClassifier (see xaitrust.models.build_model)")
    for data in (train, val):
        if data is None:
            continue
        if data.in_channels != spec["in_channels"] or list(data.image_size) != list(spec["image_size"]):
            raise XaitrustError(
                f"{data.name} ({data.split}) images are {data.in_channels}x{data.image_size[0]}x{data.image_size[1]} "
                f"but the model expects {spec['in_channels']}x{spec['image_size'][0]}x{spec['image_size'][1]}"
            )
        if data.num_classes > spec["num_classes"]:
            raise XaitrustError(f"{data.name} has {data.num_classes} classes but the model only {spec['num_classes']}")


def training_loss(logits: torch.Tensor, y: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Mean loss of a batch: cross-entropy, or with ``config.loss = "tau-cross-entropy"`` the temperature-scaled
    ``CE(tau * logits, y) / tau`` of Béthune et al. ("Pay attention to your loss"; deel-torchlip's
    ``TauCrossEntropyLoss``). A 1-Lipschitz network's logits move by at most ``L ||x - x'||`` between images, too
    little for the softmax to saturate at temperature 1; ``tau`` sets the margin the loss asks for (large ``tau``: a
    hinge-like loss on the margin, accurate; small ``tau``: larger margins, more robust), and dividing by ``tau``
    keeps the gradient scale of plain cross-entropy."""
    if config.loss == "tau-cross-entropy":
        return F.cross_entropy(config.tau * logits, y) / config.tau
    return F.cross_entropy(logits, y)


def _train_epoch(
    model, optimizer, train: ImageDataset, config: TrainConfig, generator, description: str, progress: bool
) -> dict:
    """One pass over ``train`` in a fresh seeded order; returns mean loss and accuracy over the (augmented) samples."""
    model.train()
    device = _device(model)
    order = torch.randperm(len(train), generator=generator)
    total_loss, correct = 0.0, 0
    with tqdm(total=len(train), desc=description, unit="img", disable=not progress, leave=True) as bar:
        for start in range(0, len(train), config.batch_size):
            indices = order[start:start + config.batch_size]
            x = augment_batch(train.x[indices], config, generator).to(device)
            y = train.y[indices].to(device)
            logits = model(x)
            loss = training_loss(logits, y, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(indices)
            correct += (logits.argmax(dim=1) == y).sum().item()
            bar.update(len(indices))
            bar.set_postfix(loss=f"{loss.item():.3f}")
    if not torch.isfinite(torch.tensor(total_loss)):
        raise XaitrustError(f"training diverged (loss is {total_loss}); lower the learning rate (now {config.lr})")
    return {"train_loss": total_loss / len(train), "train_accuracy": correct / len(train)}


def _final_metrics(history: list[dict], val: ImageDataset | None) -> dict:
    last = history[-1]
    metrics = {"train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"]}
    if val is not None:
        metrics[f"{val.split}_accuracy"] = last["val_accuracy"]
    return metrics


def train_model(
    model: torch.nn.Module,
    train: ImageDataset,
    config: TrainConfig | None = None,
    val: ImageDataset | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train`` with ``config`` (default ``TrainConfig()``) and return a ``TrainResult``.

    Before the first epoch the model's input normalisation is set to the training data's per-channel mean and std.
    ``val`` (optional) is scored after every epoch; it is only reported, never used to pick a model.
    With ``checkpoint_dir``: the state after each epoch is saved there; if it already holds state for the same model
    spec, training data, validation data and config, training resumes after its last finished epoch (or returns at
    once with the stored weights if training had finished); state for anything else is an error. When training ends
    the final model is saved there as a checkpoint (``model.safetensors`` + ``model.json`` with dataset, seed,
    config, metrics and history). ``on_epoch_end(record)`` is called after each epoch's state is saved.
    """
    config = config or TrainConfig()
    _check_inputs(model, train, val)
    began = time.perf_counter()
    key = {
        "model": json.loads(json.dumps(model.spec)),  # as it reads back from state.json (tuples become lists)
        "config": config.to_dict(),
        "train": dataset_fingerprint(train),
        "val": None if val is None else dataset_fingerprint(val),
    }
    directory = None if checkpoint_dir is None else Path(checkpoint_dir)
    stored = None if directory is None else read_training_state(directory)
    if stored is not None and stored["key"] != key:
        differing = [part for part in key if stored["key"].get(part) != key[part]]
        if "config" in differing:
            old, new = stored["key"]["config"], key["config"]
            changes = ", ".join(f"{name} {old.get(name)!r} -> {new[name]!r}" for name in new if old.get(name) != new[name])
            differing[differing.index("config")] = f"config ({changes})"
        raise XaitrustError(
            f"{directory} holds training state for a different {' and '.join(differing)}; "
            "choose another checkpoint folder or delete this one"
        )
    history = [] if stored is None else list(stored["history"])
    start_epoch = len(history)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = build_optimizer(model, config)
        if stored is None:
            model.set_normalization(train.mean, train.std)
        else:
            restore_training_state(directory, stored, model, optimizer, generator)
        for epoch in range(start_epoch, config.epochs):
            lr = learning_rate(config, epoch)
            set_learning_rate(optimizer, lr)
            epoch_began = time.perf_counter()
            record = {"epoch": epoch + 1, "lr": lr}
            record.update(
                _train_epoch(model, optimizer, train, config, generator, f"epoch {epoch + 1}/{config.epochs}", progress)
            )
            if val is not None:
                record["val_accuracy"] = evaluate_accuracy(model, val)
            record["seconds"] = time.perf_counter() - epoch_began
            history.append(record)
            if directory is not None:
                save_training_state(directory, key, epoch + 1, history, model, optimizer, generator)
            if on_epoch_end is not None:
                on_epoch_end(record)
    model.eval()
    metrics = _final_metrics(history, val)
    if directory is not None and (start_epoch < config.epochs or not checkpoint_files(directory)[1].is_file()):
        metadata = {
            "dataset": train.name,
            "data": train.info.get("load"),
            "train_size": len(train),
            "seed": config.seed,
            "train_config": config.to_dict(),
            "metrics": metrics,
            "history": history,
        }
        save_checkpoint(model, directory, metadata)
    return TrainResult(model, config, history, metrics, directory, start_epoch, time.perf_counter() - began)
