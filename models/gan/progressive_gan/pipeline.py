"""Progressive GAN generation pipeline."""
from __future__ import annotations

import torch

from models.gan.pipeline_base import LatentGANPipeline
from models.gan.progressive_gan.config import PRESETS, ProGANConfig
from models.gan.progressive_gan.convert import convert_generator, infer_generator_config
from models.gan.progressive_gan.model import Generator


class ProgressiveGANPipeline(LatentGANPipeline):
    """`ProgressiveGANPipeline.from_pretrained("celebaHQ_s6_i80000.pth")(num_images=4, seed=0)`."""

    model_name = "progressive_gan"
    config_class = ProGANConfig
    presets = PRESETS
    generator_class = Generator

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: ProGANConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> ProGANConfig:
        return infer_generator_config(state_dict)
