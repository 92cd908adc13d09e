"""The data randomisation test as a per-image metric (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, "Sanity
checks for saliency maps", NeurIPS, section 4).

"We permute the training labels and train a model on the randomized training data. ... we compare the explanations
of the model trained on random labels with those of the model trained on the true labels." A model trained on
permuted labels can only memorise, so an explanation that reflects what the model learned about the data must
differ between the two models; one that does not (e.g. an edge detector) fails the test::

    DRT(x) = s(e_f(x), e_{f_perm}(x))

``f`` the model, ``f_perm`` the same architecture trained on the permuted labels (``xaitrust train
--permute-labels``, ``xaitrust.training.permute_labels``), ``s`` the similarity (``"spearman"``, Spearman's rank
correlation, or ``"ssim"``, SSIM of min-max normalised maps; ``xaitrust.metrics.sanity``). Both maps explain the same
class (the evaluated one), with the same explainer and reduction. Lower is better. No peer library (Quantus 0.6,
Captum, Xplique) implements this test: it needs the second training.
"""

from __future__ import annotations

import torch

from ..errors import XaitrustError
from ..perturb.engine import model_device
from ._explain import explain_maps
from .sanity import SIMILARITIES


def data_randomisation(
    model: torch.nn.Module,
    randomised_model: torch.nn.Module,
    explainer,
    x: torch.Tensor,
    target: torch.Tensor,
    maps: torch.Tensor,
    *,
    similarity: str = "spearman",
    output: str = "logit",
    reduction: str = "abs-sum",
    batch_size: int = 256,
) -> torch.Tensor:
    """Similarity ``(B,)`` between ``maps`` (``model``'s explanation of ``x`` for ``target``) and the same explainer's
    maps of ``randomised_model`` (trained on permuted labels) for the same classes (module docstring)."""
    if similarity not in SIMILARITIES:
        raise XaitrustError(f"similarity must be one of {', '.join(SIMILARITIES)}; got {similarity!r}")
    probe = x[:1].to(model_device(model))
    with torch.no_grad():
        classes, other = model(probe).shape[-1], randomised_model.to(probe.device)(probe).shape[-1]
    if classes != other:
        raise XaitrustError(f"the randomised model predicts {other} classes and the model {classes}: train the same "
                            "architecture on the same data with permuted labels (xaitrust train --permute-labels)")
    randomised = explain_maps(explainer, randomised_model, x, target, output=output, reduction=reduction,
                              batch_size=batch_size)
    return SIMILARITIES[similarity](maps, randomised.to(maps.device))
