"""Checkpoint layouts of the temporal-decoder VAE -> the native (official) layout, and back. Pure functions.

Layouts:

- native: the names of `utils.encoders.temporal_vae` (the release's); bare files in this layout load.
- official SVD single files (`svd.safetensors`, `svd_xt.safetensors`): the encoder the conditioning
  frame goes through, with its `quant_conv`, sits under `conditioner.embedders.3.encoder.` (an
  `AutoencoderKLModeOnly`; its image `decoder` and `post_quant_conv` are not used for video), and the
  temporal decoder under `first_stage_model.decoder.` (the `first_stage_model.encoder.` next to it,
  without a quant_conv, is the training-time encoder; inference does not use it). diffusers reads the
  same two places.
- diffusers (`vae/` of the SVD repos, `AutoencoderKLTemporalDecoder`): the image VAE's names for the
  encoder (`utils.nn.conv_autoencoder_keys`), and in the decoder

      native                                        diffusers
      decoder.up.I.block.J.<norm1|conv1|...>        decoder.up_blocks.(L-1-I).resnets.J.spatial_res_block.<...>
      decoder.up.I.block.J.time_stack.in_layers.0   ...resnets.J.temporal_res_block.norm1 (.2: conv1,
                                                    out_layers.0: norm2, out_layers.3: conv2)
      decoder.up.I.block.J.mix_factor               ...resnets.J.time_mixer.mix_factor
      decoder.mid.block_1 / attn_1 / block_2        decoder.mid_block.resnets.0 / attentions.0 / resnets.1
      decoder.conv_out.time_mix_conv                decoder.time_conv_out
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import torch

from utils.errors import ConversionError, UserError, WeightsError
from utils.nn import conv_autoencoder_keys as trunk_keys
from utils.weights.configs import settle_config
from utils.weights.keys import key_report, strip_prefix

if TYPE_CHECKING:
    from utils.encoders.temporal_vae import TemporalVAEConfig

StateDict = dict[str, torch.Tensor]

SVD_ENCODER_PREFIX = "conditioner.embedders.3.encoder."
"""Where official SVD files keep the conditioning-frame encoder (encoder.*, quant_conv.*)."""
SVD_DECODER_PREFIX = "first_stage_model."
"""Where official SVD files keep the temporal decoder (decoder.*)."""
HEADS = ("quant_conv.",)

_TIME_STACK = {"in_layers.0": "norm1", "in_layers.2": "conv1", "out_layers.0": "norm2", "out_layers.3": "conv2"}
_TIME_STACK_D2N = {v: k for k, v in _TIME_STACK.items()}
_D_RESNET = re.compile(r"(?P<block>decoder\.(?:mid_block|up_blocks\.\d+)\.resnets\.\d+)\."
                       r"(?P<kind>spatial_res_block|temporal_res_block|time_mixer)\.(?P<rest>.+)")
_N_BLOCK = re.compile(r"(?P<block>decoder\.(?:mid\.block_[12]|up\.\d+\.block\.\d+))\.(?P<rest>.+)")


def _native_block(diffusers_block: str, levels: int) -> str:
    probe = trunk_keys.diffusers_key_to_native(f"{diffusers_block}.norm1.weight", levels, HEADS)
    if probe is None:
        raise ConversionError(f"'{diffusers_block}' is no ResNet block of a temporal VAE decoder")
    return probe[: -len(".norm1.weight")]


def _diffusers_block(native_block: str, levels: int) -> str:
    probe = trunk_keys.native_key_to_diffusers(f"{native_block}.norm1.weight", levels, HEADS)
    if probe is None:
        raise ConversionError(f"'{native_block}' is no ResNet block of a temporal VAE decoder")
    return probe[: -len(".norm1.weight")]


def diffusers_key_to_native(key: str, levels: int) -> str | None:
    """The native name of one diffusers AutoencoderKLTemporalDecoder key (None: no such key)."""
    if m := re.fullmatch(r"decoder\.time_conv_out\.(weight|bias)", key):
        return f"decoder.conv_out.time_mix_conv.{m[1]}"
    if m := _D_RESNET.fullmatch(key):
        block = _native_block(m["block"], levels)
        if m["kind"] == "spatial_res_block":
            return trunk_keys.diffusers_key_to_native(f"{m['block']}.{m['rest']}", levels, HEADS)
        if m["kind"] == "time_mixer":
            return f"{block}.mix_factor" if m["rest"] == "mix_factor" else None
        leaf, _, param = m["rest"].rpartition(".")
        return f"{block}.time_stack.{_TIME_STACK_D2N[leaf]}.{param}" if leaf in _TIME_STACK_D2N else None
    return trunk_keys.diffusers_key_to_native(key, levels, HEADS)


def native_key_to_diffusers(key: str, levels: int) -> str | None:
    """The diffusers name of one native key (None: no such key)."""
    if m := re.fullmatch(r"decoder\.conv_out\.time_mix_conv\.(weight|bias)", key):
        return f"decoder.time_conv_out.{m[1]}"
    if m := _N_BLOCK.fullmatch(key):
        block = _diffusers_block(m["block"], levels)
        rest = m["rest"]
        if rest == "mix_factor":
            return f"{block}.time_mixer.mix_factor"
        if rest.startswith("time_stack."):
            leaf, _, param = rest[len("time_stack."):].rpartition(".")
            return f"{block}.temporal_res_block.{_TIME_STACK[leaf]}.{param}" if leaf in _TIME_STACK else None
        plain = trunk_keys.native_key_to_diffusers(key, levels, HEADS)
        return None if plain is None else plain.replace(f"{block}.", f"{block}.spatial_res_block.", 1)
    return trunk_keys.native_key_to_diffusers(key, levels, HEADS)


def _convert(sd: Mapping[str, torch.Tensor], to_native: bool) -> StateDict:
    levels = trunk_keys.count_levels(sd)
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        new = diffusers_key_to_native(key, levels) if to_native else native_key_to_diffusers(key, levels)
        if new is None:
            unknown.append(key)
            continue
        if to_native and value.ndim == 2 and trunk_keys.is_attention_projection(new):
            value = value[:, :, None, None]
        elif not to_native and value.ndim == 4 and trunk_keys.is_attention_projection(key):
            value = value[:, :, 0, 0]
        out[new] = value
    if unknown:
        layout = "diffusers" if to_native else "native"
        raise ConversionError(f"the {layout} temporal VAE checkpoint has keys this converter does not know "
                              f"({key_report([], unknown)}): check that it is an AutoencoderKLTemporalDecoder")
    return out


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers AutoencoderKLTemporalDecoder keys -> native keys; attention linears become 1x1 convs."""
    return _convert(sd, to_native=True)


