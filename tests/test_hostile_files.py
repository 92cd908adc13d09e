"""Files that cannot be trusted: crafted checkpoint metadata, stored paths that leave their folder, damaged run-folder
pieces and calibrators, killed writes, and data files that are not what they claim (non-UTF-8 TOML, truncated or
enormous images, object arrays)."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import xaitrust.models
from xaitrust.calibration import get_calibrator
from xaitrust.calibration.base import Calibrator
from xaitrust.data import load_dataset
from xaitrust.errors import XaitrustError
from xaitrust.io import atomic_write, read_tensors, write_bytes_checked, write_json_atomic, write_tensors_atomic
from xaitrust.models import build_model
from xaitrust.protocols.config import read_toml
from xaitrust.protocols.run_folder import DamagedFileWarning, RunFolder
from xaitrust.training import load_model, save_checkpoint
from xaitrust.training.state import read_training_state, restore_training_state, save_training_state


def edit_json(path, change):
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# --- checkpoints: the spec in model.json against the weights ----------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path):
    model = build_model("cnn", 1, 2, 8, channels=[4, 8], hidden=16)
    save_checkpoint(model, tmp_path / "model")
    return tmp_path / "model"


def test_a_crafted_huge_spec_is_refused_before_any_real_build(checkpoint, monkeypatch):
    # Built for real, fc2 alone would take 16 x 30,000,000 floats (1.9 GB) and conv2 100000 x 100000 x 3 x 3 floats.
    edit_json(checkpoint / "model.json", lambda d: d["spec"].update(
        num_classes=30_000_000, options={"channels": [100_000, 100_000], "hidden": 16, "dropout": 0.25}
    ))
    devices, build = [], xaitrust.models.build_model

    def recording_build(*args, **kwargs):
        devices.append(torch.get_default_device().type)
        return build(*args, **kwargs)

    monkeypatch.setattr(xaitrust.models, "build_model", recording_build)
    with pytest.raises(XaitrustError, match=r"model\.json describes a model of [\d,]+ values .* holds [\d,]+ bytes"):
        load_model(checkpoint)
    assert devices == ["meta"]


def test_a_spec_that_does_not_fit_the_weights_names_what_differs(checkpoint):
    edit_json(checkpoint / "model.json", lambda d: d["spec"]["options"].update(channels=[4, 4]))
    with pytest.raises(XaitrustError, match=r"model\.json .*body\.conv2\.weight has shape \[8, 4, 3, 3\] in the "
                                            r"weights but \[4, 4, 3, 3\] in the model"):
        load_model(checkpoint)


@pytest.mark.parametrize("spec, message", [
    ({"name": "cnn"}, "must be an object with name, in_channels"),
    ({"name": "nope", "in_channels": 1, "num_classes": 2, "image_size": 8}, r"model\.json: unknown model 'nope'"),
    ({"name": "cnn", "in_channels": 1, "num_classes": 2, "image_size": 8, "options": {"mean": [0.5]}},
     r"model\.json describes a model that cannot be built"),
])
def test_a_malformed_spec_is_an_error_naming_model_json(checkpoint, spec, message):
    edit_json(checkpoint / "model.json", lambda d: d.update(spec=spec))
    with pytest.raises(XaitrustError, match=message):
        load_model(checkpoint)


def test_damaged_weights_are_refused(checkpoint):
    flip_last_byte(checkpoint / "model.safetensors")
    with pytest.raises(XaitrustError, match=r"model\.safetensors is damaged"):
        load_model(checkpoint)


def test_a_user_architecture_that_cannot_be_built_on_meta_is_checked_after_a_real_build(tmp_path):
    source = tmp_path / "odd.py"
    source.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Odd(nn.Module):
            def __init__(self, width=3):
                super().__init__()
                self.scale = float(torch.ones(1).sum().item())  # needs real data: fails on the meta device
                self.head = nn.Linear(4, width)

            def forward(self, x):
                return self.head(x.flatten(1)) * self.scale
    """))
    model = build_model(f"{source}:Odd", 1, 3, 2)
    save_checkpoint(model, tmp_path / "model")
    assert torch.equal(load_model(tmp_path / "model").body.head.weight, model.body.head.weight)
    edit_json(tmp_path / "model" / "model.json", lambda d: d["spec"]["options"].update(width=5))
    with pytest.raises(XaitrustError, match=r"body\.head\.weight has shape \[3, 4\] in the weights but \[5, 4\]"):
        load_model(tmp_path / "model")


# --- training state: stored names stay in their folder ----------------------------------------------------------------


def save_state(directory, epoch):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    optimizer.step()
    save_training_state(directory, {"k": 1}, epoch, [{}] * epoch, model, optimizer, torch.Generator())
    return model, optimizer


