"""Training SDXL, SD3 / SD3.5 and SD 1.5 / 2.1 (train/train_diffusion.py --model sdxl | sd3 | sd15): the recipes.

SDXL (Podell et al. 2023) trains as a DDPM epsilon model over the release's scaled-linear schedule (1000
steps, betas 0.00085 to 0.012), with min-SNR weighting available (gamma 5, Hang et al. 2023). Each image's
size before resizing, its crop offset and the target size feed the UNet's micro-conditioning (the refiner:
size, crop, aesthetic score 6), as in sgm's training. The UNet's context is CLIP-L and bigG's penultimate
states; y the pooled bigG embedding and the Fourier features of those numbers.

SD3 (Esser et al. 2024) trains with rectified flow: sigma from the logit-normal density (the paper's best,
mean 0, std 1), shifted by 3.0 as the release's scheduler, loss weight 1; the MMDiT sees 1000 sigma. Text:
[CLIP-L | CLIP-G] penultimate states padded to 4096, then T5 (or zeros), pooled CLIP-L + CLIP-G.

SD 1.5 / 2.1 (Rombach et al. 2022) train as SDXL's UNet does, without micro-conditioning or pooled text: the
same scaled-linear DDPM schedule, epsilon prediction for SD 1.5 and v-prediction for the 768 px SD 2.1 (the
release's scheduler says which), conditioned on the one CLIP encoder's states as the pipeline encodes them.
The releases fine-tune at their native 512 / 768 px (diffusers' SD DreamBooth-LoRA example: rank 4, lr 1e-4).

Defaults per preset: `tiny` trains on the built-in captioned shapes at 32 px in a few minutes on a CPU;
the released presets fine-tune at 1024 px with LoRA rank 16 (lr 1e-4; full fine-tuning 1e-5), bf16 and
gradient checkpointing, one image per GPU (diffusers' SDXL/SD3 DreamBooth-LoRA examples' settings).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from models.image_generation.stable_diffusion import lora as sd_lora
from models.image_generation.stable_diffusion.conditioning import sd3_context, sdxl_vector
from utils.diffusion.training.config import ModelTraining, TrainConfig
from utils.diffusion.training.recipe import DiffusionRecipe, checkpoint_blocks, encode_clip

_TINY = TrainConfig(preset="tiny", steps=40, batch_size=2, lr=1e-3, resolution=32, rank=4, sample_steps=4)
_RELEASE = TrainConfig(steps=1000, batch_size=1, lr=1e-4, resolution=1024, rank=16, mixed_precision="bf16",
                       gradient_checkpointing=True, sample_steps=30)


def _loader(target: str):
    """(preset, weights) -> the pipeline `module:Class` of this package, on the CPU in float32; the tiny preset
    without weights: its random tiny components."""
    def load(preset: str, weights: str | None):
        import importlib

        module, cls = target.split(":")
        pipeline = getattr(importlib.import_module(f"{__package__}.{module}"), cls)
        if preset == "tiny" and weights is None:
            return pipeline.tiny()
        return pipeline.from_pretrained(weights, preset=preset, device="cpu", dtype="fp32")

    return load


# -- SDXL -------------------------------------------------------------------------------------------------

class SDXLRecipe(DiffusionRecipe):
    """SDXL base or refiner: epsilon (or v) prediction, min-SNR, micro-conditioning from the data."""

    denoiser_attr = "unet"

    def objective(self):
        from utils.diffusion import scheduler_from_diffusers_config
        from utils.diffusion.training.objectives import NoisePrediction

        sched = scheduler_from_diffusers_config({**self.pipe.scheduler_config, "_class_name": "DDPMScheduler"})
        return NoisePrediction(sched.alphas_cumprod(), self.config.prediction_type, self.config.snr_gamma)

    def text_features(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        states, pooled = [], None
        for enc in self.pipe.text_encoders:
            out = encode_clip(enc, prompts)
            states.append(out.penultimate)
            if out.text_embeds is not None:
                pooled = out.text_embeds
        return {"context": torch.cat(states, dim=-1), "pooled": pooled}

    def time_ids(self, batch: dict[str, Any]) -> torch.Tensor:
        """(B, 6) base or (B, 5) refiner micro-conditioning numbers of a batch."""
        first = [batch["original_size"], batch["crop_top_left"]]
        if self.pipe.is_refiner:
            return torch.cat(first + [torch.full_like(batch["original_size"][:, :1], 6.0)], dim=1)
        return torch.cat(first + [batch["target_size"]], dim=1)

    def predict(self, model: nn.Module, x_t: torch.Tensor, time: torch.Tensor, features: dict[str, torch.Tensor],
                batch: dict[str, Any]) -> torch.Tensor:
        cfg = self.pipe.config
        y = sdxl_vector(features["pooled"].float(), self.time_ids(batch).to(x_t.device), cfg.addition_time_embed_dim)
        return model(x_t, time, features["context"], y)

    def lora_targets(self, groups: tuple[str, ...]) -> list[str]:
        return sd_lora.unet_targets(self.denoiser, groups)

    def text_lora_components(self) -> list[tuple[str, nn.Module, list[str]]]:
        return [(f"text_encoders.{i}", enc.model, sd_lora.text_targets(enc.model))
                for i, enc in enumerate(self.pipe.text_encoders)]

    def enable_gradient_checkpointing(self) -> None:
        u = self.denoiser
        checkpoint_blocks([*u.input_blocks, u.middle_block, *u.output_blocks])


def sdxl_recipe(preset: str) -> ModelTraining:
    """The SDXL recipe of `preset` (the registry's `trainer`)."""
    from models.image_generation.stable_diffusion.spec import SDXL

    preset = SDXL.check_preset(preset)
    base = _TINY if preset == "tiny" else _RELEASE
    return ModelTraining(defaults=base.with_(model="sdxl", preset=preset, snr_gamma=None if preset == "tiny" else 5.0),
                         load_pipeline=_loader("pipeline_sdxl:SDXLPipeline"), make=SDXLRecipe,
                         full_lr=1e-4 if preset == "tiny" else 1e-5,
                         notes={"objective": "epsilon (DDPM, scaled-linear betas), min-SNR gamma 5 on the releases"})


# -- SD3 --------------------------------------------------------------------------------------------------

class SD3Recipe(DiffusionRecipe):
    """SD3 / SD3.5: rectified flow, logit-normal sigmas shifted by 3."""

    denoiser_attr = "transformer"

    def objective(self):
        from utils.diffusion.training.objectives import FlowMatching

        c = self.config
        return FlowMatching(c.density, c.logit_mean, c.logit_std, c.mode_scale, c.weighting, c.shift)

    def text_features(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        p = self.pipe
        out_l, out_g = encode_clip(p.clip_l, prompts), encode_clip(p.clip_g, prompts)
        t5 = None
        if p.t5 is not None:
            tokens = p.t5.tokenize(list(prompts), max_length=p.max_sequence_length)
            t5 = p.t5(tokens["input_ids"]).last_hidden_state  # no mask, as the pipeline encodes
        dt = out_l.penultimate.dtype
        context = sd3_context(out_l.penultimate, out_g.penultimate.to(dt), t5, p.max_sequence_length,
                              p.config.context_in_dim)
        return {"context": context, "pooled": torch.cat([out_l.text_embeds, out_g.text_embeds.to(dt)], dim=-1)}

    def predict(self, model: nn.Module, x_t: torch.Tensor, time: torch.Tensor, features: dict[str, torch.Tensor],
                batch: dict[str, Any]) -> torch.Tensor:
        return model(x_t, time * 1000.0, features["context"], features["pooled"])

    def lora_targets(self, groups: tuple[str, ...]) -> list[str]:
        return sd_lora.mmdit_targets(self.denoiser, groups)

    def text_lora_components(self) -> list[tuple[str, nn.Module, list[str]]]:
        return [(attr, getattr(self.pipe, attr).model, sd_lora.text_targets(getattr(self.pipe, attr).model))
                for attr in ("clip_l", "clip_g")]

    def enable_gradient_checkpointing(self) -> None:
        checkpoint_blocks(self.denoiser.joint_blocks)


def sd3_recipe(preset: str) -> ModelTraining:
    """The SD3 recipe of `preset` (the registry's `trainer`)."""
    from models.image_generation.stable_diffusion.spec import SD3

    preset = SD3.check_preset(preset)
    base = _TINY if preset == "tiny" else _RELEASE
    return ModelTraining(defaults=base.with_(model="sd3", preset=preset, shift=3.0, density="logit_normal"),
                         load_pipeline=_loader("pipeline_sd3:SD3Pipeline"), make=SD3Recipe,
                         full_lr=1e-4 if preset == "tiny" else 1e-5,
                         notes={"objective": "rectified flow, logit-normal(0, 1) sigmas shifted by 3.0, weight 1"})


# -- SD 1.5 / 2.1 -----------------------------------------------------------------------------------------

class SD15Recipe(SDXLRecipe):
    """SD 1.5 / 2.1: SDXL's UNet objective without its vector conditioning; one CLIP text encoder."""

    def text_features(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"context": encode_clip(self.pipe.text_encoder, prompts).last_hidden_state}

    def predict(self, model: nn.Module, x_t: torch.Tensor, time: torch.Tensor, features: dict[str, torch.Tensor],
                batch: dict[str, Any]) -> torch.Tensor:
        return model(x_t, time, features["context"])

    def text_lora_components(self) -> list[tuple[str, nn.Module, list[str]]]:
        model = self.pipe.text_encoder.model
        return [("text_encoder", model, sd_lora.text_targets(model))]


def sd15_recipe(preset: str) -> ModelTraining:
    """The SD 1.5 / 2.1 recipe of `preset` (the registry's `trainer`)."""
    from models.image_generation.stable_diffusion.pipeline_sd15 import SD21_SCHEDULER
    from models.image_generation.stable_diffusion.spec import SD15

    preset = SD15.check_preset(preset)
    base = _TINY if preset == "tiny" else _RELEASE.with_(resolution=768 if preset == "sd21" else 512, rank=4,
                                                         mixed_precision="fp16", sample_steps=50)
    prediction = SD21_SCHEDULER["prediction_type"] if preset == "sd21" else "epsilon"
    return ModelTraining(defaults=base.with_(model="sd15", preset=preset, prediction_type=prediction,
                                             snr_gamma=None if preset == "tiny" else 5.0),
                         load_pipeline=_loader("pipeline_sd15:SD15Pipeline"), make=SD15Recipe,
                         full_lr=1e-4 if preset == "tiny" else 1e-5,
                         notes={"objective": "epsilon (SD 1.5) or v (SD 2.1 768 px) DDPM over scaled-linear betas, "
                                             "min-SNR gamma 5 on the releases"})


__all__ = ["SD15Recipe", "SD3Recipe", "SDXLRecipe", "sd15_recipe", "sd3_recipe", "sdxl_recipe"]
