"""How LoRA files name FLUX.1's modules, and which modules a new LoRA adapts.

The transformer keeps the official (BFL) layout, so BFL-format files and kohya's sd-scripts files
(`lora_unet_double_blocks_0_img_attn_qkv`) name its modules directly. diffusers, ai-toolkit and
SimpleTuner files use diffusers' names, whose separate projections are row blocks of the fused
official layers (the converter's tables, `convert.py`):

    diffusers                                          official
    transformer_blocks.N.attn.to_q | to_k | to_v       double_blocks.N.img_attn.qkv rows [0, h) [h, 2h) [2h, 3h)
    transformer_blocks.N.attn.add_q_proj | _k | _v     double_blocks.N.txt_attn.qkv rows
    single_transformer_blocks.N.attn.to_q|to_k|to_v, proj_mlp   single_blocks.N.linear1 rows (h, h, h, mlp)
    norm_out.linear                                    final_layer.adaLN_modulation.1 (halves swapped)

XLabs files (`double_blocks.N.processor.qkv_lora1`: 1 = image stream, 2 = text stream; single blocks'
`qkv_lora` covers the q, k, v rows of linear1) are read too. CLIP-L takes LoRA as transformers names it
(`text_encoder.` / `lora_te1_`); T5 (`text_encoder_2.` / `lora_te3_`) as well.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from models.image_generation.flux.convert import (_DOUBLE, _DOUBLE_FUSED, _SINGLE, _SINGLE_FUSED, _TOP)
from utils.diffusion.lora.routes import LoraComponent, Part, row_blocks

DENOISER_PREFIXES = ("transformer", "lora_unet", "lora_transformer", "diffusion_model", "model.diffusion_model",
                     "base_model.model", "")

DEFAULT_TARGETS = ("attention", "mlp")
"""What a new LoRA adapts by default: the attention projections (qkv, proj) and the MLPs of every block."""

TARGET_GROUPS = {
    "attention": ("img_attn.qkv", "img_attn.proj", "txt_attn.qkv", "txt_attn.proj"),
    "mlp": ("img_mlp.0", "img_mlp.2", "txt_mlp.0", "txt_mlp.2"),
    "single": ("linear1", "linear2"),
    "modulation": ("img_mod.lin", "txt_mod.lin", "modulation.lin"),
}
"""Groups of layer-name endings for `--lora-targets`; 'attention' and 'mlp' include the single blocks'
fused linear1 / linear2 (attention and MLP at once)."""


def transformer_aliases(model: Any) -> dict[str, tuple[Part, ...]]:
    """diffusers' module names -> parts of the native layers of this transformer."""
    p = model.params
    h, mlp = p.hidden_size, int(p.hidden_size * p.mlp_ratio)
    out: dict[str, tuple[Part, ...]] = {d: (Part(n),) for d, n in _TOP.items()}
    out["norm_out.linear"] = (Part("final_layer.adaLN_modulation.1", swap=True),)
    for i in range(p.depth):
        d0, n0 = f"transformer_blocks.{i}", f"double_blocks.{i}"
        out.update({f"{d0}.{d}": (Part(f"{n0}.{n}"),) for d, n in _DOUBLE.items()})
        for n, parts in _DOUBLE_FUSED.items():
            out.update(row_blocks(f"{n0}.{n}", [f"{d0}.{q}" for q in parts], [h, h, h]))
    for i in range(p.depth_single_blocks):
        d0, n0 = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        out.update({f"{d0}.{d}": (Part(f"{n0}.{n}"),) for d, n in _SINGLE.items()})
        for n, parts in _SINGLE_FUSED.items():
            out.update(row_blocks(f"{n0}.{n}", [f"{d0}.{q}" for q in parts], [h, h, h, mlp]))
    return out


def xlabs_aliases(model: Any) -> dict[str, tuple[Part, ...]]:
    """XLabs' processor names -> native parts."""
    p = model.params
    out: dict[str, tuple[Part, ...]] = {}
    for i in range(p.depth):
        b = f"double_blocks.{i}"
        out.update({f"{b}.processor.qkv_lora1": (Part(f"{b}.img_attn.qkv"),),
                    f"{b}.processor.proj_lora1": (Part(f"{b}.img_attn.proj"),),
                    f"{b}.processor.qkv_lora2": (Part(f"{b}.txt_attn.qkv"),),
                    f"{b}.processor.proj_lora2": (Part(f"{b}.txt_attn.proj"),)})
    for i in range(p.depth_single_blocks):
        b = f"single_blocks.{i}"
        out.update({f"{b}.processor.qkv_lora": (Part(f"{b}.linear1", (0, 3 * p.hidden_size)),),
                    f"{b}.processor.proj_lora": (Part(f"{b}.linear2"),)})
    return out


def lora_components(pipe: Any) -> list[LoraComponent]:
    """The FLUX pipeline's LoRA-adaptable models: the transformer, CLIP-L and T5."""
    t = pipe.transformer
    comps = [LoraComponent("transformer", t, DENOISER_PREFIXES, "transformer", "lora_unet",
                           aliases=transformer_aliases(t), read_aliases=xlabs_aliases(t))]
    if getattr(pipe, "clip", None) is not None:
        comps.append(LoraComponent("clip", pipe.clip.model, ("text_encoder", "lora_te", "lora_te1",
                                                             "text_encoders.clip_l.transformer"),
                                   "text_encoder", "lora_te1"))
    if getattr(pipe, "t5", None) is not None:
        comps.append(LoraComponent("t5", pipe.t5.model, ("text_encoder_2", "lora_te3",
                                                         "text_encoders.t5xxl.transformer"),
                                   "text_encoder_2", "lora_te3"))
    return comps


def lora_targets(model: nn.Module, groups: tuple[str, ...] = DEFAULT_TARGETS) -> list[str]:
    """Native names of the layers a new LoRA adapts (`groups` of TARGET_GROUPS)."""
    from utils.diffusion.lora.targets import select_targets

    return select_targets(model, groups, TARGET_GROUPS, _implied)


def _implied(groups: tuple[str, ...]) -> tuple[str, ...]:
    # the single blocks' fused layers hold attention and MLP together
    return ("single",) if {"attention", "mlp"} & set(groups) else ()


__all__ = ["DEFAULT_TARGETS", "DENOISER_PREFIXES", "TARGET_GROUPS", "lora_components", "lora_targets",
           "transformer_aliases", "xlabs_aliases"]
