"""Checkpoint layouts of AutoencoderKL -> the native (ldm / official single-file) layout, and back.

Layouts met in the wild:

- native / ldm: `encoder.down.{i}.block.{j}.norm1.weight`, `encoder.mid.attn_1.q.weight` (1x1 conv,
  4-D), `decoder.up.{i}...` where up.0 is the full-resolution level. Bare VAE files (sdxl_vae.safetensors,
  FLUX's ae.safetensors, vae-ft-mse) and, under a prefix, whole SD/SDXL checkpoints
  (`first_stage_model.`), some merged files (`vae.`) and SD3 single files (`first_stage_model.`).
- diffusers: `encoder.down_blocks.{i}.resnets.{j}...`, `mid_block.attentions.0.to_q.weight` (linear,
  2-D), `decoder.up_blocks.{k}` where k counts from the lowest resolution (k = levels - 1 - i), and
  `conv_shortcut` / `conv_norm_out`. Old diffusers files name attention `query/key/value/proj_attn`.

All functions here are pure: they take a dict of tensors and return a new one.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import torch

from utils.errors import ConversionError, UserError, WeightsError
from utils.weights import key_report

StateDict = dict[str, torch.Tensor]

# Prefixes under which full checkpoints keep their VAE (tried in this order; "" = a bare VAE file).
VAE_PREFIXES = ("first_stage_model.", "vae.", "model.first_stage_model.", "autoencoder.", "ae.", "")
_ANCHORS = ("decoder.conv_in.weight", "encoder.conv_in.weight")

# -- prefixes and format detection ----------------------------------------------------------------


def find_vae_prefix(sd: Mapping[str, torch.Tensor]) -> str:
    """The prefix in front of the VAE keys of `sd` ('' for a bare VAE file)."""
    for prefix in VAE_PREFIXES:
        if any(prefix + anchor in sd for anchor in _ANCHORS):
            return prefix
    raise ConversionError("no VAE found in the checkpoint (no key ends with decoder.conv_in.weight or "
                          "encoder.conv_in.weight): pass a VAE file or a checkpoint that contains one")


def strip_vae_prefix(sd: Mapping[str, torch.Tensor], prefix: str | None = None) -> StateDict:
    """The VAE tensors of `sd` with their prefix taken off; other components are left out."""
    prefix = find_vae_prefix(sd) if prefix is None else prefix
    out = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if prefix == "":  # a bare file: keep only what can belong to a VAE
        out = {k: v for k, v in out.items() if k.split(".", 1)[0] in
               ("encoder", "decoder", "quant_conv", "post_quant_conv")}
    return out


def detect_vae_format(sd: Mapping[str, torch.Tensor]) -> str:
    """'diffusers' or 'native' for an unprefixed VAE state dict."""
    keys = list(sd)
    if any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in keys):
        return "diffusers"
    if any(k.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for k in keys):
        return "native"
    raise ConversionError("the VAE checkpoint is in no known layout (neither ldm `encoder.down.N` nor diffusers "
                          "`encoder.down_blocks.N` keys): check that the file is an AutoencoderKL")


def num_levels(sd: Mapping[str, torch.Tensor]) -> int:
    """How many resolution levels the checkpoint has (4 for every official VAE)."""
    found = set()
    for k in sd:
        m = re.match(r"encoder\.(?:down|down_blocks)\.(\d+)\.", k)
        if m:
            found.add(int(m.group(1)))
    if not found:
        raise ConversionError("the VAE checkpoint has no encoder levels (encoder.down.N / encoder.down_blocks.N)")
    return max(found) + 1


# -- diffusers <-> native -------------------------------------------------------------------------

_RESNET_D2N = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2",
               "conv_shortcut": "nin_shortcut"}
_ATTN_D2N = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
             # names of diffusers < 0.14
             "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}
_ATTN_N2D = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_TOP_D2N = {"conv_in": "conv_in", "conv_out": "conv_out", "conv_norm_out": "norm_out"}


def _diffusers_key_to_native(key: str, levels: int) -> str | None:
    """The native name of one diffusers key, or None when it is not a VAE key."""
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(weight|bias)", key)
    if m:
        return f"{m.group(1)}.{_TOP_D2N[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in _RESNET_D2N:
        return f"encoder.down.{m.group(1)}.block.{m.group(2)}.{_RESNET_D2N[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down.{m.group(1)}.downsample.conv.{m.group(2)}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in _RESNET_D2N:
        level = levels - 1 - int(m.group(1))
        return f"decoder.up.{level}.block.{m.group(2)}.{_RESNET_D2N[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up.{levels - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.([01])\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in _RESNET_D2N:
        return f"{m.group(1)}.mid.block_{int(m.group(2)) + 1}.{_RESNET_D2N[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(\w+(?:\.0)?)\.(weight|bias)", key)
    if m and m.group(2) in _ATTN_D2N:
        return f"{m.group(1)}.mid.attn_1.{_ATTN_D2N[m.group(2)]}.{m.group(3)}"
    return None


def _native_key_to_diffusers(key: str, levels: int) -> str | None:
    if key.startswith(("quant_conv.", "post_quant_conv.")):
        return key
    m = re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(weight|bias)", key)
    if m:
        name = {"norm_out": "conv_norm_out"}.get(m.group(2), m.group(2))
        return f"{m.group(1)}.{name}.{m.group(3)}"
    n2d = {v: k for k, v in _RESNET_D2N.items()}
    m = re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in n2d:
        return f"encoder.down_blocks.{m.group(1)}.resnets.{m.group(2)}.{n2d[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key)
    if m:
        return f"encoder.down_blocks.{m.group(1)}.downsamplers.0.conv.{m.group(2)}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in n2d:
        return f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.resnets.{m.group(2)}.{n2d[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key)
    if m:
        return f"decoder.up_blocks.{levels - 1 - int(m.group(1))}.upsamplers.0.conv.{m.group(2)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(\w+)\.(weight|bias)", key)
    if m and m.group(3) in n2d:
        return f"{m.group(1)}.mid_block.resnets.{int(m.group(2)) - 1}.{n2d[m.group(3)]}.{m.group(4)}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(\w+)\.(weight|bias)", key)
    if m and m.group(2) in _ATTN_N2D:
        return f"{m.group(1)}.mid_block.attentions.0.{_ATTN_N2D[m.group(2)]}.{m.group(3)}"
    return None


def _is_attn_projection(native_key: str) -> bool:
    return bool(re.search(r"\.mid\.attn_1\.(q|k|v|proj_out)\.weight$", native_key))


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Diffusers AutoencoderKL keys -> native keys; attention linears become 1x1 conv weights."""
    levels = num_levels(sd)
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        new = _diffusers_key_to_native(key, levels)
        if new is None:
            unknown.append(key)
            continue
        if _is_attn_projection(new) and value.ndim == 2:
            value = value[:, :, None, None]
        out[new] = value
    if unknown:
        raise ConversionError(f"the diffusers VAE checkpoint has keys this converter does not know "
                              f"({key_report([], unknown)}): it is not an AutoencoderKL")
    return out


