"""The ROAR/KAR protocol: the masking replaces exactly the right pixels by the channel mean and pixels are ranked by
absolute attribution; the smoke profile writes a complete run folder (an accuracy per method x mode x fraction x
seed, a report with findings) and resumes without retraining; bad fractions and methods are named."""

import json
import time

import pandas as pd
import pytest
import torch

from xaitrust.data import ImageDataset
from xaitrust.errors import XaitrustError
from xaitrust.perturb.orders import ranks_from_maps
from xaitrust.protocols import RunFolder, run_protocol
from xaitrust.protocols.common import load_splits
from xaitrust.protocols.config import resolve_config
from xaitrust.protocols.roar import SPEC, modified_images, pixel_ranks, spread_summary
from xaitrust.report.roar import QUESTION, accuracy_table, findings, headline, versus_random
from xaitrust.testing.oracles import LinearModel
from xaitrust.training import evaluate_accuracy, load_model

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def top_pixels(maps: torch.Tensor, n: int) -> torch.Tensor:
    """Bool ``(B, H, W)``: the ``n`` pixels of each map with the highest values."""
    order = maps.flatten(1).argsort(dim=1, descending=True)[:, :n]
    return torch.zeros(maps.flatten(1).shape, dtype=torch.bool).scatter_(1, order, True).reshape(maps.shape)


def test_roar_replaces_the_top_ranked_pixels_by_the_channel_mean_and_kar_the_others():
    maps = torch.stack([torch.arange(12.0), torch.randperm(12).float()]).reshape(2, 3, 4)
    ranks = ranks_from_maps(maps)
    x = torch.rand(2, 2, 3, 4)
    mean = torch.tensor([0.25, 0.75]).reshape(1, 2, 1, 1)
    for fraction in FRACTIONS:
        replaced = round(fraction * 12)
        top = top_pixels(maps, replaced)[:, None]
        roar = modified_images(x, ranks, fraction, "roar", "mean", mean.flatten())
        torch.testing.assert_close(roar, torch.where(top, mean, x))
        kept = top_pixels(maps, 12 - replaced)[:, None]
        kar = modified_images(x, ranks, fraction, "kar", "mean", mean.flatten())
        torch.testing.assert_close(kar, torch.where(kept, x, mean))
        # KAR at 1 - f keeps exactly the pixels ROAR at f replaces.
        kar_complement = modified_images(x, ranks, 1 - fraction, "kar", "mean", mean.flatten())
        torch.testing.assert_close(kar_complement, torch.where(top, x, mean))


def test_pixels_are_ranked_by_absolute_attribution_summed_over_channels(tmp_path):
    # A linear model's gradient is its weight: the largest |w| summed over the channels ranks first, whatever its sign.
    weight = torch.randn(3, 4, 4)
    weight[:, 2, 1] = torch.tensor([-4.0, -3.0, 2.0])
    data = ImageDataset(torch.rand(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ["a", "b"], split="test")
    config = resolve_config(SPEC, "smoke", {"target": "label", "ties": "stable"})
    ranks = pixel_ranks(RunFolder(tmp_path, config), "sensitivity", LinearModel(weight), data, config)
    expected = weight.abs().sum(dim=0).flatten().argsort(descending=True)
    assert ranks[0, 0, 2, 1] == 0
    for image in range(2):
        assert torch.equal(ranks[image].flatten().argsort(), expected)


def test_ties_are_broken_apart_from_the_random_rankings_permutations(tmp_path):
    # A zero model's saliency is all ties: with random tie breaks its order is a random permutation, which must not be
    # the random baseline's permutation of the same image.
    data = ImageDataset(torch.rand(4, 1, 6, 6), torch.zeros(4, dtype=torch.long), ["a", "b"], split="test")
    config = resolve_config(SPEC, "smoke", {"target": "label", "ties": "random"})
    run = RunFolder(tmp_path, config)
    tied = pixel_ranks(run, "sensitivity", LinearModel(torch.zeros(1, 6, 6)), data, config)
    random = pixel_ranks(run, "random", None, data, config)
    assert not torch.equal(tied, random)
    for image in range(4):
        assert sorted(tied[image].flatten().tolist()) == list(range(36))  # still a full ranking


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, one_torch_thread):
    out = tmp_path_factory.mktemp("roar") / "run"
    began = time.perf_counter()
    with one_torch_thread():
        report = run_protocol("roar", profile="smoke", out=out)
    return out, report, time.perf_counter() - began


