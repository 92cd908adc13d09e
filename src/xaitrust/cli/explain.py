"""``xaitrust explain``: explain test images of a trained model with chosen methods and write map grids (PNG)."""

from __future__ import annotations

from pathlib import Path

import click
from safetensors.torch import save_file

from ..explainers import get_explainer
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..outputs import OUTPUTS
from ..report.figures import plot_map_grid
from ._checkpoint import checkpoint_images


@click.command("explain")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, file_okay=False), help="Trained model folder.")
@click.option("--methods", default="saliency,integrated-gradients,gradcam,rise", show_default=True,
              help="Comma-separated explainer names (see the registry: xaitrust.explainers.available_explainers).")
@click.option("--n-images", default=8, show_default=True, type=click.IntRange(1, 64), help="Test images (seeded choice).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for maps.png and attributions.")
@click.option("--dataset", default=None, help="Dataset name (default: the checkpoint's).")
@click.option("--data-root", default=None, type=click.Path(file_okay=False), help="Folder of the dataset files.")
@click.option("--output", type=click.Choice(OUTPUTS), default="probability", show_default=True, help="Score explained.")
@click.option("--reduction", type=click.Choice(REDUCTIONS), default="abs-sum", show_default=True,
              help="Channel reduction of attributions to maps.")
@click.option("--seed", default=0, show_default=True, type=int)
def command(checkpoint, methods, n_images, out, dataset, data_root, output, reduction, seed) -> None:
    """Explain N test images of the model in CHECKPOINT (its predicted class) with each method; write OUT/maps.png
    (one row per method) and OUT/attributions.safetensors (raw attributions per method, plus the images)."""
    names = [name.strip() for name in methods.split(",") if name.strip()]
    explainers = {name: get_explainer(name) for name in names}
    chosen = checkpoint_images(checkpoint, dataset, data_root, n_images, seed)
    attributions = {}
    with click.progressbar(explainers.items(), label="explaining", item_show_func=lambda item: item and item[0]) as bar:
        for name, explainer in bar:
            attributions[name] = explainer(chosen.model, chosen.x, chosen.predicted, output).cpu()
    maps = {name: reduce_attributions(values, reduction, inputs=chosen.x) for name, values in attributions.items()}
    out = Path(out)
    titles = [f"{chosen.classes[t]}\npred {chosen.classes[p]}" for t, p in zip(chosen.labels.tolist(), chosen.predicted.tolist())]
    grid = plot_map_grid(out / "maps.png", chosen.x, maps, title=f"{output} of the predicted class", image_titles=titles)
    save_file({"images": chosen.x.contiguous(), "indices": chosen.indices, **{k: v.contiguous() for k, v in attributions.items()}},
              str(out / "attributions.safetensors"))
    click.echo(f"maps: {grid}\nattributions: {out / 'attributions.safetensors'}")
