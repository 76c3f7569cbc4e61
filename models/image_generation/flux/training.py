"""Training FLUX.1 dev and schnell (train/train_diffusion.py --model flux): the recipe.

Rectified flow as the transformer samples it: sigma from the logit-normal density (mean 0, std 1; 'mode'
and 'uniform' on request), unshifted as in diffusers' FLUX training scripts (`--shift` sets a static
shift), x_t = (1 - sigma) x0 + sigma e on the 16-channel latents, 2x2-packed to tokens with their position
ids; the transformer predicts e - x0 from time sigma. FLUX.1 [dev] is guidance-distilled: its guidance
embedding gets a fixed value while training (`--guidance`, 3.5 by default, diffusers' default; 1.0 is the
other common choice); schnell has none. Text: T5-XXL tokens (the preset's sequence length) and CLIP-L's
pooled feature. Fill / Canny / Depth need their conditioning inputs and are not trained here.

Defaults: `tiny` trains on the built-in captioned shapes at 32 px on a CPU in minutes; dev and schnell
fine-tune with LoRA rank 16 at 1024 px, lr 1e-4, bf16 and gradient checkpointing, batch 1 (diffusers'
FLUX DreamBooth-LoRA example). Full fine-tuning of the 12 B transformer needs FSDP or DeepSpeed ZeRO-3
across GPUs (`accelerate launch --config_file ...`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from models.image_generation.flux import lora as flux_lora
from models.image_generation.flux.sampling import image_ids, pack_latents, text_ids, unpack_latents
from utils.diffusion.training.config import ModelTraining, TrainConfig
from utils.diffusion.training.recipe import DiffusionRecipe, encode_clip
from utils.errors import UserError

TRAINABLE = ("tiny", "dev", "schnell")


class FluxRecipe(DiffusionRecipe):
    """FLUX.1 dev / schnell: flow matching on packed latents, a fixed guidance value for dev."""

    denoiser_attr = "transformer"

    def objective(self):
        from utils.diffusion.training.objectives import FlowMatching

        c = self.config
        return FlowMatching(c.density, c.logit_mean, c.logit_std, c.mode_scale, c.weighting, c.shift)

    def text_features(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        p = self.pipe
        pooled = encode_clip(p.clip, prompts).pooled
        tokens = p.t5.tokenize(list(prompts), max_length=p.max_sequence_length)
        return {"context": p.t5(tokens["input_ids"]).last_hidden_state, "pooled": pooled}

    def predict(self, model: nn.Module, x_t: torch.Tensor, time: torch.Tensor, features: dict[str, torch.Tensor],
                batch: dict[str, Any]) -> torch.Tensor:
        b, _, h, w = x_t.shape
        txt = features["context"]
        guidance = (torch.full((b,), self.config.guidance, device=x_t.device)
                    if self.pipe.params.guidance_embed else None)
        out = model(pack_latents(x_t), image_ids(h, w, x_t.device)[None].expand(b, -1, -1), txt,
                    text_ids(b, txt.shape[1], x_t.device), time, features["pooled"], guidance)
        return unpack_latents(out.float(), h, w)

    def lora_targets(self, groups: tuple[str, ...]) -> list[str]:
        return flux_lora.lora_targets(self.denoiser, groups)

    def text_lora_components(self) -> list[tuple[str, nn.Module, list[str]]]:
        from utils.diffusion.lora.targets import select_targets

        clip = self.pipe.clip.model
        return [("clip", clip, select_targets(clip, ("attention",), _CLIP_GROUPS))]

    def enable_gradient_checkpointing(self) -> None:
        self.denoiser.gradient_checkpointing = True


_CLIP_GROUPS = {"attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
                "mlp": ("mlp.fc1", "mlp.fc2")}


def _load(preset: str, weights: str | None):
    from models.image_generation.flux.pipeline import FluxPipeline

    if preset == "tiny" and weights is None:
        return FluxPipeline.tiny()
    return FluxPipeline.from_pretrained(weights, preset=preset, device="cpu", dtype="fp32")


def recipe(preset: str) -> ModelTraining:
    """The FLUX recipe of `preset` (the registry's `trainer`)."""
    from models.image_generation.flux.spec import SPEC

    preset = SPEC.check_preset(preset)
    if preset not in TRAINABLE:
        raise UserError(f"FLUX.1 {preset} needs its conditioning images to train, which this trainer does not feed: "
                        "train dev or schnell")
    if preset == "tiny":
        base = TrainConfig(preset="tiny", steps=40, batch_size=2, lr=1e-3, resolution=32, rank=4, sample_steps=4)
    else:
        base = TrainConfig(preset=preset, steps=1000, batch_size=1, lr=1e-4, resolution=1024, rank=16,
                           mixed_precision="bf16", gradient_checkpointing=True, sample_steps=4 if preset == "schnell"
                           else 28)
    return ModelTraining(defaults=base.with_(model="flux", shift=1.0, density="logit_normal", guidance=3.5),
                         load_pipeline=_load, make=FluxRecipe, full_lr=1e-4 if preset == "tiny" else 1e-5,
                         notes={"objective": "rectified flow, logit-normal(0, 1) sigmas, unshifted; dev: guidance 3.5"})


__all__ = ["FluxRecipe", "TRAINABLE", "recipe"]
