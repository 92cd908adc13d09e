"""Fashion-MNIST (real files and IDX files built here), digits, the dataset registry and ``xaitrust datasets``."""

import gzip

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.datasets import load_digits

from xaitrust.cli import cli
from xaitrust.data import available_datasets, load_dataset
from xaitrust.data import fashion_mnist
from xaitrust.data.idx import write_idx_gz
from xaitrust.errors import DatasetNotFoundError, XaitrustError

REAL = fashion_mnist.find_fashion_mnist()
needs_real = pytest.mark.skipif(REAL is None, reason="Fashion-MNIST files are not installed")


def write_fashion(folder, n_train=12, n_test=5, seed=0):
    """Four small valid IDX files in ``folder``; returns the (images, labels) written for the train split."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        images_name, labels_name = fashion_mnist.FILES[split]
        write_idx_gz(folder / images_name, images)
        write_idx_gz(folder / labels_name, labels)
        written[split] = (images, labels)
    return written


@pytest.fixture(scope="module")
def real_train():
    return load_dataset("fashion-mnist", split="train")


@needs_real
def test_real_fashion_mnist_train(real_train):
    assert real_train.x.shape == (60000, 1, 28, 28)
    assert real_train.x.dtype == torch.float32 and real_train.y.dtype == torch.int64
    assert real_train.x.min().item() == 0.0 and real_train.x.max().item() == 1.0
    assert torch.equal(torch.bincount(real_train.y), torch.full((10,), 6000))
    assert real_train.classes[0] == "T-shirt/top" and real_train.classes[9] == "Ankle boot"
    assert 0.25 < real_train.mean.item() < 0.32  # Fashion-MNIST's published mean is 0.286


@needs_real
def test_real_fashion_mnist_test_split_and_limit():
    test = load_dataset("fashion-mnist", split="test")
    assert test.x.shape == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(test.y), torch.full((10,), 1000))
    small = load_dataset("fashion-mnist", split="test", limit=50)
    assert torch.equal(torch.bincount(small.y), torch.full((10,), 5))
    assert small.split == "test" and small.source == str(REAL)


def test_small_idx_files_load_exactly(tmp_path):
    written = write_fashion(tmp_path)
    train = load_dataset("fashion-mnist", root=tmp_path)
    images, labels = written["train"]
    assert train.x.shape == (12, 1, 28, 28)
    assert torch.equal((train.x[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert train.y.tolist() == labels.tolist()
    assert len(load_dataset("fashion-mnist", root=tmp_path, split="test")) == 5


def test_environment_variable_with_subfolder(tmp_path, monkeypatch):
    write_fashion(tmp_path / "fashion-mnist", n_train=7)
    monkeypatch.setenv("XAITRUST_DATA", str(tmp_path))
    train = load_dataset("fashion-mnist")
    assert len(train) == 7 and train.source == str(tmp_path / "fashion-mnist")


def test_wrong_magic_number_names_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:  # header of a labels file where images are expected
        handle.write(np.array([2049, 12], dtype=">u4").tobytes() + bytes(12))
    with pytest.raises(XaitrustError, match=r"train-images-idx3-ubyte\.gz has IDX magic number 2049, expected 2051"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_truncated_payload_names_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as handle:  # header says 12 images, only 11 follow
        handle.write(np.array([2051, 12, 28, 28], dtype=">u4").tobytes() + bytes(11 * 784))
    with pytest.raises(XaitrustError, match=r"train-images-idx3-ubyte\.gz holds 8624 bytes .* \(9408 bytes\)"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_truncated_gzip_stream_and_short_header(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(XaitrustError, match=r"train-labels-idx1-ubyte\.gz is not a readable gzip file"):
        load_dataset("fashion-mnist", root=tmp_path)
    with gzip.open(path, "wb") as handle:
        handle.write(np.array([2049], dtype=">u4").tobytes())
    with pytest.raises(XaitrustError, match=r"train-labels-idx1-ubyte\.gz is truncated: 4 bytes"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_mismatched_image_and_label_counts(tmp_path):
    write_fashion(tmp_path)
    write_idx_gz(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(XaitrustError, match=r"holds 5 images but .*t10k-labels-idx1-ubyte\.gz holds 4 labels"):
        load_dataset("fashion-mnist", root=tmp_path, split="test")


def test_wrong_image_size_and_label_range(tmp_path):
    write_fashion(tmp_path)
    write_idx_gz(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 8, 8), dtype=np.uint8))
    with pytest.raises(XaitrustError, match=r"images of size \(8, 8\)"):
        load_dataset("fashion-mnist", root=tmp_path, split="test")
    write_idx_gz(tmp_path / "train-labels-idx1-ubyte.gz", np.full(12, 10, dtype=np.uint8))
    with pytest.raises(XaitrustError, match="holds label 10"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_missing_files_say_where_and_how(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset("fashion-mnist", root=tmp_path)
    message = str(error.value)
    assert str(tmp_path) in message and str(tmp_path / "fashion-mnist") in message
    assert "apt-get install dataset-fashion-mnist" in message and "XAITRUST_DATA" in message


def hide_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.delenv("XAITRUST_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "absent")


def test_available_datasets_reports_missing_fashion_mnist(tmp_path, monkeypatch):
    hide_fashion_mnist(monkeypatch, tmp_path)
    infos = {info.name: info for info in available_datasets()}
    assert set(infos) == {"fashion-mnist", "digits", "shapes", "folder", "npz"}
    assert not infos["fashion-mnist"].available
    assert "apt-get install dataset-fashion-mnist" in infos["fashion-mnist"].location
    assert infos["digits"].available and "scikit-learn" in infos["digits"].location


def test_digits_split_is_a_seeded_stratified_partition():
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    sklearn_digits = load_digits()
    assert train.x.shape == (1438, 1, 8, 8) and test.x.shape == (359, 1, 8, 8)
    assert train.x.max().item() == 1.0 and torch.equal(train.x * 16, (train.x * 16).round())
    full_counts = torch.from_numpy(np.bincount(sklearn_digits.target))
    assert torch.equal(torch.bincount(train.y) + torch.bincount(test.y), full_counts)
    total = (train.x.sum() + test.x.sum()).item()
    assert total == pytest.approx(sklearn_digits.images.sum() / 16, rel=1e-6)
    assert (torch.bincount(test.y) - torch.bincount(train.y) / 4).abs().max() <= 1
    assert torch.equal(load_dataset("digits", split="test").x, test.x)
    assert not torch.equal(load_dataset("digits", split="test", seed=1).x, test.x)


def test_registry_errors():
    with pytest.raises(XaitrustError, match="unknown dataset 'mnist'; available: fashion-mnist"):
        load_dataset("mnist")
    with pytest.raises(XaitrustError, match="split must be one of train, test; got 'validation'"):
        load_dataset("digits", split="validation")
    allowed = "allowed: n, size, channels, noise, seed, limit"
    with pytest.raises(XaitrustError, match=r"unknown option\(s\) \['colour'\] .* " + allowed):
        load_dataset("shapes", colour=True)
    with pytest.raises(XaitrustError, match="dataset 'digits' takes no root"):
        load_dataset("digits", root="/tmp")
    with pytest.raises(XaitrustError, match="limit must be a positive number of samples; got 0"):
        load_dataset("digits", limit=0)


def test_limit_keeps_a_stratified_subset_in_order():
    full = load_dataset("shapes", n=120, size=16)
    small = load_dataset("shapes", n=120, size=16, limit=30)
    assert torch.equal(torch.bincount(small.y), torch.full((6,), 5))
    positions = [next(i for i in range(len(full)) if torch.equal(full.x[i], image)) for image in small.x]
    assert positions == sorted(positions)
    assert len(load_dataset("shapes", n=120, size=16, limit=500)) == 120


@needs_real
def test_cli_lists_datasets_and_where_found():
    result = CliRunner().invoke(cli, ["datasets"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["fashion-mnist", "available"]
    assert str(REAL) in result.output and "shapes" in result.output and "npz" in result.output


def test_cli_shows_install_hint_when_missing(tmp_path, monkeypatch):
    hide_fashion_mnist(monkeypatch, tmp_path)
    result = CliRunner().invoke(cli, ["datasets"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split()[:2] == ["fashion-mnist", "missing"]
    assert "apt-get install dataset-fashion-mnist" in result.output
