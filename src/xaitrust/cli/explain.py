"""``xaitrust explain``: explain test images of a trained model with chosen methods and write map grids (PNG)."""

from __future__ import annotations

from pathlib import Path

import click
import torch
from safetensors.torch import save_file

from ..explainers import get_explainer
from ..explainers.reduce import REDUCTIONS, reduce_attributions
from ..outputs import OUTPUTS
from ..report.figures import plot_map_grid
from ._inputs import apply_runtime, chosen_images, data_options, load_model_and_data, model_options, runtime_options


@click.command("explain")
@model_options
@data_options
@click.option("--methods", default="saliency,integrated-gradients,gradcam,rise", show_default=True,
              help="Comma-separated explainer names (`xaitrust.explainers.available_explainers`) or "
                   "path/to/file.py:Name of your own.")
@click.option("--n-images", default=8, show_default=True, type=click.IntRange(1, 64), help="Test images (seeded choice).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for maps.png and attributions.")
@click.option("--output", type=click.Choice(OUTPUTS), default="probability", show_default=True, help="Score explained.")
@click.option("--reduction", type=click.Choice(REDUCTIONS), default="abs-sum", show_default=True,
              help="Channel reduction of attributions to maps.")
@click.option("--seed", default=0, show_default=True, type=int)
@runtime_options
def command(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset, data_root,
            dataset_options_text, methods, n_images, out, output, reduction, seed, device, threads) -> None:
    """Explain N test images of MODEL (their predicted class) with each method; write OUT/maps.png (one row per
    method) and OUT/attributions.safetensors (raw attributions per method, the images and their dataset indices)."""
    device = apply_runtime(device, threads)
    names = [name.strip() for name in methods.split(",") if name.strip()]
    explainers = {name: get_explainer(name) for name in names}
    loaded = load_model_and_data(model, weights, model_options_text, input_mean, input_std, cam_layer, dataset,
                                 data_root, dataset_options_text, device, names)
    test = loaded.test
    chosen = chosen_images(test, n_images, seed)
    x, labels, indices = test.x[chosen], test.y[chosen], test.index[chosen]
    with torch.no_grad():
        predicted = loaded.model(x.to(device)).argmax(dim=1).cpu()
    attributions = {}
    with click.progressbar(explainers.items(), label="explaining", item_show_func=lambda item: item and item[0]) as bar:
        for name, explainer in bar:
            attributions[name] = explainer(loaded.model, x, predicted, output).cpu()
    maps = {name: reduce_attributions(values, reduction, inputs=x) for name, values in attributions.items()}
    out = Path(out)
    titles = [f"#{i} {test.classes[t]}\npred {test.classes[p]}"
              for i, t, p in zip(indices.tolist(), labels.tolist(), predicted.tolist())]
    grid = plot_map_grid(out / "maps.png", x, maps, title=f"{loaded.label}: {output} of the predicted class",
                         image_titles=titles)
    save_file({"images": x.contiguous(), "indices": indices, **{k: v.contiguous() for k, v in attributions.items()}},
              str(out / "attributions.safetensors"))
    click.echo(f"maps: {grid}\nattributions: {out / 'attributions.safetensors'}")
