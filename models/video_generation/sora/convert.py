"""Wan transformer weights: the official layout (native) <-> diffusers' `WanTransformer3DModel`.

The official release (`diffusion_pytorch_model*.safetensors` of Wan-AI/Wan2.1-*, also behind a
`model.diffusion_model.` prefix in single-file repacks) uses this package's attribute names
(`blocks.N.self_attn.q.weight`, `blocks.N.ffn.0`, `blocks.N.modulation`, `head.head`, ...). diffusers
renames modules one to one (no tensor is reshaped), with one trap: the release's `norm3` (the gained
LayerNorm before cross-attention) is diffusers' `norm2`, and the release's `norm2` has no weights.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from models.video_generation.sora.config import WanTransformerConfig
from utils.errors import ConversionError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

SINGLE_FILE_PREFIX = "model.diffusion_model."

# Official module path -> diffusers module path, outside the blocks.
TOP_LEVEL = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",
}

# Inside `blocks.N.`.
IN_BLOCK = {
    "modulation": "scale_shift_table",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    **{f"{ours}.{a}": f"{theirs}.{b}" for ours, theirs in (("self_attn", "attn1"), ("cross_attn", "attn2"))
       for a, b in (("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("o", "to_out.0"),
                    ("norm_q", "norm_q"), ("norm_k", "norm_k"))},
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
}

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(key: str, top: Mapping[str, str], block: Mapping[str, str]) -> str | None:
    m = _BLOCK.match(key)
    table, rest, lead = (block, m.group(2), f"blocks.{m.group(1)}.") if m else (top, key, "")
    for src, dst in table.items():
        if rest == src or rest.startswith(src + "."):
            return lead + dst + rest[len(src):]
    return None


def _convert(state_dict: Mapping[str, torch.Tensor], top: Mapping[str, str], block: Mapping[str, str],
             what: str) -> StateDict:
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _rename(key, top, block)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ConversionError(f"the {what} Wan transformer weights have keys this converter does not know "
                              f"({key_report([], unknown)}): check that the file is a Wan 2.1/2.2 transformer")
    return out


def diffusers_to_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers `WanTransformer3DModel` tensors -> official (native) names; an unknown key is a ConversionError."""
    return _convert(state_dict, {v: k for k, v in TOP_LEVEL.items()}, {v: k for k, v in IN_BLOCK.items()}, "diffusers")


def official_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official (native) tensors -> diffusers `WanTransformer3DModel` names."""
    return _convert(to_native(state_dict), TOP_LEVEL, IN_BLOCK, "official")


def is_diffusers(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("condition_embedder.") for k in state_dict)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Any Wan transformer layout (official, single-file `model.diffusion_model.`, diffusers) -> native names."""
    if is_diffusers(state_dict):
        return diffusers_to_official(state_dict)
    if any(k.startswith(SINGLE_FILE_PREFIX) for k in state_dict):
        return {k[len(SINGLE_FILE_PREFIX):]: v for k, v in state_dict.items() if k.startswith(SINGLE_FILE_PREFIX)}
    return dict(state_dict)


def infer_config(state_dict: Mapping[str, torch.Tensor], head_dim: int = 128) -> WanTransformerConfig:
    """The config of native (official-layout) tensors. The head count is not stored in the weights:
    every release uses 128 channels per head, hence `head_dim`."""
    sd = state_dict
    try:
        dim, in_dim, *patch = sd["patch_embedding.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
        image = sd.get("img_emb.proj.0.weight")
        pos = sd.get("img_emb.emb_pos")
        return WanTransformerConfig(
            patch_size=tuple(int(p) for p in patch), in_dim=int(in_dim),
            out_dim=int(sd["head.head.weight"].shape[0]) // (patch[0] * patch[1] * patch[2]), dim=int(dim),
            ffn_dim=int(sd["blocks.0.ffn.0.weight"].shape[0]), freq_dim=int(sd["time_embedding.0.weight"].shape[1]),
            text_dim=int(sd["text_embedding.0.weight"].shape[1]), num_heads=int(dim) // head_dim, num_layers=layers,
            cross_attn_norm="blocks.0.norm3.weight" in sd,
            image_dim=None if image is None else int(image.shape[0]),
            image_pos_len=None if pos is None else int(pos.shape[1]))
    except (KeyError, ValueError) as err:
        raise ConversionError(f"these tensors are not a Wan transformer (no {err}): check the file") from None


__all__ = ["IN_BLOCK", "TOP_LEVEL", "diffusers_to_official", "infer_config", "is_diffusers",
           "official_to_diffusers", "to_native"]
