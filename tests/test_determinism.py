"""Identical runs give identical numbers: the same config and seed give byte-identical results, whatever the timing,
the batch an image comes in, or an interruption of the run."""

import os
import random
import signal
import subprocess
import sys
import time
import warnings

import pytest
import torch

from xaitrust.explainers import get_explainer
from xaitrust.models import build_model
from xaitrust.perturb import batching
from xaitrust.perturb.orders import random_segment_ranks, ranks_from_maps

#: A small benchmark on the digits: trains for one epoch, then explains and scores 4 images (about 5 s a run).
CONFIG = """\
dataset = "digits"
calibration_size = 100
n_images = 4
explainers = ["saliency", "integrated-gradients", "kernelshap", "random"]
lipschitz_explainers = ["saliency"]
"""
BENCHMARK = (
    "import sys, torch; torch.set_num_threads(1); from xaitrust.protocols import run_protocol; "
    "run_protocol('benchmark', profile='smoke', config_file=sys.argv[1], out=sys.argv[2])"
)
#: Deletion curves with the automatic chunk size, printed as a digest with the chunk size; ``sys.argv[1]`` = "wild"
#: replaces the clock by random values first. 7 x 21 masked images leave a last chunk of 1 to 3 images for some chunk
#: sizes (16, 48, 73), whose logits differ in their last bits from those of larger batches.
MASKED = """\
import hashlib, random, sys, time, torch
torch.set_num_threads(1)
if sys.argv[1] == "wild":
    wild = random.Random(0)
    time.perf_counter = time.monotonic = time.time = time.process_time = lambda: wild.uniform(-1e6, 1e6)
from xaitrust.metrics import deletion
from xaitrust.models import build_model
from xaitrust.perturb.batching import auto_batch_size
torch.manual_seed(0)
model = build_model("cnn", 1, 10, 28).eval()
x = torch.rand(7, 1, 28, 28)
maps = torch.rand(7, 28, 28)
curves = deletion(model, x, maps, torch.arange(7), steps=20, batch_size=None, ties="random").curves
print(auto_batch_size(model, (1, 28, 28)), hashlib.sha256(curves.numpy().tobytes()).hexdigest())
"""


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def start_benchmark(tmp_path, out) -> subprocess.Popen:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    with open(tmp_path / f"{out.name}.log", "w") as log:
        return subprocess.Popen([sys.executable, "-c", BENCHMARK, str(config), str(out)], env=environment(),
                                stdout=log, stderr=subprocess.STDOUT)


