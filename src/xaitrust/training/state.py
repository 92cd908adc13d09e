"""Resumable training state, written after every finished epoch: safetensors for tensors, JSON for structure.

Tensors (model ``state_dict``, optimiser moments, the CPU RNG state, the augmentation generator's state and, for a
model on a GPU, that GPU's RNG state, which its dropout draws from) go to ``state-epoch<E>.safetensors``; ``state.json`` holds the epoch, the history, the optimiser's structure (param groups,
and for every state entry either a plain number or the name of its tensor) and a ``key`` saying which model, data and
config the state belongs to. ``state.json`` is renamed into place last and names its tensor file, so an interrupted
write leaves the previous epoch's state intact; the learning-rate schedule is a pure function of the epoch
(``xaitrust.training.optim.learning_rate``), so it needs no state of its own.

The folder is the only place the state refers to: ``state.json`` names its tensor file by a bare
``state-epoch<E>.safetensors`` name, and anything else there (an absolute path, a name with ``..`` or a sub-folder) is
refused on reading. A save deletes only the folder's other files of that exact pattern.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..errors import XaitrustError
from ..io import read_tensors, write_json_atomic, write_tensors_atomic
from ..perturb.engine import model_device

STATE_FILE = "state.json"
MODEL_PREFIX = "model."
OPTIMIZER_PREFIX = "optimizer."
RNG_TORCH = "rng.torch"
RNG_GENERATOR = "rng.generator"
RNG_CUDA = "rng.cuda"
TENSOR_FILE = re.compile(r"state-epoch\d+\.safetensors")


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
    """Write the state after ``epoch`` finished epochs, then delete the folder's other epochs' tensor files."""
    directory = Path(directory)
    optimizer_tensors, optimizer_structure = flatten_optimizer_state(optimizer.state_dict())
    tensors = {MODEL_PREFIX + name: value for name, value in model.state_dict().items()}
    tensors.update(optimizer_tensors)
    tensors[RNG_TORCH] = torch.get_rng_state()
    tensors[RNG_GENERATOR] = generator.get_state()
    device = model_device(model)
    if device.type == "cuda":
        tensors[RNG_CUDA] = torch.cuda.get_rng_state(device)
    tensor_file = f"state-epoch{epoch}.safetensors"
    write_tensors_atomic(directory / tensor_file, tensors)
    document = {
        "key": key, "epoch": epoch, "history": history, "optimizer": optimizer_structure, "tensors": tensor_file
    }
    write_json_atomic(directory / STATE_FILE, document)
    for stale in directory.iterdir():
        if stale.name != tensor_file and TENSOR_FILE.fullmatch(stale.name) and stale.is_file():
            stale.unlink(missing_ok=True)


def read_training_state(directory: Path) -> dict | None:
    """The JSON part of the state in ``directory``, or None when there is none; a document that is not such a state
    (damaged, or naming a file outside the folder) is refused with an error that says to start over."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return None
    start_over = _start_over(directory)
    try:
        document = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XaitrustError(f"{path} is not valid JSON ({error}); {start_over}") from None
    shape = {"key": dict, "epoch": int, "history": list, "optimizer": dict, "tensors": str}
    if not isinstance(document, dict) or not all(isinstance(document.get(k), kind) for k, kind in shape.items()):
        raise XaitrustError(f"{path} is not a training state (fields {', '.join(shape)}); {start_over}")
    if not TENSOR_FILE.fullmatch(document["tensors"]):
        raise XaitrustError(
            f"{path} names the tensor file {document['tensors']!r}, not a state-epoch<E>.safetensors file of its own "
            f"folder; {start_over}"
        )
    return document


def restore_training_state(
    directory: Path,
    document: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> None:
    """Load the tensors named by ``document`` (from ``read_training_state``) into the model, optimiser, generator, the
    global CPU RNG and the RNG of the model's GPU; state that does not load (a damaged tensor file) is an error that says to start over."""
    try:
        tensors = read_tensors(Path(directory) / document["tensors"])
        model.load_state_dict(
            {name[len(MODEL_PREFIX):]: t for name, t in tensors.items() if name.startswith(MODEL_PREFIX)}
        )
        optimizer.load_state_dict(unflatten_optimizer_state(document["optimizer"], tensors))
        torch.set_rng_state(tensors[RNG_TORCH])
        generator.set_state(tensors[RNG_GENERATOR])
        device = model_device(model)
        if RNG_CUDA in tensors and device.type == "cuda":
            torch.cuda.set_rng_state(tensors[RNG_CUDA], device)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise XaitrustError(
            f"the training state in {directory} cannot be restored ({error}); {_start_over(directory)}"
        ) from None


def _start_over(directory: Path) -> str:
    return f"delete {Path(directory)} to train from scratch"
