"""Checkpoint layouts of AutoencoderKL -> the native (ldm / official single-file) layout, and back.

Layouts met in the wild:

- native / ldm: `encoder.down.{i}.block.{j}.norm1.weight`, `encoder.mid.attn_1.q.weight` (1x1 conv,
  4-D), `decoder.up.{i}...` where up.0 is the full-resolution level. Bare VAE files (sdxl_vae.safetensors,
  FLUX's ae.safetensors, vae-ft-mse) and, under a prefix, whole SD/SDXL checkpoints
  (`first_stage_model.`), some merged files (`vae.`) and SD3 single files (`first_stage_model.`).
- diffusers: `encoder.down_blocks.{i}.resnets.{j}...`, `mid_block.attentions.0.to_q.weight` (linear,
  2-D), `decoder.up_blocks.{k}` where k counts from the lowest resolution (k = levels - 1 - i), and
  `conv_shortcut` / `conv_norm_out`. Old diffusers files name attention `query/key/value/proj_attn`.

The key map itself is the conv autoencoder trunk's (`utils.nn.conv_autoencoder_keys`, shared with
VQGAN); this module adds the KL head (the quant convs), finds the VAE inside a file, and settles its
config (`infer_config`: sizes from the shapes, the rest from a preset or an explicit config).
The conversions are pure: they take a dict of tensors and return a new one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch

from utils.errors import ConversionError, UserError, WeightsError
from utils.nn import conv_autoencoder_keys as trunk_keys
from utils.weights.configs import settle_config
from utils.weights.keys import strip_prefix

if TYPE_CHECKING:  # vae.py imports this module lazily; the config class is only named here
    from utils.encoders.vae import VAEConfig

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
    out = strip_prefix(sd, prefix)
    if prefix == "":  # a bare file: keep only what can belong to a VAE
        out = {k: v for k, v in out.items() if k.split(".", 1)[0] in
               ("encoder", "decoder", "quant_conv", "post_quant_conv")}
    return out


def detect_vae_format(sd: Mapping[str, torch.Tensor]) -> str:
    """'diffusers' or 'native' for an unprefixed VAE state dict."""
    fmt = trunk_keys.detect_layout(sd)
    if fmt is None:
        raise ConversionError("the VAE checkpoint is in no known layout (neither ldm `encoder.down.N` nor diffusers "
                              "`encoder.down_blocks.N` keys): check that the file is an AutoencoderKL")
    return fmt


def num_levels(sd: Mapping[str, torch.Tensor]) -> int:
    """How many resolution levels the checkpoint has (4 for every official VAE)."""
    return trunk_keys.count_levels(sd)


# -- diffusers <-> native (the shared trunk key map plus the KL head's quant convs) -------------------


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Diffusers AutoencoderKL keys -> native keys; attention linears become 1x1 conv weights."""
    return trunk_keys.diffusers_to_native(sd, heads=trunk_keys.KL_HEADS, what="AutoencoderKL")


def native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Native (ldm) keys -> diffusers keys; 1x1 conv attention weights become linear weights."""
    return trunk_keys.native_to_diffusers(sd, heads=trunk_keys.KL_HEADS, what="AutoencoderKL")


def to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Any known VAE layout, with or without a prefix -> native keys (format detected)."""
    bare = strip_vae_prefix(sd)
    fmt = detect_vae_format(bare)
    return diffusers_to_native(bare) if fmt == "diffusers" else trunk_keys.attention_as_conv(bare)


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


