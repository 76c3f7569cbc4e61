"""DCGAN checkpoints to the native layout.

Formats:
- the PyTorch examples release (`netG.pth` / `netD.pth`, saved with `torch.save(net.state_dict())`):
  keys `main.<i>.*`, the native layout itself, possibly behind DataParallel's `module.` prefix;
- native safetensors written by this package (config in the file's metadata).
"""
from __future__ import annotations

import torch

from models.gan.dcgan.config import DCGANConfig
from utils.errors import ConversionError
from utils.weights.keys import strip_shared_prefixes

WRAPPER_PREFIXES = ("module.", "netG.", "generator.")
"""Prefixes that wrappers put in front of every key (DataParallel, trainers); taken off, in this order."""


def convert_generator(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Any supported generator checkpoint -> native keys."""
    return strip_shared_prefixes(sd, WRAPPER_PREFIXES)


def infer_generator_config(sd: dict[str, torch.Tensor]) -> DCGANConfig:
    """Read latent_dim, ngf, channels and image size off an unconditional generator's shapes."""
    sd = convert_generator(sd)
    convs = sorted((int(k.split(".")[1]), v) for k, v in sd.items()
                   if k.startswith("main.") and k.endswith(".weight") and v.ndim == 4)
    if not convs:
        raise ConversionError("no DCGAN generator convolutions (main.<i>.weight) in this checkpoint: "
                              "it is not a DCGAN generator")
    first, last = convs[0][1], convs[-1][1]
    num_up = len(convs) - 1
    if num_up < 2:
        raise ConversionError(f"this checkpoint has {len(convs)} generator convolution(s); a DCGAN generator has "
                              "at least 3: it is not a DCGAN generator")
    ngf = last.shape[0]
    cond = "class_embed.weight" in sd
    embed = sd["class_embed.weight"].shape if cond else (0, 32)
    return DCGANConfig(image_size=2 ** (num_up + 2), channels=last.shape[1], latent_dim=first.shape[0] - (embed[1] if cond else 0),
                       ngf=ngf, ndf=ngf, num_classes=embed[0], class_embed_dim=embed[1],
                       class_names=tuple(str(i) for i in range(embed[0])))