def native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Native keys -> diffusers AutoencoderKLTemporalDecoder keys."""
    return _convert(sd, to_native=False)


# -- official single files ------------------------------------------------------------------------------


def is_official_svd(sd: Mapping[str, torch.Tensor]) -> bool:
    return f"{SVD_DECODER_PREFIX}decoder.conv_out.time_mix_conv.weight" in sd


def official_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """The native temporal VAE of an official SVD file: the conditioner's encoder + quant_conv, and the
    first stage's temporal decoder (see the module docstring)."""
    enc = strip_prefix(sd, SVD_ENCODER_PREFIX)
    dec = strip_prefix(sd, SVD_DECODER_PREFIX)
    native = {k: v for k, v in enc.items() if k.startswith(("encoder.", "quant_conv."))}
    native.update({k: v for k, v in dec.items() if k.startswith("decoder.")})
    if "quant_conv.weight" not in native or "encoder.conv_in.weight" not in native:
        raise ConversionError(f"this SVD file has no conditioning encoder ({SVD_ENCODER_PREFIX}encoder.*, "
                              "quant_conv.*): it is incomplete, or not an SVD release")
    return trunk_keys.attention_as_conv(native)


def native_to_official(native: Mapping[str, torch.Tensor]) -> StateDict:
    """Native keys -> where an official SVD file keeps them (the inverse of `official_to_native`)."""
    return {(SVD_DECODER_PREFIX if k.startswith("decoder.") else SVD_ENCODER_PREFIX) + k: v
            for k, v in native.items()}


def to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """An official SVD file, a bare native file or a bare diffusers file -> native keys."""
    if is_official_svd(sd):
        return official_to_native(sd)
    fmt = trunk_keys.detect_layout(sd)
    if fmt == "diffusers":
        return diffusers_to_native(sd)
    if fmt == "native" and "decoder.conv_out.time_mix_conv.weight" in sd:
        return trunk_keys.attention_as_conv({k: v for k, v in sd.items()
                                             if k.startswith(("encoder.", "decoder.", "quant_conv."))})
    raise ConversionError("no temporal-decoder VAE in this checkpoint (no decoder.conv_out.time_mix_conv / "
                          "decoder.time_conv_out weights): pass an SVD file, or the vae/ folder of an SVD repo")


# -- configs --------------------------------------------------------------------------------------------


