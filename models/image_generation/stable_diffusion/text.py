"""Prompt encoding for SDXL and SD3 on top of the shared CLIP / T5 encoders (utils.encoders).

`TinyTokenizer` exists only for `preset="tiny"`: random-weight pipelines that must run offline, where
no real tokenizer files are at hand. It maps characters to ids (with the encoder's start, end and
padding ids) and follows the calling convention of transformers' tokenizers that
`utils.encoders.text.tokenize` uses. Real weights always come with their real tokenizers.
"""
from __future__ import annotations

from typing import Sequence

import torch

from models.image_generation.stable_diffusion.conditioning import sd3_context


class TinyTokenizer:
    """Character-level stand-in tokenizer for random-weight (tiny) encoders."""

    def __init__(self, vocab_size: int, eos_id: int, pad_id: int, bos_id: int | None = None, first_id: int = 3,
                 model_max_length: int = 77):
        self.vocab_size, self.eos_id, self.pad_id, self.bos_id = vocab_size, eos_id, pad_id, bos_id
        self.first_id = first_id
        self.model_max_length = model_max_length
        specials = {eos_id, pad_id} | ({bos_id} if bos_id is not None else set())
        self._ids = [i for i in range(first_id, vocab_size) if i not in specials]

    def _encode(self, text: str) -> list[int]:
        body = [self._ids[ord(ch) % len(self._ids)] for ch in text.lower()]
        return ([self.bos_id] if self.bos_id is not None else []) + body + [self.eos_id]

    def __call__(self, prompts: str | Sequence[str], padding: str | bool = False, max_length: int | None = None,
                 truncation: bool = False, return_tensors: str | None = None, **_: object) -> dict:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids = [self._encode(p) for p in prompts]
        if truncation and max_length:
            ids = [x[:max_length - 1] + [self.eos_id] if len(x) > max_length else x for x in ids]
        if padding == "max_length" and max_length:
            mask = [[1] * len(x) + [0] * (max_length - len(x)) for x in ids]
            ids = [x + [self.pad_id] * (max_length - len(x)) for x in ids]
        else:
            mask = [[1] * len(x) for x in ids]
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}
        return {"input_ids": ids, "attention_mask": mask}


def tiny_clip_tokenizer(cfg) -> TinyTokenizer:
    return TinyTokenizer(cfg.vocab_size, eos_id=cfg.eos_token_id, pad_id=cfg.eos_token_id, bos_id=cfg.bos_token_id,
                         model_max_length=cfg.max_length)


def tiny_t5_tokenizer(cfg) -> TinyTokenizer:
    return TinyTokenizer(cfg.vocab_size, eos_id=1, pad_id=0, first_id=3, model_max_length=cfg.max_length)


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


__all__ = ["TinyTokenizer", "encode_sd3", "encode_sdxl", "tiny_clip_tokenizer", "tiny_t5_tokenizer"]
