"""WGAN-GP checkpoints to the native layout.

The authors released TensorFlow code and no weights; what loads here is a generator saved by this
package (native safetensors with its config) or a PyTorch `state_dict` of the same modules, with or
without the wrapper prefixes trainers add (`module.`, `netG.`, `generator.`).
"""
from __future__ import annotations

import torch

from models.gan.dcgan.convert import infer_generator_config as _dcgan_infer
from models.gan.dcgan.convert import WRAPPER_PREFIXES
from models.gan.wgan_gp.config import WGANGPConfig
from utils.weights.keys import strip_shared_prefixes


def convert_generator(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return strip_shared_prefixes(sd, WRAPPER_PREFIXES)


def infer_generator_config(sd: dict[str, torch.Tensor]) -> WGANGPConfig:
    """Image size, channels, latent length and width read off the generator's shapes."""
    c = _dcgan_infer(sd)
    return WGANGPConfig(image_size=c.image_size, channels=c.channels, latent_dim=c.latent_dim, ngf=c.ngf, ndf=c.ngf)
