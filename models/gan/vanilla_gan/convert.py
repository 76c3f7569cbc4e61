"""Vanilla GAN checkpoints to the native layout.

There is no official release of the 2014 model's weights; the formats that load are the
native safetensors of this package and torch state dicts of these modules, also behind the
`module.` (DataParallel) or `generator.` prefixes that trainers add.
"""
from __future__ import annotations

import torch

from models.gan.dcgan.convert import WRAPPER_PREFIXES
from models.gan.vanilla_gan.config import VanillaGANConfig
from utils.errors import ConversionError
from utils.weights.keys import strip_shared_prefixes


def convert_generator(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return strip_shared_prefixes(sd, WRAPPER_PREFIXES)


def infer_generator_config(sd: dict[str, torch.Tensor], num_classes: int = 0,
                           channels: int = 1) -> VanillaGANConfig:
    """Widths off the Linear shapes; image size from the output width and `channels`."""
    sd = convert_generator(sd)
    weights = sorted((int(k.split(".")[1]), v) for k, v in sd.items() if k.startswith("net.") and k.endswith("weight"))
    if not weights:
        raise ConversionError("no vanilla GAN generator layers (net.<i>.weight) in this checkpoint")
    out = weights[-1][1].shape[0]
    side = int(round((out / channels) ** 0.5))
    if side * side * channels != out:
        raise ConversionError(f"the generator outputs {out} values, not a square image of {channels} channel(s)")
    return VanillaGANConfig(image_size=side, channels=channels, latent_dim=weights[0][1].shape[1] - num_classes,
                            g_hidden=tuple(w.shape[0] for _, w in weights[:-1]), num_classes=num_classes)