def read_sizes(native: Mapping[str, torch.Tensor]) -> dict:
    """The VAEConfig fields a native state dict's shapes fix (everything but the norm groups and the
    latent normalisation); works on meta tensors."""
    s = trunk_keys.read_trunk_sizes(native)
    if s["encoder_out"] != 2 * s["z_channels"]:
        raise ConversionError(f"the encoder writes {s['encoder_out']} channels for a {s['z_channels']}-channel latent; "
                              "an AutoencoderKL writes twice its latent channels (mean and log-variance): this is "
                              "not a KL VAE (a VQGAN loads with --model vqgan)")
    if s["attn_levels"]:
        raise ConversionError(f"the encoder has attention blocks at level(s) {list(s['attn_levels'])}, which no "
                              "AutoencoderKL has: this is not a KL VAE (a VQGAN loads with --model vqgan)")
    return dict(in_channels=s["in_channels"], out_channels=s["out_channels"], base_channels=s["base_channels"],
                channel_mult=s["channel_mult"], num_res_blocks=s["num_res_blocks"], latent_channels=s["z_channels"],
                use_quant_conv="quant_conv.weight" in native, use_post_quant_conv="post_quant_conv.weight" in native)


def infer_config(native: Mapping[str, torch.Tensor], preset: str | None = None, hint: str = "",
                 full_keys: Mapping[str, torch.Tensor] | None = None,
                 config: "VAEConfig | None" = None) -> "VAEConfig":
    """The VAEConfig of a native state dict: sizes from the shapes, the rest from a preset or `config`.

    The shapes fix every size but not GroupNorm's group count: that comes from the preset whose sizes
    the file has (every release), or from an explicit `config`; a file of sizes no preset has and no
    config is a one-line UserError naming norm_groups. `config`, when given, is checked against the
    shapes and used whole. The latent normalisation is not in the weights either, and the release
    sizes do not tell it (SD and SDXL VAEs have the same shapes, and so do SD3 and FLUX): it comes from
    `preset`, else from the file name (`hint`) and the rest of the checkpoint (`full_keys`).
    """
    from utils.encoders.vae import VAE_PRESETS, VAEConfig

    facts = read_sizes(native)
    what = f"the VAE in {os.path.basename(hint)}" if hint else "the VAE checkpoint"
    if config is not None:
        return settle_config(facts, VAE_PRESETS, VAEConfig, ["norm_groups"], what, config=config)[0]
    sized, _ = settle_config(facts, VAE_PRESETS, VAEConfig, ["norm_groups"], what, prefer=preset,
                             hint=" (and the scaling_factor and shift_factor of its latents, not stored either)")
    norm = VAEConfig.preset(preset or _guess_preset(facts["latent_channels"], hint, full_keys or {}))
    return sized.with_(scaling_factor=norm.scaling_factor, shift_factor=norm.shift_factor,
                       force_upcast=norm.force_upcast)


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
                        dtype: torch.dtype | None = None,
                        config: "VAEConfig | None" = None) -> tuple["VAEConfig", StateDict]:
    """(config, native state dict) for a VAE file, a diffusers folder, or a hub id.

    `config`: an explicit VAEConfig (checked against the shapes) instead of the folder's config.json
    or the preset matched from a single file's shapes; see `infer_config`.
    """
    from utils.encoders.vae import VAE_PRESETS, VAEConfig
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
            native = to_native(load_folder_state_dict(folder, dtype=dtype))
            if config is not None:
                return settle_config(read_sizes(native), VAE_PRESETS, VAEConfig, ["norm_groups"],
                                     f"the VAE in {folder}", config=config)[0], native
            cfg = config_from_diffusers(json.loads((folder / "config.json").read_text()))
            if preset is not None:  # an explicit preset only overrides the latent normalisation
                p = VAEConfig.preset(preset)
                cfg = cfg.with_(scaling_factor=p.scaling_factor, shift_factor=p.shift_factor)
            return cfg, native
    sd = load_state_dict(path, dtype=dtype)
    native = to_native(sd)
    return infer_config(native, preset=preset, hint=str(path), full_keys=sd, config=config), native


__all__ = ["VAE_PREFIXES", "config_from_diffusers", "config_to_diffusers", "detect_vae_format",
           "diffusers_to_native", "find_vae_prefix", "infer_config", "load_vae_checkpoint", "native_to_diffusers",
           "num_levels", "read_sizes", "strip_vae_prefix", "to_native"]
