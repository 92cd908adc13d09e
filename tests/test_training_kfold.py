"""k-fold cross-training: fold assignment on disk, model i never sees fold i, seeds, resuming, the runner seam, several
families' trainings in one call to the runner."""

import dataclasses
import json
from functools import partial

import pytest
import torch

from xaitrust.data import stratified_kfold, stratified_sample
from xaitrust.errors import XaitrustError
from xaitrust.models import build_model
from xaitrust.training import SequentialRunner, TrainConfig, load_k_fold, shuffle_labels, train_k_fold
from xaitrust.training.kfold import plan_k_fold, train_k_folds
from xaitrust.training.trainer import dataset_fingerprint

factory = partial(build_model, "cnn", 1, 10, 8, channels=[4, 8], hidden=16)
CONFIG = TrainConfig(epochs=1, batch_size=64, seed=123)


@pytest.fixture(autouse=True, scope="module")
def _single_thread(one_torch_thread):
    with one_torch_thread():
        yield


@pytest.fixture
def digits(digits_data):
    train = digits_data[0]
    return train.subset(stratified_sample(train.y, 300, seed=0))


class RecordingRunner(SequentialRunner):
    """Notes the job names of each call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def run(self, jobs):
        jobs = list(jobs)
        self.calls.append([job.name for job in jobs])
        return super().run(jobs)


def test_each_model_trains_on_all_folds_but_its_own(digits, tmp_path):
    runner = RecordingRunner()
    result = train_k_fold(factory, digits, 3, CONFIG, tmp_path, seed=4, runner=runner, progress=False)
    assert runner.calls == [[f"{tmp_path.name}/fold-{i}" for i in range(3)]]  # named after the family's folder
    loaded = load_k_fold(tmp_path)
    assert torch.equal(loaded.folds, stratified_kfold(digits.y, 3, 4))
    document = json.loads((tmp_path / "folds.json").read_text())
    assert document["k"] == 3 and "stratified_by" not in document  # as written before that key existed
    for i in range(3):
        held_out = loaded.held_out(i)
        trained_on = torch.nonzero(loaded.folds != i).squeeze(1)
        assert len(held_out) + len(trained_on) == len(digits) and len(held_out) == 100
        key = json.loads((tmp_path / f"fold-{i}" / "state.json").read_text())["key"]
        assert key["train"] == dataset_fingerprint(digits.subset(trained_on))  # exactly the other folds' samples
        assert key["val"] == dataset_fingerprint(digits.subset(held_out))
        assert key["config"]["seed"] == 4 + i
        assert torch.equal(loaded.models[i](digits.x), result.models[i](digits.x))
    assert not torch.equal(result.models[0].body.fc2.weight, result.models[1].body.fc2.weight)


def test_folds_can_follow_other_labels_than_the_trained_ones(digits, tmp_path):
    # A label-shuffled family is split on the clean labels, so it shares the clean family's folds.
    shuffled = dataclasses.replace(digits, y=shuffle_labels(digits.y, 0.3, seed=0, num_classes=10))
    runner = RecordingRunner()
    result = train_k_fold(factory, shuffled, 3, CONFIG, tmp_path, seed=4, runner=runner, progress=False,
                          stratify_by=digits.y)
    assert torch.equal(result.folds, stratified_kfold(digits.y, 3, 4))
    assert not torch.equal(result.folds, stratified_kfold(shuffled.y, 3, 4))
    with pytest.raises(XaitrustError, match="different stratified_by"):
        train_k_fold(factory, shuffled, 3, CONFIG, tmp_path, seed=4, runner=runner, progress=False)
    with pytest.raises(XaitrustError, match="one label per sample"):
        train_k_fold(factory, shuffled, 3, CONFIG, tmp_path, seed=4, runner=runner, stratify_by=digits.y[:5])


def test_rerun_reuses_finished_folds_and_rejects_other_settings(digits, tmp_path):
    first = train_k_fold(factory, digits, 2, CONFIG, tmp_path, seed=0, progress=False)
    again = train_k_fold(factory, digits, 2, CONFIG, tmp_path, seed=0, progress=False)
    assert all(result.reused for result in again.results)
    assert all(torch.equal(a.body.fc1.weight, b.body.fc1.weight) for a, b in zip(first.models, again.models))
    with pytest.raises(XaitrustError, match="different k"):
        train_k_fold(factory, digits, 3, CONFIG, tmp_path, seed=0, progress=False)
    with pytest.raises(XaitrustError, match="no folds.json"):
        load_k_fold(tmp_path / "nothing")


def test_families_trained_in_one_call_get_the_models_of_families_trained_one_by_one(digits, tmp_path):
    shuffled = dataclasses.replace(digits, y=shuffle_labels(digits.y, 0.3, seed=0, num_classes=10))
    families = {"clean": dict(dataset=digits, k=2), "shuffled": dict(dataset=shuffled, k=3, stratify_by=digits.y)}
    plans = [plan_k_fold(factory, config=CONFIG, out_dir=tmp_path / "together" / name, seed=4, progress=False, **args)
             for name, args in families.items()]
    # A plan records its folds and trains nothing.
    assert (tmp_path / "together" / "shuffled" / "folds.json").is_file()
    assert not (tmp_path / "together" / "clean" / "fold-0").exists()
    runner = RecordingRunner()
    together = train_k_folds(plans, runner)
    assert runner.calls == [["clean/fold-0", "clean/fold-1", "shuffled/fold-0", "shuffled/fold-1", "shuffled/fold-2"]]
    alone = [train_k_fold(factory, config=CONFIG, out_dir=tmp_path / "alone" / name, seed=4, progress=False, **args)
             for name, args in families.items()]
    for name, joint, single in zip(families, together, alone):
        assert joint.k == single.k == families[name]["k"] and torch.equal(joint.folds, single.folds)
        for file in ["folds.json", "folds.safetensors", *(f"fold-{i}/model.safetensors" for i in range(joint.k))]:
            assert (joint.directory / file).read_bytes() == (single.directory / file).read_bytes(), (name, file)
        for a, b in zip(joint.models, single.models):
            assert all(torch.equal(a.state_dict()[key], value) for key, value in b.state_dict().items())
