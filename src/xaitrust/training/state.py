"""Resumable training state, written after every finished epoch: safetensors for tensors, JSON for structure.

Tensors (model ``state_dict``, optimiser moments, the CPU RNG state and the augmentation generator's state) go to
``state-epoch<E>.safetensors``; ``state.json`` holds the epoch, the history, the optimiser's structure (param groups,
and for every state entry either a plain number or the name of its tensor) and a ``key`` saying which model, data and
config the state belongs to. ``state.json`` is renamed into place last and names its tensor file, so an interrupted
write leaves the previous epoch's state intact; the learning-rate schedule is a pure function of the epoch
(``xaitrust.training.optim.learning_rate``), so it needs no state of its own.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import XaitrustError
from ..io import read_tensors, write_json_atomic, write_tensors_atomic

STATE_FILE = "state.json"
MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."
RNG_TORCH = "rng.torch"
RNG_GENERATOR = "rng.generator"


def flatten_optimizer_state(state_dict: dict) -> tuple[dict, dict]:
    """Split an optimiser ``state_dict`` into ``(tensors, structure)``: tensors named ``optimizer.<param>.<key>``, and a
    JSON-ready structure in which each tensor is replaced by ``{"tensor": name}``."""
    tensors, state = {}, {}
    for index, entries in state_dict["state"].items():
        state[str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                name = f"{OPTIMIZER_PREFIX}{index}.{key}"
                tensors[name] = value
                value = {"tensor": name}
            state[str(index)][key] = value
    return tensors, {"state": state, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(structure: dict, tensors: dict) -> dict:
    """Inverse of ``flatten_optimizer_state``."""
    state = {
        int(index): {
            key: tensors[value["tensor"]] if isinstance(value, dict) and "tensor" in value else value
            for key, value in entries.items()
        }
        for index, entries in structure["state"].items()
    }
    return {"state": state, "param_groups": structure["param_groups"]}


def save_training_state(
    directory: Path,
    key: dict,
    epoch: int,
    history: list[dict],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Write the state after ``epoch`` finished epochs and drop the previous epoch's tensor file."""
    directory = Path(directory)
    previous = read_training_state(directory)
    optimizer_tensors, optimizer_structure = flatten_optimizer_state(optimizer.state_dict())
    tensors = {MODEL_PREFIX + name: value for name, value in model.state_dict().items()}
    tensors.update(optimizer_tensors)
    tensors[RNG_TORCH] = torch.get_rng_state()
    tensors[RNG_GENERATOR] = generator.get_state()
    tensor_file = f"state-epoch{epoch}.safetensors"
    write_tensors_atomic(directory / tensor_file, tensors)
    document = {
        "key": key, "epoch": epoch, "history": history, "optimizer": optimizer_structure, "tensors": tensor_file
    }
    write_json_atomic(directory / STATE_FILE, document)
    if previous is not None and previous["tensors"] != tensor_file:
        (directory / previous["tensors"]).unlink(missing_ok=True)


def read_training_state(directory: Path) -> dict | None:
    """The JSON part of the state in ``directory``, or None when there is none."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise XaitrustError(f"{path} is not valid JSON ({error}); delete the folder to train from scratch") from None


def restore_training_state(
    directory: Path,
    document: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Load the tensors named by ``document`` (from ``read_training_state``) into the model, optimiser, generator and
    the global CPU RNG."""
    tensors = read_tensors(Path(directory) / document["tensors"])
    model.load_state_dict({name[len(MODEL_PREFIX):]: t for name, t in tensors.items() if name.startswith(MODEL_PREFIX)})
    optimizer.load_state_dict(unflatten_optimizer_state(document["optimizer"], tensors))
    torch.set_rng_state(tensors[RNG_TORCH])
    generator.set_state(tensors[RNG_GENERATOR])
