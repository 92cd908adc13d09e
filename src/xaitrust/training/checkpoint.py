"""Model checkpoints: weights in safetensors, everything else in JSON. Never pickle.

A checkpoint is two files side by side: ``model.safetensors`` (the ``state_dict``, buffers included, so the
normalisation travels with the weights) and ``model.json`` (the model ``spec`` that rebuilds the architecture through
``xaitrust.models.build_model``, library versions, and whatever the caller adds: dataset name, seed, training config,
metrics). Files are written to a temporary name and renamed, so a crash never leaves a half-written file under the
real name; the JSON is written last.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import XaitrustError
from ..io import library_versions, read_tensors, write_json_atomic, write_tensors_atomic

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
FORMAT = "xaitrust-checkpoint"
RESERVED_KEYS = ("format", "spec", "versions", "created")


def checkpoint_files(path: str | Path) -> tuple[Path, Path]:
    """``(weights, metadata)`` paths: ``path`` is a folder holding ``model.safetensors`` + ``model.json``, or one of two
    files ``NAME.safetensors`` / ``NAME.json`` that sit together."""
    path = Path(path)
    if path.suffix in (".safetensors", ".json"):
        return path.with_suffix(".safetensors"), path.with_suffix(".json")
    return path / WEIGHTS_FILE, path / METADATA_FILE


def save_checkpoint(model: torch.nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Save ``model`` (an ``ImageClassifier``) to ``path`` (see ``checkpoint_files``); returns the metadata path.

    ``metadata`` (JSON-serialisable, e.g. ``{"dataset": ..., "seed": ..., "train_config": ..., "metrics": ...}``) is
    stored at the top level of the JSON next to ``spec``, ``versions`` and ``created``.
    """
    spec = getattr(model, "spec", None)
    if not isinstance(spec, dict):
        raise XaitrustError("only xaitrust models (ImageClassifier, with a .spec) can be saved as checkpoints")
    metadata = dict(metadata or {})
    clashes = sorted(set(metadata) & set(RESERVED_KEYS))
    if clashes:
        raise XaitrustError(f"metadata keys {', '.join(clashes)} are reserved; rename them")
    weights, meta = checkpoint_files(path)
    write_tensors_atomic(weights, model.state_dict())
    document = {
        "format": FORMAT,
        "spec": spec,
        "versions": library_versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **metadata,
    }
    write_json_atomic(meta, document)
    return meta


def load_metadata(path: str | Path) -> dict:
    """The JSON document of the checkpoint at ``path``."""
    meta = checkpoint_files(path)[1]
    if not meta.is_file():
        raise XaitrustError(f"no checkpoint metadata at {meta}; is this an xaitrust checkpoint folder?")
    try:
        document = json.loads(meta.read_text())
    except json.JSONDecodeError as error:
        raise XaitrustError(f"{meta} is not valid JSON ({error})") from None
    if document.get("format") != FORMAT or "spec" not in document:
        raise XaitrustError(f"{meta} is not an xaitrust checkpoint (no format/spec fields)")
    return document


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model saved at ``path`` from its spec and load its weights; returned in eval mode on ``device``."""
    from ..models import build_model

    spec = load_metadata(path)["spec"]
    wrapper = {"wrapper": spec["wrapper"]} if "wrapper" in spec else {}
    model = build_model(
        spec["name"], spec["in_channels"], spec["num_classes"], spec["image_size"], **spec.get("options", {}), **wrapper
    )
    weights = checkpoint_files(path)[0]
    try:
        model.load_state_dict(read_tensors(weights))
    except RuntimeError as error:
        raise XaitrustError(f"the weights in {weights} do not fit the model spec {spec}: {error}") from None
    return model.to(device).eval()
