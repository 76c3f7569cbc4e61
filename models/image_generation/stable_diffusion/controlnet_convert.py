"""ControlNet checkpoints: lllyasviel's official layout and the diffusers `ControlNetModel` layout -> native.

    native (official, `control_model.` stripped)   diffusers ControlNetModel
    time_embed / label_emb / input_blocks /         time_embedding / add_embedding / conv_in / down_blocks /
    middle_block                                    mid_block (the UNet's map: convert_unet.block_map)
    input_hint_block.0                              controlnet_cond_embedding.conv_in
    input_hint_block.2k (k = 1 .. n)                controlnet_cond_embedding.blocks.(k-1)
    input_hint_block.2n+2                           controlnet_cond_embedding.conv_out
    zero_convs.N.0                                  controlnet_down_blocks.N
    middle_block_out.0                              controlnet_mid_block

Files: `control_v11p_sd15_canny.pth` (ControlNet 1.1: `control_model.*` only), the 1.0 full checkpoints
(`control_sd15_canny.pth`: the whole SD model besides; only `control_model.*` is read), bare or fp16
safetensors of either, and diffusers folders / files (`diffusion_pytorch_model.safetensors` + `config.json`;
the SDXL ControlNets are released this way).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch

from models.image_generation.stable_diffusion.controlnet import ControlNet, ControlNetConfig
from models.image_generation.stable_diffusion.convert_unet import (_rename, block_map, infer_unet_config,
                                                                   unet_config_from_diffusers, unet_config_to_diffusers)
from models.image_generation.stable_diffusion.unet import UNetConfig
from utils.errors import ConversionError, UserError
from utils.weights.keys import strip_prefix

StateDict = dict[str, torch.Tensor]
OFFICIAL_PREFIX = "control_model."


def control_map(cfg: ControlNetConfig) -> list[tuple[str, str, str]]:
    """(native prefix, diffusers prefix, kind) of every block of a ControlNet."""
    ucfg = cfg.unet
    table = [row for row in block_map(ucfg) if not row[0].startswith(("output_blocks.", "out."))]
    n_skips = _skip_count(ucfg)
    table += [(f"zero_convs.{i}.0", f"controlnet_down_blocks.{i}", "plain") for i in range(n_skips)]
    table.append(("middle_block_out.0", "controlnet_mid_block", "plain"))
    table.append(("input_hint_block.0", "controlnet_cond_embedding.conv_in", "plain"))
    n_blocks = 2 * (len(cfg.hint_block_channels) - 1)
    table += [(f"input_hint_block.{2 * (k + 1)}", f"controlnet_cond_embedding.blocks.{k}", "plain")
              for k in range(n_blocks)]
    table.append((f"input_hint_block.{2 * (n_blocks + 1)}", "controlnet_cond_embedding.conv_out", "plain"))
    return table


def _skip_count(ucfg: UNetConfig) -> int:
    levels = len(ucfg.channel_mult)
    return 1 + levels * ucfg.num_res_blocks + (levels - 1)


def _convert(sd: Mapping[str, torch.Tensor], cfg: ControlNetConfig, reverse: bool, what: str) -> StateDict:
    table = control_map(cfg)
    # Longest prefixes first ("input_blocks.3.0.op" before "input_blocks.3.0", "blocks.10" before "blocks.1").
    table.sort(key=lambda row: -len(row[1] if reverse else row[0]))
    out, unknown = {}, []
    for key, value in sd.items():
        new = _rename(key, table, reverse)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ConversionError(f"{what} has keys this ControlNet layout does not know "
                              f"({', '.join(sorted(unknown)[:5])}{more}): check that the file is a ControlNet "
                              "for this model and the config matches it")
    return out


def controlnet_diffusers_to_native(sd: Mapping[str, torch.Tensor], cfg: ControlNetConfig) -> StateDict:
    """diffusers ControlNetModel keys -> official keys (no `control_model.` prefix)."""
    return _convert(sd, cfg, reverse=True, what="the diffusers ControlNet")


def controlnet_native_to_diffusers(sd: Mapping[str, torch.Tensor], cfg: ControlNetConfig) -> StateDict:
    """Official keys (no prefix) -> diffusers ControlNetModel keys."""
    return _convert(sd, cfg, reverse=False, what="the native ControlNet")


# -- configs --------------------------------------------------------------------------------------


def controlnet_config_from_diffusers(cfg: Mapping[str, Any]) -> ControlNetConfig:
    """ControlNetConfig of a diffusers ControlNetModel config.json (SD 1.x / 2.x or SDXL shaped)."""
    if cfg.get("global_pool_conditions"):
        raise UserError("this ControlNet pools its conditions globally (the shuffle model): not supported here")
    if cfg.get("controlnet_conditioning_channel_order", "rgb") != "rgb":
        raise UserError("this ControlNet reads BGR control images: not supported here, pass an RGB one")
    if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise UserError(f"this ControlNet's middle block is {cfg['mid_block_type']}: only the cross-attention one "
                        "of SD 1.5 / SDXL is supported")
    ucfg = unet_config_from_diffusers(dict(cfg))
    widths = tuple(cfg.get("conditioning_embedding_out_channels", (16, 32, 96, 256)))
    return ControlNetConfig(ucfg, hint_channels=cfg.get("conditioning_channels", 3), hint_block_channels=widths)


def controlnet_config_to_diffusers(cfg: ControlNetConfig) -> dict[str, Any]:
    """The diffusers ControlNetModel config of the same network."""
    out = unet_config_to_diffusers(cfg.unet)
    for key in ("sample_size", "out_channels", "up_block_types"):
        out.pop(key, None)
    out.update(conditioning_channels=cfg.hint_channels, conditioning_embedding_out_channels=cfg.hint_block_channels)
    return out


def read_hint_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """hint_channels and hint_block_channels off the shapes of `input_hint_block.*` (meta tensors work)."""
    convs = sorted(int(k.split(".")[1]) for k in native if k.startswith("input_hint_block.") and k.endswith(".weight"))
    if not convs or convs[0] != 0:
        raise ConversionError("not a ControlNet: no input_hint_block.0.weight")
    if convs != list(range(0, 2 * len(convs), 2)) or len(convs) % 2:
        raise ConversionError(f"the control image embedding's convolutions are at {convs}: expected 0, 2, 4, ... "
                              "(an even count): not a ControlNet of the official layout")
    first = native["input_hint_block.0.weight"]
    # conv_in, then (same-width, stride-2) pairs, then conv_out: the widths are the pairs' second outputs.
    pairs = convs[1:-1]
    widths = [first.shape[0]] + [native[f"input_hint_block.{i}.weight"].shape[0] for i in pairs[1::2]]
    return dict(hint_channels=first.shape[1], hint_block_channels=tuple(widths))


def infer_controlnet_config(native: Mapping[str, torch.Tensor], *, preset: str | None = None,
                            config: ControlNetConfig | None = None,
                            what: str = "the ControlNet checkpoint") -> ControlNetConfig:
    """The ControlNetConfig of a native state dict: the UNet preset whose encoder sizes the file has
    (`preset`, a UNet preset name, first), and the hint block read off its shapes."""
    if "input_blocks.0.0.weight" not in native:
        raise ConversionError(f"{what} has no input_blocks.0.0.weight: not a ControlNet")
    # The encoder has no output convolution; lend read_unet_sizes one so it can read the rest (out_channels
    # is not a ControlNet fact: the UNet's own default of 4 stands in).
    mc = native["input_blocks.0.0.weight"].shape[0]
    probe = dict(native)
    probe["out.2.weight"] = torch.empty((4, mc, 3, 3), device="meta")
    ucfg = infer_unet_config(probe, config=None if config is None else config.unet, preset=preset, what=what)
    hint = read_hint_sizes(native)
    if config is not None:
        if (config.hint_channels, config.hint_block_channels) != (hint["hint_channels"], hint["hint_block_channels"]):
            raise ConversionError(f"{what}: its control image embedding ({hint}) does not match the config given")
        return config
    return ControlNetConfig(ucfg, **hint)


# -- loading ----------------------------------------------------------------------------------------


def controlnet_native_state(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, str]:
    """The native tensors of a ControlNet file and the layout found ('official' or 'diffusers')."""
    inner = strip_prefix(sd, OFFICIAL_PREFIX)
    if inner:
        return inner, "official"
    if "input_hint_block.0.weight" in sd:
        return dict(sd), "official"
    if "controlnet_cond_embedding.conv_in.weight" in sd:
        return dict(sd), "diffusers"
    raise UserError("this file is not a ControlNet (no control_model.*, input_hint_block.* or "
                    "controlnet_cond_embedding.* keys): pass a ControlNet checkpoint (control_v11p_sd15_canny.pth, "
                    "or a diffusers ControlNet folder)")


def controlnet_from_state(sd: Mapping[str, torch.Tensor], preset: str | None = None,
                          config: ControlNetConfig | None = None, diffusers_config: Mapping[str, Any] | None = None,
                          what: str = "the ControlNet checkpoint") -> ControlNet:
    """A ControlNet from a state dict in either layout (a diffusers one needs its config.json, or `config`)."""
    from models.image_generation.stable_diffusion.convert import build

    tensors, layout = controlnet_native_state(sd)
    if layout == "diffusers":
        if config is None:
            if diffusers_config is None:
                raise UserError(f"{what} is in the diffusers layout but has no config.json beside it: pass the "
                                "ControlNet's folder (config.json + diffusion_pytorch_model.safetensors)")
            config = controlnet_config_from_diffusers(diffusers_config)
        tensors = controlnet_diffusers_to_native(tensors, config)
    cfg = infer_controlnet_config(tensors, preset=preset, config=config, what=what)
    return build(ControlNet, cfg, tensors, "ControlNet checkpoint")


CONTROLNET_PATTERNS = ["config.json", "diffusion_pytorch_model.safetensors"]


def load_controlnet(source: str | Path, preset: str | None = None, dtype: torch.dtype | None = None,
                    config: ControlNetConfig | None = None) -> ControlNet:
    """A ControlNet from a file (.safetensors / .pth / .bin, official or diffusers layout), a diffusers
    folder, or a hub id. `preset`: the UNet preset to prefer when reading sizes (sd15, sd21, sdxl-base)."""
    from utils.weights import load_folder_state_dict, load_state_dict
    from utils.weights.hub import locate

    path = locate(source, CONTROLNET_PATTERNS, f"ControlNet weights '{source}'")
    diffusers_config = None
    if path.is_dir():
        cfg_file = path / "config.json"
        if not cfg_file.exists():
            raise UserError(f"{path} is a folder without config.json: pass a diffusers ControlNet folder or the "
                            "checkpoint file itself")
        diffusers_config = json.loads(cfg_file.read_text())
        sd = load_folder_state_dict(path, dtype=dtype)
    else:
        sd = load_state_dict(path, dtype=dtype)
        beside = path.parent / "config.json"
        if beside.exists() and "controlnet_cond_embedding.conv_in.weight" in sd:
            diffusers_config = json.loads(beside.read_text())
    return controlnet_from_state(sd, preset=preset, config=config, diffusers_config=diffusers_config,
                                 what=f"the ControlNet in {path.name}")


__all__ = ["CONTROLNET_PATTERNS", "OFFICIAL_PREFIX", "control_map", "controlnet_config_from_diffusers",
           "controlnet_config_to_diffusers", "controlnet_diffusers_to_native", "controlnet_from_state",
           "controlnet_native_state", "controlnet_native_to_diffusers", "infer_controlnet_config", "load_controlnet",
           "read_hint_sizes"]
