"""Class activation maps weighted by gradients: Grad-CAM and Grad-CAM++.

With ``A^k`` the feature maps of the model's CAM layer (``model.cam_layer``, or the dotted module name ``layer``) and
``g^k = ds/dA^k`` the gradient of the chosen target score ``s``:

- ``gradcam`` (Selvaraju et al. 2017; MeGe/ReCo appendix B): ``w_k = mean_ij g^k_ij``, map ``relu(sum_k w_k A^k)``.
- ``gradcam++`` (Chattopadhyay et al. 2018): the class score is ``Y = exp(s)``. When the layers after ``A`` are
  piecewise linear (ReLU networks) and ``s`` is the logit, ``d2Y/dA^2 = Y g^2`` and ``d3Y/dA^3 = Y g^3`` (their
  eq. 19), so the paper's weights ``alpha^k_ij = d2Y / (2 d2Y + sum_ab A^k_ab d3Y)`` take the closed form
  ``alpha = g^2 / (2 g^2 + sum_ab A^k_ab g^3)`` (0 where the denominator is 0) and ``w_k = sum_ij alpha^k_ij relu(g^k_ij)``,
  map ``relu(sum_k w_k A^k)``. The paper's ``relu(dY/dA) = Y relu(g)`` carries the positive factor ``Y`` per image;
  like the authors' code it is dropped, which rescales each image's map but not its shape. For other outputs the
  same closed form is used as an approximation.

The map ``(B, 1, h, w)`` is upsampled bilinearly (``align_corners=False``, as Captum's ``LayerAttribution.interpolate``)
to the input size and divided evenly over the ``C`` input channels, so attributions are ``(B, C, H, W)`` and both the
``"sum"`` and ``"abs-sum"`` reductions give back the CAM map. One forward and one backward pass for the batch, plain
autograd; Grad-CAM equals Captum's ``LayerGradCam`` followed by that interpolation (tested).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import XaitrustError
from ..outputs import target_scores
from .base import Explainer, register


def find_cam_layer(model: torch.nn.Module, layer: str | None) -> torch.nn.Module:
    """The module named ``layer`` in ``model``, or the model's own ``cam_layer`` when ``layer`` is None."""
    if layer is None:
        cam_layer = getattr(model, "cam_layer", None)  # wrappers (e.g. calibrated models) delegate it
        if not isinstance(cam_layer, torch.nn.Module):
            raise XaitrustError(
                f"{type(model).__name__} does not name a CAM layer: pass layer='<dotted module name>' to the CAM explainer"
            )
        return cam_layer
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise XaitrustError(f"model has no module named {layer!r}; pick one of its named_modules()") from None


def activations_and_gradients(model, x, target, output, layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The feature maps ``A`` ``(B, K, h, w)`` output by ``layer`` and the gradient ``ds/dA`` of the target score."""
    captured = []
    handle = layer.register_forward_hook(lambda module, inputs, out: captured.append(out))
    try:
        with torch.enable_grad():
            scores = target_scores(model(x.detach().requires_grad_(True)), target, output)
            if len(captured) != 1 or not isinstance(captured[0], torch.Tensor) or captured[0].ndim != 4:
                raise XaitrustError(
                    f"the CAM layer must run once per forward pass and output feature maps (B, K, h, w); "
                    f"{type(layer).__name__} ran {len(captured)} time(s)"
                    + (f" with output shape {tuple(captured[0].shape)}" if captured and hasattr(captured[0], "shape") else "")
                )
            (gradients,) = torch.autograd.grad(scores.sum(), captured[0])
    finally:
        handle.remove()
    return captured[0].detach(), gradients


def spread_over_channels(cam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Upsample ``(B, 1, h, w)`` maps bilinearly to ``x``'s size and divide them evenly over its channels."""
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return (cam / x.shape[1]).expand(-1, x.shape[1], -1, -1).contiguous().to(x.dtype)


class _GradientWeightedCAM(Explainer):
    """``relu(sum_k w_k A^k)`` upsampled; subclasses compute the channel weights ``w`` ``(B, K, 1, 1)``."""

    def __init__(self, layer: str | None = None) -> None:
        if layer is not None and (not isinstance(layer, str) or not layer.strip()):
            raise XaitrustError(f"{self.name}: layer must be a dotted module name such as 'body.3', or None for the "
                                f"model's own CAM layer; got {layer!r}")
        self.layer = layer

    def attribute(self, model, x, target, output):
        activations, gradients = activations_and_gradients(model, x, target, output, find_cam_layer(model, self.layer))
        weights = self.channel_weights(activations, gradients)
        cam = torch.relu((weights * activations).sum(dim=1, keepdim=True))
        return spread_over_channels(cam, x)

    def channel_weights(self, activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register
class GradCAM(_GradientWeightedCAM):
    name = "gradcam"
    description = "feature maps weighted by their mean gradient (Selvaraju et al. 2017)"

    def channel_weights(self, activations, gradients):
        return gradients.mean(dim=(2, 3), keepdim=True)


@register
class GradCAMPlusPlus(_GradientWeightedCAM):
    name = "gradcam++"
    description = "feature maps weighted by positive gradients with second-order weights (Chattopadhyay et al. 2018)"

    def channel_weights(self, activations, gradients):
        squares = gradients.square()
        denominator = 2 * squares + activations.sum(dim=(2, 3), keepdim=True) * squares * gradients
        safe = torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        alpha = torch.where(denominator != 0, squares / safe, torch.zeros_like(squares))
        return (alpha * torch.relu(gradients)).sum(dim=(2, 3), keepdim=True)