@pytest.mark.parametrize(
    "stored", ["outside.safetensors", "../outside.safetensors", "ABSOLUTE", "sub/state-epoch1.safetensors"]
)
def test_a_stored_path_outside_the_folder_is_refused_and_nothing_outside_is_deleted(tmp_path, stored):
    directory, outside = tmp_path / "checkpoint", tmp_path / "outside.safetensors"
    outside.write_bytes(b"precious")
    save_state(directory, 1)
    stored = str(outside) if stored == "ABSOLUTE" else stored
    edit_json(directory / "state.json", lambda d: d.update(tensors=stored))
    with pytest.raises(XaitrustError, match="not a state-epoch<E>.safetensors file of its own folder; delete"):
        read_training_state(directory)
    save_state(directory, 2)
    assert outside.read_bytes() == b"precious"
    assert sorted(p.name for p in directory.iterdir()) == ["state-epoch2.safetensors", "state.json"]


def test_a_save_deletes_only_the_folders_own_older_state_files(tmp_path):
    for name in ("state-epoch7.safetensors", "notes.txt", "state-epoch1.safetensors.bak"):
        (tmp_path / name).write_text("x")
    save_state(tmp_path, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt", "state-epoch1.safetensors.bak", "state-epoch2.safetensors", "state.json"
    ]


def test_damaged_training_state_is_a_clear_error(tmp_path):
    model, optimizer = save_state(tmp_path, 1)
    document = read_training_state(tmp_path)
    flip_last_byte(tmp_path / "state-epoch1.safetensors")
    with pytest.raises(XaitrustError, match=r"cannot be restored \(.*is damaged.*\); delete .* to train from scratch"):
        restore_training_state(tmp_path, document, model, optimizer, torch.Generator())
    (tmp_path / "state.json").write_text('["not", "a", "state"]')
    with pytest.raises(XaitrustError, match="is not a training state"):
        read_training_state(tmp_path)


# --- run folders: damaged pieces are computed again -------------------------------------------------------------------


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


PIECES = {
    "tensors": ("cached_tensors", ".safetensors", lambda: {"a": torch.arange(6.0).reshape(2, 3)}),
    "table": ("cached_table", ".csv", lambda: pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})),
    "json": ("cached_json", ".json", lambda: {"rows": [1, 2, 3]}),
}


def same(a, b):
    if isinstance(a, dict) and all(isinstance(v, torch.Tensor) for v in a.values()):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return a.equals(b) if isinstance(a, pd.DataFrame) else a == b


@pytest.mark.parametrize("kind", PIECES)
@pytest.mark.parametrize("damage", [truncate, flip_last_byte])
def test_a_damaged_cached_piece_is_computed_again_with_a_warning(tmp_path, kind, damage):
    method, suffix, compute = PIECES[kind]
    calls = []

    def counted():
        calls.append(1)
        return compute()

    run = RunFolder(tmp_path, {"seed": 0})
    first = getattr(run, method)("piece", counted)
    path = tmp_path / "cache" / f"piece{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same(getattr(run, method)("piece", counted), first) and len(calls) == 1  # reused, silently
    damage(path)
    with pytest.warns(DamagedFileWarning, match=rf"{re.escape(str(path))} .*computing it again"):
        again = getattr(run, method)("piece", counted)
    assert same(again, first) and len(calls) == 2
    assert same(getattr(run, method)("piece", counted), first) and len(calls) == 2  # the rewritten piece is reused


def test_a_piece_without_its_checksum_is_not_trusted(tmp_path):
    run = RunFolder(tmp_path, {"seed": 0})
    run.cached_json("piece", lambda: {"a": 1})
    (tmp_path / "cache" / "piece.json.sha256").unlink()
    with pytest.warns(DamagedFileWarning, match="has no readable checksum file piece.json.sha256"):
        assert run.cached_json("piece", lambda: {"a": 2}) == {"a": 2}


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe", b"[1, 2]", b'{"torch": 3}'])
def test_a_damaged_versions_record_is_written_anew_with_a_warning(tmp_path, content):
    RunFolder(tmp_path, {"seed": 0})
    (tmp_path / "versions.json").write_bytes(content)
    with pytest.warns(DamagedFileWarning, match=r"versions\.json is damaged"):
        RunFolder(tmp_path, {"seed": 0})
    assert "torch" in json.loads((tmp_path / "versions.json").read_text())


def test_a_damaged_config_says_what_to_delete(tmp_path):
    RunFolder(tmp_path, {"seed": 0})
    (tmp_path / "config.toml").write_text("seed = ")
    with pytest.raises(XaitrustError, match=r"not valid TOML.*delete .*config\.toml to resume"):
        RunFolder(tmp_path, {"seed": 0})


# --- calibrators ------------------------------------------------------------------------------------------------------


@pytest.fixture
def saved_calibrator(tmp_path):
    logits, labels = torch.randn(64, 3) * 3, torch.randint(0, 3, (64,))
    return get_calibrator("temperature").fit(logits, labels).save(tmp_path / "calibrator")


