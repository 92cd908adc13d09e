"""Walking work in chunks (``xaitrust.chunks``): slices and pairs cover the work once and in order, sizes are checked,
chunked logits and explanations equal one call on everything, the model gets its own train/eval flags back."""

import numpy as np
import pytest
import torch
from torch import nn

from xaitrust import chunks
from xaitrust.chunks import batched_logits, chunk_slices, explain_in_chunks, num_chunks, pair_chunks
from xaitrust.errors import XaitrustError
from xaitrust.models import build_model
from xaitrust.validation import check_count

BAD_SIZES = [0, -3, 2.0, 1.5, True, "4", None]


def spans(total, size):
    return [(part.start, part.stop) for part in chunk_slices(total, size)]


def test_slices_cover_the_range_in_order_with_a_shorter_last_one():
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(8, 4) == [(0, 4), (4, 8)]
    assert num_chunks(10, 4) == 3 and num_chunks(8, 4) == 2


@pytest.mark.parametrize("total, size, expected", [(0, 5, []), (3, 100, [(0, 3)]), (3, 1, [(0, 1), (1, 2), (2, 3)])])
def test_slices_edge_cases(total, size, expected):
    assert spans(total, size) == expected
    assert num_chunks(total, size) == len(expected)


@pytest.mark.parametrize("size", BAD_SIZES)
def test_a_bad_size_is_refused_at_once(size):
    with pytest.raises(XaitrustError, match="batch_size must be a positive integer"):
        chunk_slices(10, size)  # before any iteration
    with pytest.raises(XaitrustError, match="batch_size must be a positive integer"):
        pair_chunks(2, 3, size)
    with pytest.raises(XaitrustError, match="steps must be a positive integer"):
        check_count(size, "steps")


def test_numpy_integers_are_sizes():
    assert check_count(np.int64(7), "steps") == 7 and type(check_count(np.int64(7), "steps")) is int
    assert spans(5, np.int32(2)) == [(0, 2), (2, 4), (4, 5)]


def test_pairs_are_item_major_and_each_comes_once():
    parts = list(pair_chunks(3, 4, 5))
    assert [len(items) for items, _ in parts] == [5, 5, 2]
    items = torch.cat([items for items, _ in parts])
    points = torch.cat([points for _, points in parts])
    assert items.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    assert points.tolist() == [0, 1, 2, 3] * 3
    assert items.dtype == points.dtype == torch.long


@pytest.mark.parametrize("n_items, n_per_item", [(0, 4), (3, 0)])
def test_no_pairs_no_chunks(n_items, n_per_item):
    assert list(pair_chunks(n_items, n_per_item, 2)) == []


def test_pairs_are_made_on_the_given_device():
    items, points = next(pair_chunks(2, 2, 10, device="meta"))
    assert items.device.type == points.device.type == "meta"


def flags(model: nn.Module) -> list[bool]:
    return [module.training for module in model.modules()]


@pytest.fixture
def cnn():
    return build_model("cnn", 1, 10, 28)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 100])
def test_logits_equal_one_forward_pass_of_everything(cnn, batch_size):
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        whole = cnn.eval()(x)
    cnn.train()
    chunked = batched_logits(cnn, x, batch_size)
    torch.testing.assert_close(chunked, whole)  # a different batch size may change the kernels' last bits
    if batch_size >= len(x):
        assert torch.equal(chunked, whole)
    assert not chunked.requires_grad


def test_logits_run_in_eval_mode_and_give_each_module_its_flag_back():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Dropout(0.5), nn.BatchNorm1d(3)).train()
    model[3].eval()  # frozen batch norm inside a training model
    before = flags(model)
    during = []
    model.register_forward_pre_hook(lambda module, inputs: during.append(flags(module)))
    batched_logits(model, torch.rand(5, 1, 2, 2), 2)
    assert len(during) == 3 and all(not any(seen) for seen in during)
    assert flags(model) == before


def test_logits_move_chunks_to_the_device_and_stay_there():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).to("meta")
    logits = batched_logits(model, torch.rand(5, 1, 2, 2), 2, device="meta")
    assert logits.shape == (5, 3) and logits.device.type == "meta"


def test_logits_of_no_images_have_the_model_shape(cnn):
    assert batched_logits(cnn, torch.rand(0, 1, 28, 28), 4).shape == (0, 10)


def test_logits_refuse_a_bad_batch_size(cnn):
    with pytest.raises(XaitrustError, match="batch_size must be a positive integer; got 0"):
        batched_logits(cnn, torch.rand(2, 1, 28, 28), 0)


class RecordingExplainer:
    """Attributions ``x * (target + 1)``, one per image; records the size of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, x, target, output):
        self.calls.append((len(x), output))
        return x * (target.reshape(-1, 1, 1, 1) + 1)


def test_explanations_in_chunks_equal_one_call_on_everything():
    x, target = torch.rand(10, 2, 3, 3), torch.arange(10) % 3
    explainer = RecordingExplainer()
    attributions = explain_in_chunks(explainer, None, x, target, "probability", 4)
    assert torch.equal(attributions, RecordingExplainer()(None, x, target, "probability"))
    assert explainer.calls == [(4, "probability"), (4, "probability"), (2, "probability")]


def test_each_chunk_is_reduced_with_its_own_inputs():
    x, target = torch.rand(5, 2, 3, 3), torch.zeros(5, dtype=torch.long)
    seen = []

    def reduce(attributions, inputs):
        seen.append(len(inputs))
        assert torch.equal(attributions, inputs)  # target 0: the attributions are the inputs
        return attributions.sum(dim=1)

    maps = explain_in_chunks(RecordingExplainer(), None, x, target, "logit", 2, reduce=reduce)
    assert torch.equal(maps, x.sum(dim=1)) and seen == [2, 2, 1]


def test_progress_bar_is_optional(monkeypatch):
    bars = []

    def recording_tqdm(iterable, **options):
        bars.append(options)
        return iterable

    monkeypatch.setattr(chunks, "tqdm", recording_tqdm)
    x, target = torch.rand(5, 1, 2, 2), torch.zeros(5, dtype=torch.long)
    quiet = explain_in_chunks(RecordingExplainer(), None, x, target, "logit", 2)
    assert bars == []
    shown = explain_in_chunks(RecordingExplainer(), None, x, target, "logit", 2, progress="explain it")
    assert torch.equal(quiet, shown)
    assert bars == [{"total": 3, "desc": "explain it", "leave": False, "unit": "batch"}]


def test_explanations_refuse_a_bad_batch_size():
    with pytest.raises(XaitrustError, match="batch_size must be a positive integer"):
        explain_in_chunks(RecordingExplainer(), None, torch.rand(2, 1, 2, 2), torch.zeros(2), "logit", -1)