def config_from_diffusers(cfg: Mapping) -> "TemporalVAEConfig":
    from utils.encoders.temporal_vae import TemporalVAEConfig

    chans = list(cfg.get("block_out_channels", [128, 256, 512, 512]))
    base = chans[0]
    if any(c % base for c in chans):
        raise ConversionError(f"block_out_channels {chans} are not multiples of the first width")
    if int(cfg.get("layers_per_block", 2)) != 2:
        raise ConversionError(f"layers_per_block {cfg.get('layers_per_block')}: diffusers then builds a middle block "
                              "of another shape than the release's (two ResNet blocks around one attention); only 2 "
                              "is supported")
    return TemporalVAEConfig(in_channels=int(cfg.get("in_channels", 3)), out_channels=int(cfg.get("out_channels", 3)),
                             base_channels=base, channel_mult=tuple(c // base for c in chans), num_res_blocks=2,
                             latent_channels=int(cfg.get("latent_channels", 4)),
                             scaling_factor=float(cfg.get("scaling_factor", 0.18215)),
                             force_upcast=bool(cfg.get("force_upcast", True)))


def config_to_diffusers(cfg: "TemporalVAEConfig") -> dict:
    """The keyword arguments of diffusers' AutoencoderKLTemporalDecoder for the same network."""
    if cfg.num_res_blocks != 2 or cfg.norm_groups != 32 or cfg.video_kernel_t != 3:
        raise UserError("diffusers' AutoencoderKLTemporalDecoder has 2 blocks per level, 32 norm groups and a "
                        "temporal kernel of 3 built in: this config cannot be expressed in it")
    n = len(cfg.channel_mult)
    return dict(in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                down_block_types=("DownEncoderBlock2D",) * n, block_out_channels=cfg.level_channels,
                layers_per_block=2, latent_channels=cfg.latent_channels, scaling_factor=cfg.scaling_factor,
                force_upcast=cfg.force_upcast)


def read_sizes(native: Mapping[str, torch.Tensor]) -> dict:
    """The config fields a native state dict's shapes fix (works on meta tensors)."""
    s = trunk_keys.read_trunk_sizes(native)
    kernel = native["decoder.conv_out.time_mix_conv.weight"].shape[2]
    return dict(in_channels=s["in_channels"], out_channels=s["out_channels"], base_channels=s["base_channels"],
                channel_mult=s["channel_mult"], num_res_blocks=s["num_res_blocks"], latent_channels=s["z_channels"],
                video_kernel_t=kernel)


def infer_config(native: Mapping[str, torch.Tensor], preset: str | None = None,
                 what: str = "the temporal VAE checkpoint", config: "TemporalVAEConfig | None" = None
                 ) -> "TemporalVAEConfig":
    """`config` (checked against the shapes), else the preset whose sizes the file has, else a one-line
    UserError naming norm_groups (not stored in the weights)."""
    from utils.encoders.temporal_vae import TEMPORAL_VAE_PRESETS, TemporalVAEConfig

    return settle_config(read_sizes(native), TEMPORAL_VAE_PRESETS, TemporalVAEConfig, ["norm_groups"], what,
                         config=config, prefer=preset)[0]


# -- loading a source -------------------------------------------------------------------------------------


def load_temporal_vae(source: str | os.PathLike, preset: str | None = None, subfolder: str | None = None,
                      dtype: torch.dtype | None = None,
                      config: "TemporalVAEConfig | None" = None) -> tuple["TemporalVAEConfig", StateDict]:
    """(config, native state dict) of a diffusers folder (vae/ or its parent), a single file, or a hub id;
    `config` replaces what a single file's shapes cannot tell (see `infer_config`)."""
    from utils.weights import load_folder_state_dict, load_state_dict, resolve

    local = Path(os.path.expanduser(str(source)))
    if not local.exists():
        sub = subfolder or "vae"
        local = resolve(str(source), allow_patterns=[f"{sub}/config.json", f"{sub}/diffusion_pytorch_model.safetensors"])
    path = local / subfolder if subfolder else local
    if path.is_dir():
        folder = path if (path / "config.json").exists() else path / "vae"
        if not (folder / "config.json").exists():
            raise WeightsError(f"no VAE in {path}: expected a diffusers vae/ folder (config.json + "
                               "diffusion_pytorch_model.safetensors)")
        raw = json.loads((folder / "config.json").read_text())
        if raw.get("_class_name", "AutoencoderKLTemporalDecoder") != "AutoencoderKLTemporalDecoder":
            raise UserError(f"{folder} holds a {raw.get('_class_name')}, not the temporal-decoder VAE of SVD: pass "
                            "the vae/ folder of an SVD repo")
        return config_from_diffusers(raw), diffusers_to_native(load_folder_state_dict(folder, dtype=dtype))
    sd = load_state_dict(path, dtype=dtype)
    native = to_native(sd)
    return infer_config(native, preset, what=f"the temporal VAE in {path.name}", config=config), native


__all__ = ["SVD_DECODER_PREFIX", "SVD_ENCODER_PREFIX", "config_from_diffusers", "config_to_diffusers",
           "diffusers_key_to_native", "diffusers_to_native", "infer_config", "is_official_svd",
           "load_temporal_vae", "native_key_to_diffusers", "native_to_diffusers", "native_to_official",
           "official_to_native", "read_sizes", "to_native"]
