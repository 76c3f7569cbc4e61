"""WGAN-GP generation pipeline."""
from __future__ import annotations

import torch

from models.gan.pipeline_base import LatentGANPipeline
from models.gan.wgan_gp.config import PRESETS, WGANGPConfig
from models.gan.wgan_gp.convert import convert_generator, infer_generator_config
from models.gan.wgan_gp.model import Generator


class WGANGPPipeline(LatentGANPipeline):
    """`WGANGPPipeline.from_pretrained(preset="tiny")(num_images=16, seed=0)`."""

    model_name = "wgan_gp"
    config_class = WGANGPConfig
    presets = PRESETS
    network_class = Generator

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: WGANGPConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> WGANGPConfig:
        return infer_generator_config(state_dict)
