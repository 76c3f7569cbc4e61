"""DCGAN generation pipeline."""
from __future__ import annotations

import torch

from models.gan.dcgan.config import PRESETS, DCGANConfig
from models.gan.dcgan.convert import convert_generator, infer_generator_config
from models.gan.dcgan.model import Generator
from models.gan.pipeline_base import LatentGANPipeline


class DCGANPipeline(LatentGANPipeline):
    """`DCGANPipeline.from_pretrained(preset="digits")(num_images=16, seed=0, prompt="7")`."""

    model_name = "dcgan"
    config_class = DCGANConfig
    presets = PRESETS
    network_class = Generator

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: DCGANConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> DCGANConfig:
        return infer_generator_config(state_dict)