def test_smoke_run_records_an_accuracy_per_method_mode_fraction_and_seed(smoke_run):
    out, report, _ = smoke_run
    config = resolve_config(SPEC, "smoke")
    assert (out / "config.toml").is_file() and report == out / "report.html"
    results = pd.read_csv(out / "results.csv")
    assert set(results["metric"]) == {"accuracy"}
    keys = set(zip(results["method"], results["mode"], results["fraction"], results["seed"]))
    assert keys == {(method, mode, fraction, seed) for method in config["methods"] for mode in config["modes"]
                    for fraction in [0.0, *config["fractions"]] for seed in range(config["seeds"])}
    assert len(results) == len(keys)
    assert results["value"].between(0, 1).all()

    # The 0% point is the unmodified model's test accuracy; every other point is measured on the modified test set.
    train, test = load_splits(config)
    unmodified = load_model(out / "models" / "unmodified" / "seed0")
    assert (results.loc[results["fraction"] == 0, "value"] == evaluate_accuracy(unmodified, test)).all()
    retrained = load_model(out / "models" / "random" / "roar-0.9" / "seed0")
    ranks = pixel_ranks(RunFolder(out, config), "random", unmodified, test, config)
    masked = ImageDataset(modified_images(test.x, ranks, 0.9, "roar", "mean", train.mean), test.y, test.classes)
    point = results.query("method == 'random' and mode == 'roar' and fraction == 0.9")["value"].item()
    assert point == pytest.approx(evaluate_accuracy(retrained, masked))

    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == len(keys) // config["seeds"]
    assert (summary["min"] <= summary["mean"]).all() and (summary["mean"] <= summary["max"]).all()
    page = report.read_text()
    assert page.count("<li>") >= 4 and "ROAR: saliency is below the random ranking at" in page
    # The page opens with the question; with one seed the answer says the run does not resolve it.
    stored = json.loads((out / "summary.json").read_text())
    assert stored["question"] == QUESTION and stored["answer"] == headline(summary, config).answer
    assert [row["mean"] for row in stored["summary"]] == pytest.approx(summary["mean"].tolist())
    assert [(row["mode"], row["method"]) for row in stored["versus_random"]] == [("roar", "saliency"),
                                                                                ("kar", "saliency")]
    assert page.index("<div class='headline'>") < page.index("What this shows")
    assert all(line.startswith(f"{mode}: not resolved with one seed per setting")
               for line, mode in zip(stored["answer"], ("ROAR", "KAR")))
    assert {"roar.png", "kar.png"} <= {path.name for path in (out / "figures").iterdir()}


def test_rerun_resumes_without_retraining(smoke_run, one_torch_thread):
    out, _, _ = smoke_run
    checkpoints = sorted((out / "models").rglob("model.safetensors"))
    assert len(checkpoints) == 1 + 2 * 2 * 3  # unmodified + methods x modes x fractions, one seed
    stamps = [path.stat().st_mtime_ns for path in checkpoints]
    with one_torch_thread():
        run_protocol("roar", profile="smoke", out=out)
    assert [path.stat().st_mtime_ns for path in checkpoints] == stamps


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("fractions = [0.5, 1.0]", "'fractions' must list fractions strictly between 0 and 1"),
        ("fractions = [0.0, 0.5]", "'fractions' must list fractions strictly between 0 and 1"),
        ("fractions = [0.5, 0.3]", "'fractions' must increase strictly"),
        ("seeds = 0", "'seeds'"),
        ('methods = ["saliency", "gradcam+"]', r"'methods'.*'gradcam\+'"),
    ],
)
def test_bad_config_names_the_key(tmp_path, setting, message):
    config_file = tmp_path / "roar.toml"
    config_file.write_text(setting + "\n")
    with pytest.raises(XaitrustError, match=message):
        run_protocol("roar", profile="smoke", config_file=config_file, out=tmp_path / "run")


def hand_made_summary(accuracies: dict, seeds: int) -> pd.DataFrame:
    """The ROAR summary of ``accuracies[method] = [per-seed accuracies at fraction 0, 0.1, 0.5, 0.9]``."""
    rows = [{"metric": "accuracy", "model": "net", "method": method, "mode": "roar", "fraction": fraction,
             "seed": seed, "value": value}
            for method, per_fraction in accuracies.items()
            for fraction, values in zip((0.0, 0.1, 0.5, 0.9), per_fraction)
            for seed, value in zip(range(seeds), values)]
    return spread_summary(pd.DataFrame(rows))


def three_seed_summary():
    """A ROAR summary over 3 seeds and its config: saliency below random by the mean at 0.1 and 0.5, but with the
    seed ranges apart only at 0.5 (above it at 0.9); vargrad below random with separate seed ranges everywhere."""
    base = [0.9, 0.92, 0.91]
    summary = hand_made_summary({
        "saliency": [base, [0.80, 0.86, 0.83], [0.50, 0.52, 0.54], [0.40, 0.42, 0.44]],
        "vargrad": [base, [0.60, 0.62, 0.64], [0.30, 0.32, 0.34], [0.10, 0.12, 0.14]],
        "random": [base, [0.84, 0.85, 0.86], [0.70, 0.71, 0.72], [0.30, 0.31, 0.32]],
    }, seeds=3)
    return summary, {"seeds": 3, "methods": ["saliency", "vargrad", "random"], "modes": ["roar"]}


