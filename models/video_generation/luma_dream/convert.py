"""LTX-Video transformer weights: the official layout (native) <-> diffusers' `LTXVideoTransformer3DModel`.

The official release (`ltx-video-2b-v0.9*.safetensors`, one file holding the transformer under
`model.diffusion_model.` and the VAE under `vae.`) uses this package's attribute names. diffusers
renames four modules one to one and reshapes nothing:

    patchify_proj -> proj_in      adaln_single -> time_embed      q_norm -> norm_q      k_norm -> norm_k
"""
from __future__ import annotations

from typing import Mapping

import torch

from models.video_generation.luma_dream.config import LTXTransformerConfig
from utils.errors import ConversionError

StateDict = dict[str, torch.Tensor]

SINGLE_FILE_PREFIX = "model.diffusion_model."
VAE_PREFIX = "vae."

# Official module name -> diffusers module name (whole dotted components).
RENAMES = {"patchify_proj": "proj_in", "adaln_single": "time_embed", "q_norm": "norm_q", "k_norm": "norm_k"}

# The head count is not stored in the weights; every release uses 32 heads (2B: 32 x 64, 13B: 32 x 128).
RELEASED_HEADS = 32


def _rename(key: str, table: Mapping[str, str]) -> str:
    return ".".join(table.get(part, part) for part in key.split("."))


def official_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official (native) tensors -> diffusers `LTXVideoTransformer3DModel` names."""
    return {_rename(k, RENAMES): v for k, v in to_native(state_dict).items()}


def diffusers_to_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers `LTXVideoTransformer3DModel` tensors -> official (native) names."""
    back = {v: k for k, v in RENAMES.items()}
    return {_rename(k, back): v for k, v in state_dict.items()}


def is_diffusers(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("proj_in.", "time_embed.")) for k in state_dict)


def split_single_file(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """An official single file -> (transformer tensors without `model.diffusion_model.`, VAE tensors
    without `vae.`); a file with neither prefix is taken as a bare transformer."""
    transformer = {k[len(SINGLE_FILE_PREFIX):]: v for k, v in state_dict.items() if k.startswith(SINGLE_FILE_PREFIX)}
    vae = {k[len(VAE_PREFIX):]: v for k, v in state_dict.items() if k.startswith(VAE_PREFIX)}
    if not transformer:
        transformer = {k: v for k, v in state_dict.items() if not k.startswith(VAE_PREFIX)}
    return transformer, vae


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Any LTX transformer layout (official, single file, diffusers) -> native (official) names."""
    if is_diffusers(state_dict):
        return diffusers_to_official(state_dict)
    return split_single_file(state_dict)[0]


def infer_config(state_dict: Mapping[str, torch.Tensor], heads: int = RELEASED_HEADS,
                 base: LTXTransformerConfig | None = None) -> LTXTransformerConfig:
    """The config of native tensors (sizes read off the shapes; the head count is `heads`; the rotary
    bases and epsilons, which no tensor holds, come from `base` or the release's defaults)."""
    sd = state_dict
    try:
        dim, in_ch = sd["patchify_proj.weight"].shape
        layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("transformer_blocks."))
        cfg = {f: getattr(base, f) for f in base.__dataclass_fields__} if base is not None else {}
        if dim % heads:
            raise ConversionError(f"LTX token width {dim} is not a multiple of {heads} heads: pass heads=")
        cfg.update(in_channels=int(in_ch), out_channels=int(sd["proj_out.weight"].shape[0]), num_attention_heads=heads,
                   attention_head_dim=int(dim) // heads, num_layers=layers,
                   cross_attention_dim=int(sd["transformer_blocks.0.attn2.to_k.weight"].shape[1]),
                   caption_channels=int(sd["caption_projection.linear_1.weight"].shape[1]))
        return LTXTransformerConfig(**cfg)
    except (KeyError, ValueError) as err:
        raise ConversionError(f"these tensors are not an LTX-Video transformer (no {err}): check the file") from None


__all__ = ["RENAMES", "SINGLE_FILE_PREFIX", "VAE_PREFIX", "diffusers_to_official", "infer_config", "is_diffusers",
           "official_to_diffusers", "split_single_file", "to_native"]
