"""SD3 MMDiT: the diffusers layout <-> the native (official single-file) layout, and configs both ways.

What differs besides names:
- the official files fuse q, k and v in one `qkv` linear per stream; diffusers keeps `to_q/to_k/to_v`
  (image stream) and `add_q_proj/add_k_proj/add_v_proj` (text stream) apart;
- two AdaLN layers are stored as (shift, scale) officially and (scale, shift) in diffusers: the final
  layer (`final_layer.adaLN_modulation.1` <-> `norm_out.linear`) and the pre-only text stream of the
  last block (`context_block.adaLN_modulation.1` <-> `norm1_context.linear`).

    native (official)                               diffusers
    x_embedder.proj / pos_embed                     pos_embed.proj / pos_embed.pos_embed
    t_embedder.mlp.0 / .2                           time_text_embed.timestep_embedder.linear_1 / linear_2
    y_embedder.mlp.0 / .2                           time_text_embed.text_embedder.linear_1 / linear_2
    context_embedder                                context_embedder
    joint_blocks.N.x_block.attn.qkv                 transformer_blocks.N.attn.to_q|to_k|to_v
    joint_blocks.N.x_block.attn.ln_q / ln_k         transformer_blocks.N.attn.norm_q / norm_k
    joint_blocks.N.x_block.attn.proj                transformer_blocks.N.attn.to_out.0
    joint_blocks.N.x_block.attn2.*                  transformer_blocks.N.attn2.* (same pattern)
    joint_blocks.N.x_block.adaLN_modulation.1       transformer_blocks.N.norm1.linear
    joint_blocks.N.x_block.mlp.fc1 / fc2            transformer_blocks.N.ff.net.0.proj / ff.net.2
    joint_blocks.N.context_block.attn.qkv           transformer_blocks.N.attn.add_q_proj|add_k_proj|add_v_proj
    joint_blocks.N.context_block.attn.ln_q / ln_k   transformer_blocks.N.attn.norm_added_q / norm_added_k
    joint_blocks.N.context_block.attn.proj          transformer_blocks.N.attn.to_add_out
    joint_blocks.N.context_block.adaLN_modulation.1 transformer_blocks.N.norm1_context.linear
    joint_blocks.N.context_block.mlp.fc1 / fc2      transformer_blocks.N.ff_context.net.0.proj / net.2
    final_layer.linear / adaLN_modulation.1         proj_out / norm_out.linear
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import torch

from models.image_generation.stable_diffusion.mmdit import MMDiTConfig
from utils.errors import ConversionError, UserError
from utils.weights.configs import settle_config
from utils.weights.keys import swap_halves

StateDict = dict[str, torch.Tensor]

_FIXED = {
    "x_embedder.proj": "pos_embed.proj", "t_embedder.mlp.0": "time_text_embed.timestep_embedder.linear_1",
    "t_embedder.mlp.2": "time_text_embed.timestep_embedder.linear_2",
    "y_embedder.mlp.0": "time_text_embed.text_embedder.linear_1",
    "y_embedder.mlp.2": "time_text_embed.text_embedder.linear_2",
    "context_embedder": "context_embedder", "final_layer.linear": "proj_out",
}
# Per-block, per-stream renames (besides qkv and the swapped modulations).
_X = {"attn.ln_q": "attn.norm_q", "attn.ln_k": "attn.norm_k", "attn.proj": "attn.to_out.0",
      "attn2.ln_q": "attn2.norm_q", "attn2.ln_k": "attn2.norm_k", "attn2.proj": "attn2.to_out.0",
      "adaLN_modulation.1": "norm1.linear", "mlp.fc1": "ff.net.0.proj", "mlp.fc2": "ff.net.2"}
_CTX = {"attn.ln_q": "attn.norm_added_q", "attn.ln_k": "attn.norm_added_k", "attn.proj": "attn.to_add_out",
        "adaLN_modulation.1": "norm1_context.linear", "mlp.fc1": "ff_context.net.0.proj",
        "mlp.fc2": "ff_context.net.2"}
_QKV = {("x_block", "attn"): ("attn.to_q", "attn.to_k", "attn.to_v"),
        ("x_block", "attn2"): ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
        ("context_block", "attn"): ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}


def _depth(keys, pattern: str) -> int:
    ids = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
    if not ids:
        raise ConversionError("no transformer blocks found: not an SD3 MMDiT checkpoint")
    return max(ids) + 1


def mmdit_native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Official keys (no prefix) -> diffusers SD3Transformer2DModel keys."""
    sd = dict(sd)
    depth = _depth(sd, r"joint_blocks\.(\d+)\.")
    out: StateDict = {}
    for key, value in sd.items():
        name, _, param = key.rpartition(".")
        if key == "pos_embed":
            out["pos_embed.pos_embed"] = value
        elif name in _FIXED:
            out[f"{_FIXED[name]}.{param}"] = value
        elif name == "final_layer.adaLN_modulation.1":
            out[f"norm_out.linear.{param}"] = swap_halves(value)
        elif m := re.match(r"joint_blocks\.(\d+)\.(x_block|context_block)\.(.+)$", name):
            i, stream, rest = int(m.group(1)), m.group(2), m.group(3)
            prefix = f"transformer_blocks.{i}."
            if rest in ("attn.qkv", "attn2.qkv"):
                for part, target in zip(value.chunk(3, dim=0), _QKV[(stream, rest.split(".")[0])]):
                    out[f"{prefix}{target}.{param}"] = part
                continue
            table = _X if stream == "x_block" else _CTX
            if rest not in table:
                raise ConversionError(f"unexpected key in the SD3 checkpoint: {key}")
            if stream == "context_block" and rest == "adaLN_modulation.1" and i == depth - 1:
                value = swap_halves(value)
            out[f"{prefix}{table[rest]}.{param}"] = value
        else:
            raise ConversionError(f"unexpected key in the SD3 checkpoint: {key}")
    return out


