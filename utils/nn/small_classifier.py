"""A small CNN image classifier: the confidence filter of GAN data augmentation and the digits experiment.

Two 3x3 conv + ReLU + 2x2 max-pool stages, then a dense layer to the classes; images in [-1, 1] are
resized to `image_size` first. `train_classifier` fits it with Adam from a seed (deterministic on CPU);
`save_classifier` / `load_classifier` keep it as native safetensors with its config.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class SmallCNNConfig:
    """The classifier's shape."""

    channels: int = 1
    """Image channels (grey images are averaged RGB when an RGB image comes in)."""
    num_classes: int = 10
    """Output classes."""
    image_size: int = 16
    """Side the input is resized to."""
    width: int = 16
    """Channels of the first conv (the second has twice as many)."""
    class_names: tuple[str, ...] = ()
    """Names of the classes (may be empty)."""


class SmallCNN(nn.Module):
    def __init__(self, config: SmallCNNConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.conv1 = nn.Conv2d(config.channels, w, 3, padding=1)
        self.conv2 = nn.Conv2d(w, 2 * w, 3, padding=1)
        self.fc = nn.Linear(2 * w * (config.image_size // 4) ** 2, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [-1, 1] -> (B, num_classes) logits."""
        c = self.config
        if x.shape[1] != c.channels:
            x = x.mean(1, keepdim=True) if c.channels == 1 else x.expand(-1, c.channels, -1, -1)
        if x.shape[-1] != c.image_size or x.shape[-2] != c.image_size:
            x = F.interpolate(x, size=(c.image_size, c.image_size), mode="area")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


def train_classifier(x: torch.Tensor, y: torch.Tensor, config: SmallCNNConfig, steps: int = 300, batch_size: int = 64,
                     lr: float = 2e-3, seed: int = 0) -> SmallCNN:
    """Fit a SmallCNN on images `x` (N, C, H, W) in [-1, 1] with labels `y`; the same seed, the same model."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((model(x).argmax(1) == y).float().mean())


def save_classifier(path: str | os.PathLike, model: SmallCNN) -> Path:
    from utils.weights import save_native

    return save_native(path, model.state_dict(), model.config)


def load_classifier(path: str | os.PathLike) -> SmallCNN:
    """A classifier saved by `save_classifier`; another file is a UserError naming what it needs."""
    from utils.errors import UserError
    from utils.weights import load_state_dict, read_safetensors_config

    path = Path(path)
    if not path.is_file():
        raise UserError(f"classifier not found: {path}: pass a file written by utils.nn.small_classifier."
                        "save_classifier (benchmarks/gan_augmentation.py --save-classifier writes one)")
    config = read_safetensors_config(path, SmallCNNConfig)
    if config is None:
        raise UserError(f"{path.name} holds no SmallCNN config: the filter takes a classifier saved by "
                        "save_classifier (native safetensors)")
    config = SmallCNNConfig(**{**config.__dict__, "class_names": tuple(config.class_names)})
    model = SmallCNN(config)
    from utils.weights import load_into

    load_into(model, load_state_dict(path), what=f"classifier {path.name}")
    return model.eval()
