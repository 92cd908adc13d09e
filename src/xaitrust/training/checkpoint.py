"""Model checkpoints: weights in safetensors, everything else in JSON. Never pickle.

A checkpoint is two files side by side: ``model.safetensors`` (the ``state_dict``, buffers included, so the
normalisation travels with the weights) and ``model.json`` (the model ``spec`` that rebuilds the architecture through
``xaitrust.models.build_model``, library versions, and whatever the caller adds: dataset name, seed, training config,
metrics). Files are written to a temporary name and renamed, so a crash never leaves a half-written file under the
real name; the JSON is written last.

Loading trusts neither file to describe the other: the model ``model.json`` asks for is first built on the ``meta``
device (shapes, no memory) and compared with the tensor names and shapes in the weights file's header, so a crafted or
mismatched ``model.json`` is refused before a model of its size is allocated.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import torch

from ..errors import XaitrustError
from ..io import library_versions, read_tensor_shapes, read_tensors, write_json_atomic, write_tensors_atomic
from ..sources import is_file_reference, load_from_file

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.json"
FORMAT = "xaitrust-checkpoint"
RESERVED_KEYS = ("format", "spec", "versions", "created")
SPEC_KEYS = ("name", "in_channels", "num_classes", "image_size")
LISTED = 5  # differing tensors named in an error message


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
        document = json.loads(meta.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise XaitrustError(f"{meta} is not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "spec" not in document:
        raise XaitrustError(f"{meta} is not an xaitrust checkpoint (no format/spec fields)")
    return document


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild the model saved at ``path`` from its spec and load its weights; returned in eval mode on ``device``.

    Before the model is built, its spec is checked against the weights file (see the module notes): a spec asking for
    more than the file holds, or for other tensor names or shapes, is refused with an error naming ``model.json`` and
    what differs. A spec naming a user architecture ``path/to/file.py:Name`` runs that file, as importing it would:
    load such a checkpoint only when you trust the file it names. Should that architecture fail to build on the
    ``meta`` device, it is built for real and compared before its weights are loaded.
    """
    weights, meta = checkpoint_files(path)
    spec = _spec(load_metadata(path)["spec"], meta)
    shapes = read_tensor_shapes(weights)
    skeleton = _build_on_meta(spec, meta)
    if skeleton is not None:
        _check_fits(skeleton.state_dict(), shapes, meta, weights)
    model = _build(spec)
    if skeleton is None:
        _check_fits(model.state_dict(), shapes, meta, weights)
    try:
        model.load_state_dict(read_tensors(weights))
    except RuntimeError as error:
        raise XaitrustError(f"the weights in {weights} do not fit the model spec {spec}: {error}") from None
    return model.to(device).eval()


def _spec(spec, meta: Path) -> dict:
    """``spec`` once it has the fields ``build_model`` takes, else an error naming ``meta``."""
    if (
        not isinstance(spec, dict)
        or not all(key in spec for key in SPEC_KEYS)
        or not isinstance(spec["name"], str)
        or not isinstance(spec.get("options", {}), dict)
        or not isinstance(spec.get("wrapper", {}), dict)
    ):
        raise XaitrustError(
            f"the spec in {meta} must be an object with {', '.join(SPEC_KEYS)} (name a string) and optional options "
            "and wrapper objects; restore the checkpoint's model.json"
        )
    return spec


def _build_on_meta(spec: dict, meta: Path) -> torch.nn.Module | None:
    """The spec's model on the ``meta`` device, or None for a user architecture whose code cannot run there; a spec
    that cannot be built at all is refused, naming ``meta``."""
    if is_file_reference(spec["name"]):
        load_from_file(spec["name"], "model")  # imported first, so that tensors the file makes on import are not meta
    try:
        with torch.device("meta"):
            return _build(spec)
    except XaitrustError as error:
        raise XaitrustError(f"{meta}: {error}") from None
    except Exception as error:  # an untrusted spec: whatever an architecture makes of its values
        if is_file_reference(spec["name"]):
            return None
        raise XaitrustError(
            f"{meta} describes a model that cannot be built ({type(error).__name__}: {error})"
        ) from None


def _build(spec: dict) -> torch.nn.Module:
    from ..models import build_model

    wrapper = {"wrapper": spec["wrapper"]} if "wrapper" in spec else {}
    return build_model(
        spec["name"], spec["in_channels"], spec["num_classes"], spec["image_size"], **spec.get("options", {}), **wrapper
    )


def _check_fits(state: dict[str, torch.Tensor], shapes: dict[str, list[int]], meta: Path, weights: Path) -> None:
    """Refuse a spec whose model's ``state`` is larger than the weights file, or whose tensor names or shapes differ
    from the file's ``shapes``."""
    needed, available = sum(t.numel() * t.element_size() for t in state.values()), weights.stat().st_size
    if needed > available:
        raise XaitrustError(
            f"{meta} describes a model of {sum(t.numel() for t in state.values()):,} values ({needed:,} bytes), but "
            f"{weights} holds {available:,} bytes; the spec does not describe these weights: restore the model.json "
            "saved with them"
        )
    differences = [
        *(f"{name} is missing from the weights" for name in sorted(set(state) - set(shapes))),
        *(f"{name} is in the weights but not in the model" for name in sorted(set(shapes) - set(state))),
        *(
            f"{name} has shape {shapes[name]} in the weights but {list(state[name].shape)} in the model"
            for name in sorted(set(state) & set(shapes))
            if shapes[name] != list(state[name].shape)
        ),
    ]
    if differences:
        more = f"; and {len(differences) - LISTED} more" if len(differences) > LISTED else ""
        raise XaitrustError(
            f"the model {meta} describes does not fit the weights in {weights}: {'; '.join(differences[:LISTED])}"
            f"{more}; restore the model.json saved with these weights"
        )
