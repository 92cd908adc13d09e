"""Objects a user names by ``path/to/file.py:Name``: their own model class, explainer or metric.

The file is imported as a module of its own (under a name derived from its resolved path, so two files with the
same name do not clash and importing the same file twice returns the same module); ``Name`` may be dotted
(``file.py:Outer.Inner``). Importing a file runs its code: name only files you trust, as you would ``import`` them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from .errors import XaitrustError

SEPARATOR = ":"


def is_file_reference(text) -> bool:
    """Whether ``text`` has the form ``path/to/file.py:Name``."""
    if not isinstance(text, str) or SEPARATOR not in text:
        return False
    path, _, name = text.rpartition(SEPARATOR)
    return path.endswith(".py") and bool(name)


def split_file_reference(text: str) -> tuple[Path, str]:
    """``(path, name)`` of ``path/to/file.py:Name``, or a clear error naming the expected form."""
    if not is_file_reference(text):
        raise XaitrustError(f"{text!r} is not of the form path/to/file.py:Name")
    path, _, name = text.rpartition(SEPARATOR)
    return Path(path), name


def file_label(text: str) -> str:
    """A name fit for a file name: ``stem.Name`` for ``path/to/stem.py:Name``, else ``text`` unchanged."""
    if not is_file_reference(text):
        return text
    path, name = split_file_reference(text)
    return f"{path.stem}.{name}"


def load_from_file(text: str, what: str = "object"):
    """The object ``Name`` defined in ``path/to/file.py`` (``text = "path/to/file.py:Name"``).

    ``what`` names the kind of object in error messages ("model", "metric", "explainer"). Raises ``XaitrustError``
    when the file is missing, fails to import (the error is quoted), or defines no such name.
    """
    path, name = split_file_reference(text)
    module = _import_file(path, what)
    value = module
    for part in name.split("."):
        if not hasattr(value, part):
            defined = sorted(n for n in vars(module) if not n.startswith("_"))
            raise XaitrustError(
                f"{path} defines no {what} named {name!r}; names it defines: {', '.join(defined) or 'none'}"
            )
        value = getattr(value, part)
    return value


#: The name of the module of a user's file starts with this, then a hash of its resolved path.
USER_MODULE_PREFIX = "xaitrust_user_"


def user_modules() -> list:
    """The modules imported from the user's files so far (``load_from_file``): what a process that unpickles the
    user's objects (e.g. a Ray worker) cannot import by name, so they are sent by value."""
    return [module for name, module in list(sys.modules.items()) if name.startswith(USER_MODULE_PREFIX)]


def _import_file(path: Path, what: str):
    path = path.expanduser()
    if not path.is_file():
        raise XaitrustError(f"{what} file {path} does not exist (expected path/to/file.py:Name)")
    resolved = path.resolve()
    module_name = USER_MODULE_PREFIX + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise XaitrustError(f"{path} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling-free introspection look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's code failed: say where, keep the cause
        del sys.modules[module_name]
        raise XaitrustError(f"importing {what} file {path} failed: {type(error).__name__}: {error}") from error
    return module