def mmdit_diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers SD3Transformer2DModel keys -> official keys (no prefix)."""
    sd = dict(sd)
    depth = _depth(sd, r"transformer_blocks\.(\d+)\.")
    inv_fixed = {v: k for k, v in _FIXED.items()}
    inv = {"x_block": {v: k for k, v in _X.items()}, "context_block": {v: k for k, v in _CTX.items()}}
    qkv_parts = {target: (stream, attn, j) for (stream, attn), targets in _QKV.items()
                 for j, target in enumerate(targets)}
    out: StateDict = {}
    pending: dict[str, list] = {}
    for key, value in sd.items():
        name, _, param = key.rpartition(".")
        if key == "pos_embed.pos_embed":
            out["pos_embed"] = value
        elif name in inv_fixed:
            out[f"{inv_fixed[name]}.{param}"] = value
        elif name == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{param}"] = swap_halves(value)
        elif m := re.match(r"transformer_blocks\.(\d+)\.(.+)$", name):
            i, rest = int(m.group(1)), m.group(2)
            prefix = f"joint_blocks.{i}."
            if rest in qkv_parts:
                stream, attn, j = qkv_parts[rest]
                target = f"{prefix}{stream}.{attn}.qkv.{param}"
                pending.setdefault(target, [None, None, None])[j] = value
                continue
            stream = next((s for s in ("x_block", "context_block") if rest in inv[s]), None)
            if stream is None:
                raise ConversionError(f"unexpected key in the diffusers SD3 transformer: {key}")
            if stream == "context_block" and rest == "norm1_context.linear" and i == depth - 1:
                value = swap_halves(value)
            out[f"{prefix}{stream}.{inv[stream][rest]}.{param}"] = value
        else:
            raise ConversionError(f"unexpected key in the diffusers SD3 transformer: {key}")
    for target, parts in pending.items():
        if any(p is None for p in parts):
            raise ConversionError(f"the diffusers SD3 transformer lacks part of q/k/v for {target}")
        out[target] = torch.cat(parts, dim=0)
    return out


# -- configs --------------------------------------------------------------------------------------


def mmdit_config_from_diffusers(cfg: Mapping[str, Any]) -> MMDiTConfig:
    """MMDiTConfig of a diffusers SD3Transformer2DModel config.json."""
    heads, head_dim = cfg["num_attention_heads"], cfg["attention_head_dim"]
    if cfg.get("caption_projection_dim", heads * head_dim) != heads * head_dim:
        raise UserError("caption_projection_dim differs from the hidden size: not an SD3 MMDiT this zoo builds")
    qk = cfg.get("qk_norm")
    if qk not in (None, "rms_norm"):
        raise UserError(f"qk_norm '{qk}' is not supported: SD3.5 uses rms_norm")
    return MMDiTConfig(in_channels=cfg.get("in_channels", 16), out_channels=cfg.get("out_channels") or 16,
                       patch_size=cfg.get("patch_size", 2), depth=cfg["num_layers"], num_heads=heads,
                       head_dim=head_dim, context_in_dim=cfg.get("joint_attention_dim", 4096),
                       adm_in_channels=cfg.get("pooled_projection_dim", 2048),
                       pos_embed_max_size=cfg.get("pos_embed_max_size", 192), qk_norm=qk == "rms_norm",
                       dual_attention_layers=tuple(cfg.get("dual_attention_layers") or ()),
                       sample_size=cfg.get("sample_size", 128))


def mmdit_config_to_diffusers(cfg: MMDiTConfig) -> dict[str, Any]:
    return dict(sample_size=cfg.sample_size, patch_size=cfg.patch_size, in_channels=cfg.in_channels,
                num_layers=cfg.depth, attention_head_dim=cfg.head_dim, num_attention_heads=cfg.num_heads,
                joint_attention_dim=cfg.context_in_dim, caption_projection_dim=cfg.hidden_size,
                pooled_projection_dim=cfg.adm_in_channels, out_channels=cfg.out_channels,
                pos_embed_max_size=cfg.pos_embed_max_size, dual_attention_layers=tuple(cfg.dual_attention_layers),
                qk_norm="rms_norm" if cfg.qk_norm else None)


def read_mmdit_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """What an official MMDiT state dict's shapes fix (works on meta tensors): every MMDiTConfig field
    but the head size (fixed too when q and k are RMS-normalised per head: `ln_q` is head_dim wide) and
    sample_size; `hidden_size` stands for num_heads * head_dim."""
    try:
        proj = native["x_embedder.proj.weight"]
        pos = native["pos_embed"]
        final = native["final_layer.linear.weight"]
        context = native["context_embedder.weight"]
        pooled = native["y_embedder.mlp.0.weight"]
        fc1 = native["joint_blocks.0.x_block.mlp.fc1.weight"]
    except KeyError as err:
        raise ConversionError(f"not an SD3 MMDiT: the key {err} is missing") from None
    dim, in_ch, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    facts: dict[str, Any] = dict(
        in_channels=in_ch, out_channels=final.shape[0] // (patch * patch), patch_size=patch,
        depth=_depth(native, r"joint_blocks\.(\d+)\."), hidden_size=dim, context_in_dim=context.shape[1],
        adm_in_channels=pooled.shape[1], pos_embed_max_size=int(round(pos.shape[1] ** 0.5)),
        qk_norm="joint_blocks.0.x_block.attn.ln_q.weight" in native,
        dual_attention_layers=tuple(sorted({int(k.split(".")[1]) for k in native if ".x_block.attn2." in k})),
        mlp_ratio=fc1.shape[0] / dim)
    if facts["qk_norm"]:
        facts["head_dim"] = native["joint_blocks.0.x_block.attn.ln_q.weight"].shape[0]
    return facts


def _sample_size(pos: torch.Tensor, patch: int) -> int:
    """The latent side the stored position table was built for (its positions are scaled by it).

    Table row 1 is the patch at column 1 of row 0; its first channel is sin(base / side), base being
    sample_size / patch. Meta tensors (no values) fall back to the releases' 128.
    """
    side = int(round(pos.shape[1] ** 0.5))
    if not pos.is_meta:
        v = float(pos[0, 1, 0]) if side > 1 else 2.0
        if -1.0 < v < 1.0 and (base := round(side * math.asin(v))) > 0:
            return base * patch
    return 128 if side >= 128 else side // 2 * patch


def infer_mmdit_config(native: Mapping[str, torch.Tensor], *, config: MMDiTConfig | None = None,
                       preset: str | None = None, what: str = "the SD3 transformer checkpoint") -> MMDiTConfig:
    """The MMDiTConfig of an official state dict (no prefix).

    `config`: explicit, checked against the shapes and used whole. Otherwise the preset whose sizes
    the file has (`preset` first among several), else the sizes themselves when they fix the head size
    (SD3.5-style files normalise q and k per head); a file without that and of sizes no preset has is
    a one-line UserError naming head_dim.
    """
    from models.image_generation.stable_diffusion.mmdit import MMDIT_PRESETS

    facts = read_mmdit_sizes(native)
    dim = facts["hidden_size"]
    fallback = None
    if "head_dim" in facts:
        head_dim = facts["head_dim"]
        if dim % head_dim:
            raise ConversionError(f"the per-head q/k norms are {head_dim} wide, which does not divide the hidden size "
                                  f"{dim}: not an SD3 MMDiT checkpoint")
        fields = {k: v for k, v in facts.items() if k != "hidden_size"}
        fallback = MMDiTConfig(num_heads=dim // head_dim, sample_size=_sample_size(native["pos_embed"],
                                                                                   facts["patch_size"]), **fields)
    suggest = {k: v for k, v in facts.items() if k != "hidden_size"}
    hint = f" (num_heads = {dim} // head_dim)"
    return settle_config(facts, MMDIT_PRESETS, MMDiTConfig, [] if fallback else ["head_dim"], what, config=config,
                         prefer=preset, suggest=suggest, hint=hint, fallback=fallback)[0]


__all__ = ["infer_mmdit_config", "read_mmdit_sizes", "mmdit_config_from_diffusers", "mmdit_config_to_diffusers",
           "mmdit_diffusers_to_native", "mmdit_native_to_diffusers", "swap_halves"]
