"""Models that come in as files: safetensors weights, ``torch.export`` archives (``.pt2``) and ONNX files (``.onnx``).

Pickles are refused, whatever their name. ``torch.save`` writes a pickle (a zip archive holding ``data.pkl``, or raw
pickle bytes in its older format), and loading a pickle runs whatever code it names. Files are recognised by their
content, so a pickle renamed ``.safetensors`` is refused too; a name ending in ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``
or ``.bin`` whose content is not safetensors is taken for a pickle.

``.pt2`` (``torch.export.save``) holds a traced graph of aten operations and its weights. ``torch.export.load`` also
unpickles parts of the archive: always its example inputs, and tensor-subclass weights or custom objects when there
are any; where the restricted unpickler (``weights_only=True``) refuses a payload it falls back to the full one. So
before loading, every payload it would unpickle must load with ``torch.load(..., weights_only=True)``, custom objects
are refused, and so are archives holding AOTInductor-compiled code (loading it runs native code). Three facts of
torch 2.13 shape what the loader accepts:

- the batch size is fixed at export unless ``dynamic_shapes`` frees it: a program exported for a batch of 8 raises
  ``Guard failed: x.size()[0] == 8`` on any other batch, and one exported with ``Dim("batch", max=16)`` on batches
  above 16. xaitrust runs batches of many sizes, so such archives are refused with the export call that frees the
  batch dimension. Running them in padded chunks of the fixed size would hide the problem at the cost of wasted
  compute, while exporting again takes one argument.
- train/eval mode is fixed at export: dropout and batch norm are recorded as ``aten.dropout(x, p, train)`` and
  ``aten.batch_norm(..., training, ...)`` with the mode of the module as a constant, and ``ExportedProgram.module()``
  raises ``NotImplementedError`` on ``.train()`` and ``.eval()``. A program exported in training mode (dropout active,
  batch norm on batch statistics) is refused; the returned module accepts ``.eval()`` (its graph already runs in eval
  mode) and raises on ``.train()``, so that nothing silently trains a graph frozen in eval mode.
- ``ExportedProgram.module()`` is one flat graph of aten operations: its submodules (``stem.0``, ...) only hold the
  weights, no forward hook on them ever fires, and its leaves are plain ``nn.Module`` objects and a ``GuardsFn``. So
  Grad-CAM finds no layer output to weight, and the propagation explainers (Guided Backprop, DeepLIFT, LRP), which
  have no rule for these types, refuse the model. ``torch.export.unflatten`` would rebuild a hierarchy whose
  submodules run and can be hooked, but in torch 2.13 its module cannot be deep-copied (fake tensors with symbolic
  sizes in its metadata), which model randomisation needs; the flat module can.

``.onnx`` files are converted to a ``torch.fx.GraphModule`` by ``onnx2torch``. ``import onnx2torch`` imports
torchvision, only for the NonMaxSuppression and RoiAlign converters; no torchvision wheel can be installed beside the
pinned CPU torch without pulling another torch. When torchvision is not installed, onnx2torch is imported with a
stand-in ``torchvision`` / ``torchvision.ops`` in ``sys.modules`` for the duration of the import only, whose functions
raise an error if a graph ever calls them; image classifiers do not use these operations. onnx2torch 1.5 has no
converter for some operations of newer opsets: opset 18's ``ReduceMean``, which torch's default (torch.export-based)
ONNX exporter writes for average pooling and which it cannot write for opset 17, or opset 19's ``Identity``. A file
exported with ``torch.onnx.export(..., dynamo=False, opset_version=17)`` converts. For a typical CNN exported that way
(Conv, BatchNorm, ReLU, MaxPool, residual addition, adaptive average pooling, Linear) the converted graph holds
``nn.Conv2d`` (eval-mode batch norms are folded into the convolutions), ``nn.ReLU``, ``nn.MaxPool2d``, ``nn.Flatten``
and ``nn.Linear``, and onnx2torch's own ``OnnxBinaryMathOperation`` (the addition) and
``OnnxGlobalAveragePoolWithKnownInputShape``; exported with ``training=TrainingMode.PRESERVE``, batch norms stay, as
``nn.BatchNorm2d`` or onnx2torch's ``OnnxBatchNorm``, next to ``OnnxCopyIdentity`` nodes. The propagation explainers
have no rule for onnx2torch's own classes, so they refuse a model that contains one; a plain chain of convolutions,
ReLUs, max pools and linear layers converts to torch modules only and they explain it as the original model. Batch
norms of a converted graph follow ``.train()`` / ``.eval()`` like any torch module; the loader returns the model in
eval mode, since in training mode they normalise with the batch's statistics and overwrite the stored ones.

Both loaders check that the model runs on batches of one and two images, returns one row of logits per image and
passes gradients back to its input (the gradient explainers need ``d score / d input``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import types
import zipfile
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..errors import XaitrustError
from ..io import read_tensors

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")
SAVE_AS_SAFETENSORS = (
    "Save the weights as safetensors instead:\n"
    "    from safetensors.torch import save_file\n"
    '    save_file(model.state_dict(), "weights.safetensors")\n'
    "(if save_file refuses tensors that share memory or are not contiguous, save "
    "{k: v.clone().contiguous() for k, v in model.state_dict().items()}) and give the architecture as "
    "path/to/file.py:Name with these weights; or export the whole model with torch.export (.pt2) or to ONNX (.onnx)"
)
ACCEPTED_FORMS = (
    "an xaitrust checkpoint folder, path/to/file.py:Name with .safetensors weights, a .pt2 archive "
    "(torch.export.save) or an .onnx file"
)
EXPORT_CALL = (
    'torch.export.save(torch.export.export(model.eval(), (example,), dynamic_shapes={{"{name}": '
    '{{0: torch.export.Dim("batch")}}}}), "model.pt2")'
)
ONNX_EXPORT_CALL = (
    'torch.onnx.export(model.eval(), (example,), "model.onnx", dynamo=False, opset_version=17, input_names=["x"], '
    'dynamic_axes={"x": {0: "batch"}})'
)
ONNX_INSTALL = "pip install onnx && pip install --no-deps onnx2torch"
# Arguments by which aten operations take the module's training flag (dropout, batch norm, rrelu).
TRAINING_ARGUMENTS = ("train", "training")


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``path``. Pickles are refused (see the module notes); a missing, truncated
    or otherwise unreadable file raises an ``XaitrustError`` naming it."""
    path = _model_file(path, "weights file")
    return read_tensors(path)


