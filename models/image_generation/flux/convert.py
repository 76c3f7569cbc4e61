"""FLUX.1 checkpoints in every released layout -> the native (official BFL) layout.

Layouts:
- official single file (`flux1-dev.safetensors`, `flux1-schnell.safetensors`, `flux1-fill-dev.safetensors`,
  `flux1-canny-dev.safetensors`, `flux1-depth-dev.safetensors`): native keys (`img_in`, `double_blocks.N...`);
- community single files: the same keys under `model.diffusion_model.` (ComfyUI/A1111 full checkpoints,
  whose VAE and text-encoder keys are dropped), in bf16, fp16 or fp8 (e4m3fn/e5m2, optionally "scaled
  fp8" with per-tensor `scale_weight`);
- diffusers (`transformer/` of the hub repos): separate q/k/v projections, which are concatenated
  into the fused `qkv` (and, in single blocks, with `proj_mlp` into `linear1`); `norm_out.linear`
  holds (scale, shift) where the official `final_layer.adaLN_modulation.1` holds (shift, scale).

All functions are pure (state dict in, state dict out) and work on meta tensors, so the key and shape
lists of the full-size models can be checked without allocating them.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from models.image_generation.flux.spec import SPEC
from utils.errors import ConversionError, UserError, WeightsError
from utils.weights.hub import locate
from utils.weights.keys import key_report, strip_prefix, swap_halves

StateDict = dict[str, torch.Tensor]

PREFIXES = ("model.diffusion_model.", "diffusion_model.")

# preset -> (hub repo, official single file, gated), read off the spec
OFFICIAL: dict[str, tuple[str, str, bool]] = {w.preset: (w.source, w.file, w.gated) for w in SPEC.weights}

# -- format detection --------------------------------------------------------------------------------


def find_prefix(sd: Mapping[str, torch.Tensor]) -> str:
    """The prefix under which the transformer keys sit ('' for a bare file)."""
    if "img_in.weight" in sd or "x_embedder.weight" in sd:
        return ""
    for prefix in PREFIXES:
        if f"{prefix}img_in.weight" in sd or f"{prefix}x_embedder.weight" in sd:
            return prefix
    return ""


def transformer_state(sd: Mapping[str, torch.Tensor], prefix: str | None = None) -> StateDict:
    """Keep only the transformer's keys of a combined checkpoint, without their prefix (a bare file whole)."""
    prefix = find_prefix(sd) if prefix is None else prefix
    return strip_prefix(sd, prefix) if prefix else dict(sd)


def detect_format(sd: Mapping[str, torch.Tensor]) -> str:
    """'native' (official keys) or 'diffusers'; anything else is a ConversionError."""
    if "img_in.weight" in sd:
        return "native"
    if "x_embedder.weight" in sd:
        return "diffusers"
    sample = ", ".join(sorted(sd)[:4])
    raise ConversionError(f"this checkpoint is not a FLUX transformer (no img_in or x_embedder weights; keys start "
                          f"with {sample}): pass a FLUX.1 file such as flux1-dev.safetensors or a diffusers "
                          "transformer folder")


# -- fp8 ------------------------------------------------------------------------------------------------


def dequantize(sd: dict[str, torch.Tensor], dtype: torch.dtype | None) -> StateDict:
    """Cast every floating tensor to `dtype`; "scaled fp8" files (a `scale_weight` per weight and a
    `scaled_fp8` marker) are multiplied out first. Tensors are popped from `sd` (which ends empty) and
    converted one at a time, so a cast holds the file plus one converted tensor, not two copies."""
    out: StateDict = {}
    sd.pop("scaled_fp8", None)
    scales = {k[: -len(".scale_weight")]: sd.pop(k) for k in [k for k in sd if k.endswith(".scale_weight")]}
    for k in [k for k in sd if k.endswith(".scale_input")]:
        sd.pop(k)
    for key in list(sd):
        v = sd.pop(key)
        module = key.rsplit(".", 1)[0]
        if key.endswith(".weight") and module in scales:
            v = v.float() * scales[module].float()
        if v.is_floating_point():
            target = dtype or (torch.bfloat16 if v.dtype in _FP8 else v.dtype)
            v = v.to(target)
        out[key] = v
    return out


