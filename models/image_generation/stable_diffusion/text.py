"""Prompt encoding for SDXL and SD3 on top of the shared CLIP / T5 encoders (utils.encoders).

The tiny presets use `utils.encoders.tiny_tokenizer` (no tokenizer files needed).
"""
from __future__ import annotations

from typing import Sequence

import torch

from models.image_generation.stable_diffusion.conditioning import sd3_context


# -- SDXL -----------------------------------------------------------------------------------------


@torch.inference_mode()
def encode_sdxl(encoders: Sequence, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, pooled) for SDXL: penultimate states of each encoder side by side, and the projected
    pooled embedding of the last encoder (OpenCLIP bigG)."""
    states, pooled = [], None
    for enc in encoders:
        out = enc.encode(prompts)
        states.append(out.penultimate)
        if out.text_embeds is not None:
            pooled = out.text_embeds
    if pooled is None:
        raise ValueError("SDXL needs an encoder with a text projection (OpenCLIP bigG) for the pooled embedding")
    return torch.cat(states, dim=-1), pooled


# -- SD3 ------------------------------------------------------------------------------------------


@torch.inference_mode()
def encode_sd3(clip_l, clip_g, t5, prompts: list[str], t5_tokens: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(context, pooled) for SD3: [CLIP-L | CLIP-G] penultimate states padded to `width`, then T5 (or
    zeros); pooled = projected CLIP-L and CLIP-G embeddings side by side."""
    out_l, out_g = clip_l.encode(prompts), clip_g.encode(prompts)
    t5_states = None
    if t5 is not None:
        t5_states = t5.encode(prompts, max_length=t5_tokens).last_hidden_state
    dtype = out_l.penultimate.dtype
    context = sd3_context(out_l.penultimate, out_g.penultimate.to(dtype), t5_states, t5_tokens, width)
    pooled = torch.cat([out_l.text_embeds, out_g.text_embeds.to(dtype)], dim=-1)
    return context, pooled


__all__ = ["encode_sd3", "encode_sdxl"]