def load_exported_program(path) -> nn.Module:
    """The model of the ``torch.export`` archive ``path`` (``ExportedProgram.module()``), in eval mode.

    Refused with a message saying how to export again: files that are not export archives, archives whose loading
    would unpickle anything beyond plain tensors or run compiled code, programs exported in training mode, with a
    fixed or bounded batch size, taking anything but one image batch ``(B, C, H, W)``, or not differentiable with
    respect to their input.
    """
    path = _model_file(path, "torch.export archive")
    _check_archive_payloads(path)
    try:
        program = torch.export.load(str(path))
    except Exception as error:  # torch raises assorted types for archives it cannot read
        raise XaitrustError(
            f"{path} could not be loaded as a torch.export archive ({type(error).__name__}: {error}); "
            f"export the model again with this torch ({torch.__version__})"
        ) from None
    args, kwargs = program.example_inputs or ((), {})
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor) or args[0].ndim != 4:
        raise XaitrustError(
            f"{path} was exported with other inputs than one image batch (B, C, H, W); export the model with one "
            "example batch: torch.export.export(model.eval(), (example,), ...)"
        )
    name = program.graph_signature.user_inputs[0]
    _check_eval_mode(program, path, name)
    _check_free_batch(program, path, name)
    module = program.module()
    module.train = types.MethodType(_train_in_eval_mode_only, module)
    module.eval = types.MethodType(nn.Module.eval, module)  # which calls module.train(False)
    module.eval()
    _check_runs(module, tuple(args[0].shape[1:]), path, EXPORT_CALL.format(name=name))
    return module


