"""``xaitrust demo``: train (or reuse) the default Fashion-MNIST model and plot what every explainer says about a few
test images."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ..data import load_dataset, stratified_sample
from ..explainers import available_explainers, get_explainer
from ..report.figures import plot_map_grid
from ..training.pretrained import PROFILES, get_trained_model
from ._inputs import apply_runtime, runtime_options

DATASET = "fashion-mnist"


def explain_all(model: torch.nn.Module, x: torch.Tensor, target: torch.Tensor, names: list[str]) -> dict:
    """Maps ``(B, H, W)`` (absolute attributions summed over channels) of the probability of ``target`` for every
    explainer in ``names`` that succeeds; a failing one is skipped with a warning on stderr."""
    maps = {}
    for name in names:
        try:
            attributions = get_explainer(name)(model, x, target, output="probability")
        except Exception as error:  # a demo shows what works; one broken method must not hide the others
            click.echo(f"warning: explainer {name} failed ({type(error).__name__}: {error}); skipped", err=True)
            continue
        maps[name] = attributions.abs().sum(dim=1).cpu()
    return maps


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="xaitrust-demo", show_default=True,
              help="Folder for explanations.png.")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="default", show_default=True,
              help="Training recipe (quick: a small subset, for a fast look).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where trained models are cached (default $XAITRUST_CACHE or ~/.cache/xaitrust).")
@click.option("--explainers", default=None, help="Comma-separated explainer names (default: every registered one).")
@click.option("--images", type=click.IntRange(1, 64), default=8, show_default=True, help="Test images to explain.")
@runtime_options
def command(out, profile, cache_dir, explainers, images, device, threads) -> None:
    """Train the default model on Fashion-MNIST (cached after the first run), report its test accuracy and plot the
    explanations of a few test images to OUT/explanations.png."""
    device = apply_runtime(device, threads)
    result = get_trained_model(DATASET, "cnn", cache_dir=cache_dir, profile=profile, device=device)
    if result.reused:
        click.echo(f"reusing the cached model in {result.checkpoint_dir}")
    else:
        click.echo(f"trained the model in {result.seconds:.0f} s; saved to {result.checkpoint_dir}")
    click.echo(f"test accuracy: {result.metrics['test_accuracy']:.4f}")

    test = load_dataset(DATASET, split="test")
    chosen = stratified_sample(test.y, images, seed=0)
    x, y = test.x[chosen], test.y[chosen]
    model = result.model
    with torch.no_grad():
        predicted = model(x.to(device)).argmax(dim=1).cpu()
    names = explainers.split(",") if explainers else [info.name for info in available_explainers()]
    maps = explain_all(model, x, predicted, names)
    titles = [f"{test.classes[t]}\npred {test.classes[p]}" for t, p in zip(y.tolist(), predicted.tolist())]
    path = Path(out) / "explanations.png"
    plot_map_grid(path, x, maps, image_titles=titles)
    click.echo(f"explained {images} test images with {len(maps)} of {len(names)} methods: {path}")
