"""The five paper protocols and the benchmark scorecard: config in, run folder out.

``run_protocol(name, profile, config_file, out)`` resolves the config, opens (or resumes) the run folder, runs the
protocol and writes ``results.csv``, ``summary.csv`` and ``report.html``. A protocol only composes the library's
pieces; it owns no maths of its own.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from ..errors import XaitrustError
from .config import PROFILES, ProtocolSpec, read_toml, resolve_config
from .run_folder import RunFolder

PROTOCOL_MODULES = {
    "benchmark": "benchmark",
    "calibrate-to-interpret": "calibrate_to_interpret",
    "mege-reco": "mege_reco",
    "fpa": "fpa",
    "roar": "roar",
    "recalx": "recalx",
}


def protocol_module(name: str):
    """The module implementing protocol ``name`` (it defines ``SPEC`` and ``execute(run) -> Path``)."""
    if name not in PROTOCOL_MODULES:
        raise XaitrustError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOL_MODULES)}")
    return import_module(f"{__name__}.{PROTOCOL_MODULES[name]}")


def run_protocol(
    name: str,
    profile: str | None = None,
    config_file: str | Path | None = None,
    out=None,
    overrides: dict | None = None,
    supplied: dict | None = None,
) -> Path:
    """Run protocol ``name`` and return the path of its ``report.html``.

    The config is the profile's defaults, updated by the TOML ``config_file``, updated by ``overrides`` (e.g. from
    command-line options). ``supplied`` holds objects given to the Python API (``RunFolder.supplied``). An interrupted
    run resumes when called again with the same ``out`` folder and config: finished models, maps and tables are
    loaded from the folder instead of being recomputed. The trainings (and the shards of ``common.run_shards``) run as
    the config's ``executor`` says (``common.runner_for``); the run folder records the config without the execution
    keys, so either executor can resume it.
    """
    from .common import runner_for

    config = protocol_config(name, profile, config_file, overrides)
    out = Path(out) if out else Path("runs") / f"{name}-{config['profile']}"
    run = RunFolder(out, config)
    run.supplied = dict(supplied or {})
    run.runner = runner_for(config)
    try:
        return protocol_module(name).execute(run)
    finally:
        run.runner.close()


def protocol_config(name: str, profile: str | None = None, config_file=None, overrides: dict | None = None) -> dict:
    """The resolved, validated config of protocol ``name``: the profile's defaults, updated by the TOML
    ``config_file``, updated by ``overrides``."""
    user = read_toml(config_file) if config_file else {}
    user.update(overrides or {})
    return resolve_config(protocol_module(name).SPEC, profile, user)


__all__ = ["PROFILES", "PROTOCOL_MODULES", "ProtocolSpec", "RunFolder", "protocol_config", "protocol_module",
           "resolve_config", "run_protocol"]