def load_onnx(path) -> nn.Module:
    """The ONNX model ``path`` converted to torch by onnx2torch, in eval mode (see the module notes on the layer types
    it produces). Refused with a clear message: files that are not ONNX models, graphs onnx2torch cannot convert,
    models taking anything but one image batch, failing on batches of one or two images or not differentiable with
    respect to their input."""
    path = _model_file(path, "ONNX file")
    onnx, convert = _onnx_converter()
    try:
        graph = onnx.load(str(path))
    except Exception as error:  # protobuf decoding and external-data errors
        raise XaitrustError(
            f"{path} is not a readable ONNX model ({type(error).__name__}: {error}); write one with "
            f"{ONNX_EXPORT_CALL}"
        ) from None
    initializers = {tensor.name for tensor in graph.graph.initializer}
    inputs = [value for value in graph.graph.input if value.name not in initializers]
    dims = [d for value in inputs for d in value.type.tensor_type.shape.dim]
    if len(inputs) != 1 or len(dims) != 4 or len(graph.graph.output) != 1:
        raise XaitrustError(
            f"{path} takes {len(inputs)} input(s) of {len(dims)} dimension(s) and returns {len(graph.graph.output)} "
            f"output(s); xaitrust needs one image batch (B, C, H, W) in and one (B, classes) logit tensor out"
        )
    try:
        module = convert(graph)
    except Exception as error:  # onnx2torch raises NotImplementedError for unsupported operations, others for the rest
        raise XaitrustError(
            f"onnx2torch cannot convert {path} ({type(error).__name__}: {error}); it lacks converters for some "
            f"operations of opsets above 17: export with {ONNX_EXPORT_CALL}"
        ) from None
    module.eval()
    image_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims[1:])
    if None not in image_shape:  # a graph with symbolic image sizes cannot be tried without knowing the data
        _check_runs(module, image_shape, path, ONNX_EXPORT_CALL)
    return module


def load_model_file(path) -> nn.Module:
    """The model of the file ``path``: a ``.pt2`` torch.export archive or an ``.onnx`` file. Pickles are refused
    (whatever their name, see the module notes), and so is any other file, with the list of accepted forms."""
    path = _model_file(path, "model file")
    suffix = path.suffix.lower()
    if suffix == ".pt2":
        return load_exported_program(path)
    if suffix == ".onnx":
        return load_onnx(path)
    raise XaitrustError(f"{path} is not a model file xaitrust reads; give {ACCEPTED_FORMS}")