def run_benchmark(tmp_path, name: str) -> bytes:
    """``results.csv`` of a complete run in a fresh process, in ``tmp_path / name``."""
    out = tmp_path / name
    process = start_benchmark(tmp_path, out)
    assert process.wait(timeout=300) == 0, (tmp_path / f"{name}.log").read_text()[-3000:]
    return (out / "results.csv").read_bytes()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``results.csv`` of an uninterrupted run."""
    return run_benchmark(tmp_path_factory.mktemp("reference"), "run")


def test_two_identical_benchmark_runs_give_byte_identical_results(reference, tmp_path):
    assert run_benchmark(tmp_path, "again") == reference


@pytest.mark.parametrize("trigger", ["models/model/*.safetensors", "cache/scores/*/*.csv"])
def test_a_run_killed_midway_and_rerun_gives_the_results_of_an_uninterrupted_one(reference, tmp_path, trigger):
    out = tmp_path / "run"
    process = start_benchmark(tmp_path, out)
    try:
        deadline = time.monotonic() + 300
        while not list(out.glob(trigger)) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(random.Random(trigger).uniform(0.0, 0.3))  # a seeded point after the first cached pieces
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert list(out.glob(trigger)) and not (out / "results.csv").exists()
    assert run_benchmark(tmp_path, "run") == reference


def masked_evaluation(mode: str) -> str:
    result = subprocess.run([sys.executable, "-c", MASKED, mode], env=environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_masked_evaluation_with_the_automatic_chunk_size_is_identical_in_fresh_processes():
    assert masked_evaluation("wild") == masked_evaluation("clock")  # the chunk size owes nothing to the clock


def test_automatic_chunk_size_does_not_read_the_clock(monkeypatch):
    expected = batching.auto_batch_size(build_model("cnn", 1, 10, 28), (1, 28, 28))
    wild = random.Random(1)
    for name in ("perf_counter", "monotonic", "time", "process_time"):
        monkeypatch.setattr(time, name, lambda: wild.uniform(-1e6, 1e6))
    assert batching.auto_batch_size(build_model("cnn", 1, 10, 28), (1, 28, 28)) == expected  # a new model: no cache
    per_sample = 4 * 28 * 28 + batching.activation_bytes_per_sample(build_model("cnn", 1, 10, 28), (1, 28, 28), "cpu")
    assert expected == batching.chunk_size(per_sample)


def tied_maps(n: int) -> torch.Tensor:
    """Maps with large ties: values rounded to five levels, as flat regions of real maps."""
    return (torch.rand(n, 12, 12) * 4).round()


@pytest.mark.parametrize("order", ["most-important-first", "least-important-first", "random"])
def test_random_tie_breaks_of_an_image_do_not_depend_on_its_batch(order):
    maps = tied_maps(5)
    maps[3] = 1.0  # a constant map: ranked at random whatever ``ties`` says
    for ties in ("random", "stable"):
        batch = ranks_from_maps(maps, order, seed=3, ties=ties)
        alone = torch.cat([ranks_from_maps(maps[b : b + 1], order, seed=3, ties=ties) for b in range(len(maps))])
        assert torch.equal(batch, alone)
        assert torch.equal(batch[1:3], ranks_from_maps(maps[[2, 1]], order, seed=3, ties=ties)[[1, 0]])
    random_ties = ranks_from_maps(maps, order, seed=3, ties="random")
    assert not torch.equal(random_ties, ranks_from_maps(maps, order, seed=4, ties="random"))


def test_random_superpixel_orders_of_an_image_do_not_depend_on_its_batch():
    segments = torch.stack([torch.arange(36).reshape(6, 6) // k for k in (1, 2, 4, 9)])  # 36, 18, 9 and 4 segments
    images = torch.rand(4, 3, 6, 6)
    batch, counts = random_segment_ranks(segments, n_orders=3, seed=5, seed_from=images)
    alone = [random_segment_ranks(segments[b : b + 1], n_orders=3, seed=5, seed_from=images[b : b + 1])
             for b in range(4)]
    assert torch.equal(batch, torch.cat([ranks for ranks, _ in alone]))
    assert torch.equal(counts, torch.cat([n for _, n in alone]))
    # images sharing their segment ids (a patch grid) still get their own orders from their pixels
    grid = segments[:1].expand(2, -1, -1)
    shared, _ = random_segment_ranks(grid, seed=5, seed_from=images[:2])
    assert not torch.equal(shared[0], shared[1])
    # more orders keep the first ones
    assert torch.equal(random_segment_ranks(segments, n_orders=5, seed=5, seed_from=images)[0].reshape(4, 5, -1)[:, :3],
                       batch.reshape(4, 3, -1))


class PatchModel(torch.nn.Module):
    num_classes = 2

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(256, 2)

    def forward(self, x):
        return self.linear(x.flatten(1))


RANK_DEFICIENT = [
    ("kernelshap", {}, 8, 30),  # 16 patches: coalitions in complementary pairs need at least 2 (16 - 1)
    ("lime", {"ridge": 0.0}, 8, 17),
]


@pytest.mark.parametrize("name, options, n_samples, needed", RANK_DEFICIENT, ids=[r[0] for r in RANK_DEFICIENT])
def test_a_rank_deficient_surrogate_warns_once_naming_the_images_and_the_fix(name, options, n_samples, needed):
    x = torch.rand(3, 1, 16, 16)
    explainer = get_explainer(name, n_samples=n_samples, features="patches", patch_size=4, **options)
    with pytest.warns(UserWarning, match="rank deficient") as caught:
        explainer(PatchModel(), x, 0)
    messages = [str(w.message) for w in caught if "rank deficient" in str(w.message)]
    assert len(messages) == 1
    assert "3 of 3 images (batch positions 0, 1, 2; up to 16 feature groups)" in messages[0]
    assert f"Raise n_samples well above {needed}, the fewest coalitions that can determine 16 groups" in messages[0]
    enough = get_explainer(name, n_samples=4 * needed, features="patches", patch_size=4, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enough(PatchModel(), x, 0)


def test_lime_with_a_ridge_is_never_rank_deficient():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_explainer("lime", n_samples=8, features="patches", patch_size=4)(PatchModel(), torch.rand(2, 1, 16, 16), 0)


def test_identical_maps_share_their_tie_breaks_and_distinct_ones_do_not():
    maps = tied_maps(1).expand(2, -1, -1).clone()
    ranks = ranks_from_maps(maps, seed=0, ties="random")
    assert torch.equal(ranks[0], ranks[1])
    other = ranks_from_maps(torch.cat([maps[:1], maps[:1] + 1e-3 * (maps[:1] == 0)]), seed=0, ties="random")
    assert not torch.equal(other[0], other[1])
