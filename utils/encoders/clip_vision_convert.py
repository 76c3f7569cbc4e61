"""Checkpoint layouts of CLIP vision towers -> the native (transformers) layout. Pure functions.

Native: the keys of transformers' CLIPVisionModelWithProjection, `vision_model.embeddings.patch_embedding.weight`,
`vision_model.encoder.layers.N.self_attn.q_proj.weight`, `visual_projection.weight`.

The OpenCLIP layout (`visual.` of an OpenCLIP model; official SVD files under
`conditioner.embedders.0.open_clip.model.visual.`) maps as

    conv1                                  embeddings.patch_embedding
    class_embedding, positional_embedding  embeddings.class_embedding, embeddings.position_embedding.weight
    ln_pre / ln_post                       pre_layrnorm / post_layernorm
    transformer.resblocks.N.ln_1 / ln_2    encoder.layers.N.layer_norm1 / layer_norm2
      attn.in_proj_{weight,bias}           self_attn.{q,k,v}_proj (split in three along the output)
      attn.out_proj, mlp.c_fc, mlp.c_proj  self_attn.out_proj, mlp.fc1, mlp.fc2
    proj (width, dim), multiplied from the right    visual_projection.weight (its transpose)

(all but `proj` under `vision_model.`). The widths, depth, patch and input sizes are read off the
shapes; the head count, activation and LayerNorm epsilon are not stored, and come from the preset
whose sizes the file has.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from utils.errors import ConversionError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

OPEN_CLIP_ANCHOR = "visual.conv1.weight"
HF_ANCHOR = "vision_model.embeddings.patch_embedding.weight"
_IGNORED = ("vision_model.embeddings.position_ids",)

_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
          "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
_TOP = {"conv1.weight": "embeddings.patch_embedding.weight", "class_embedding": "embeddings.class_embedding",
        "positional_embedding": "embeddings.position_embedding.weight", "ln_pre.weight": "pre_layrnorm.weight",
        "ln_pre.bias": "pre_layrnorm.bias", "ln_post.weight": "post_layernorm.weight",
        "ln_post.bias": "post_layernorm.bias"}


def find_vision_tower(sd: Mapping[str, torch.Tensor]) -> tuple[str, str]:
    """(layout, prefix) of the one CLIP vision tower in `sd`: layout 'open_clip' (prefix ends before
    `visual.`) or 'hf' (prefix before `vision_model.`)."""
    found = [("open_clip", k[: -len(OPEN_CLIP_ANCHOR)]) for k in sd if k.endswith(OPEN_CLIP_ANCHOR)]
    found += [("hf", k[: -len(HF_ANCHOR)]) for k in sd if k.endswith(HF_ANCHOR)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConversionError("no CLIP image encoder in this checkpoint (no visual.conv1.weight or "
                              "vision_model.embeddings.patch_embedding.weight): pass an SVD file, an OpenCLIP model or "
                              "an image_encoder/ folder")
    raise ConversionError(f"several CLIP image encoders in this checkpoint (prefixes "
                          f"{', '.join(repr(p) for _, p in found)}): pass a file that holds one")


def open_clip_visual_to_hf(sd: Mapping[str, torch.Tensor], prefix: str = "") -> StateDict:
    """The OpenCLIP vision tower under `prefix + 'visual.'` -> transformers CLIPVisionModelWithProjection keys."""
    head = prefix + "visual."
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        if not key.startswith(head):
            continue
        name = key[len(head):]
        if name in _TOP:
            out["vision_model." + _TOP[name]] = value
        elif name == "proj":
            out["visual_projection.weight"] = value.t().contiguous()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", name):
            layer, kind = m.groups()
            for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"vision_model.encoder.layers.{layer}.self_attn.{proj}.{kind}"] = chunk.contiguous()
        elif (m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", name)) and m[2] in _BLOCK:
            out[f"vision_model.encoder.layers.{m[1]}.{_BLOCK[m[2]]}.{m[3]}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"the OpenCLIP image encoder has keys this converter does not know "
                              f"({key_report([], unknown)}): it is not a plain ViT (attention pooling and other "
                              "variants are not supported)")
    return out


def hf_visual_to_open_clip(native: Mapping[str, torch.Tensor], prefix: str = "") -> StateDict:
    """The inverse of `open_clip_visual_to_hf`: native keys -> OpenCLIP `visual.` keys under `prefix`."""
    top = {v: k for k, v in _TOP.items()}
    block = {v: k for k, v in _BLOCK.items()}
    out: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in native.items():
        if key in _IGNORED:
            continue
        if key == "visual_projection.weight":
            out[prefix + "visual.proj"] = value.t().contiguous()
        elif key.startswith("vision_model.") and key[len("vision_model."):] in top:
            out[prefix + "visual." + top[key[len("vision_model."):]]] = value
        elif m := re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
        elif (m := re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)) and m[2] in block:
            out[f"{prefix}visual.transformer.resblocks.{m[1]}.{block[m[2]]}.{m[3]}"] = value
        else:
            raise ConversionError(f"'{key}' is no key of a CLIP vision tower with projection")
    for (layer, kind), parts in qkv.items():
        out[f"{prefix}visual.transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]])
    return out


def hf_vision_from_checkpoint(sd: Mapping[str, torch.Tensor], prefix: str = "") -> StateDict:
    """The transformers-layout vision tower under `prefix` (prefix removed, the position_ids buffer dropped)."""
    out = {}
    for key, value in sd.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name.startswith(("vision_model.", "visual_projection.")) and name not in _IGNORED:
                out[name] = value
    return out


def read_sizes(native: Mapping[str, torch.Tensor]) -> dict:
    """The config fields a native state dict's shapes fix (works on meta tensors)."""
    from utils.encoders.clip_vision import side_from_positions

    try:
        patch = native["vision_model.embeddings.patch_embedding.weight"]
        pos = native["vision_model.embeddings.position_embedding.weight"]
        fc1 = native["vision_model.encoder.layers.0.mlp.fc1.weight"]
        proj = native["visual_projection.weight"]
    except KeyError as err:
        raise ConversionError(f"not a CLIP image encoder with projection: the key {err} is missing") from None
    layers = 1 + max(int(k.split(".")[3]) for k in native if k.startswith("vision_model.encoder.layers."))
    return dict(hidden_size=patch.shape[0], patch_size=patch.shape[-1], image_size=side_from_positions(pos.shape[0],
                patch.shape[-1]), intermediate_size=fc1.shape[0], num_layers=layers, projection_dim=proj.shape[0])


def vision_to_native(sd: Mapping[str, torch.Tensor], preset: str | None = None, config=None):
    """(native state dict, config) of the CLIP vision tower in `sd`, in either layout."""
    from utils.encoders.clip_vision import CLIP_VISION_PRESETS, CLIPVisionConfig
    from utils.weights.configs import settle_config

    layout, prefix = find_vision_tower(sd)
    native = open_clip_visual_to_hf(sd, prefix) if layout == "open_clip" else hf_vision_from_checkpoint(sd, prefix)
    cfg, _ = settle_config(read_sizes(native), CLIP_VISION_PRESETS, CLIPVisionConfig,
                           ["num_heads", "hidden_act", "layer_norm_eps"], "the CLIP image encoder in this file",
                           config=config, prefer=preset)
    return native, cfg


__all__ = ["find_vision_tower", "hf_vision_from_checkpoint", "hf_visual_to_open_clip", "open_clip_visual_to_hf",
           "read_sizes", "vision_to_native"]