def test_findings_state_at_how_many_fractions_a_method_beats_random_and_call_only_clear_wins_consistent():
    summary, config = three_seed_summary()
    lines = findings(summary, config)
    assert ("ROAR: saliency is below the random ranking at 2 of 3 fractions by the mean accuracy (at 1 of 3 with "
            "non-overlapping seed ranges).") in lines
    assert ("ROAR: vargrad is below the random ranking at 3 of 3 fractions by the mean accuracy (at 3 of 3 with "
            "non-overlapping seed ranges).") in lines
    verdict = [line for line in lines if "consistently" in line]
    assert len(verdict) == 1
    assert verdict[0].startswith("ROAR: 1 of 2 methods beat the random ranking consistently, i.e. below it with "
                                 "non-overlapping seed ranges at every fraction: vargrad (Hooker et al.")
    assert "saliency" not in verdict[0] and not any("at every fraction: saliency" in line for line in lines)


def test_findings_with_one_seed_claim_no_consistent_win():
    summary = hand_made_summary({"vargrad": [[0.9], [0.5], [0.3], [0.1]], "random": [[0.9], [0.8], [0.7], [0.6]]},
                                seeds=1)
    lines = findings(summary, {"seeds": 1, "methods": ["vargrad", "random"], "modes": ["roar"]})
    assert ("ROAR: vargrad is below the random ranking at 3 of 3 fractions by the mean accuracy (one seed, no spread "
            "measured).") in lines
    assert any(line.startswith("ROAR: with one seed per setting no method can be shown to beat the random ranking "
                               "consistently") for line in lines)
    assert not any("1 of 1 methods" in line for line in lines)


def test_headline_names_the_methods_that_beat_random_with_the_intervals_of_the_summary():
    summary, config = three_seed_summary()
    against = versus_random(summary, config).set_index("method")
    assert against.loc["vargrad", "consistently"] and not against.loc["saliency", "consistently"]
    answer = headline(summary, config)
    assert answer.question == QUESTION
    (line,) = answer.answer
    assert line.startswith("ROAR: vargrad beats the random ranking, below it with seed ranges apart at every "
                           "fraction. With 90% of the pixels replaced: vargrad ")
    last = summary[summary["fraction"] == 0.9].set_index("method")
    for method in ("vargrad", "random"):
        mean, half = last.loc[method, "mean"], last.loc[method, "ci95"]
        assert f"{method} {mean:.3f} [{mean - half:.3f}, {mean + half:.3f}]" in line
    assert line.endswith("(test accuracy; 95% CI over 3 seeds).")

    # Without vargrad no method beats random at every fraction: the answer names the closest one and its counts.
    no_winner = summary[summary["method"] != "vargrad"]
    (line,) = headline(no_winner, {**config, "methods": ["saliency", "random"]}).answer
    assert line.startswith("ROAR: no method beats the random ranking at every fraction (closest: saliency is below it "
                           "by the mean accuracy at 2 of 3 fractions, with seed ranges apart at 1).")
    assert headline(summary, {**config, "methods": ["saliency", "vargrad"]}).answer == [
        "Not measured: the run has no random ranking, or no method besides it."]


def test_headline_with_one_seed_says_the_question_is_not_resolved():
    summary = hand_made_summary({"vargrad": [[0.9], [0.5], [0.3], [0.1]], "random": [[0.9], [0.8], [0.7], [0.6]]},
                                seeds=1)
    (line,) = headline(summary, {"seeds": 1, "methods": ["vargrad", "random"], "modes": ["roar"]}).answer
    assert line == ("ROAR: not resolved with one seed per setting (no spread measured; vargrad is below the random "
                    "ranking by the mean accuracy at 3 of 3 fractions). With 90% of the pixels replaced: vargrad 0.100 "
                    "(no interval), random 0.600 (no interval) (test accuracy).")


def test_the_mean_accuracy_table_is_ordered_by_mode_then_fraction():
    rows = [{"metric": "accuracy", "model": "net", "method": method, "mode": mode, "fraction": fraction, "seed": 0,
             "value": 0.5 + fraction / 4 - (mode == "kar") / 8 + (method == "random") / 16}
            for fraction in (0.0, 0.1, 0.5, 0.9) for mode in ("roar", "kar") for method in ("saliency", "random")]
    summary = spread_summary(pd.DataFrame(rows))
    table = accuracy_table(summary, ["roar", "kar"])
    assert list(table.columns) == [(mode, fraction) for mode in ("roar", "kar") for fraction in (0.0, 0.1, 0.5, 0.9)]
    assert list(table.index) == ["saliency", "random"]
    assert table.loc["random", ("kar", 0.5)] == pytest.approx(0.5 + 0.5 / 4 - 1 / 8 + 1 / 16)
    assert list(accuracy_table(summary, ["kar", "roar"]).columns)[:5] == [("kar", 0.0), ("kar", 0.1), ("kar", 0.5),
                                                                         ("kar", 0.9), ("roar", 0.0)]
