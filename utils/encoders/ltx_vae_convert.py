"""LTX video VAE weights: the official release's layout -> native (diffusers' `AutoencoderKLLTXVideo` names).

The release (the `vae.` tensors of `ltx-video-2b-v0.9*.safetensors`) keeps each side as one flat
list of blocks: `encoder.down_blocks.N` runs through every level's residual stack (`res_blocks.J`),
its strided conv and its widening residual block, then the middle; `decoder.up_blocks.N` starts with
the middle, then each level's narrowing residual block, upsampler and residual stack. diffusers nests
the same modules per level. The index map is derived from the config (which levels scale, which
widen), so one function serves 0.9, 0.9.1 and 0.9.5. Smaller renames: `res_blocks` -> `resnets`,
`conv_shortcut` -> `conv_shortcut.conv`, `norm3.norm` -> `norm3`, `last_time_embedder` /
`last_scale_shift_table` -> `time_embedder` / `scale_shift_table`, and the latent statistics
`per_channel_statistics.{mean,std}-of-means` -> `latents_mean` / `latents_std` (its `channel` and
`mean-of-stds` entries are not used by the model and are dropped; a file without statistics gets
zeros and ones).
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from utils.encoders.ltx_vae import LTXVAEConfig
from utils.errors import ConversionError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

STATS = {"per_channel_statistics.mean-of-means": "latents_mean", "per_channel_statistics.std-of-means": "latents_std"}
DROPPED = ("per_channel_statistics.channel", "per_channel_statistics.mean-of-stds")


def block_map(cfg: LTXVAEConfig) -> dict[str, str]:
    """Official flat block prefix -> native nested prefix, e.g. 'encoder.down_blocks.1' ->
    'encoder.down_blocks.0.downsamplers.0'."""
    out: dict[str, str] = {}
    v095 = cfg.down_block_types[-1] == "LTXVideo095DownBlock3D"
    ch = cfg.block_out_channels
    levels = len(ch) - (1 if v095 else 0)
    n, width = 0, ch[0]
    for i in range(levels):
        inp = width
        width = ch[i + 1] if v095 else (ch[i + 1] if i + 1 < levels else ch[i])
        out[f"encoder.down_blocks.{n}"], n = f"encoder.down_blocks.{i}", n + 1
        if cfg.spatio_temporal_scaling[i]:
            out[f"encoder.down_blocks.{n}"], n = f"encoder.down_blocks.{i}.downsamplers.0", n + 1
        if not v095 and inp != width:
            out[f"encoder.down_blocks.{n}"], n = f"encoder.down_blocks.{i}.conv_out", n + 1
    out[f"encoder.down_blocks.{n}"] = "encoder.mid_block"

    dch = tuple(reversed(cfg.decoder_block_out_channels))
    scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
    factor = tuple(reversed(cfg.upsample_factor))
    out["decoder.up_blocks.0"], n, width = "decoder.mid_block", 1, dch[0]
    for i in range(len(dch)):
        inp, width = width // factor[i], dch[i] // factor[i]
        if inp != width:
            out[f"decoder.up_blocks.{n}"], n = f"decoder.up_blocks.{i}.conv_in", n + 1
        if scaling[i]:
            out[f"decoder.up_blocks.{n}"], n = f"decoder.up_blocks.{i}.upsamplers.0", n + 1
        out[f"decoder.up_blocks.{n}"], n = f"decoder.up_blocks.{i}", n + 1
    return out


_BLOCK = re.compile(r"^((?:encoder\.down_blocks|decoder\.up_blocks)\.\d+)\.(.*)$")


def official_to_native(state_dict: Mapping[str, torch.Tensor], cfg: LTXVAEConfig) -> StateDict:
    """Official VAE tensors (without the `vae.` prefix) -> native names; an unknown block is a ConversionError."""
    blocks = block_map(cfg)
    out, unknown = {}, []
    for key, value in state_dict.items():
        if key in DROPPED:
            continue
        if key in STATS:
            out[STATS[key]] = value
            continue
        new = key
        m = _BLOCK.match(key)
        if m:
            if m.group(1) not in blocks:
                unknown.append(key)
                continue
            new = f"{blocks[m.group(1)]}.{m.group(2)}"
        new = new.replace(".res_blocks.", ".resnets.").replace("last_time_embedder", "time_embedder")
        new = new.replace("last_scale_shift_table", "scale_shift_table").replace(".norm3.norm.", ".norm3.")
        new = re.sub(r"\.conv_shortcut\.(weight|bias)$", r".conv_shortcut.conv.\1", new)
        out[new] = value
    if unknown:
        raise ConversionError(f"the LTX VAE weights have blocks this config does not have ({key_report([], unknown)}): "
                              "check that the file matches the VAE version (0.9, 0.9.1, 0.9.5)")
    # A file without the statistics (a module state dict saved by the official code) standardises nothing.
    out.setdefault("latents_mean", torch.zeros(cfg.latent_channels))
    out.setdefault("latents_std", torch.ones(cfg.latent_channels))
    return out


def is_official(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(".res_blocks." in k or k.startswith("per_channel_statistics.") for k in state_dict)


def to_native(state_dict: Mapping[str, torch.Tensor], cfg: LTXVAEConfig) -> StateDict:
    """Any LTX VAE layout (official with or without `vae.`, a whole single file, diffusers) -> native names."""
    if any(k.startswith("vae.") for k in state_dict):
        state_dict = {k[4:]: v for k, v in state_dict.items() if k.startswith("vae.")}
    if is_official(state_dict):
        return official_to_native(state_dict, cfg)
    return dict(state_dict)


__all__ = ["block_map", "is_official", "official_to_native", "to_native"]
