"""The run folder: a changed config is refused; a resume with other library versions keeps the first record and warns."""

import json

import pytest

from xaitrust.errors import XaitrustError
from xaitrust.protocols import run_folder
from xaitrust.protocols.run_folder import LibraryVersionWarning, RunFolder


def test_a_changed_config_is_refused_and_names_the_key(tmp_path):
    RunFolder(tmp_path, {"epochs": 1, "seed": 0})
    with pytest.raises(XaitrustError, match="different config \\(keys epochs\\)"):
        RunFolder(tmp_path, {"epochs": 2, "seed": 0})


def test_resuming_with_other_library_versions_keeps_the_first_record_and_warns(tmp_path, monkeypatch, recwarn):
    RunFolder(tmp_path, {"seed": 0})
    first = json.loads((tmp_path / "versions.json").read_text())
    RunFolder(tmp_path, {"seed": 0})
    assert not [w for w in recwarn if w.category is LibraryVersionWarning]

    monkeypatch.setattr(run_folder, "library_versions", lambda: {**first, "torch": "0.0.1"})
    with pytest.warns(LibraryVersionWarning, match="other library versions \\(torch"):
        RunFolder(tmp_path, {"seed": 0})
    assert json.loads((tmp_path / "versions.json").read_text()) == first
