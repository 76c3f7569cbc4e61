"""Checkpoint layouts of VQGAN -> the native layout of `VQGAN` (and `PatchDiscriminator`).

Layouts:
- "taming": taming-transformers' Lightning checkpoints (`last.ckpt`, {'state_dict': ...}).
  The autoencoder keys are already native (encoder.down.0.block.0.norm1.weight,
  quantize.embedding.weight, quant_conv, post_quant_conv...). `loss.discriminator.*` is the
  PatchGAN (kept, on request, for the discriminator); `loss.perceptual_loss.*` is the frozen
  LPIPS network, dropped.
- "diffusers": a `VQModel` folder or state dict (encoder.down_blocks.{i}.resnets.{j},
  attentions with to_q/to_k/to_v/to_out.0 as linear layers, decoder.up_blocks in reverse order).
- "native": this package's own files (the taming names without the loss).

The encoder/decoder names are those of the conv autoencoder trunk shared with the KL VAE, so the
diffusers <-> native key map is the trunk's (`utils.nn.conv_autoencoder_keys`); the VQ head
(`quant_conv`, `quantize.embedding`, `post_quant_conv`) keeps its names. Keys that no rule
accepts are a ConversionError naming them.

A taming .ckpt carries no config: `infer_config` reads the sizes off the shapes and takes the
rest (GroupNorm's group count, which leaves no trace in the weights) from the preset with those
sizes, or from an explicit config; sizes no preset has, without a config, are a one-line refusal.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from models.gan.vqgan.config import PRESETS, VQGANConfig
from models.gan.vqgan.spec import SPEC
from utils.errors import ConversionError, UserError
from utils.nn import conv_autoencoder_keys as trunk_keys
from utils.weights.configs import settle_config

DROPPED_PREFIXES = ("loss.perceptual_loss.",)
DISC_PREFIX = "loss.discriminator."


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = set(state_dict)
    if any(k.startswith(("encoder.down_blocks.", "decoder.up_blocks.", "encoder.mid_block.")) for k in keys):
        return "diffusers"
    if any(k.startswith("loss.") for k in keys):
        return "taming"
    if "quantize.embedding.weight" in keys and any(k.startswith("encoder.down.") for k in keys):
        return "native"
    raise ConversionError(f"not a VQGAN checkpoint (first keys: {', '.join(sorted(keys)[:4])}): pass a "
                          "taming-transformers .ckpt, a diffusers VQModel folder or a native file")


def split_taming(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """taming -> (autoencoder state dict, discriminator state dict); LPIPS weights are dropped."""
    ae, disc = {}, {}
    for k, v in state_dict.items():
        if k.startswith(DISC_PREFIX):
            disc[k[len(DISC_PREFIX):]] = v
        elif k.startswith(DROPPED_PREFIXES):
            continue
        else:
            ae[k] = v
    return ae, disc


def convert_diffusers(state_dict: Mapping[str, torch.Tensor], num_levels: int | None = None) -> dict[str, torch.Tensor]:
    """diffusers VQModel -> native. `num_levels` = len(ch_mult) (decoder up blocks are reversed); counted
    from the keys when not given."""
    return trunk_keys.diffusers_to_native(state_dict, heads=trunk_keys.VQ_HEADS, what="VQModel", levels=num_levels)


def config_from_diffusers(cfg: Mapping[str, Any], base: VQGANConfig | None = None) -> VQGANConfig:
    """A VQGANConfig from a diffusers VQModel config.json; unsupported variants are a clear error."""
    base = base or PRESETS["imagenet-f16-1024"]
    if cfg.get("norm_type", "group") != "group":
        raise ConversionError(f"diffusers VQModel with norm_type='{cfg['norm_type']}' (MoVQ) is not a VQGAN: "
                              "only norm_type='group' converts")
    if cfg.get("act_fn", "silu") not in ("silu", "swish"):
        raise ConversionError(f"diffusers VQModel with act_fn='{cfg['act_fn']}': VQGAN uses silu")
    if not cfg.get("mid_block_add_attention", True):
        raise ConversionError("diffusers VQModel without mid-block attention is not a VQGAN layout")
    if cfg.get("lookup_from_codebook", False):
        raise ConversionError("diffusers VQModel with lookup_from_codebook is not supported")
    channels = list(cfg.get("block_out_channels", [64]))
    ch = channels[0]
    if any(c % ch for c in channels):
        raise ConversionError(f"block_out_channels {channels} are not multiples of the first one")
    down = list(cfg.get("down_block_types", ["DownEncoderBlock2D"]))
    up = list(cfg.get("up_block_types", ["UpDecoderBlock2D"]))
    enc_attn = [i for i, t in enumerate(down) if t.startswith("Attn")]
    dec_attn = sorted(len(up) - 1 - i for i, t in enumerate(up) if t.startswith("Attn"))
    if enc_attn != dec_attn:
        raise ConversionError(f"encoder attention at levels {enc_attn} but decoder at {dec_attn}: VQGAN places "
                              "attention at the same resolutions in both")
    resolution = int(cfg.get("sample_size", base.resolution))
    latent = int(cfg.get("latent_channels", 3))
    return replace(base, ch=ch, ch_mult=tuple(c // ch for c in channels),
                   num_res_blocks=int(cfg.get("layers_per_block", 1)),
                   attn_resolutions=tuple(resolution // 2 ** i for i in enc_attn), resolution=resolution,
                   in_channels=int(cfg.get("in_channels", 3)), out_channels=int(cfg.get("out_channels", 3)),
                   z_channels=latent, embed_dim=int(cfg.get("vq_embed_dim") or latent),
                   n_embed=int(cfg.get("num_vq_embeddings", 256)), norm_groups=int(cfg.get("norm_num_groups", 32)))


def read_sizes(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The VQGANConfig fields (and attention levels) a native/taming state dict's shapes fix."""
    s = trunk_keys.read_trunk_sizes(sd)
    try:
        n_embed, embed_dim = sd["quantize.embedding.weight"].shape
    except KeyError:
        raise ConversionError("the checkpoint has no codebook (quantize.embedding.weight): it is not a taming "
                              "VQModel checkpoint (a KL VAE loads through utils.encoders.vae)") from None
    if s["encoder_out"] != s["z_channels"]:
        raise ConversionError(f"the encoder writes {s['encoder_out']} channels but the decoder reads {s['z_channels']}: "
                              "not a VQGAN (a KL VAE writes twice its latent channels)")
    return dict(ch=s["base_channels"], ch_mult=s["channel_mult"], num_res_blocks=s["num_res_blocks"],
                attn_levels=s["attn_levels"], in_channels=s["in_channels"], out_channels=s["out_channels"],
                z_channels=s["z_channels"], embed_dim=int(embed_dim), n_embed=int(n_embed))


