"""The VGG perceptual (content) loss of SRGAN and ESRGAN: L1 / MSE between VGG19 feature maps.

SRGAN compares the activations after conv5_4 (its "VGG54"), ESRGAN the same layer before its ReLU
(sec. 3.3: pre-activation features keep more signal). The network is torchvision's vgg19 layout;
the ImageNet weights (torchvision's vgg19-dcbb9e9d.pth, BSD-3) are read from a file: nothing is
downloaded here. `pretrained=False` builds it with seeded random weights (tests, tiny runs).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError

VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)
"""torchvision's vgg19 `features` up to conv5_4 (its index 34), 'M' a 2x2 max pool."""
LAYER_INDEX = {"conv5_4": 34, "relu5_4": 35, "conv4_4": 25, "relu4_4": 26, "conv3_4": 16, "relu3_4": 17,
               "conv2_2": 7, "relu2_2": 8, "conv1_2": 2, "relu1_2": 3}
"""Where each named tap ends in torchvision's `features` Sequential (inclusive)."""
WEIGHTS_FILE = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features(last: int, width: float = 1.0) -> nn.Sequential:
    """torchvision's vgg19 `features` up to index `last`; `width` < 1 narrows it (tiny test networks)."""
    layers: list[nn.Module] = []
    c = 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = max(1, int(v * width))
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(inplace=False)]
            c = out
    return nn.Sequential(*layers[: last + 1])


def weights_path(path: str | os.PathLike | None) -> Path:
    """The VGG19 weights: `path`, else torchvision's file in the torch hub cache."""
    candidate = Path(path) if path else Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
    if not candidate.is_file():
        raise UserError(f"the VGG perceptual loss needs ImageNet VGG19 weights ({WEIGHTS_FILE}, torchvision's "
                        f"download.pytorch.org/models/{WEIGHTS_FILE}); none at {candidate}: download it there or "
                        "pass its path (or use --preset tiny, which trains with a random VGG)")
    return candidate


class VGGPerceptualLoss(nn.Module):
    """`loss(sr, hr)` on images in [0, 1]: the mean |phi(sr) - phi(hr)| (criterion 'l1', ESRGAN) or its
    square (criterion 'mse', SRGAN), phi the VGG19 features at `layer`, ImageNet-normalised inputs."""

    def __init__(self, layer: str = "conv5_4", criterion: str = "l1", pretrained: bool = True,
                 weights: str | os.PathLike | None = None, width: float = 1.0,
                 layer_weights: dict[str, float] | None = None):
        """`layer_weights` ({'conv1_2': 0.1, ..., 'conv5_4': 1}, Real-ESRGAN's) sums the weighted loss of
        several taps instead of the single `layer`."""
        super().__init__()
        self.layer_weights = dict(layer_weights) if layer_weights else {layer: 1.0}
        for name in self.layer_weights:
            if name not in LAYER_INDEX:
                raise UserError(f"unknown VGG layer '{name}': one of {', '.join(LAYER_INDEX)}")
        layer = max(self.layer_weights, key=LAYER_INDEX.__getitem__)
        if criterion not in ("l1", "mse"):
            raise UserError(f"unknown perceptual criterion '{criterion}': l1 or mse")
        self.criterion = criterion
        self.features = vgg19_features(LAYER_INDEX[layer], width)
        if pretrained:
            from utils.weights import load_state_dict

            sd = load_state_dict(weights_path(weights))
            sd = {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
            self.features.load_state_dict({k: v for k, v in sd.items() if int(k.split(".")[0]) <= LAYER_INDEX[layer]})
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "VGGPerceptualLoss":
        super().train(mode)
        self.features.eval()  # a fixed feature extractor
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        if sr.shape[1] == 1:
            sr, hr = sr.expand(-1, 3, -1, -1), hr.expand(-1, 3, -1, -1)
        taps = {LAYER_INDEX[name]: w for name, w in self.layer_weights.items()}
        a, b = (sr - self.mean) / self.std, (hr.detach() - self.mean) / self.std
        total = sr.new_zeros(())
        for i, module in enumerate(self.features):
            a, b = module(a), module(b)
            if i in taps:
                total = total + taps[i] * (F.l1_loss(a, b) if self.criterion == "l1" else F.mse_loss(a, b))
        return total
