"""Structural similarity of batched single-channel images (Wang, Bovik, Sheikh & Simoncelli 2004).

``SSIM(a, b) = mean over windows of (2 mu_a mu_b + C1)(2 s_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(s_a^2 + s_b^2 + C2))``
with ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2`` and ``R`` the data range. The defaults reproduce
``skimage.metrics.structural_similarity(a, b, data_range=R)``: a uniform ``7 x 7`` window, sample (co)variances
(normalised by ``n - 1``), and the mean taken over the windows that lie fully inside the image (scikit-image crops
the border of half a window, so a "valid" convolution gives the same numbers). Calibrate-to-Interpret compares the
maps of a calibrated and an uncalibrated model with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import XaitrustError

K1 = 0.01
K2 = 0.03


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win_size: int = 7) -> torch.Tensor:
    """SSIM of each pair of images ``a[i]``, ``b[i]`` of shape ``(N, H, W)`` -> ``(N,)``.

    Args:
        data_range: the span of values the images can take (1 for maps normalised to [0, 1]).
        win_size: odd side of the uniform window; the images must be at least this large.
    """
    if win_size < 3 or win_size % 2 == 0:
        raise XaitrustError(f"win_size must be an odd integer >= 3; got {win_size}")
    if min(a.shape[-2:]) < win_size:
        raise XaitrustError(f"SSIM needs images of at least {win_size}x{win_size} pixels; got {tuple(a.shape[-2:])}")
    if data_range <= 0:
        raise XaitrustError(f"data_range must be positive; got {data_range}")
    dtype = torch.float64 if torch.float64 in (a.dtype, b.dtype) else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    stack = torch.stack([a, b, a * a, b * b, a * b], dim=1)
    window = torch.full((1, 1, win_size, win_size), 1.0 / win_size**2, dtype=dtype, device=a.device)
    local = F.conv2d(stack.reshape(-1, 1, *stack.shape[-2:]), window)
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = local.reshape(len(a), 5, *local.shape[-2:]).unbind(dim=1)
    sample = win_size**2 / (win_size**2 - 1)
    var_a = sample * (mean_aa - mu_a * mu_a)
    var_b = sample * (mean_bb - mu_b * mu_b)
    cov = sample * (mean_ab - mu_a * mu_b)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    index = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return index.mean(dim=(1, 2))
