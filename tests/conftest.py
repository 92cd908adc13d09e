"""Shared fixtures: small deterministic models and data, single-threaded torch for reproducible timings."""

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def one_torch_thread():
    """A context manager running its block on one torch thread. On a busy 2-core machine, training a small CNN on one
    thread is many times faster than on two (the threads wait on each other)."""
    import contextlib

    @contextlib.contextmanager
    def single_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    return single_thread


@pytest.fixture(scope="session")
def fashion_quick_cache(tmp_path_factory):
    """Cache folder (one per test session) holding the ``quick``-profile Fashion-MNIST ``cnn`` model."""
    return tmp_path_factory.mktemp("xaitrust-cache")


@pytest.fixture(scope="session")
def fashion_quick_model(fashion_quick_cache, one_torch_thread):
    """``(model, test_dataset)``: the ``cnn`` trained with the ``quick`` profile (6000 Fashion-MNIST training images,
    2 epochs, about 83% test accuracy), in eval mode, and the full 10000-image Fashion-MNIST test split.

    Trained once per session, on one torch thread.
    """
    from xaitrust.data import load_dataset
    from xaitrust.training import get_trained_model

    with one_torch_thread():
        result = get_trained_model(cache_dir=fashion_quick_cache, profile="quick", progress=False)
    return result.model, load_dataset("fashion-mnist", split="test")


@pytest.fixture(scope="session")
def digits_data():
    """``(train, test)``: scikit-learn's 8x8 digits, 1437 / 360 images, 10 classes (loads in well under a second)."""
    from xaitrust.data import load_dataset

    return load_dataset("digits", split="train"), load_dataset("digits", split="test")


@pytest.fixture(scope="session")
def run_smoke(tmp_path_factory, one_torch_thread):
    """``run_smoke(protocol) -> (out, report, seconds)``: ``protocol``'s smoke profile, run on one torch thread into a
    fresh run folder and timed, once per session: later calls return the same run.

    Tests may read the run folder and resume the run in it (a rerun with the same config reuses every finished piece),
    but must not change or delete its files; a test that needs that, or a run of its own, makes its own run."""
    import time

    from xaitrust.protocols import run_protocol

    runs = {}

    def run(protocol: str):
        if protocol not in runs:
            out = tmp_path_factory.mktemp(protocol) / "run"
            began = time.perf_counter()
            with one_torch_thread():
                report = run_protocol(protocol, profile="smoke", out=out)
            runs[protocol] = out, report, time.perf_counter() - began
        return runs[protocol]

    return run