def _model_file(path, what: str) -> Path:
    """``path`` as a ``Path`` once it is known to be an existing file that is not a pickle."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise XaitrustError(f"{what} {path} does not exist" if not path.exists() else f"{what} {path} is not a file")
    if _is_pickle(path):
        raise XaitrustError(
            f"{path} is a pickle (torch.save writes one): loading a pickle runs any code it names, so xaitrust does "
            f"not open pickled files. {SAVE_AS_SAFETENSORS}"
        )
    return path


def _is_pickle(path: Path) -> bool:
    """Whether ``path`` holds a pickle: a zip archive with ``data.pkl`` (``torch.save``, ``torch.jit.save``), raw
    pickle bytes (protocol 2 or later starts with 0x80), or a pickle-like name on content that is not safetensors."""
    with path.open("rb") as file:
        head = file.read(9)
    if _looks_like_safetensors(head, path.stat().st_size):  # its header length may well start with the byte 0x80
        return False
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                return any(name.rpartition("/")[2] == "data.pkl" for name in archive.namelist())
        except zipfile.BadZipFile:
            return False
    return head[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Whether a file of ``size`` bytes starting with ``head`` has a safetensors header: an 8-byte little-endian
    length followed by that many bytes of JSON."""
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _check_archive_payloads(path: Path) -> None:
    """Refuse the archive unless it is a torch.export archive that ``torch.export.load`` can open without unpickling
    anything but plain data and without running compiled code (see the module notes)."""
    from torch.export.pt2_archive import PT2ArchiveReader
    from torch.export.pt2_archive import constants as layout

    try:
        reader = PT2ArchiveReader(str(path))
        names = set(reader.get_file_names())
    except Exception as error:  # torch raises RuntimeError or AssertionError for files of another format
        raise XaitrustError(
            f"{path} is not a torch.export archive ({type(error).__name__}: {error}); write one with "
            f"{EXPORT_CALL.format(name='x')}"
        ) from None
    models = [
        name[len(layout.MODELS_DIR):-len(".json")] for name in names
        if name.startswith(layout.MODELS_DIR) and name.endswith(".json")
    ]
    if "model" not in models:
        raise XaitrustError(f"{path} holds no exported program; write one with {EXPORT_CALL.format(name='x')}")
    if any(name.startswith(layout.AOTINDUCTOR_DIR) for name in names):
        raise XaitrustError(
            f"{path} holds AOTInductor-compiled code, which loading would run as native code; save the exported "
            "program alone with torch.export.save"
        )
    pickled = []
    for model in models:
        pickled += [
            layout.SAMPLE_INPUTS_FILENAME_FORMAT.format(model),
            f"{layout.WEIGHTS_DIR}{model}.pt",  # the weights and constants of archives from torch 2.6 and earlier
            f"{layout.CONSTANTS_DIR}{model}.pt",
        ]
        for folder, config in (
            (layout.WEIGHTS_DIR, layout.WEIGHTS_CONFIG_FILENAME_FORMAT.format(model)),
            (layout.CONSTANTS_DIR, layout.CONSTANTS_CONFIG_FILENAME_FORMAT.format(model)),
        ):
            entries = json.loads(reader.read_string(config)).get("config", {}) if config in names else {}
            for entry in entries.values():
                objects = (layout.CUSTOM_OBJ_FILENAME_PREFIX, layout.OPAQUE_OBJ_FILENAME_PREFIX)
                if entry.get("path_name", "").startswith(objects):
                    raise XaitrustError(
                        f"{path} holds custom objects, which torch.export.load unpickles with the full unpickler; "
                        "export a model made of tensors and torch operations only"
                    )
                if entry.get("use_pickle"):
                    pickled.append(folder + entry["path_name"])
    for name in pickled:
        if name not in names:
            continue
        try:
            torch.load(io.BytesIO(reader.read_bytes(name)), weights_only=True)
        except Exception as error:  # the restricted unpickler raises UnpicklingError and others on what it refuses
            raise XaitrustError(
                f"{path} holds {name}, which torch.export.load would unpickle with the full unpickler (able to run "
                f"any code): it holds more than tensors ({type(error).__name__}: {error}). Export the model again "
                "with tensors as example inputs and weights"
            ) from None


def _check_eval_mode(program, path: Path, name: str) -> None:
    """Refuse a program whose graph runs an operation in training mode (dropout dropping, batch norm on batch
    statistics): its mode is fixed at export (see the module notes)."""
    training = set()
    for graph_module in program.graph_module.modules():
        if not isinstance(graph_module, torch.fx.GraphModule):
            continue
        for node in graph_module.graph.nodes:
            schema = getattr(node.target, "_schema", None)
            if node.op != "call_function" or schema is None:
                continue
            for index, argument in enumerate(schema.arguments):
                if argument.name in TRAINING_ARGUMENTS:
                    value = node.args[index] if index < len(node.args) else node.kwargs.get(argument.name)
                    if value is True:
                        training.add(str(node.target))
    if training:
        raise XaitrustError(
            f"{path} was exported in training mode ({', '.join(sorted(training))} run as in training), and an "
            f"exported program keeps the mode it was exported in; call model.eval() before exporting: "
            f"{EXPORT_CALL.format(name=name)}"
        )


def _check_free_batch(program, path: Path, name: str) -> None:
    """Refuse a program whose batch dimension is fixed or bounded above (see the module notes)."""
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    batch = node.meta["val"].shape[0]
    if not isinstance(batch, torch.SymInt):
        raise XaitrustError(
            f"{path} was exported for batches of exactly {batch} images, and xaitrust runs batches of other sizes; "
            f"export it with a dynamic batch dimension: {EXPORT_CALL.format(name=name)}"
        )
    constraint = program.range_constraints.get(batch.node.expr)
    if constraint is not None and constraint.upper.is_Integer:
        raise XaitrustError(
            f"{path} was exported for batches of at most {constraint.upper} images, and xaitrust runs larger ones; "
            f"export it with a batch dimension without a maximum: {EXPORT_CALL.format(name=name)}"
        )