def infer_config(sd: Mapping[str, torch.Tensor], base: VQGANConfig | None = None, *,
                 config: VQGANConfig | None = None, what: str = "the VQGAN checkpoint") -> VQGANConfig:
    """The config of a native/taming state dict (the .ckpt carries none).

    `config`: explicit, checked against the shapes and used whole. Otherwise the preset whose sizes
    the file has (`base` first when it has them: it also supplies the loss settings); a file of sizes
    no preset has is a one-line UserError naming norm_groups (not stored in the weights).
    """
    facts = read_sizes(sd)
    levels = len(facts["ch_mult"])
    resolution = 16 * 2 ** (levels - 1)  # taming's convention: attention named by its 16x16 side
    suggest = {k: v for k, v in facts.items() if k != "attn_levels"}
    suggest.update(resolution=resolution, attn_resolutions=tuple(resolution // 2 ** i for i in facts["attn_levels"]))
    return settle_config(facts, PRESETS, VQGANConfig, ["norm_groups"], what, config=config, prefer=base,
                         suggest=suggest)[0]


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], config: VQGANConfig,
                       layout: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Any supported layout -> (native autoencoder state dict, discriminator state dict or {})."""
    layout = layout or detect_layout(state_dict)
    if layout == "diffusers":
        return convert_diffusers(state_dict, len(config.ch_mult)), {}
    if layout == "taming":
        return split_taming(state_dict)
    if layout == "native":
        return dict(state_dict), {}
    raise ConversionError(f"unknown VQGAN checkpoint layout '{layout}': use taming, diffusers or native")


def to_diffusers(state_dict: Mapping[str, torch.Tensor], config: VQGANConfig) -> dict[str, torch.Tensor]:
    """Native -> diffusers VQModel names (for export and round-trip tests)."""
    return trunk_keys.native_to_diffusers(state_dict, heads=trunk_keys.VQ_HEADS, what="VQGAN",
                                          levels=len(config.ch_mult))


# -- loading a source ------------------------------------------------------------------------------


def read_folder(path: Path, base: VQGANConfig | None = None) -> tuple[dict[str, torch.Tensor], VQGANConfig | None]:
    """(state dict, config or None) of a diffusers VQModel folder (or its parent with vqvae/), or of a taming
    log folder (checkpoints/last.ckpt, which has no config)."""
    from utils.weights import load_folder_state_dict, load_state_dict

    for folder in (path, path / "vqvae"):
        cfg_file = folder / "config.json"
        if cfg_file.exists():
            cfg = json.loads(cfg_file.read_text())
            if cfg.get("_class_name", "VQModel") != "VQModel":
                raise UserError(f"{cfg_file} describes a {cfg['_class_name']}, not a VQModel")
            return load_folder_state_dict(folder), config_from_diffusers(cfg, base)
    ckpt = path / "checkpoints" / "last.ckpt"
    if ckpt.exists():
        return load_state_dict(ckpt), None
    raise UserError(f"{path} is neither a diffusers VQModel folder (config.json + weights) nor a taming log "
                    "folder (checkpoints/last.ckpt): pass the checkpoint file itself")


def load_vqgan_checkpoint(source: str | os.PathLike, preset: str | None = None, config: VQGANConfig | None = None
                          ) -> tuple[VQGANConfig, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(config, native autoencoder state dict, discriminator state dict or {}) for a taming .ckpt, a
    taming log folder, a diffusers VQModel folder, a native file, or a hub id of a diffusers VQModel.

    `config`: an explicit VQGANConfig, for files of sizes no preset has (checked against the shapes);
    `preset` names the preset to prefer among those with the file's sizes (its loss settings count
    for training).
    """
    from utils.weights import load_state_dict
    from utils.weights.hub import locate

    base = PRESETS[SPEC.check_preset(preset)] if preset is not None else None
    path = locate(source, what=f"VQGAN weights '{source}'")
    if path.is_dir():
        sd, folder_cfg = read_folder(path, base)
    else:
        sd, folder_cfg = load_state_dict(path), None
    layout = detect_layout(sd)
    if layout == "diffusers" and folder_cfg is None and config is None:
        raise UserError(f"{path.name} is in the diffusers layout but has no config.json beside it: pass the "
                        "VQModel folder, or config=VQGANConfig(...)")
    what = f"the VQGAN in {path.name}"
    if layout == "diffusers":
        cfg = config or folder_cfg
        ae, disc = convert_state_dict(sd, cfg, layout)
        if config is not None:
            infer_config(ae, config=config, what=what)  # checks the explicit config against the shapes
    else:
        ae, disc = convert_state_dict(sd, PRESETS[SPEC.default_preset], layout)
        cfg = infer_config(ae, base, config=config, what=what)
    return cfg, ae, disc


__all__ = ["config_from_diffusers", "convert_diffusers", "convert_state_dict", "detect_layout", "infer_config",
           "load_vqgan_checkpoint", "read_folder", "read_sizes", "split_taming", "to_diffusers"]