def native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Native (ldm) keys -> diffusers keys; 1x1 conv attention weights become linear weights."""
    levels = num_levels(sd)
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        new = _native_key_to_diffusers(key, levels)
        if new is None:
            unknown.append(key)
            continue
        if _is_attn_projection(key) and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[new] = value
    if unknown:
        raise ConversionError(f"the VAE checkpoint has keys this converter does not know "
                              f"({key_report([], unknown)}): it is not an AutoencoderKL")
    return out


def _attn_to_conv(sd: StateDict) -> StateDict:
    """Some ldm exports store the mid attention as linears (2-D) or 1-D convs (3-D): make them 1x1 convs."""
    out = dict(sd)
    for key, value in sd.items():
        if _is_attn_projection(key) and value.ndim in (2, 3):
            out[key] = value.reshape(value.shape[0], value.shape[1], 1, 1)
    return out


def to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Any known VAE layout, with or without a prefix -> native keys (format detected)."""
    bare = strip_vae_prefix(sd)
    fmt = detect_vae_format(bare)
    return diffusers_to_native(bare) if fmt == "diffusers" else _attn_to_conv(bare)


# -- configs --------------------------------------------------------------------------------------


def config_from_diffusers(cfg: Mapping) -> "VAEConfig":
    """A diffusers vae/config.json -> VAEConfig."""
    from utils.encoders.vae import VAEConfig

    chans = list(cfg.get("block_out_channels", [128, 256, 512, 512]))
    base = chans[0]
    if any(c % base for c in chans):
        raise ConversionError(f"block_out_channels {chans} are not multiples of the first width")
    for key, want in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
        if any(t != want for t in cfg.get(key, [want])):
            raise ConversionError(f"this VAE uses {key}={cfg.get(key)}: only {want} blocks are supported")
    return VAEConfig(
        in_channels=int(cfg.get("in_channels", 3)), out_channels=int(cfg.get("out_channels", 3)),
        base_channels=base, channel_mult=tuple(c // base for c in chans),
        num_res_blocks=int(cfg.get("layers_per_block", 2)), latent_channels=int(cfg.get("latent_channels", 4)),
        norm_groups=int(cfg.get("norm_num_groups", 32)),
        use_quant_conv=bool(cfg.get("use_quant_conv", True)),
        use_post_quant_conv=bool(cfg.get("use_post_quant_conv", True)),
        scaling_factor=float(cfg.get("scaling_factor", 0.18215)),
        shift_factor=float(cfg.get("shift_factor") or 0.0),
        force_upcast=bool(cfg.get("force_upcast", False)),
    )


def config_to_diffusers(cfg: "VAEConfig") -> dict:
    """VAEConfig -> the keyword arguments of diffusers' AutoencoderKL (for tests and exports)."""
    n = len(cfg.channel_mult)
    return dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n,
                block_out_channels=list(cfg.block_channels), layers_per_block=cfg.num_res_blocks,
                latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_groups,
                scaling_factor=cfg.scaling_factor, shift_factor=cfg.shift_factor or None,
                use_quant_conv=cfg.use_quant_conv, use_post_quant_conv=cfg.use_post_quant_conv,
                force_upcast=cfg.force_upcast)


