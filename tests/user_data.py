"""Data and a trained model of a user's own making, for the tests of the "your own model" path: 3 x 32 x 32 RGB
images of 5 classes (a coloured square whose colour and quadrant give the class, on a noisy background), and the
``tests/assets/tiny_resnet.py:TinyResNet`` model trained on them, saved as safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

MODEL_FILE = Path(__file__).parent / "assets" / "tiny_resnet.py"
MODEL_REFERENCE = f"{MODEL_FILE}:TinyResNet"
COLOURS = np.array([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9], [0.9, 0.9, 0.1], [0.9, 0.1, 0.9]])
CLASSES = ["red", "green", "blue", "yellow", "magenta"]


def rgb_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)``: class k is a 7 x 7 square of colour k at a random
    place on grey noise (sd 0.25); a small model reaches about 95% accuracy on them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(COLOURS)
    images = np.clip(0.5 + 0.25 * rng.standard_normal((n, 32, 32, 3)), 0, 1)
    for image, label in zip(images, labels):
        row, col = rng.integers(0, 25, size=2)
        image[row:row + 7, col:col + 7] = COLOURS[label] + 0.05 * rng.standard_normal((7, 7, 3))
    return (np.clip(images, 0, 1) * 255).round().astype(np.uint8), labels


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def train_tiny_resnet(x: torch.Tensor, y: torch.Tensor, epochs: int = 3, seed: int = 0):
    """The user's model trained with plain Adam, as a user would, and left in eval mode."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tiny_resnet_for_tests", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)
    model = module.TinyResNet(width=8)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 64):
            batch = order[start:start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path