_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
             if hasattr(torch, n))

# -- diffusers -> native ---------------------------------------------------------------------------------

_TOP = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "proj_out": "final_layer.linear",
}
_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
}
_DOUBLE_NORMS = {
    "attn.norm_q.weight": "img_attn.norm.query_norm.scale",
    "attn.norm_k.weight": "img_attn.norm.key_norm.scale",
    "attn.norm_added_q.weight": "txt_attn.norm.query_norm.scale",
    "attn.norm_added_k.weight": "txt_attn.norm.key_norm.scale",
}
# Fused native projection <- the diffusers projections concatenated in this order (rows).
_DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
_SINGLE_NORMS = {"attn.norm_q.weight": "norm.query_norm.scale", "attn.norm_k.weight": "norm.key_norm.scale"}
_SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}


def _block_ids(sd: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pat = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """A diffusers FluxTransformer2DModel state dict -> official FLUX keys. Raises ConversionError
    naming any key that is left over or any fused projection with a missing part."""
    src = dict(sd)
    out: StateDict = {}
    missing: list[str] = []

    def move(d_key: str, n_key: str, fn=None) -> None:
        if d_key in src:
            t = src.pop(d_key)
            out[n_key] = fn(t) if fn is not None else t

    def fuse(d_prefix: str, parts: tuple[str, ...], n_key: str) -> None:
        for suffix in ("weight", "bias"):
            keys = [f"{d_prefix}.{p}.{suffix}" for p in parts]
            present = [k for k in keys if k in src]
            if not present:
                continue
            if len(present) != len(keys):
                missing.extend(k for k in keys if k not in src)
                continue
            out[f"{n_key}.{suffix}"] = torch.cat([src.pop(k) for k in keys], dim=0)

    for d, n in _TOP.items():
        for suffix in ("weight", "bias"):
            move(f"{d}.{suffix}", f"{n}.{suffix}")
    for suffix in ("weight", "bias"):
        move(f"norm_out.linear.{suffix}", f"final_layer.adaLN_modulation.1.{suffix}", swap_halves)

    for i in _block_ids(src, "transformer_blocks"):
        d0, n0 = f"transformer_blocks.{i}", f"double_blocks.{i}"
        for d, n in _DOUBLE.items():
            for suffix in ("weight", "bias"):
                move(f"{d0}.{d}.{suffix}", f"{n0}.{n}.{suffix}")
        for d, n in _DOUBLE_NORMS.items():
            move(f"{d0}.{d}", f"{n0}.{n}")
        for n, parts in _DOUBLE_FUSED.items():
            fuse(d0, parts, f"{n0}.{n}")

    for i in _block_ids(src, "single_transformer_blocks"):
        d0, n0 = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        for d, n in _SINGLE.items():
            for suffix in ("weight", "bias"):
                move(f"{d0}.{d}.{suffix}", f"{n0}.{n}.{suffix}")
        for d, n in _SINGLE_NORMS.items():
            move(f"{d0}.{d}", f"{n0}.{n}")
        for n, parts in _SINGLE_FUSED.items():
            fuse(d0, parts, f"{n0}.{n}")

    if src or missing:
        raise ConversionError(f"the diffusers FLUX checkpoint has keys this converter does not know "
                              f"({key_report(missing, src)}): it is not a FLUX.1 transformer, or a variant "
                              "(ControlNet, IP-Adapter) that this package does not load")
    return out


def to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Any supported layout (prefixed or not) -> native keys."""
    sd = transformer_state(sd)
    return sd if detect_format(sd) == "native" else diffusers_to_native(sd)


# -- configs ----------------------------------------------------------------------------------------


def params_from_diffusers_config(cfg: Mapping) -> "FluxParams":
    """FluxTransformer2DModel's config.json -> FluxParams."""
    from models.image_generation.flux.model import FluxParams

    if cfg.get("patch_size", 1) != 1:
        raise UserError(f"this FLUX config has patch_size {cfg['patch_size']}; only 1 (2x2 packing outside the "
                        "model) is supported")
    heads, head_dim = int(cfg.get("num_attention_heads", 24)), int(cfg.get("attention_head_dim", 128))
    in_ch = int(cfg.get("in_channels", 64))
    return FluxParams(in_channels=in_ch, out_channels=int(cfg.get("out_channels") or in_ch),
                      vec_in_dim=int(cfg.get("pooled_projection_dim", 768)),
                      context_in_dim=int(cfg.get("joint_attention_dim", 4096)), hidden_size=heads * head_dim,
                      num_heads=heads, depth=int(cfg.get("num_layers", 19)),
                      depth_single_blocks=int(cfg.get("num_single_layers", 38)),
                      axes_dim=tuple(int(a) for a in cfg.get("axes_dims_rope", (16, 56, 56))),
                      guidance_embed=bool(cfg.get("guidance_embeds", False)))


def params_to_diffusers_config(p: "FluxParams") -> dict:
    """FluxParams -> the kwargs of diffusers' FluxTransformer2DModel (for tests and exports)."""
    if p.mlp_ratio != 4.0 or not p.qkv_bias or p.theta != 10_000:
        raise UserError("diffusers' FluxTransformer2DModel fixes mlp_ratio 4, qkv_bias and theta 10000")
    return dict(patch_size=1, in_channels=p.in_channels, out_channels=p.out_channels, num_layers=p.depth,
                num_single_layers=p.depth_single_blocks, attention_head_dim=p.head_dim, num_attention_heads=p.num_heads,
                joint_attention_dim=p.context_in_dim, pooled_projection_dim=p.vec_in_dim,
                guidance_embeds=p.guidance_embed, axes_dims_rope=tuple(p.axes_dim))


def default_axes(head_dim: int) -> tuple[int, int, int]:
    """The RoPE split of a head: FLUX's (16, 56, 56) for 128, the same proportions (even sizes) otherwise."""
    side = 2 * int(head_dim * 7 / 32)
    return (head_dim - 2 * side, side, side)


def infer_params(native: Mapping[str, torch.Tensor], preset: str | None = None) -> "FluxParams":
    """The sizes of a native state dict, read from tensor shapes (works on meta tensors)."""
    from models.image_generation.flux.model import PRESETS, FluxParams

    def shape(key: str) -> tuple[int, ...]:
        if key not in native:
            raise ConversionError(f"the FLUX checkpoint has no '{key}': the file is incomplete or not a FLUX "
                                  "transformer")
        return tuple(native[key].shape)

    hidden, in_ch = shape("img_in.weight")
    depth = len(_block_ids(native, "double_blocks"))
    single = len(_block_ids(native, "single_blocks"))
    norm_key = ("double_blocks.0.img_attn.norm.query_norm.scale" if depth else
                "single_blocks.0.norm.query_norm.scale")
    head_dim = shape(norm_key)[0]
    mlp_hidden = (shape("double_blocks.0.img_mlp.0.weight")[0] if depth else
                  shape("single_blocks.0.linear1.weight")[0] - 3 * hidden)
    base = PRESETS.get(preset or "", None)
    axes = base.axes_dim if base is not None and sum(base.axes_dim) == head_dim else default_axes(head_dim)
    return FluxParams(in_channels=in_ch, out_channels=shape("final_layer.linear.weight")[0],
                      vec_in_dim=shape("vector_in.in_layer.weight")[1], context_in_dim=shape("txt_in.weight")[1],
                      hidden_size=hidden, mlp_ratio=mlp_hidden / hidden, num_heads=hidden // head_dim, depth=depth,
                      depth_single_blocks=single, axes_dim=axes,
                      qkv_bias=("double_blocks.0.img_attn.qkv.bias" in native) if depth else True,
                      guidance_embed="guidance_in.in_layer.weight" in native)


def variant_name(p: "FluxParams") -> str:
    """'dev', 'schnell', 'fill' or 'control' (canny/depth share sizes) for messages."""
    if p.in_channels == 384:
        return "fill"
    if p.in_channels == 128:
        return "canny/depth"
    return "dev" if p.guidance_embed else "schnell"


def check_preset(p: "FluxParams", preset: str | None, where: str) -> None:
    """A clear error when the weights are another variant than the preset asked for."""
    from models.image_generation.flux.model import PRESETS

    if preset is None or preset == "tiny" or preset not in PRESETS:
        return
    want = PRESETS[preset]
    if (p.in_channels, p.guidance_embed) != (want.in_channels, want.guidance_embed):
        raise UserError(f"{where} holds a FLUX.1 [{variant_name(p)}] transformer (in_channels {p.in_channels}, "
                        f"guidance {'on' if p.guidance_embed else 'off'}) but preset '{preset}' needs "
                        f"in_channels {want.in_channels}, guidance {'on' if want.guidance_embed else 'off'}: pass "
                        f"the {preset} weights ({OFFICIAL[preset][0]}) or another --preset")


# -- loading ----------------------------------------------------------------------------------------


def _is_diffusers_folder(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(
        (folder / f).exists() for f in ("diffusion_pytorch_model.safetensors",
                                        "diffusion_pytorch_model.safetensors.index.json",
                                        "diffusion_pytorch_model.bin"))


def _single_file_in(folder: Path) -> Path | None:
    names = [f for _, f, _ in OFFICIAL.values()]
    for name in names:
        if (folder / name).exists():
            return folder / name
    found = sorted(folder.glob("flux1-*.safetensors"))
    return found[0] if found else None


def locate_transformer(source: str | os.PathLike) -> Path:
    """A local file or folder for `source`: a path, or from an official hub repo its single file (no
    duplicate diffusers copy needed), from any other repo its diffusers `transformer/` folder."""
    repo = str(source).partition("@")[0]
    by_repo = {r.lower(): f for r, f, _ in OFFICIAL.values()}
    if repo.lower() in by_repo:
        return locate(source, filename=by_repo[repo.lower()])
    return locate(source, patterns=["transformer/*"])


def load_transformer_checkpoint(source: str | os.PathLike, preset: str | None = None,
                                params: "FluxParams | None" = None, dtype: torch.dtype | None = None,
                                device: str | torch.device = "cpu") -> tuple["FluxParams", StateDict]:
    """(params, native state dict in `dtype` on `device`) for a FLUX file, diffusers folder or hub id.
    safetensors files are read straight to `device` (no host copy of a model bound for the GPU)."""
    from utils.weights import load_folder_state_dict, load_state_dict

    path = locate_transformer(source)
    cfg_params = None
    if path.is_dir():
        folder = path if _is_diffusers_folder(path) else path / "transformer"
        if _is_diffusers_folder(folder):
            cfg_params = params_from_diffusers_config(json.loads((folder / "config.json").read_text()))
            raw = load_folder_state_dict(folder, device=device)
        else:
            single = _single_file_in(path)
            if single is None:
                raise WeightsError(f"no FLUX transformer in {path}: expected a diffusers transformer/ folder "
                                   "(config.json + diffusion_pytorch_model.safetensors) or a flux1-*.safetensors file")
            raw = load_state_dict(single, device=device)
    else:
        raw = load_state_dict(path, device=device)
    native = to_native(raw)
    del raw
    native = dequantize(native, dtype)
    p = params or cfg_params or infer_params(native, preset)
    if params is None and cfg_params is not None:
        # the config must agree with the tensors; a mismatch means a broken folder
        got = infer_params(native, preset)
        if (got.hidden_size, got.depth, got.depth_single_blocks, got.in_channels) != (
                p.hidden_size, p.depth, p.depth_single_blocks, p.in_channels):
            raise ConversionError(f"the config.json in {path} does not match its weights (config: hidden "
                                  f"{p.hidden_size}, {p.depth}+{p.depth_single_blocks} blocks; weights: hidden "
                                  f"{got.hidden_size}, {got.depth}+{got.depth_single_blocks} blocks)")
    check_preset(p, preset, str(source))
    return p, native


__all__ = ["OFFICIAL", "PREFIXES", "check_preset", "default_axes", "dequantize", "detect_format",
           "diffusers_to_native", "find_prefix", "infer_params", "load_transformer_checkpoint", "locate_transformer",
           "params_from_diffusers_config", "params_to_diffusers_config", "to_native", "transformer_state",
           "variant_name"]
