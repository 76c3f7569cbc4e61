"""Progressive GAN generation pipeline."""
from __future__ import annotations

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
    generator_class = Generator

    @classmethod
    def convert(cls, state_dict: dict[str, torch.Tensor], config: ProGANConfig) -> dict[str, torch.Tensor]:
        return convert_generator(state_dict)

    @classmethod
    def from_pretrained(cls, source=None, preset: str | None = None, device: str | None = None,
                        dtype: str | torch.dtype | None = None) -> "ProgressiveGANPipeline":
        """As the base, but a pytorch_GAN_zoo file (weights plus a pickled config object) is read through
        `load_pgan_checkpoint` and handed on as plain tensors."""
        if source is not None:
            path = cls._resolve_source(source)
            if path.suffix in (".pth", ".pt"):
                import tempfile
                from pathlib import Path

                from safetensors.torch import save_file

                sd = load_pgan_checkpoint(path)
                with tempfile.TemporaryDirectory() as tmp:
                    # the generator alone, as safetensors, so the shared loading path applies unchanged
                    target = Path(tmp) / f"{path.stem}.safetensors"
                    save_file({k: v.contiguous() for k, v in convert_generator(sd).items()}, str(target))
                    return super().from_pretrained(str(target), preset=preset, device=device, dtype=dtype)
        return super().from_pretrained(source, preset=preset, device=device, dtype=dtype)

    @classmethod
    def infer_config(cls, state_dict: dict[str, torch.Tensor]) -> ProGANConfig:
        return infer_generator_config(state_dict)
