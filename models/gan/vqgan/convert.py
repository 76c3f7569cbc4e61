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

Names that no rule accepts stay as they are, so the strict load reports them as unexpected.
"""
from __future__ import annotations

import re
from dataclasses import replace
from typing import Any, Mapping

import torch

from models.gan.vqgan.config import PRESETS, VQGANConfig
from utils.errors import ConversionError

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


_DIFFUSERS_RULES: tuple[tuple[str, str], ...] = (
    (r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.mid.block_1."),
    (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.mid.block_2."),
    (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.mid.attn_1."),
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block."),
    (r"^encoder\.down_blocks\.(\d+)\.attentions\.", r"encoder.down.\1.attn."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
    (r"\.(?:group_norm)\.", ".norm."),
    (r"\.(?:to_q|query)\.", ".q."),
    (r"\.(?:to_k|key)\.", ".k."),
    (r"\.(?:to_v|value)\.", ".v."),
    (r"\.(?:to_out\.0|proj_attn)\.", ".proj_out."),
)
_ATTN_LINEAR = re.compile(r"\.(attn\.\d+|attn_1)\.(q|k|v|proj_out)\.weight$")


def convert_diffusers(state_dict: Mapping[str, torch.Tensor], num_levels: int) -> dict[str, torch.Tensor]:
    """diffusers VQModel -> native. `num_levels` = len(ch_mult) (decoder up blocks are reversed)."""
    out = {}
    for key, value in state_dict.items():
        k = key
        m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets|attentions|upsamplers\.0)\.(.*)$", k)
        if m:
            level = num_levels - 1 - int(m.group(1))
            part = {"resnets": "block", "attentions": "attn", "upsamplers.0": "upsample"}[m.group(2)]
            k = f"decoder.up.{level}.{part}.{m.group(3)}"
        for pattern, repl in _DIFFUSERS_RULES:
            k = re.sub(pattern, repl, k)
        if _ATTN_LINEAR.search(k) and value.ndim == 2:
            value = value[:, :, None, None]  # linear (out, in) -> 1x1 conv (out, in, 1, 1)
        out[k] = value
    return out


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


def infer_config(sd: Mapping[str, torch.Tensor], base: VQGANConfig) -> VQGANConfig:
    """Read the architecture off a native/taming state dict's shapes (the .ckpt carries no config).

    `base` supplies what shapes cannot tell: the loss settings and the training resolution
    (attention is placed by level, so the resolution only names those levels).
    """
    try:
        ch = sd["encoder.conv_in.weight"].shape[0]
        levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down."))
        mult = tuple(sd[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in range(levels))
        blocks = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block."))
        attn = tuple(i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in sd)
        n_embed, embed_dim = sd["quantize.embedding.weight"].shape
        z_channels = sd["encoder.conv_out.weight"].shape[0]
        in_ch = sd["encoder.conv_in.weight"].shape[1]
        out_ch = sd["decoder.conv_out.weight"].shape[0]
    except (KeyError, ValueError) as err:
        raise ConversionError(f"cannot read the VQGAN architecture off the checkpoint (no {err}): it is not a "
                              "taming VQModel checkpoint") from None
    resolution = base.resolution if len(base.ch_mult) == levels else 2 ** (levels - 1) * 16
    return replace(base, ch=ch, ch_mult=mult, num_res_blocks=blocks, resolution=resolution,
                   attn_resolutions=tuple(resolution // 2 ** i for i in attn), in_channels=in_ch,
                   out_channels=out_ch, z_channels=z_channels, embed_dim=embed_dim, n_embed=n_embed,
                   norm_groups=base.norm_groups)


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
    probe = {k: torch.empty(0) for k in _diffusers_keys_for(config)}
    forward = convert_diffusers(probe, len(config.ch_mult))
    inverse = {v_key: d_key for d_key, v_key in zip(probe, forward)}
    missing = set(state_dict) - set(inverse)
    if missing:
        raise ConversionError(f"native keys with no diffusers name: {', '.join(sorted(missing)[:6])}")
    out = {}
    for k, v in state_dict.items():
        if _ATTN_LINEAR.search(k):
            v = v[:, :, 0, 0]
        out[inverse[k]] = v
    return out


def _diffusers_keys_for(config: VQGANConfig) -> list[str]:
    """The key list of a diffusers VQModel of this config (no tensors allocated)."""
    from diffusers import VQModel

    levels = config.attn_levels
    n = len(config.ch_mult)
    with torch.device("meta"):
        m = VQModel(in_channels=config.in_channels, out_channels=config.out_channels,
                    down_block_types=tuple("AttnDownEncoderBlock2D" if i in levels else "DownEncoderBlock2D"
                                           for i in range(n)),
                    up_block_types=tuple("AttnUpDecoderBlock2D" if n - 1 - i in levels else "UpDecoderBlock2D"
                                         for i in range(n)),
                    block_out_channels=tuple(config.ch * m for m in config.ch_mult),
                    layers_per_block=config.num_res_blocks, latent_channels=config.z_channels,
                    vq_embed_dim=config.embed_dim, num_vq_embeddings=config.n_embed,
                    norm_num_groups=config.norm_groups, sample_size=config.resolution)
    return list(m.state_dict())
