"""Protocol configurations: per-profile defaults, a user's TOML on top, validated key by key.

A protocol declares its defaults for the three profiles (``smoke``: tiny data, one epoch, a minute; ``quick``:
meaningful numbers in under ten minutes on 2 CPU cores; ``paper``: the papers' parameters), for keys with
a closed set of values the allowed values, and which numbers must be positive (counts, radii, learning rates),
non-negative (sizes where 0 means "all", weight decay) or fractions in [0, 1] (probabilities, levels). A user's file may
set any declared key (and ``profile``); an unknown key, a wrong type, a value outside its allowed set or its range is
an error that names the key and what is allowed, before any data is loaded. Every protocol also has the shared keys
``training_threads`` (``SHARED_DEFAULTS``), ``executor`` and ``ray_address`` (``EXECUTION_DEFAULTS``).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ..errors import XaitrustError

PROFILES = ("smoke", "quick", "paper")

#: Number keys that mean the same in every protocol that has them, so their range is declared once here: the training
#: recipe, batch sizes, explained images, calibration images and deletion steps are positive, data subset sizes
#: non-negative (0: all), and muFidelity correlates over at least 2 subsets.
SHARED_POSITIVE = (
    "lr", "batch_size", "epochs", "explainer_batch_size", "n_images", "calibration_size", "deletion_steps",
)
SHARED_NON_NEGATIVE = ("train_size", "test_size")
SHARED_AT_LEAST = {"mu_fidelity_subsets": 2, "training_threads": 1}

#: Keys every protocol has that are part of what it computes: ``training_threads``, the torch threads each training
#: runs on (a CPU training's weights depend on that number, so it is fixed, not left to the machine) and the CPUs a
#: training asks a Ray cluster for.
SHARED_DEFAULTS = {"training_threads": 1}
#: Keys every protocol has that say how its trainings and shards run, not what they compute, and so are not part of
#: the run folder's config (a run can be resumed with either executor): ``executor`` (``"local"``: one after another
#: in this process; ``"ray"``: as tasks of a Ray cluster, ``xaitrust.training.ray_runner``) and ``ray_address`` (the
#: cluster: ``"auto"`` for the one started on this machine by ``ray start --head``, or ``"HOST:6379"``; empty: Ray's
#: default, ``$RAY_ADDRESS`` or the cluster ``ray start`` started on this machine, else a local Ray instance started
#: for the run and stopped after it).
EXECUTION_DEFAULTS = {"executor": "local", "ray_address": ""}
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ProtocolSpec:
    """What a protocol is: its name, a one-line description, its defaults per profile, allowed values per key, and
    an optional ``validate(config)`` for checks that span values (raises ``XaitrustError`` naming the key).
    ``mixed_types`` lists keys that may take values of several types (e.g. a name or a number): their type is left
    to ``validate``, not checked against the default's. ``positive``, ``non_negative`` and ``fractions`` list the
    number keys (a number, or a list of numbers checked one by one) that must be > 0, >= 0 or in [0, 1];
    ``at_least`` maps keys to a smallest value (e.g. 2 folds), besides the shared keys (``SHARED_POSITIVE``, ...)."""

    name: str
    description: str
    defaults: dict[str, dict]
    choices: dict[str, tuple] = field(default_factory=dict)
    validate: Callable[[dict], None] | None = None
    mixed_types: tuple[str, ...] = ()
    positive: tuple[str, ...] = ()
    non_negative: tuple[str, ...] = ()
    fractions: tuple[str, ...] = ()
    at_least: dict[str, float] = field(default_factory=dict)


def read_toml(path: str | Path) -> dict:
    """The contents of a TOML file, with a clear error when it is missing, unreadable, not UTF-8 (as TOML must be) or
    malformed."""
    path = Path(path)
    if not path.is_file():
        raise XaitrustError(f"config file {path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise XaitrustError(f"cannot read config file {path} ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise XaitrustError(
            f"config file {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
            "TOML files are UTF-8: save it in that encoding"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise XaitrustError(f"config file {path} is not valid TOML: {error}") from None


def _type_name(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a table (key = value pairs)"}.get(type(value), type(value).__name__)


def _check_value(key: str, value, default, choices: tuple | None):
    if isinstance(default, bool) != isinstance(value, bool):
        raise XaitrustError(f"config key {key!r} must be {_type_name(default)}; got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        value = float(value)
    if not isinstance(value, type(default)):
        raise XaitrustError(f"config key {key!r} must be {_type_name(default)}; got {value!r}")
    if choices is not None:
        values = value if isinstance(value, list) else [value]
        bad = [v for v in values if v not in choices]
        if bad:
            raise XaitrustError(
                f"config key {key!r} has value(s) {', '.join(map(repr, bad))}; allowed: {', '.join(map(str, choices))}"
            )
    return value


def _bounds(spec: ProtocolSpec, config: dict) -> dict[str, tuple[float, bool, float]]:
    """``{key: (low, low allowed, high)}`` of every number key of ``config`` whose range ``spec`` or the shared
    declarations (``SHARED_POSITIVE``, ...) give."""
    bounds = {}
    for key in SHARED_POSITIVE + spec.positive:
        bounds[key] = (0, False, math.inf)
    for key in SHARED_NON_NEGATIVE + spec.non_negative:
        bounds[key] = (0, True, math.inf)
    for key in spec.fractions:
        bounds[key] = (0, True, 1)
    for key, low in {**SHARED_AT_LEAST, **spec.at_least}.items():
        bounds[key] = (low, True, math.inf)
    return {key: bound for key, bound in bounds.items() if key in config}


def _check_ranges(spec: ProtocolSpec, config: dict) -> None:
    """Every value of the keys whose range is declared (each entry of a list) is a finite number in its range, else
    an error naming the key."""
    for key, (low, closed, high) in _bounds(spec, config).items():
        value = config[key]
        values = value if isinstance(value, list) else [value]
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if not numbers or not all((v >= low if closed else v > low) and v <= high for v in values):
            what = "a list of finite numbers, each" if isinstance(value, list) else "a finite number"
            bound = f"in [{low:g}, {high:g}]" if high < math.inf else f"{'>=' if closed else '>'} {low:g}"
            raise XaitrustError(f"config key {key!r} must be {what} {bound}; got {value!r}")


def resolve_config(spec: ProtocolSpec, profile: str | None = None, user: dict | None = None) -> dict:
    """The fully resolved configuration: the shared keys' defaults and ``spec.defaults[profile]``, updated by
    ``user`` after validation.

    ``profile`` may also come from the user's ``profile`` key; the argument wins. Default profile: ``quick``.
    """
    user = dict(user or {})
    profile = profile or user.pop("profile", None) or "quick"
    user.pop("profile", None)
    user.pop("protocol", None)
    if profile not in PROFILES:
        raise XaitrustError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    config = copy.deepcopy({**SHARED_DEFAULTS, **EXECUTION_DEFAULTS, **spec.defaults[profile]})
    choices = {"executor": EXECUTORS, **spec.choices}
    for key, value in user.items():
        if key not in config:
            raise XaitrustError(
                f"unknown config key {key!r} for protocol {spec.name!r}; allowed keys: {', '.join(sorted(config))}"
            )
        mixed = key in spec.mixed_types
        config[key] = value if mixed else _check_value(key, value, config[key], choices.get(key))
    for key, value in config.items():
        if key in choices:
            _check_value(key, value, value, choices[key])
    _check_ranges(spec, config)
    check_execution(config)
    if spec.validate is not None:
        spec.validate(config)
    return {"protocol": spec.name, "profile": profile, **config}


def check_execution(config: dict) -> None:
    """The execution keys (``EXECUTION_DEFAULTS``) fit together: ``ray_address`` only with the Ray executor, which
    needs Ray installed and lets Ray pick each training's GPU (so ``device`` names no GPU index)."""
    if config["executor"] != "ray":
        if config["ray_address"]:
            raise XaitrustError("config key 'ray_address' is used by the Ray executor only; set executor = \"ray\" "
                                "(--executor ray) or remove ray_address")
        return
    from ..training.ray_runner import check_ray_installed

    check_ray_installed()
    if str(config.get("device", "")).startswith("cuda:"):
        raise XaitrustError(f"device {config['device']!r} names a GPU of this machine, but with executor = \"ray\" "
                            "Ray gives each training its GPU: use device = \"cuda\" (--device cuda)")


def without_execution_keys(config: dict) -> dict:
    """``config`` less the execution keys (``EXECUTION_DEFAULTS``): what a run folder records and compares."""
    return {key: value for key, value in config.items() if key not in EXECUTION_DEFAULTS}
