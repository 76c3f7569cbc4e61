"""Progressive GAN generation pipeline."""
from __future__ import annotations

from pathlib import Path

import torch

from models.gan.pipeline_base import LatentGANPipeline
from models.gan.progressive_gan.config import PRESETS, ProGANConfig
from models.gan.progressive_gan.convert import convert_generator, infer_generator_config, load_pgan_checkpoint
from models.gan.progressive_gan.model import Generator


class ProgressiveGANPipeline(LatentGANPipeline):
    """`ProgressiveGANPipeline.from_pretrained("celebaHQ_s6_i80000.pth")(num_images=4, seed=0)`."""

    model_name = "progressive_gan"
    config_class = ProGANConfig
    presets = PRESETS
    network_class = Generator

    @classmethod
    def read_state_dict(cls, file: Path) -> dict[str, torch.Tensor]:
        """A pytorch_GAN_zoo file (weights plus a pickled config object) is read through
        `load_pgan_checkpoint` (the config stays inert) and reduced to its generator."""
        if file.suffix in (".pth", ".pt"):
            return convert_generator(load_pgan_checkpoint(file))
        return super().read_state_dict(file)

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: ProGANConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> ProGANConfig:
        return infer_generator_config(state_dict)
