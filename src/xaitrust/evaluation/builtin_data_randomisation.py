"""The data randomisation test (``xaitrust.metrics.data_randomisation``) in the registry: its parameter
``randomised_model`` names the model trained on permuted labels, loaded as ``--model`` is (``ModelSource``)."""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..metrics.data_randomisation import data_randomisation
from ..models.loading import ModelSource
from ..perturb.engine import model_device
from .registry import register_metric

HOW = "train one with `xaitrust train --permute-labels --out DIR` and set randomised_model = DIR"


def _source(params: dict) -> ModelSource | torch.nn.Module:
    """The randomised model from the metric's parameters, checked before any work: a module given to the Python API
    as it is, else the ``ModelSource`` it names."""
    if isinstance(params.get("randomised_model"), torch.nn.Module):
        return params["randomised_model"]
    if not params.get("randomised_model"):
        raise XaitrustError(f"metric 'data_randomisation' needs randomised_model, a model trained on permuted labels: "
                            f"{HOW} (metric_params, or --metric-params)")
    source = ModelSource(str(params["randomised_model"]), str(params.get("randomised_weights", "")))
    source.check()
    if not source.is_trained:
        raise XaitrustError(f"data_randomisation: randomised_model {source.model!r} is an architecture without "
                            f"weights; give randomised_weights, or {HOW}")
    return source


def _data_randomisation(model, x, target, maps, explainer, *, output, reduction, batch_size,
                        randomised_model="", randomised_weights: str = "", similarity: str = "spearman"):
    randomised = _source({"randomised_model": randomised_model, "randomised_weights": randomised_weights})
    if isinstance(randomised, ModelSource):
        with torch.no_grad():
            classes = model(x[:1].to(model_device(model))).shape[-1]
        randomised = randomised.load(x.shape[1], classes, tuple(x.shape[-2:])).to(model_device(model))
    return data_randomisation(model, randomised, explainer, x, target, maps, similarity=similarity, output=output,
                              reduction=reduction, batch_size=batch_size or 256)


register_metric(
    _data_randomisation, name="data_randomisation", higher_is_better=False, check=_source,
    description="`similarity` (spearman or ssim) between the map and the map of the same architecture trained on "
    "permuted labels (`randomised_model`: a checkpoint folder, .pt2/.onnx file, or file.py:Name with "
    "`randomised_weights`, made by `xaitrust train --permute-labels`; or the module itself in Python).",
    source="Adebayo et al., Sanity checks for saliency maps, NeurIPS 2018 (data randomisation test)",
)
