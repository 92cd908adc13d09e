"""``xaitrust train``: train a model on a dataset into a checkpoint folder (resumed if interrupted)."""

from __future__ import annotations

import dataclasses

import click

from ..training.config import OPTIMIZERS, SCHEDULES
from ..training.pretrained import PROFILES, train_on_dataset
from ._inputs import apply_runtime, parse_table, runtime_options

DEFAULTS = PROFILES["default"].config


@click.command("train")
@click.option("--dataset", default="fashion-mnist", show_default=True,
              help="Dataset name (see `xaitrust datasets`; folder / npz: your images).")
@click.option("--root", "--data-root", "root", type=click.Path(), default=None,
              help="Where the dataset's files are (a folder, or the .npz file), if not the default.")
@click.option("--dataset-options", "dataset_options_text", default="",
              help="The dataset loader's options, as TOML: \"image_size = 32, test_fraction = 0.5\".")
@click.option("--limit", type=int, default=None, help="Train on a stratified subset of this many images.")
@click.option("--model", default="cnn", show_default=True,
              help="Architecture: cnn, mnist-cnn, resnet18, lipschitz-cnn, or your own as path/to/file.py:Name.")
@click.option("--model-options", "model_options_text", default="",
              help="Keyword options of the architecture, as TOML: \"width = 8\".")
@click.option(
    "--augmentation", default="none", show_default=True, help="none, or flip / fpa / erasing joined by + (flip+fpa)."
)
@click.option("--epochs", type=int, default=DEFAULTS.epochs, show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS.batch_size, show_default=True)
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True)
@click.option("--lr", type=float, default=DEFAULTS.lr, show_default=True, help="Initial learning rate.")
@click.option("--momentum", type=float, default=DEFAULTS.momentum, show_default=True, help="SGD momentum.")
@click.option("--weight-decay", type=float, default=DEFAULTS.weight_decay, show_default=True)
@click.option("--schedule", type=click.Choice(SCHEDULES), default=DEFAULTS.schedule, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds initialisation, shuffling, augmentation.")
@click.option("--permute-labels", "permuted_labels", is_flag=True,
              help="Train on the training labels randomly permuted (seeded by --seed): the model of the data "
              "randomisation test (metric data_randomisation).")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Checkpoint folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@runtime_options
def command(dataset, root, dataset_options_text, limit, model, model_options_text, augmentation, epochs, batch_size,
            optimizer, lr, momentum, weight_decay, schedule, seed, permuted_labels, out, quiet, device, threads) -> None:
    """Train MODEL on DATASET and save it to OUT (model.safetensors + model.json).

    Rerunning the same command resumes an interrupted run, or does nothing if it had finished.
    """
    device = apply_runtime(device, threads)
    config = dataclasses.replace(
        DEFAULTS, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        epochs=epochs, batch_size=batch_size, augmentation=augmentation, seed=seed,
    )
    result = train_on_dataset(dataset, model, config, out, root=root, train_limit=limit,
                              model_options=parse_table(model_options_text, "--model-options"), progress=not quiet,
                              dataset_options=parse_table(dataset_options_text, "--dataset-options"), device=device,
                              permuted_labels=permuted_labels)
    if result.reused:
        click.echo(f"{out} already holds this finished run; nothing trained")
    elif result.start_epoch:
        click.echo(f"resumed after epoch {result.start_epoch}")
    click.echo(f"test accuracy: {result.metrics['test_accuracy']:.4f}")
    click.echo(f"checkpoint: {result.checkpoint_dir}")
