"""How LoRA files name the modules of SDXL's UNet, SD3's MMDiT and their text encoders, and which modules
a new LoRA adapts.

The models keep the official layouts (sgm's `input_blocks.N...` UNet, the single-file MMDiT). kohya's
sd-scripts writes SDXL and SD3 LoRAs in those names, underscored (`lora_unet_input_blocks_4_1_
transformer_blocks_0_attn1_to_q`); diffusers files use diffusers' names, mapped here with the converters'
tables (`convert_unet.block_map`, `convert_mmdit`): the UNet's renames are one to one; SD3's separate
q, k, v are row blocks of the official fused `qkv`, and two AdaLN layers (`norm_out.linear`, the last
block's `norm1_context.linear`) store their halves swapped. Text encoders are transformers models and
take LoRA under their own names (`text_encoder.` / `lora_te1_`, `text_encoder_2.` / `lora_te2_`,
`text_encoder_3.` / `lora_te3_`).
"""
from __future__ import annotations

from typing import Any

from torch import nn

from models.image_generation.stable_diffusion.convert_mmdit import _CTX, _FIXED, _QKV, _X
from models.image_generation.stable_diffusion.convert_unet import unet_native_to_diffusers
from utils.diffusion.lora.routes import LoraComponent, Part, adaptable_layers, row_blocks

UNET_PREFIXES = ("unet", "lora_unet", "diffusion_model", "model.diffusion_model", "base_model.model", "")
TRANSFORMER_PREFIXES = ("transformer", "lora_unet", "lora_transformer", "diffusion_model", "model.diffusion_model",
                        "base_model.model", "")
TE_PREFIXES = {
    "clip-l": (("text_encoder", "lora_te", "lora_te1", "text_encoders.clip_l.transformer"), "text_encoder", "lora_te1"),
    "clip-g": (("text_encoder_2", "lora_te2", "text_encoders.clip_g.transformer"), "text_encoder_2", "lora_te2"),
    "t5": (("text_encoder_3", "lora_te3", "text_encoders.t5xxl.transformer"), "text_encoder_3", "lora_te3"),
}

UNET_TARGET_GROUPS = {
    "attention": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                  "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"),
    "mlp": ("ff.net.0.proj", "ff.net.2"),
    "proj": ("proj_in", "proj_out"),
}
MMDIT_TARGET_GROUPS = {
    "attention": ("attn.qkv", "attn.proj", "attn2.qkv", "attn2.proj"),
    "mlp": ("mlp.fc1", "mlp.fc2"),
    "modulation": ("adaLN_modulation.1",),
}
TEXT_TARGET_GROUPS = {
    "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
    "mlp": ("mlp.fc1", "mlp.fc2"),
}
DEFAULT_TARGETS = ("attention", "mlp")
"""A new LoRA adapts the attention projections and the feed-forward layers by default."""
TEXT_DEFAULT_TARGETS = ("attention",)
"""A text-encoder LoRA adapts q, k, v and the output projection (as diffusers' training scripts)."""


def unet_aliases(unet: Any) -> dict[str, tuple[Part, ...]]:
    """diffusers' UNet2DConditionModel module names -> the native (sgm) layers."""
    names = list(adaptable_layers(unet))
    renamed = unet_native_to_diffusers({f"{n}.weight": n for n in names}, unet.config)
    return {key[: -len(".weight")]: (Part(native),) for key, native in renamed.items()}


