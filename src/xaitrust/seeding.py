"""Seeds derived from an image's content, for randomness that must not depend on the batch an image comes in.

Each image draws from its own generator, seeded by the call's ``seed`` and the image's bytes (SHA-256): an image gets
the same draws alone or in any batch, and different images get independent draws even across separate calls.
Identical images share their draws.
"""

from __future__ import annotations

import hashlib

import torch


def image_seed(seed: int, image: torch.Tensor) -> int:
    """A 63-bit seed from ``seed`` and the bytes of ``image`` (the same image and seed always give the same value)."""
    digest = hashlib.sha256(int(seed).to_bytes(8, "little", signed=True))
    digest.update(image.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1
