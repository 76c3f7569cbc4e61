"""Checkpoint layouts of the text encoders -> the native (transformers) layouts. Pure functions.

CLIP text encoders (native: the keys of transformers' CLIP text models as hub files store them,
`text_model.encoder.layers.N.self_attn.q_proj.weight`, `text_projection.weight`; transformers >= 5
drops the `text_model.` level inside CLIPTextModel, which `clip.py` handles when loading) come as:

- the transformers layout, bare (ComfyUI/SD3 `clip_l.safetensors`, `clip_g.safetensors`, diffusers
  `text_encoder/`) or under a prefix inside a single file: `cond_stage_model.transformer.` (SD 1.x),
  `conditioner.embedders.0.transformer.` (SDXL's CLIP-L), `text_encoders.clip_l.transformer.` (SD3);
- the OpenCLIP layout (SDXL's bigG at `conditioner.embedders.1.model.`, SD 2.x at
  `cond_stage_model.model.`): `transformer.resblocks.N.attn.in_proj_weight` (q, k and v stacked),
  `ln_final`, `token_embedding`, `positional_embedding`, and `text_projection` as a (width, proj) matrix
  that multiplies from the right (transformers stores its transpose).

T5 encoders (native: transformers' T5EncoderModel keys, `encoder.block.N.layer.0.SelfAttention.q.weight`,
`shared.weight`) come bare (`t5xxl_fp16.safetensors`, diffusers `text_encoder_3/`), under
`text_encoders.t5xxl.transformer.` (SD3 single files), or as a whole T5 with a decoder (dropped).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from utils.errors import ConversionError
from utils.weights import key_report

StateDict = dict[str, torch.Tensor]

HF_CLIP_ANCHOR = "embeddings.token_embedding.weight"
HF_CLIP_SIBLING = "encoder.layers.0.self_attn.q_proj.weight"
OPEN_CLIP_ANCHOR = "transformer.resblocks.0.attn.in_proj_weight"
T5_ANCHOR = "encoder.final_layer_norm.weight"


@dataclass(frozen=True)
class FoundEncoder:
    """A text encoder located inside a checkpoint."""

    prefix: str
    layout: str  # "hf" or "open_clip" (CLIP), "t5"
    width: int
    layers: int


# -- locating encoders in a checkpoint ---------------------------------------------------------------


def find_clip_encoders(sd: Mapping[str, torch.Tensor]) -> list[FoundEncoder]:
    """Every CLIP text encoder in `sd`, in either layout, with its prefix, width and depth."""
    found = []
    for key, value in sd.items():
        if key.endswith(HF_CLIP_ANCHOR) and key[: -len(HF_CLIP_ANCHOR)] + HF_CLIP_SIBLING in sd:
            # transformers >= 5 saves CLIPTextModel without the `text_model.` level; files on the hub have it
            head = key[: -len(HF_CLIP_ANCHOR)]
            prefix = head[: -len("text_model.")] if head.endswith("text_model.") else head
            layers = _count(sd, head + "encoder.layers.")
            found.append(FoundEncoder(prefix, "hf", int(value.shape[1]), layers))
        elif key.endswith(OPEN_CLIP_ANCHOR) and "visual." not in key:
            prefix = key[: -len(OPEN_CLIP_ANCHOR)]
            if prefix + "token_embedding.weight" in sd:
                layers = _count(sd, prefix + "transformer.resblocks.")
                found.append(FoundEncoder(prefix, "open_clip", int(value.shape[1]), layers))
    return sorted(found, key=lambda f: f.prefix)


def find_t5_encoders(sd: Mapping[str, torch.Tensor]) -> list[FoundEncoder]:
    found = []
    for key, value in sd.items():
        if key.endswith(T5_ANCHOR):
            prefix = key[: -len(T5_ANCHOR)]
            found.append(FoundEncoder(prefix, "t5", int(value.shape[0]), _count(sd, prefix + "encoder.block.")))
    return sorted(found, key=lambda f: f.prefix)


def _count(sd: Mapping[str, torch.Tensor], head: str) -> int:
    ids = {int(m.group(1)) for k in sd if k.startswith(head) and (m := re.match(r"(\d+)\.", k[len(head):]))}
    return max(ids) + 1 if ids else 0


def pick_encoder(found: list[FoundEncoder], width: int | None, what: str) -> FoundEncoder:
    """The one encoder of the wanted width (or the only one); a clear error otherwise."""
    if not found:
        raise ConversionError(f"no {what} text encoder in the checkpoint: pass a file or folder that contains one")
    matches = [f for f in found if width is None or f.width == width]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(f"'{f.prefix or '(no prefix)'}' width {f.width}" for f in found)
    if not matches:
        raise ConversionError(f"no {what} text encoder of width {width} in the checkpoint (found {listing}): "
                              "pick the preset that matches the file")
    raise ConversionError(f"several {what} text encoders in the checkpoint ({listing}): pass a preset to choose")


# -- CLIP ---------------------------------------------------------------------------------------------

# Keys some exports carry that are not weights of the text model.
_CLIP_IGNORED = ("text_model.embeddings.position_ids", "logit_scale", "logit_bias")


_TEXT_MODEL_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")


def hf_clip_from_checkpoint(sd: Mapping[str, torch.Tensor], prefix: str = "",
                            keep_projection: bool = True) -> StateDict:
    """The transformers-layout CLIP text encoder under `prefix`, prefix removed, in the hub file
    layout (`text_model.embeddings...`, `text_projection.weight`)."""
    out: StateDict = {}
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith(_TEXT_MODEL_PARTS):
            name = "text_model." + name
        if name in _CLIP_IGNORED or not (name.startswith("text_model.") or name == "text_projection.weight"):
            continue
        if name == "text_projection.weight" and not keep_projection:
            continue
        out[name] = value
    return out


_OPEN_CLIP_BLOCK = {
    "ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
}


def open_clip_to_hf(sd: Mapping[str, torch.Tensor], prefix: str = "", keep_projection: bool = True) -> StateDict:
    """OpenCLIP text tower keys under `prefix` -> transformers CLIPTextModelWithProjection keys.

    q, k and v are split out of the stacked `in_proj_weight`; `text_projection` is transposed.
    Vision-tower keys and logit scales are ignored; any other unknown key raises ConversionError.
    """
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name.startswith("visual.") or name in ("logit_scale", "logit_bias", "attn_mask"):
            continue
        if name == "token_embedding.weight":
            out["text_model.embeddings.token_embedding.weight"] = value
        elif name == "positional_embedding":
            out["text_model.embeddings.position_embedding.weight"] = value
        elif name in ("ln_final.weight", "ln_final.bias"):
            out["text_model.final_layer_norm." + name.rsplit(".", 1)[1]] = value
        elif name == "text_projection":
            if keep_projection:
                out["text_projection.weight"] = value.t().contiguous()
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)", name):
            layer, part, kind = m.groups()
            head = f"text_model.encoder.layers.{layer}."
            if part in _OPEN_CLIP_BLOCK:
                out[f"{head}{_OPEN_CLIP_BLOCK[part]}.{kind}"] = value
            else:
                unknown.append(key)
        elif m := re.fullmatch(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)", name):
            layer, kind = m.groups()
            head = f"text_model.encoder.layers.{layer}.self_attn."
            for proj, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{head}{proj}.{kind}"] = chunk.contiguous()
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"the OpenCLIP text encoder has keys this converter does not know "
                              f"({key_report([], unknown)}): it is not a CLIP text tower")
    return out


def clip_to_native(sd: Mapping[str, torch.Tensor], width: int | None = None,
                   keep_projection: bool = True) -> tuple[StateDict, FoundEncoder]:
    """Find the CLIP text encoder of `width` in any layout and return it in the transformers layout."""
    found = pick_encoder(find_clip_encoders(sd), width, "CLIP")
    if found.layout == "open_clip":
        return open_clip_to_hf(sd, found.prefix, keep_projection), found
    return hf_clip_from_checkpoint(sd, found.prefix, keep_projection), found


# -- T5 -----------------------------------------------------------------------------------------------


def t5_to_native(sd: Mapping[str, torch.Tensor], width: int | None = None) -> tuple[StateDict, FoundEncoder]:
    """The T5 encoder in `sd` (bare, prefixed, or a whole encoder-decoder) in T5EncoderModel's layout.

    The token embedding is stored once in most files (`shared.weight`, sometimes only
    `encoder.embed_tokens.weight`); both names are filled with the same tensor.
    """
    found = pick_encoder(find_t5_encoders(sd), width, "T5")
    out: StateDict = {}
    for key, value in sd.items():
        if not key.startswith(found.prefix):
            continue
        name = key[len(found.prefix):]
        if name.startswith("encoder.") or name == "shared.weight":
            out[name] = value
    embed = out.get("shared.weight", out.get("encoder.embed_tokens.weight"))
    if embed is None:
        raise ConversionError("the T5 checkpoint has no token embedding (shared.weight or "
                              "encoder.embed_tokens.weight): the file is incomplete")
    out["shared.weight"] = embed
    out["encoder.embed_tokens.weight"] = embed
    return out, found


__all__ = ["FoundEncoder", "clip_to_native", "find_clip_encoders", "find_t5_encoders", "hf_clip_from_checkpoint",
           "open_clip_to_hf", "pick_encoder", "t5_to_native"]