def infer_config(native: Mapping[str, torch.Tensor], preset: str | None = None, hint: str = "",
                 full_keys: Mapping[str, torch.Tensor] | None = None) -> "VAEConfig":
    """Sizes read off a native state dict; latent normalisation from `preset` or the file's context.

    The weights fix every size but not the scaling: SD and SDXL VAEs have the same shapes, and so do
    SD3 and FLUX. Without a preset we look at the file name (`hint`) and the rest of the checkpoint.
    """
    from utils.encoders.vae import VAEConfig

    levels = num_levels(native)
    base = native["encoder.conv_in.weight"].shape[0]
    chans = [native[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
    blocks = len({k.split(".")[4] for k in native if k.startswith("encoder.down.0.block.")})
    latent = native["decoder.conv_in.weight"].shape[1]
    quant = "quant_conv.weight" in native
    post = "post_quant_conv.weight" in native
    if preset is None:
        preset = _guess_preset(latent, hint, full_keys or {})
    base_cfg = VAEConfig.preset(preset)
    # GroupNorm's group count leaves no trace in the weights: it comes from the preset.
    groups = base_cfg.norm_groups if base % base_cfg.norm_groups == 0 else _largest_group(base)
    sizes = dict(in_channels=native["encoder.conv_in.weight"].shape[1],
                 out_channels=native["decoder.conv_out.weight"].shape[0], base_channels=base,
                 channel_mult=tuple(c // base for c in chans), num_res_blocks=blocks, latent_channels=latent,
                 use_quant_conv=quant, use_post_quant_conv=post, norm_groups=groups)
    return base_cfg.with_(**sizes)


def _largest_group(channels: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0)


def _guess_preset(latent_channels: int, hint: str, full_keys: Mapping[str, torch.Tensor]) -> str:
    name = hint.lower()
    if latent_channels == 16:
        if "flux" in name or os.path.basename(name) in ("ae.safetensors", "ae.sft"):
            return "flux"
        if "sd3" in name or "stable-diffusion-3" in name or any(k.startswith("model.diffusion_model.joint_blocks")
                                                                 for k in full_keys):
            return "sd3"
        raise UserError("this 16-channel VAE may be SD3's or FLUX's, which normalise latents differently: "
                        "pass preset='sd3' or preset='flux'")
    if any(k.startswith("conditioner.embedders.") for k in full_keys) or "xl" in name:
        return "sdxl"
    return "sd"


# -- loading a source -------------------------------------------------------------------------------


def _is_diffusers_vae_folder(folder: Path) -> bool:
    return (folder / "config.json").exists() and any(
        (folder / f).exists() for f in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                                        "diffusion_pytorch_model.safetensors.index.json"))


def load_vae_checkpoint(source: str | os.PathLike, preset: str | None = None, subfolder: str | None = None,
                        dtype: torch.dtype | None = None) -> tuple["VAEConfig", StateDict]:
    """(config, native state dict) for a VAE file, a diffusers folder, or a hub id."""
    from utils.encoders.vae import VAEConfig
    from utils.weights import load_folder_state_dict, load_state_dict, resolve

    src = str(source)
    local = Path(os.path.expanduser(src))
    if not local.exists():  # a hub id: fetch only the VAE of the repo
        sub = subfolder if subfolder is not None else None
        patterns = ([f"{sub}/config.json", f"{sub}/diffusion_pytorch_model.safetensors"] if sub else
                    ["config.json", "diffusion_pytorch_model.safetensors", "vae/config.json",
                     "vae/diffusion_pytorch_model.safetensors"])
        local = resolve(src, allow_patterns=patterns)
    path = local / subfolder if subfolder else local
    if path.is_dir():
        folder = path if _is_diffusers_vae_folder(path) else path / "vae"
        if not _is_diffusers_vae_folder(folder):
            singles = sorted(path.glob("ae.safetensors")) + sorted(path.glob("*vae*.safetensors"))
            if singles:
                path = singles[0]
            else:
                raise WeightsError(f"no VAE in {path}: expected a diffusers vae/ folder (config.json + "
                                   "diffusion_pytorch_model.safetensors) or a VAE file")
        else:
            raw_cfg = json.loads((folder / "config.json").read_text())
            cfg = config_from_diffusers(raw_cfg)
            if preset is not None:  # an explicit preset only overrides the latent normalisation
                p = VAEConfig.preset(preset)
                cfg = cfg.with_(scaling_factor=p.scaling_factor, shift_factor=p.shift_factor)
            sd = load_folder_state_dict(folder, dtype=dtype)
            return cfg, to_native(sd)
    sd = load_state_dict(path, dtype=dtype)
    native = to_native(sd)
    return infer_config(native, preset=preset, hint=str(path), full_keys=sd), native


__all__ = ["VAE_PREFIXES", "config_from_diffusers", "config_to_diffusers", "detect_vae_format",
           "diffusers_to_native", "find_vae_prefix", "infer_config", "load_vae_checkpoint", "native_to_diffusers",
           "num_levels", "strip_vae_prefix", "to_native"]