def mmdit_aliases(model: Any) -> dict[str, tuple[Part, ...]]:
    """diffusers' SD3Transformer2DModel module names -> parts of the native MMDiT layers."""
    cfg = model.config
    h = cfg.hidden_size
    out: dict[str, tuple[Part, ...]] = {d: (Part(n),) for n, d in _FIXED.items()}
    out["norm_out.linear"] = (Part("final_layer.adaLN_modulation.1", swap=True),)
    natives = set(adaptable_layers(model))
    for i in range(cfg.depth):
        d0, n0 = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        for stream, table in (("x_block", _X), ("context_block", _CTX)):
            for n, d in table.items():
                native = f"{n0}.{stream}.{n}"
                if native in natives:
                    swap = stream == "context_block" and n == "adaLN_modulation.1" and i == cfg.depth - 1
                    out[f"{d0}.{d}"] = (Part(native, swap=swap),)
        for (stream, attn), parts in _QKV.items():
            native = f"{n0}.{stream}.{attn}.qkv"
            if native in natives:
                out.update(row_blocks(native, [f"{d0}.{q}" for q in parts], [h, h, h]))
    return out


def text_component(attr: str, encoder: Any, kind: str) -> LoraComponent:
    prefixes, save, kohya = TE_PREFIXES[kind]
    return LoraComponent(attr, encoder.model, prefixes, save, kohya)


def sdxl_components(pipe: Any) -> list[LoraComponent]:
    """SDXL: the UNet and its text encoders (CLIP-L + bigG; the refiner's bigG alone)."""
    comps = [LoraComponent("unet", pipe.unet, UNET_PREFIXES, "unet", "lora_unet", aliases=unet_aliases(pipe.unet))]
    encoders = list(pipe.text_encoders)
    kinds = ["clip-g"] if len(encoders) == 1 else ["clip-l", "clip-g"]
    comps += [text_component(f"text_encoders.{i}", enc, kind) for i, (enc, kind) in enumerate(zip(encoders, kinds))]
    return comps


def sd15_components(pipe: Any) -> list[LoraComponent]:
    """SD 1.5 / 2.1: the UNet and its one text encoder (kohya: `lora_unet_` in diffusers' names, `lora_te_`)."""
    unet = LoraComponent("unet", pipe.unet, UNET_PREFIXES, "unet", "lora_unet", aliases=unet_aliases(pipe.unet),
                         kohya_uses_aliases=True)
    prefixes = ("text_encoder", "lora_te", "lora_te1", "text_encoders.clip_l.transformer")
    return [unet, LoraComponent("text_encoder", pipe.text_encoder.model, prefixes, "text_encoder", "lora_te")]


def sd3_components(pipe: Any) -> list[LoraComponent]:
    """SD3: the MMDiT, CLIP-L, CLIP-G and (when loaded) T5."""
    comps = [LoraComponent("transformer", pipe.transformer, TRANSFORMER_PREFIXES, "transformer", "lora_unet",
                           aliases=mmdit_aliases(pipe.transformer))]
    for attr, kind in (("clip_l", "clip-l"), ("clip_g", "clip-g"), ("t5", "t5")):
        if getattr(pipe, attr, None) is not None:
            comps.append(text_component(attr, getattr(pipe, attr), kind))
    return comps


def unet_targets(unet: nn.Module, groups: tuple[str, ...] = DEFAULT_TARGETS) -> list[str]:
    from utils.diffusion.lora.targets import select_targets

    return select_targets(unet, groups, UNET_TARGET_GROUPS)


def mmdit_targets(model: nn.Module, groups: tuple[str, ...] = DEFAULT_TARGETS) -> list[str]:
    from utils.diffusion.lora.targets import select_targets

    return select_targets(model, groups, MMDIT_TARGET_GROUPS)


def text_targets(model: nn.Module, groups: tuple[str, ...] = TEXT_DEFAULT_TARGETS) -> list[str]:
    from utils.diffusion.lora.targets import select_targets

    return select_targets(model, groups, TEXT_TARGET_GROUPS)


__all__ = ["DEFAULT_TARGETS", "MMDIT_TARGET_GROUPS", "TEXT_DEFAULT_TARGETS", "TEXT_TARGET_GROUPS",
           "UNET_TARGET_GROUPS", "mmdit_aliases", "mmdit_targets", "sd15_components", "sd3_components", "sdxl_components",
           "text_component", "text_targets", "unet_aliases", "unet_targets"]
