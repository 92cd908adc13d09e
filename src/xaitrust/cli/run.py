"""``xaitrust run PROTOCOL``: run one paper protocol (or the benchmark scorecard) into a run folder."""

from __future__ import annotations

import click

from ..errors import XaitrustError
from ..protocols import PROFILES, PROTOCOL_MODULES, run_protocol
from ._inputs import apply_runtime, parse_numbers, parse_table, runtime_options

#: Protocols that score a given trained model (``--weights``, a checkpoint, ``.pt2`` or ``.onnx``) without training.
SCORING = ("benchmark", "calibrate-to-interpret", "recalx")


@click.command("run")
@click.argument("protocol", type=click.Choice(list(PROTOCOL_MODULES)))
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file overriding profile defaults.")
@click.option("--profile", type=click.Choice(PROFILES), default=None, help="Parameter set (default: quick).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder (default: runs/PROTOCOL-PROFILE).")
@click.option("--model", default=None,
              help="Config key model: a built-in architecture or path/to/file.py:Name (trained by the protocol, or "
                   "scored as it is with --weights), a checkpoint folder, a .pt2 or .onnx file (scored as they are). "
                   "mege-reco, fpa and roar always train their models from scratch.")
@click.option("--weights", default=None, help="Config key weights: safetensors state dict of --model.")
@click.option("--model-options", "model_options_text", default=None,
              help="Config key model_options, as TOML: \"width = 8\".")
@click.option("--input-mean", default=None, help="Config key input_mean (comma-separated, one per channel).")
@click.option("--input-std", default=None, help="Config key input_std (comma-separated, one per channel).")
@click.option("--cam-layer", default=None, help="Config key cam_layer: the layer Grad-CAM uses.")
@click.option("--dataset", default=None, help="Config key dataset (see `xaitrust datasets`; folder / npz: your images).")
@click.option("--data-root", default=None, type=click.Path(), help="Config key data_root: a folder or the .npz file.")
@click.option("--dataset-options", "dataset_options_text", default=None,
              help="Config key dataset_options, as TOML: \"image_size = 32, test_fraction = 0.5\".")
@click.option("--executor", type=click.Choice(["local", "ray"]), default=None,
              help="Config key executor: how the trainings (and the explanation and scoring shards of roar, "
                   "mege-reco and fpa) run. local (default): one after another in this process; ray: side by side as "
                   "tasks of a Ray cluster (pip install 'xaitrust[ray]'). Either executor gives the same results and "
                   "can resume the other's run folder.")
@click.option("--ray-address", default=None,
              help="Config key ray_address: the Ray cluster of --executor ray, e.g. auto (the one `ray start --head` "
                   "started on this machine) or HOST:6379. Default: $RAY_ADDRESS or the cluster `ray start` started "
                   "on this machine, else a local Ray instance for the run. The run folder must be on a file system "
                   "every node of the cluster sees at the same path.")
@click.option("--training-threads", type=click.IntRange(min=1), default=None,
              help="Config key training_threads (default 1): torch threads of each training, and the CPUs each "
                   "training asks a Ray cluster for. Part of the results: a training's weights depend on it.")
@click.option("--check", is_flag=True,
              help="Check the config, the data and the model (preflight) as the run would, print its plan and cost "
                   "estimate, and exit without running or writing anything.")
@runtime_options
def command(protocol, config_file, profile, out, model, weights, model_options_text, input_mean, input_std, cam_layer,
            dataset, data_root, dataset_options_text, executor, ray_address, training_threads, check, device,
            threads) -> None:
    """Run PROTOCOL and write config.toml, results.csv, figures and report.html into the run folder.

    benchmark, calibrate-to-interpret and recalx score a trained model as it is (--model with --weights, a checkpoint
    folder, .pt2 or .onnx) or train the architecture --model names; mege-reco, fpa and roar retrain by design (k
    folds, regimes, ROAR retrainings), so --model names an architecture for them. Options given here override the
    --config file. Rerunning with the same folder resumes an interrupted run, with either --executor. --threads sets
    the torch threads of everything but the trainings (those run on --training-threads); on a machine shared with
    other jobs, --threads 1 is often several times faster than torch's default.
    """
    apply_runtime(device, threads)
    given = {
        "model": model, "weights": weights, "cam_layer": cam_layer, "dataset": dataset, "data_root": data_root,
        "model_options": model_options_text and parse_table(model_options_text, "--model-options"),
        "input_mean": input_mean and parse_numbers(input_mean, "--input-mean"),
        "input_std": input_std and parse_numbers(input_std, "--input-std"),
        "dataset_options": dataset_options_text and parse_table(dataset_options_text, "--dataset-options"),
        "device": None if device == "auto" else device,
        "executor": executor, "ray_address": ray_address, "training_threads": training_threads,
    }
    overrides = {key: value for key, value in given.items() if value not in (None, "")}
    trained_model_keys = sorted(set(overrides) & {"weights", "input_mean", "input_std", "cam_layer"})
    if protocol not in SCORING and trained_model_keys:
        raise XaitrustError(
            f"{protocol} trains its models itself (from scratch, with its recipe), so it takes no "
            f"{', '.join('--' + key.replace('_', '-') for key in trained_model_keys)}: give --model an architecture "
            f"(a built-in name or path/to/file.py:Name); {', '.join(SCORING)} score a trained model"
        )
    if check:
        from ..protocols.check import check_run

        click.echo(check_run(protocol, profile, config_file, overrides))
        return
    report = run_protocol(protocol, profile=profile, config_file=config_file, out=out, overrides=overrides)
    click.echo(f"report: {report}")
