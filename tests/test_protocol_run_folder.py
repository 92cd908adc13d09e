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


def test_names_never_leave_the_run_folder(tmp_path):
    import pandas as pd
    import pytest

    from xaitrust.errors import XaitrustError
    from xaitrust.protocols.run_folder import RunFolder

    run = RunFolder(tmp_path / "run", {"a": 1})
    table = pd.DataFrame({"value": [1.0]})
    run.cached_table(f"scores/{tmp_path}/mine.py:edges/uncalibrated", lambda: table)  # an absolute file reference
    assert list((tmp_path / "run" / "cache" / "scores").rglob("uncalibrated.csv"))
    assert not (tmp_path / "mine.py:edges").exists()
    with pytest.raises(XaitrustError, match="would leave the run folder"):
        run.cached_table("../../escaped", lambda: table)
    assert not (tmp_path / "escaped.csv").exists()


def test_a_finished_table_is_found_only_when_whole(tmp_path):
    import pandas as pd

    from xaitrust.protocols.run_folder import DamagedFileWarning

    run = RunFolder(tmp_path, {"seed": 0})
    assert run.finished_table("accuracy/a") is None
    table = pd.DataFrame({"value": [0.25, 1 / 3]})
    assert run.store_table("accuracy/a", table) is table
    pd.testing.assert_frame_equal(run.finished_table("accuracy/a"), table)
    assert run.cached_table("accuracy/a", lambda: pytest.fail("recomputed")).equals(table)
    path = tmp_path / "cache" / "accuracy" / "a.csv"
    path.write_text(path.read_text().replace("0.25", "0.5"))
    with pytest.warns(DamagedFileWarning, match="a.csv is damaged"):
        assert run.finished_table("accuracy/a") is None


def test_how_the_trainings_run_is_not_part_of_the_run(tmp_path):
    run = RunFolder(tmp_path, {"seed": 0, "executor": "ray", "ray_address": "auto"})
    assert run.config == {"seed": 0} and "executor" not in (tmp_path / "config.toml").read_text()
    RunFolder(tmp_path, {"seed": 0, "executor": "local", "ray_address": ""})  # the other executor resumes it