def _train_in_eval_mode_only(self, mode: bool = True) -> nn.Module:
    """``nn.Module.train`` for an exported program: eval mode is what its graph runs; training mode is refused."""
    if mode:
        raise XaitrustError(
            "a model loaded from a torch.export archive runs in the mode it was exported in (eval) and cannot be "
            "trained; train the original model, then export it again"
        )
    return nn.Module.train(self, False)


def _check_runs(module: nn.Module, image_shape: tuple[int, ...], path: Path, export_call: str) -> None:
    """Run ``module`` on batches of one and two constant images of ``image_shape``: it must return one row of
    logits per image, the same number of classes for both, and pass a gradient back to its input."""
    classes = set()
    for batch in (1, 2):
        x = torch.full((batch, *image_shape), 0.5, requires_grad=True)
        try:
            with torch.enable_grad():
                logits = module(x)
        except Exception as error:  # whatever the model raises, the user's fix is in how it was exported
            raise XaitrustError(
                f"{path} fails on a batch of {batch} image(s) of shape {tuple(image_shape)} "
                f"({type(error).__name__}: {error}); export it with a dynamic batch dimension: {export_call}"
            ) from None
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or len(logits) != batch:
            raise XaitrustError(
                f"{path} returns {getattr(logits, 'shape', type(logits).__name__)} for a batch of {batch} image(s); "
                f"xaitrust needs logits (B, classes): export it with a dynamic batch dimension: {export_call}"
            )
        classes.add(logits.shape[1])
        try:
            torch.autograd.grad(logits[:, 0].sum(), x)
        except RuntimeError:  # the logits do not require grad, or not through x
            raise XaitrustError(
                f"the output of {path} does not depend differentiably on its input, and the gradient explainers need "
                "d score / d input; export the model outside torch.no_grad() and without detaching its input"
            ) from None
    if len(classes) != 1:
        raise XaitrustError(
            f"{path} returns logits for another number of classes on a batch of 2 images than on 1 "
            f"({' and '.join(map(str, sorted(classes)))}); export it with a dynamic batch dimension: {export_call}"
        )


def _onnx_converter():
    """``(onnx, onnx2torch.convert)``, importing onnx2torch with the torchvision stand-in when torchvision is not
    installed (see the module notes)."""
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnx2torch") is None:
        raise XaitrustError(
            f"reading ONNX files needs onnx and onnx2torch: {ONNX_INSTALL} (--no-deps because onnx2torch requires "
            "torchvision, which would pull another torch)"
        )
    import onnx

    if importlib.util.find_spec("torchvision") is not None:
        import onnx2torch
    else:
        with _torchvision_stand_in():
            import onnx2torch
    return onnx, onnx2torch.convert


def _needs_torchvision(*args, **kwargs):
    """What the stand-in ``torchvision.ops`` functions do: refuse with the reason."""
    raise XaitrustError(
        "the ONNX graph uses NonMaxSuppression/RoiAlign, which need torchvision; install the torchvision release "
        f"built for torch {torch.__version__}, or export a classifier without these operations"
    )


def _torchvision_ops_attribute(name: str):
    """Every public name of the stand-in ``torchvision.ops`` is ``_needs_torchvision`` (module ``__getattr__``)."""
    if name.startswith("_"):
        raise AttributeError(name)
    return _needs_torchvision


@contextmanager
def _torchvision_stand_in():
    """Put a stand-in ``torchvision`` and ``torchvision.ops`` in ``sys.modules`` for the block, then remove them.
    Modules imported in the block keep the references they took, so onnx2torch's NMS and RoiAlign modules call
    ``_needs_torchvision``."""
    ops = types.ModuleType("torchvision.ops")
    ops.__getattr__ = _torchvision_ops_attribute
    package = types.ModuleType("torchvision")
    package.ops = ops
    stand_ins = {"torchvision": package, "torchvision.ops": ops}
    sys.modules.update(stand_ins)
    try:
        yield
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]
