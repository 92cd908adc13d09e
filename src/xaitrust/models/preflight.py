"""Checks a classifier before any long work: ``preflight(model, x, y, num_classes)``, in seconds.

The convention of xaitrust is a model taking images ``(B, C, H, W)`` in [0, 1] (normalising them itself, or through a
wrapper's ``input_mean`` / ``input_std``) and returning logits ``(B, K)``. ``preflight`` measures, on the labelled
images it is given:

1. The output: ``model(x[:2])`` must be a finite float tensor ``(2, K)``. Anything else (a tuple, a dict such as a
   HuggingFace ``ModelOutput``) is refused with a note on how to return the logits. ``K`` must equal the data's class
   count; fewer outputs are an error, and so are more, unless ``allow_extra_classes=True`` says the data's labels are
   indices into the model's first classes (recorded as a warning: a prediction outside the data's classes then counts
   as wrong). Rows that are already probabilities (in [0, 1], summing to 1) get a warning, since scores such as
   ``output="probability"`` would apply a softmax twice.
2. The input convention: the accuracy on a class-stratified sample of ``sample_size`` (256) images fed as given
   ([0, 1]), normalised with the data's per-channel mean / std, scaled to [-1, 1] and scaled to [0, 255]. Each is
   ``(x - m) / s`` for some ``m`` / ``s``, which is also the fix. It raises when another convention beats both the
   as-given accuracy and chance (the majority class's share of the sample) by ``RANGE_GAP`` (0.2, about 4.5 standard
   errors of a difference of two accuracies on 256 images) while the as-given accuracy is nearer chance than that
   convention's; the error names the ``input_mean`` / ``input_std`` to set. A convention better by that much but with
   the as-given accuracy well above chance is a warning, as is an accuracy within ``NEAR_CHANCE`` (0.1) of chance
   under every convention (an untrained model, or class indices in another order than the data's). Fewer than
   ``MIN_RANGE_SAMPLE`` (64) labelled images are too few to judge: a warning, no verdict.
3. Deterministic eval mode: in eval mode two forward passes of the same batch must agree, and an image's logits alone
   must match its logits within a batch (within ``TOLERANCE`` relative to the largest logit). Dropout left active
   (``F.dropout(x, training=True)``) breaks the first, batch statistics (``F.batch_norm(..., training=True)``, a
   module whose ``train()`` ignores ``eval()``) the second. Every check runs under ``evaluation_mode``: each module gets
   its own train/eval flag back; buffers (batch-norm statistics a module in training mode would update) and the
   random number generators are restored too.
4. The graph (``inspect_graph``): ``torch.fx.symbolic_trace`` of the model in eval mode lists (a) non-linear
   operations applied as functions or tensor methods (``F.relu``, ``torch.relu``, ``x.relu()``, ``F.max_pool2d``,
   ``torch.sigmoid``, ``F.gelu``, ``x.clamp()``, products and quotients of two signals, ... ; ``NON_LINEAR_OPS``)
   on a signal that still reaches a layer with weights, (b) modules called more than once per forward pass, and (c)
   in-place ``nn.ReLU`` modules whose input the forward reads again afterwards. Captum's hooks see module calls
   only, so each of these can make a propagation explainer (``xaitrust.explainers.propagation``) silently compute
   another method; those explainers refuse them in ``check_model``. Operations after the last layer with weights
   (a final softmax, a calibrator's log-softmax) transform the score and are differentiated plainly by every
   explainer, so they are not listed. When tracing fails, forward hooks count the module calls and the functional
   check does not run (a warning). ``make_explainable`` rewrites what can be rewritten safely.
5. Explainers: for each (every registered one by default), whether it can explain the model (``check_model``; for
   the explainers with a ``layer`` parameter, Grad-CAM and Grad-CAM++, also that a CAM layer is named and valid),
   else why.
6. The CAM layer: the user's dotted ``cam_layer``, else the model's own ``cam_layer`` (xaitrust models), else the
   last module (in order of completion during one forward pass) called once whose output is a 4-D feature map with
   more than one spatial position. A named layer must exist, run once and output ``(B, K, h, w)``.
7. Cost: one forward pass and one forward + backward pass (gradient of each image's top logit with respect to the
   input) of ``TIMING_BATCH`` (32) images, timed, as seconds per image. A run costs about
   ``n_forward * forward_seconds + n_gradient * gradient_seconds`` for its counts of image passes.

Hard problems (output, class count, input convention, eval mode, an invalid named CAM layer) raise an
``XaitrustError`` saying what to fix; soft ones are recorded in the returned ``Preflight``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import time
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import reduce

import torch
from torch import fx, nn

from ..data.splits import stratified_sample
from ..errors import XaitrustError
from ..model_mode import evaluation_mode

SAMPLE_SIZE = 256
MIN_RANGE_SAMPLE = 64
RANGE_GAP = 0.2
NEAR_CHANCE = 0.1
#: Largest difference between eval-mode logits that should be equal, relative to max(1, largest |logit|).
TOLERANCE = 1e-4
CHECK_BATCH = 8
TIMING_BATCH = 32
PREDICTION_BATCH = 32

#: Kinds of non-linear operation, by the name of the function or tensor method (``relu_`` counts as ``relu``).
NON_LINEAR_OPS = {
    "relu": {"relu"},
    "max-pool": {
        "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
        "max_pool3d_with_indices", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    },
    "other": {
        "sigmoid", "tanh", "hardtanh", "relu6", "elu", "selu", "celu", "gelu", "silu", "mish", "leaky_relu", "rrelu",
        "prelu", "softplus", "softsign", "softshrink", "hardshrink", "tanhshrink", "hardsigmoid", "hardswish",
        "logsigmoid", "glu", "threshold", "softmax", "log_softmax", "softmin", "clamp", "clip", "clamp_min",
        "clamp_max", "abs", "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "square", "reciprocal",
        "pow", "ipow", "maximum", "minimum", "fmax", "fmin", "max", "min", "amax", "amin", "logsumexp", "norm",
        "layer_norm", "group_norm", "instance_norm", "local_response_norm", "normalize", "where", "masked_fill",
        "topk", "sort",
    },
}
#: Operations that are non-linear when at least two of their operands are signals (``x * y``, ``x @ y``).
PRODUCT_OPS = {"mul", "imul", "matmul", "imatmul", "bmm", "mm", "einsum"}
#: Operations that are non-linear when their divisor is a signal (``x / x.sum()``, ``1 / x``).
DIVISION_OPS = {"truediv", "itruediv", "div", "true_divide"}
#: Operations giving sizes or types rather than values: their results carry no signal.
SHAPE_OPS = {"size", "dim", "numel", "getattr", "len", "type"}

#: The input conventions of the range check: name -> (m, s) of ``(x - m) / s``; None means the data's statistics.
CONVENTIONS = {"[0, 1]": (0.0, 1.0), "normalised": None, "[-1, 1]": (0.5, 0.5), "[0, 255]": (0.0, 1 / 255)}
CONVENTION_TEXT = {
    "[0, 1]": "images in [0, 1] as given",
    "normalised": "images normalised with the data's per-channel mean and std",
    "[-1, 1]": "images scaled to [-1, 1]",
    "[0, 255]": "8-bit values in [0, 255]",
}


# ----------------------------------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class FunctionalCall:
    """A non-linear operation applied outside modules: the fx ``node`` name, the operation's name ``op``, its
    ``kind`` (``relu``, ``max-pool``, ``other``, ``product``), the dotted name of the module whose forward makes the
    call (``""``: the model's own), and whether ``make_explainable`` turns it into a module."""

    node: str
    op: str
    kind: str
    module: str
    rewritable: bool

    def __str__(self) -> str:
        return f"{self.node} ({self.op} in {self.module or 'forward'})"


@dataclass(frozen=True)
class ModelGraph:
    """What ``inspect_graph`` found. ``traced`` is False when ``torch.fx`` could not trace the model (``error`` says
    why): ``functional`` and ``in_place_rereads`` are then unknown (empty) and ``reused`` comes from forward hooks."""

    traced: bool
    error: str = ""
    functional: tuple[FunctionalCall, ...] = ()
    #: Dotted name -> calls per forward pass, for every module without children called more than once.
    reused: dict[str, int] = field(default_factory=dict)
    #: In-place ``nn.ReLU`` modules whose input the forward reads again after them.
    in_place_rereads: tuple[str, ...] = ()

    def describe(self) -> str:
        if not self.traced:
            reused = ", ".join(f"{name} ({calls} calls)" for name, calls in self.reused.items()) or "none"
            return f"not traced by torch.fx ({self.error}); modules called more than once: {reused}"
        parts = [
            "functional non-linearities: " + (", ".join(map(str, self.functional)) or "none"),
            "modules called more than once: "
            + (", ".join(f"{name} ({calls} calls)" for name, calls in self.reused.items()) or "none"),
        ]
        if self.in_place_rereads:
            parts.append("in-place ReLUs whose input is read again: " + ", ".join(self.in_place_rereads))
        return "traced; " + "; ".join(parts)


def trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` of ``model`` in eval mode (Python values such as ``self.training`` are frozen at
    trace time, so they take their eval-mode values), with the forward's parameters after the input fixed to their
    defaults. The result shares the model's modules, parameters and buffers."""
    parameters = list(inspect.signature(model.forward).parameters.values())[1:]
    defaults = {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}
    with evaluation_mode(model):
        graph_module = fx.symbolic_trace(model, concrete_args=defaults or None)
    graph_module.training = model.training
    return graph_module


def inspect_graph(model: nn.Module, x: torch.Tensor | None = None) -> ModelGraph:
    """The functional non-linearities, reused modules and in-place ReLU re-reads of ``model`` (see the module notes).

    When ``torch.fx`` cannot trace it, a forward pass of ``x`` (if given) with hooks counts the module calls.
    """
    try:
        graph_module = trace(model)
    except Exception as error:  # fx fails with many types (TraceError, TypeError, ...) on real models
        message = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {message[0]}" if message else type(error).__name__
        if x is None:
            return ModelGraph(traced=False, error=reason)
        leaves = {name for name, module in model.named_modules() if not any(True for _ in module.children())}
        runs = module_runs(model, x)
        return ModelGraph(traced=False, error=reason,
                          reused={name: run.calls for name, run in runs.items() if run.calls > 1 and name in leaves})
    nodes = list(graph_module.graph.nodes)
    functional = tuple(
        FunctionalCall(node.name, _op_name(node), kind, _scope(node), _replacement(node) is not None)
        for node, kind in _functional_non_linear(graph_module)
    )
    calls = Counter(node.target for node in nodes if node.op == "call_module")
    position = {node: index for index, node in enumerate(nodes)}
    rereads = []
    for node in nodes:
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(node.target)
        source = node.args[0] if node.args else None
        if isinstance(module, nn.ReLU) and module.inplace and isinstance(source, fx.Node):
            if any(position[user] > position[node] for user in source.users if user is not node):
                rereads.append(node.target)
    return ModelGraph(
        traced=True,
        functional=functional,
        reused={name: count for name, count in calls.items() if count > 1},
        in_place_rereads=tuple(dict.fromkeys(rereads)),
    )


def make_explainable(model: nn.Module) -> fx.GraphModule:
    """``model`` traced by ``torch.fx`` (``trace``) and rewritten so that propagation explainers see its
    non-linearities as modules; it computes the same outputs.

    Rewritten, when applied to a signal that reaches a layer with weights (as ``inspect_graph`` lists them):

    - ReLUs applied as functions or methods (``F.relu``, ``torch.relu``, ``x.relu()``, their in-place forms) become
      a fresh ``nn.ReLU`` (in place when the call was);
    - ``F.max_pool2d`` / ``torch.max_pool2d`` with constant arguments and without ``return_indices`` become a fresh
      ``nn.MaxPool2d`` with the same arguments;
    - every call after the first of a module called several times gets its own ``copy.deepcopy`` of the module, if
      it holds no parameters or buffers (activations, pools, dropout); a module with weights stays shared.

    A new module is a child of the result named after the fx node it replaces (``relu``, ``relu_1``, ...), with a
    numeric suffix if an attribute already has that name. Other functional non-linearities (sigmoid, GELU, clamps,
    products, ... ) are not rewritten: replace them in the model's code. The result is a ``GraphModule``: it keeps the
    model's modules, parameters and the buffers its forward reads, not its other attributes (``cam_layer``,
    ``num_classes``): name the CAM layer (its dotted names are the model's) when explaining it.
    """
    try:
        graph_module = trace(model)
    except Exception as error:  # see inspect_graph
        raise XaitrustError(
            f"make_explainable needs a model torch.fx can trace; tracing failed with {type(error).__name__}: {error}. "
            "Keep Python control flow out of the forward (no branch on tensor values)"
        ) from error
    graph = graph_module.graph
    for node, _ in _functional_non_linear(graph_module):
        replacement = _replacement(node)
        if replacement is None:
            continue
        name = _free_name(graph_module, node.name)
        graph_module.add_submodule(name, replacement)
        with graph.inserting_after(node):
            module_call = graph.call_module(name, (node.args[0],))
        node.replace_all_uses_with(module_call)
        graph.erase_node(node)
    calls = Counter()
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        calls[node.target] += 1
        module = graph_module.get_submodule(node.target)
        stateless = not any(True for _ in itertools.chain(module.parameters(), module.buffers()))
        if calls[node.target] > 1 and stateless:
            name = _free_name(graph_module, node.name)
            graph_module.add_submodule(name, copy.deepcopy(module))
            node.target = name
    graph.lint()
    graph_module.recompile()
    return graph_module


@dataclass
class ModuleRun:
    """How a module took part in one forward pass: its calls, its last output's shape (None when not a tensor) and
    when it last finished (a counter over the pass)."""

    calls: int = 0
    shape: tuple | None = None
    finished: int = 0


def module_runs(model: nn.Module, x: torch.Tensor) -> dict[str, ModuleRun]:
    """``ModuleRun`` by dotted name of every submodule called during ``model(x)`` in eval mode, without gradients."""
    runs: dict[str, ModuleRun] = {}
    finished = itertools.count()

    def hook_for(name):
        def hook(module, inputs, output):
            run = runs.setdefault(name, ModuleRun())
            run.calls += 1
            run.shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
            run.finished = next(finished)

        return hook

    handles = [module.register_forward_hook(hook_for(name)) for name, module in model.named_modules() if name]
    try:
        with evaluation_mode(model), torch.no_grad():
            _forward(model, x, f"a batch of {len(x)} images")
    finally:
        for handle in handles:
            handle.remove()
    return runs


def _operands(node: fx.Node) -> list[fx.Node]:
    """The nodes among ``node``'s arguments, nested lists and dicts included, in order."""
    found = []
    fx.node.map_arg((node.args, node.kwargs), found.append)
    return found


def _op_name(node: fx.Node) -> str:
    """The name of the function or method a node calls (``relu`` for ``F.relu``, ``torch.relu``, ``x.relu_()`` and
    ``aten.relu.default``), or its target for other nodes."""
    target = node.target
    name = target if isinstance(target, str) else getattr(target, "__name__", str(target))
    return name.split(".")[0].removesuffix("_") if node.op in ("call_function", "call_method") else name


def _scope(node: fx.Node) -> str:
    """The dotted name of the module whose forward created ``node`` (``""`` for the model's own forward)."""
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else ""


def _signals(graph: fx.Graph) -> set[fx.Node]:
    """The nodes whose values depend on the model's inputs through tensor operations (sizes and types excluded)."""
    signals = set()
    for node in graph.nodes:
        if node.op == "placeholder":
            signals.add(node)
        elif node.op in ("call_function", "call_method", "call_module") and _op_name(node) not in SHAPE_OPS:
            if any(operand in signals for operand in _operands(node)):
                signals.add(node)
    return signals


def _uses_weights(node: fx.Node, graph_module: fx.GraphModule) -> bool:
    """Whether ``node`` calls a module holding parameters or applies an operation to a parameter."""
    if node.op == "call_module":
        return any(True for _ in graph_module.get_submodule(node.target).parameters())
    return node.op in ("call_function", "call_method") and any(
        operand.op == "get_attr"
        and isinstance(reduce(getattr, operand.target.split("."), graph_module), nn.Parameter)
        for operand in _operands(node)
    )


def _functional_non_linear(graph_module: fx.GraphModule) -> list[tuple[fx.Node, str]]:
    """``(node, kind)`` for every non-linear function or method call on a signal whose result reaches an operation
    with weights."""
    graph = graph_module.graph
    signals = _signals(graph)
    feeds_weights: set[fx.Node] = set()
    for node in reversed(graph.nodes):
        if any(user in feeds_weights or _uses_weights(user, graph_module) for user in node.users):
            feeds_weights.add(node)
    found = []
    for node in graph.nodes:
        if node.op not in ("call_function", "call_method") or node not in signals or node not in feeds_weights:
            continue
        name = _op_name(node)
        kind = next((kind for kind, names in NON_LINEAR_OPS.items() if name in names), None)
        operands = _operands(node)
        if name in PRODUCT_OPS and sum(operand in signals for operand in operands) >= 2:
            kind = "product"
        elif name in DIVISION_OPS and len(node.args) > 1 and node.args[1] in signals:
            kind = "product"
        if kind is not None:
            found.append((node, kind))
    return found


MAX_POOL_ARGUMENTS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _replacement(node: fx.Node) -> nn.Module | None:
    """The fresh module ``make_explainable`` puts in place of a functional call, or None if it leaves it alone."""
    name = _op_name(node)
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if name == "relu":
        called = node.target if isinstance(node.target, str) else node.target.__name__
        flag = node.kwargs.get("inplace", node.args[1] if len(node.args) > 1 else False)
        return nn.ReLU(inplace=called.endswith("_") or bool(flag))
    if name == "max_pool2d" and node.op == "call_function":
        arguments = dict(zip(MAX_POOL_ARGUMENTS, node.args[1:]), **node.kwargs)
        dynamic = []
        fx.node.map_arg(tuple(arguments.values()), dynamic.append)
        if dynamic or arguments.get("return_indices"):
            return None
        stride = arguments.get("stride")
        return nn.MaxPool2d(
            arguments["kernel_size"],
            stride=stride if stride not in ([], ()) else None,
            padding=arguments.get("padding", 0),
            dilation=arguments.get("dilation", 1),
            ceil_mode=bool(arguments.get("ceil_mode", False)),
        )
    return None


def _free_name(module: nn.Module, base: str) -> str:
    """``base``, or ``base_1``, ``base_2``, ... : the first that is not an attribute of ``module``."""
    name, index = base, 0
    while hasattr(module, name):
        index += 1
        name = f"{base}_{index}"
    return name


# ----------------------------------------------------------------------------------------------------- the preflight


@dataclass
class Preflight:
    """What ``preflight`` measured. Accuracies are shares of the ``sample_size`` labelled images; seconds are per
    image, on the model's device."""

    #: Logits per image (``K``).
    num_classes: int
    sample_size: int
    #: The share of the sample's most common class: the accuracy of always predicting it.
    chance: float
    #: The accuracy on [0, 1] images as given.
    accuracy: float
    #: Convention (``CONVENTIONS``) -> accuracy; ``"[0, 1]"`` is ``accuracy``.
    accuracy_by_convention: dict[str, float]
    #: The data's per-channel mean and std (over every pixel of ``x``), as the normalised convention uses them.
    data_mean: list[float]
    data_std: list[float]
    #: Explainer name -> None when it can explain the model, else the reason.
    supported: dict[str, str | None]
    #: Dotted name of the module whose output Grad-CAM would use (None when no module qualifies).
    cam_layer: str | None
    #: One forward pass without gradients.
    forward_seconds: float
    #: One forward pass and one backward pass to the input.
    gradient_seconds: float
    graph: ModelGraph
    warnings: list[str]

    def describe(self) -> str:
        """A few readable lines: outputs and accuracy, cost, CAM layer, graph, explainers, warnings."""
        others = ", ".join(
            f"{name} {accuracy:.1%}" for name, accuracy in self.accuracy_by_convention.items() if name != "[0, 1]"
        )
        refused = {name: reason for name, reason in self.supported.items() if reason}
        lines = [
            f"Outputs: {self.num_classes} logits per image. Accuracy on {self.sample_size} labelled images: "
            f"{self.accuracy:.1%} as given in [0, 1] (chance {self.chance:.1%}); other input conventions: {others}.",
            f"Cost per image: {1e3 * self.forward_seconds:.3g} ms forward, {1e3 * self.gradient_seconds:.3g} ms "
            f"forward + backward (batches of {TIMING_BATCH}).",
            f"CAM layer: {self.cam_layer or 'none found (no module outputs feature maps of more than one position)'}.",
            f"Graph: {self.graph.describe()}.",
            f"Explainers: {len(self.supported) - len(refused)} of {len(self.supported)} can explain the model"
            + ("." if not refused else "; not: " + "; ".join(f"{name} ({reason})" for name, reason in refused.items())),
        ]
        return "\n".join(lines + [f"Warning: {warning}" for warning in self.warnings])


def preflight(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    explainers: Sequence[str] | None = None,
    explainer_params: Mapping[str, Mapping] | None = None,
    cam_layer: str | None = None,
    *,
    allow_extra_classes: bool = False,
    sample_size: int = SAMPLE_SIZE,
    seed: int = 0,
) -> Preflight:
    """Check ``model`` against labelled images ``x`` (float ``(N, C, H, W)`` in [0, 1]) and ``y`` (``(N,)`` class
    indices below ``num_classes``), as the module notes describe.

    ``explainers`` are the names to check (default: every registered one) with their ``explainer_params``
    (name -> keyword arguments); ``cam_layer`` a dotted module name to validate instead of choosing one. The sample is
    ``sample_size`` images stratified by class (``stratified_sample`` with ``seed``). Raises ``XaitrustError`` for
    the hard problems; the model comes back with its train/eval flags, buffers and the random generators' states.
    """
    x, y = _check_data(model, x, y, num_classes)
    device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    chosen = stratified_sample(y, min(sample_size, len(y)), seed=seed)
    sample_x, sample_y = x[chosen], y[chosen]
    mean, std = x.mean(dim=(0, 2, 3)), x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    notes: list[str] = []
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    try:
        with evaluation_mode(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            outputs = _check_outputs(model, sample_x[:2].to(device), num_classes, allow_extra_classes, notes)
            _check_eval_mode(model, sample_x[:CHECK_BATCH].to(device))
            accuracy, as_given = _accuracy_by_convention(model, sample_x, sample_y, mean, std, device)
            chance = torch.bincount(sample_y).max().item() / len(sample_y)
            _judge_convention(accuracy, chance, len(sample_y), mean, std, notes)
            if _are_probabilities(as_given):
                notes.append(
                    "the model's outputs look like probabilities (rows in [0, 1] summing to 1): xaitrust expects "
                    "logits, and output='probability' would apply a softmax again; return the logits"
                )
            graph = inspect_graph(model, sample_x[:2].to(device))
            if not graph.traced:
                notes.append(
                    f"torch.fx could not trace the model ({graph.error}): non-linearities applied as functions were "
                    "not looked for, and the propagation explainers refuse the model"
                )
            runs = module_runs(model, sample_x[:2].to(device))
            chosen_layer = _choose_cam_layer(model, runs, cam_layer)
            if chosen_layer is None:
                notes.append(
                    "no module outputs feature maps (B, K, h, w) with h * w > 1 exactly once per forward pass: "
                    "Grad-CAM has no layer to use"
                )
            supported = _support(model, runs, explainers, explainer_params or {}, chosen_layer)
            forward_seconds, gradient_seconds = _timing(model, sample_x, device)
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
    return Preflight(
        num_classes=outputs,
        sample_size=len(sample_y),
        chance=chance,
        accuracy=accuracy["[0, 1]"],
        accuracy_by_convention=accuracy,
        data_mean=mean.tolist(),
        data_std=std.tolist(),
        supported=supported,
        cam_layer=chosen_layer,
        forward_seconds=forward_seconds,
        gradient_seconds=gradient_seconds,
        graph=graph,
        warnings=notes,
    )


def preflight_wrapped(model: nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int, explainers=None,
                      explainer_params=None) -> Preflight:
    """``preflight``; a ``WrappedModel`` that names no Grad-CAM layer adopts the one the preflight chose, and its
    explainers are checked again with it (so Grad-CAM counts as supported)."""
    from .user import WrappedModel

    check = functools.partial(preflight, model, x, y, num_classes, explainers, explainer_params)
    result = check()
    if isinstance(model, WrappedModel) and not model.cam_layer_name and result.cam_layer:
        model.set_cam_layer(result.cam_layer.removeprefix("body."))
        result = check()
    return result


def check_explainers(result: Preflight, names: Sequence[str], drop: bool = False) -> list[str]:
    """The ``names`` the model supports according to ``result``. An unsupported name raises an ``XaitrustError``
    listing every unsupported one with its reason, or, with ``drop=True``, is left out with a ``UserWarning``."""
    unchecked = [name for name in names if name not in result.supported]
    if unchecked:
        raise XaitrustError(
            f"the preflight did not check {', '.join(unchecked)}; include them in preflight(..., explainers=[...])"
        )
    refused = {name: result.supported[name] for name in names if result.supported[name]}
    if refused and not drop:
        raise XaitrustError(
            "the model cannot be explained by " + "; ".join(f"{name}: {reason}" for name, reason in refused.items())
            + ". Remove these explainers, or change the model as said"
        )
    for name, reason in refused.items():
        warnings.warn(f"leaving out explainer {name}: {reason}", UserWarning, stacklevel=2)
    return [name for name in names if name not in refused]


def _check_data(model, x, y, num_classes) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` and ``y`` (as int64) if they are labelled images as ``preflight`` takes them, else a clear error."""
    if not isinstance(model, nn.Module):
        raise XaitrustError(f"the model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        raise XaitrustError(f"x must be a float tensor of images (N, C, H, W); got {getattr(x, 'shape', type(x))}")
    if len(x) < 2:
        raise XaitrustError(f"the preflight needs at least 2 labelled images; got {len(x)}")
    low, high = torch.aminmax(x)
    if not (low >= 0 and high <= 1):
        raise XaitrustError(
            f"x must hold images in [0, 1] (the model normalises them itself); got values in [{low:.4g}, {high:.4g}]: "
            "rescale them (e.g. divide 8-bit values by 255)"
        )
    y = torch.as_tensor(y)
    if y.shape != (len(x),) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise XaitrustError(
            f"y must hold {len(x)} integer class indices, one per image; got {tuple(y.shape)} {y.dtype}"
        )
    if not isinstance(num_classes, int) or num_classes < 2:
        raise XaitrustError(f"num_classes must be an integer of at least 2; got {num_classes!r}")
    y = y.long()
    if y.min() < 0 or y.max() >= num_classes:
        raise XaitrustError(f"labels must lie in [0, {num_classes - 1}]; got {y.min().item()}..{y.max().item()}")
    return x, y


def _forward(model: nn.Module, x: torch.Tensor, what: str):
    """``model(x)``, with an exception of the model's code turned into an ``XaitrustError`` saying on what input."""
    try:
        return model(x)
    except XaitrustError:
        raise
    except Exception as error:  # any failure of the user's forward is reported the same way
        raise XaitrustError(f"the model failed on {what}: {type(error).__name__}: {error}") from error


def _describe_output(output) -> str:
    if isinstance(output, Mapping) or hasattr(output, "keys"):
        return f"a {type(output).__name__} with keys {list(output.keys())}"
    if isinstance(output, (tuple, list)):
        return f"a {type(output).__name__} of {len(output)} items"
    return f"a {type(output).__name__}"


def _check_outputs(model, x, num_classes: int, allow_extra_classes: bool, notes: list[str]) -> int:
    """The number of logits ``K`` the model returns for the two images ``x``, after checking the output."""
    with torch.no_grad():
        output = _forward(model, x, "2 images")
    if not isinstance(output, torch.Tensor):
        raise XaitrustError(
            f"the model must return a tensor of logits (B, K); it returned {_describe_output(output)}. Wrap it in a "
            "module whose forward returns the logits alone (e.g. output[0] or output['logits'])"
        )
    if output.ndim != 2 or len(output) != len(x) or not output.dtype.is_floating_point:
        raise XaitrustError(
            f"the model must return float logits of shape (B, K); for a batch of {len(x)} it returned "
            f"{output.dtype} {tuple(output.shape)}"
        )
    if not torch.isfinite(output).all():
        raise XaitrustError("the model returned non-finite logits (NaN or infinity) for images in [0, 1]")
    classes = output.shape[1]
    if classes < num_classes:
        raise XaitrustError(
            f"the model returns {classes} logits per image but the data has {num_classes} classes: give a model with "
            f"one logit per class of the data"
        )
    if classes > num_classes:
        if not allow_extra_classes:
            raise XaitrustError(
                f"the model returns {classes} logits per image but the data has {num_classes} classes. If the data's "
                f"labels 0..{num_classes - 1} are the model's first classes, allow the extra ones "
                "(allow_extra_classes=True); else give a model with one logit per class of the data"
            )
        notes.append(
            f"the model returns {classes} logits per image for the data's {num_classes} classes: a prediction among "
            f"the other {classes - num_classes} counts as wrong, and an explanation of the predicted class may "
            "explain one of them"
        )
    return classes


def _check_eval_mode(model, batch: torch.Tensor) -> None:
    """Two eval-mode passes of ``batch`` must agree, and its first image's logits alone must match them."""
    with torch.no_grad():
        first = _forward(model, batch, f"a batch of {len(batch)} images")
        second = _forward(model, batch, f"a batch of {len(batch)} images")
        alone = _forward(model, batch[:1], "a batch of 1 image")
    tolerance = TOLERANCE * max(1.0, first.abs().max().item())
    repeat = (first - second).abs().max().item()
    if repeat > tolerance:
        raise XaitrustError(
            f"in eval mode, two forward passes of the same {len(batch)} images give logits differing by up to "
            f"{repeat:.3g}: something stays random, such as dropout called as F.dropout(x, training=True) or a module "
            "ignoring eval(). Make it follow self.training, so that explanations and metrics see one model"
        )
    batch_effect = (alone[0] - first[0]).abs().max().item()
    if batch_effect > tolerance:
        raise XaitrustError(
            f"in eval mode, an image's logits depend on the rest of its batch (by up to {batch_effect:.3g}): a "
            "normalisation uses batch statistics, such as F.batch_norm(..., training=True) or a batch-norm module "
            "ignoring eval(). Make it use its running statistics in eval mode"
        )


def _convention(name: str, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-channel ``(m, s)`` with which ``(x - m) / s`` turns [0, 1] images into convention ``name``."""
    if CONVENTIONS[name] is None:
        return mean, std
    m, s = CONVENTIONS[name]
    return torch.full_like(mean, m), torch.full_like(std, s)


def _accuracy_by_convention(model, x, y, mean, std, device) -> tuple[dict[str, float], torch.Tensor]:
    """The accuracy on ``x`` under every convention, and the logits of ``x`` as given."""
    accuracy, as_given = {}, None
    for name in CONVENTIONS:
        m, s = (value.reshape(1, -1, 1, 1).to(device) for value in _convention(name, mean, std))
        with torch.no_grad():
            logits = torch.cat([
                _forward(model, (x[start:start + PREDICTION_BATCH].to(device) - m) / s, f"images in {name}").cpu()
                for start in range(0, len(x), PREDICTION_BATCH)
            ])
        accuracy[name] = (logits.argmax(dim=1) == y).double().mean().item()
        as_given = logits if as_given is None else as_given
    return accuracy, as_given


def _judge_convention(accuracy: dict[str, float], chance: float, n: int, mean, std, notes: list[str]) -> None:
    """Raise when another input convention is clearly better than [0, 1] as given; note the softer cases."""
    if n < MIN_RANGE_SAMPLE:
        notes.append(
            f"{n} labelled images are too few to judge the input convention (it takes {MIN_RANGE_SAMPLE})"
        )
        return
    as_given = accuracy["[0, 1]"]
    best = max((name for name in accuracy if name != "[0, 1]"), key=accuracy.get)
    gain = accuracy[best] - max(as_given, chance)
    if gain >= RANGE_GAP:
        m, s = (", ".join(f"{v:.6g}" for v in value.tolist()) for value in _convention(best, mean, std))
        summary = (
            f"the model's accuracy on {n} labelled images is {as_given:.1%} on [0, 1] images as given (chance "
            f"{chance:.1%}) but {accuracy[best]:.1%} on {CONVENTION_TEXT[best]}"
        )
        if as_given - chance < accuracy[best] - as_given:
            raise XaitrustError(
                f"{summary}: it expects {CONVENTION_TEXT[best]}. Set input_mean=[{m}] and input_std=[{s}] so that a "
                f"wrapper feeds it (x - input_mean) / input_std, or make its forward do that. If the model was trained "
                "on [0, 1] images, check instead that the data's classes are in the order of its outputs (image "
                "folders number their classes by sorted folder name)"
            )
        notes.append(f"{summary}: check which inputs it expects (input_mean=[{m}], input_std=[{s}] would give those)")
    if max(accuracy.values()) < chance + NEAR_CHANCE:
        notes.append(
            f"the model's accuracy is near chance ({chance:.1%}) under every input convention "
            f"({', '.join(f'{name} {value:.1%}' for name, value in accuracy.items())}): is it trained for this data, "
            "with its classes in the data's order?"
        )


def _are_probabilities(logits: torch.Tensor) -> bool:
    """Whether every row lies in [0, 1] and sums to 1 (within 1e-3)."""
    in_unit_interval = (logits >= 0).all() and (logits <= 1).all()
    return bool(in_unit_interval and ((logits.sum(dim=1) - 1).abs() <= 1e-3).all())


def _is_feature_map(shape: tuple | None) -> bool:
    return shape is not None and len(shape) == 4 and shape[2] * shape[3] > 1


def _cam_layer_problem(model, runs: dict[str, ModuleRun], name: str) -> str | None:
    """Why module ``name`` cannot be the CAM layer (None when it can): it must exist, run once per forward pass and
    output feature maps ``(B, K, h, w)``."""
    try:
        model.get_submodule(name)
    except AttributeError:
        return f"the model has no module {name!r}: name one of its named_modules()"
    run = runs.get(name, ModuleRun())
    if run.calls != 1 or run.shape is None or len(run.shape) != 4:
        return (
            f"module {name!r} must run once per forward pass and output feature maps (B, K, h, w); it ran "
            f"{run.calls} time(s)" + (f" with output shape {run.shape}" if run.shape is not None else "")
        )
    return None


def _own_cam_layer(model) -> str | None:
    """The dotted name of the model's own ``cam_layer`` (xaitrust models), or None when it names none."""
    try:
        layer = getattr(model, "cam_layer", None)
    except XaitrustError:  # a wrapper without a chosen layer says so
        return None
    if layer is None:
        return None
    return next((name for name, module in model.named_modules() if module is layer), None)


def _choose_cam_layer(model, runs: dict[str, ModuleRun], requested: str | None) -> str | None:
    """The validated ``requested`` layer, else the model's own, else the last module to finish that ran once and
    output a feature map with more than one position (None if none did)."""
    name = requested if requested is not None else _own_cam_layer(model)
    if name is not None:
        problem = _cam_layer_problem(model, runs, name)
        if problem:
            raise XaitrustError(f"cam_layer: {problem}")
        return name
    candidates = [(run.finished, name) for name, run in runs.items() if run.calls == 1 and _is_feature_map(run.shape)]
    return max(candidates)[1] if candidates else None


def _support(model, runs, names, params: Mapping, cam_layer: str | None) -> dict[str, str | None]:
    """Explainer name -> None if it can explain ``model``, else the reason."""
    from ..explainers import available_explainers, get_explainer  # the explainers import this module

    infos = {info.name: info for info in available_explainers()}
    supported = {}
    for name in infos if names is None else names:
        explainer = get_explainer(name, **params.get(name, {}))
        try:
            explainer.check_model(model)
        except XaitrustError as error:
            supported[name] = str(error)
            continue
        supported[name] = None
        if name in infos and "layer" in infos[name].parameters:  # a CAM method of the registry
            layer = explainer.layer if explainer.layer is not None else _own_cam_layer(model)
            if layer is None:
                supported[name] = (
                    f"the model names no CAM layer: give {name} layer={cam_layer!r} (chosen by the preflight)"
                    if cam_layer else "the model names no CAM layer and has no module with feature maps to use"
                )
            else:
                supported[name] = _cam_layer_problem(model, runs, layer)
    return supported


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timing(model, x: torch.Tensor, device: torch.device) -> tuple[float, float]:
    """Seconds per image of a forward pass and of a forward + backward pass, on ``TIMING_BATCH`` images of ``x``
    (repeated when fewer). The backward pass is the gradient of each image's top logit with respect to the input."""
    batch = x[torch.arange(TIMING_BATCH) % len(x)].to(device)
    _synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        _forward(model, batch, f"a batch of {len(batch)} images")
    _synchronize(device)
    forward = time.perf_counter() - start
    start = time.perf_counter()
    with torch.enable_grad():
        inputs = batch.clone().requires_grad_(True)
        top = _forward(model, inputs, f"a batch of {len(batch)} images").max(dim=1).values
        torch.autograd.grad(top.sum(), inputs)
    _synchronize(device)
    gradient = time.perf_counter() - start
    return forward / len(batch), gradient / len(batch)