@pytest.mark.parametrize("damage, message", [
    (lambda json_path: json_path.write_text('{"method": "temperature", "sett'), "is not valid JSON"),
    (lambda json_path: json_path.write_bytes(b"\xff\xfe"), "is not valid JSON"),
    (lambda json_path: json_path.write_text("[]"), "is not a saved calibrator"),
    (lambda json_path: edit_json(json_path, lambda d: d.update(settings={"bogus": 1})), "settings temperature does"),
    (lambda json_path: flip_last_byte(json_path.with_suffix(".safetensors")), r"calibrator\.safetensors is damaged"),
    (lambda json_path: write_tensors_atomic(json_path.with_suffix(".safetensors"), {"other_": torch.ones(1)}),
     r"holds tensors \['other_'\], not the temperature calibrator's learned temperature_"),
])
def test_a_damaged_calibrator_is_a_clear_error_saying_what_to_delete(saved_calibrator, damage, message):
    damage(saved_calibrator)
    with pytest.raises(XaitrustError, match=rf"{message}.*delete .*calibrator\.json and .*calibrator\.safetensors"):
        Calibrator.load(saved_calibrator)


# --- the atomic writer: permissions, killed writes, stale temporaries -------------------------------------------------


@pytest.fixture
def umask():
    def set_umask(value):
        previous.append(os.umask(value))

    previous = []
    yield set_umask
    if previous:
        os.umask(previous[0])


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    write_json_atomic(tmp_path / "a.json", {"a": 1})
    write_tensors_atomic(tmp_path / "t.safetensors", {"a": torch.ones(2)})
    write_bytes_checked(tmp_path / "b.csv", b"x\n1\n")
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {
        name: mode for name in ("a.json", "t.safetensors", "b.csv", "b.csv.sha256")
    }


def test_a_failed_write_leaves_neither_the_target_nor_a_temporary(tmp_path):
    def failing(path):
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.json", failing)
    assert list(tmp_path.iterdir()) == []


def test_a_killed_write_leaves_no_target_and_its_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "a.json"
    killed = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal
        from xaitrust.io import atomic_write

        def killed_halfway(path):
            path.write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)

        atomic_write({str(target)!r}, killed_halfway)
    """)])
    assert killed.wait() == -signal.SIGKILL
    [leftover] = tmp_path.iterdir()
    assert not target.exists() and re.fullmatch(rf"\.a\.json\.{killed.pid}-[0-9a-f]{{16}}\.tmp", leftover.name)

    alive = tmp_path / f".a.json.{os.getppid()}-{'0' * 16}.tmp"  # a write still under way in a running process
    others = [tmp_path / ".a.json.notmine.tmp", tmp_path / f".b.json.{killed.pid}-{'0' * 16}.tmp"]
    for path in (alive, *others):
        path.write_text("x")
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(tmp_path.iterdir()) == sorted([target, alive, *others])


def test_tensors_without_a_digest_are_read_unless_one_is_required(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(2)}, tmp_path / "plain.safetensors")
    assert torch.equal(read_tensors(tmp_path / "plain.safetensors")["a"], torch.ones(2))
    with pytest.raises(XaitrustError, match="holds no checksum"):
        read_tensors(tmp_path / "plain.safetensors", require_digest=True)


# --- data and config files --------------------------------------------------------------------------------------------


def test_a_non_utf8_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.toml").write_bytes(b"seed = 1\n# caf\xe9\n")
    with pytest.raises(XaitrustError, match=r"config\.toml is not UTF-8 text \(byte 0xe9 at offset 14\)"):
        read_toml(tmp_path / "config.toml")


def image_folder(root, size=8):
    """Two classes of two noisy RGB images (noise, so that the PNG data is not a few compressed bytes)."""
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / name / f"{i}.png")


def test_a_truncated_image_is_named(tmp_path):
    image_folder(tmp_path)
    broken = tmp_path / "dog" / "1.png"
    truncate(broken)
    with pytest.raises(XaitrustError, match=rf"cannot decode image {re.escape(str(broken))} \(image file is truncated"):
        load_dataset("folder", root=tmp_path)


@pytest.mark.parametrize("size", [8, 10])  # 64 pixels: Pillow warns; 100 pixels: Pillow refuses
def test_an_image_beyond_the_decompression_bomb_limit_is_named(tmp_path, monkeypatch, size):
    image_folder(tmp_path, size=size)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)
    with pytest.raises(XaitrustError, match=r"image .*cat.0\.png is too large to read safely \(Image size"):
        load_dataset("folder", root=tmp_path)


def test_an_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0, 1]), classes=np.array(["a", None], object))
    with pytest.raises(XaitrustError, match=r"cannot read array 'classes' of .*d\.npz \(Object arrays cannot be "
                                            r"loaded when allow_pickle=False\).*never Python objects"):
        load_dataset("npz", root=path)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(XaitrustError, match="holds a single array, not an .npz archive"):
        load_dataset("npz", root=tmp_path / "one.npy")
