"""Vanilla GAN generation pipeline."""
from __future__ import annotations

import torch

from models.gan.pipeline_base import LatentGANPipeline
from models.gan.vanilla_gan.config import PRESETS, VanillaGANConfig
from models.gan.vanilla_gan.convert import convert_generator, infer_generator_config
from models.gan.vanilla_gan.model import Generator


class VanillaGANPipeline(LatentGANPipeline):
    model_name = "vanilla_gan"
    config_class = VanillaGANConfig
    presets = PRESETS
    network_class = Generator

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: VanillaGANConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> VanillaGANConfig:
        # a foreign checkpoint carries no class count: it is read as unconditional, one channel
        return infer_generator_config(state_dict)
