"""SVD UNet: the diffusers layout <-> the native (official generative-models) layout, and configs both ways.

The layouts hold the same tensors under other names (nothing is reshaped). The map is derived from
the config, so it covers any size:

    native (official)                             diffusers (UNetSpatioTemporalConditionModel)
    time_embed.0 / .2                             time_embedding.linear_1 / linear_2
    label_emb.0.0 / .0.2                          add_embedding.linear_1 / linear_2
    input_blocks.0.0, out.0, out.2                conv_in, conv_norm_out, conv_out
    input_blocks.N.0 (VideoResBlock)              down_blocks.L.resnets.i
      in_layers.0/.2, emb_layers.1,                 spatial_res_block.norm1/conv1, time_emb_proj,
      out_layers.0/.3, skip_connection              norm2/conv2, conv_shortcut
      time_stack.<same names>                       temporal_res_block.<norm1, conv1, time_emb_proj, norm2, conv2>
      time_mixer.mix_factor                         time_mixer.mix_factor
    input_blocks.N.1 (SpatialVideoTransformer)    down_blocks.L.attentions.i
      norm, proj_in, transformer_blocks, proj_out   (same names)
      time_stack.K                                  temporal_transformer_blocks.K
      time_pos_embed.0 / .2                         time_pos_embed.linear_1 / linear_2
    input_blocks.N.0.op                           down_blocks.L.downsamplers.0.conv
    middle_block.0 / .1 / .2                      mid_block.resnets.0 / attentions.0 / resnets.1
    output_blocks.N.{0,1}                         up_blocks.(levels-1-L).resnets.i / attentions.i
    output_blocks.N.{1,2}.conv                    up_blocks.K.upsamplers.0.conv
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from models.video_generation.svd.config import SVDUNetConfig
from utils.errors import ConversionError, UserError
from utils.weights.configs import settle_config
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
        "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_ATTN = {"time_pos_embed.0": "time_pos_embed.linear_1", "time_pos_embed.2": "time_pos_embed.linear_2"}
_FIXED = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
          "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
          "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}


def block_map(cfg: SVDUNetConfig) -> list[tuple[str, str, str]]:
    """(native prefix, diffusers prefix, kind) for every block; kind is res, attn or plain."""
    out = [(n, d, "plain") for n, d in _FIXED.items()]
    levels = len(cfg.channel_mult)
    idx = 1
    for level in range(levels):
        for i in range(cfg.num_res_blocks):
            out.append((f"input_blocks.{idx}.0", f"down_blocks.{level}.resnets.{i}", "res"))
            if cfg.transformer_depth[level]:
                out.append((f"input_blocks.{idx}.1", f"down_blocks.{level}.attentions.{i}", "attn"))
            idx += 1
        if level != levels - 1:
            out.append((f"input_blocks.{idx}.0.op", f"down_blocks.{level}.downsamplers.0.conv", "plain"))
            idx += 1
    out += [("middle_block.0", "mid_block.resnets.0", "res"), ("middle_block.1", "mid_block.attentions.0", "attn"),
            ("middle_block.2", "mid_block.resnets.1", "res")]
    idx = 0
    for k, level in enumerate(reversed(range(levels))):
        attends = cfg.transformer_depth[level] > 0
        for i in range(cfg.num_res_blocks + 1):
            out.append((f"output_blocks.{idx}.0", f"up_blocks.{k}.resnets.{i}", "res"))
            if attends:
                out.append((f"output_blocks.{idx}.1", f"up_blocks.{k}.attentions.{i}", "attn"))
            if level and i == cfg.num_res_blocks:
                out.append((f"output_blocks.{idx}.{2 if attends else 1}.conv", f"up_blocks.{k}.upsamplers.0.conv",
                            "plain"))
            idx += 1
    return out


def _res_rest(rest: str, to_diffusers: bool) -> str | None:
    """The inside of a video res block: spatial leaves, time_stack leaves, the mixer."""
    if rest == "time_mixer.mix_factor":
        return rest
    if to_diffusers:
        temporal = rest.startswith("time_stack.")
        body = rest[len("time_stack."):] if temporal else rest
        head, _, param = body.rpartition(".")
        if head not in _RES:
            return None
        return f"{'temporal_res_block' if temporal else 'spatial_res_block'}.{_RES[head]}.{param}"
    part, _, body = rest.partition(".")
    head, _, param = body.rpartition(".")
    back = {v: k for k, v in _RES.items()}
    if part not in ("spatial_res_block", "temporal_res_block") or head not in back:
        return None
    return f"{'time_stack.' if part == 'temporal_res_block' else ''}{back[head]}.{param}"


def _attn_rest(rest: str, to_diffusers: bool) -> str:
    pairs = [("time_stack.", "temporal_transformer_blocks."), *((n + ".", d + ".") for n, d in _ATTN.items())]
    for native, diffusers in pairs:
        src, dst = (native, diffusers) if to_diffusers else (diffusers, native)
        if rest.startswith(src):
            return dst + rest[len(src):]
    return rest


def _convert(sd: Mapping[str, torch.Tensor], cfg: SVDUNetConfig, to_diffusers: bool, what: str) -> StateDict:
    table = block_map(cfg)
    table.sort(key=lambda row: -len(row[0] if to_diffusers else row[1]))  # "...3.0.op" before "...3.0"
    out, unknown = {}, []
    for key, value in sd.items():
        new = None
        for native, diffusers, kind in table:
            src, dst = (native, diffusers) if to_diffusers else (diffusers, native)
            if key == src or key.startswith(src + "."):
                rest = key[len(src) + 1:]
                if kind == "res":
                    rest = _res_rest(rest, to_diffusers)
                elif kind == "attn":
                    rest = _attn_rest(rest, to_diffusers)
                new = None if rest is None else (f"{dst}.{rest}" if rest else dst)
                break
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ConversionError(f"{what} has keys this UNet layout does not know ({key_report([], unknown)}): check "
                              "that the file is an SVD UNet and the config matches it")
    return out


def unet_diffusers_to_native(sd: Mapping[str, torch.Tensor], cfg: SVDUNetConfig) -> StateDict:
    """diffusers UNetSpatioTemporalConditionModel keys -> official keys (no prefix)."""
    return _convert(sd, cfg, to_diffusers=False, what="the diffusers SVD UNet")


def unet_native_to_diffusers(sd: Mapping[str, torch.Tensor], cfg: SVDUNetConfig) -> StateDict:
    """Official keys (no prefix) -> diffusers UNetSpatioTemporalConditionModel keys."""
    return _convert(sd, cfg, to_diffusers=True, what="the native SVD UNet")


# -- configs ----------------------------------------------------------------------------------------


def _per_level(value: Any, levels: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * levels


def unet_config_from_diffusers(cfg: Mapping[str, Any]) -> SVDUNetConfig:
    """SVDUNetConfig of a diffusers UNetSpatioTemporalConditionModel config.json."""
    blocks = tuple(cfg.get("block_out_channels", (320, 640, 1280, 1280)))
    levels, mc = len(blocks), blocks[0]
    if any(b % mc for b in blocks):
        raise UserError(f"block_out_channels {blocks} are not multiples of the first: not an SVD UNet")
    downs = cfg.get("down_block_types", ("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",))
    attends = ["CrossAttn" in t for t in downs]
    layers = _per_level(cfg.get("transformer_layers_per_block", 1), levels)
    heads = _per_level(cfg.get("num_attention_heads", (5, 10, 20, 20)), levels)
    head_dims = {blocks[i] // heads[i] for i in range(levels) if attends[i]} | {blocks[-1] // heads[-1]}
    if len(head_dims) != 1:
        raise UserError(f"this UNet uses a different head size per level ({sorted(head_dims)}): the release has one")
    atd = int(cfg.get("addition_time_embed_dim", 256))
    context = cfg.get("cross_attention_dim", 1024)
    context = context[0] if isinstance(context, (list, tuple)) else context
    return SVDUNetConfig(in_channels=int(cfg.get("in_channels", 8)), out_channels=int(cfg.get("out_channels", 4)),
                         model_channels=mc, channel_mult=tuple(b // mc for b in blocks),
                         num_res_blocks=int(_per_level(cfg.get("layers_per_block", 2), levels)[0]),
                         transformer_depth=tuple(layers[i] if attends[i] else 0 for i in range(levels)),
                         transformer_depth_middle=layers[-1], head_dim=head_dims.pop(), context_dim=int(context),
                         adm_in_channels=int(cfg.get("projection_class_embeddings_input_dim", 768)),
                         addition_time_embed_dim=atd)


def unet_config_to_diffusers(cfg: SVDUNetConfig, num_frames: int = 25) -> dict[str, Any]:
    """The diffusers UNetSpatioTemporalConditionModel config of the same network."""
    attends = [d > 0 for d in cfg.transformer_depth]
    layers = [d if d > 0 else 1 for d in cfg.transformer_depth]
    if not attends[-1]:
        layers[-1] = cfg.transformer_depth_middle  # diffusers sizes the middle block from the last level
    elif layers[-1] != cfg.transformer_depth_middle:
        raise UserError("diffusers cannot express a middle depth different from an attending last level")
    if cfg.norm_groups != 32 or cfg.video_kernel_t != 3:
        raise UserError("diffusers' SVD UNet has 32 norm groups and a temporal kernel of 3 built in")
    return dict(sample_size=96, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                down_block_types=tuple("CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal"
                                       for a in attends),
                up_block_types=tuple("CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal"
                                     for a in reversed(attends)),
                block_out_channels=cfg.level_channels, addition_time_embed_dim=cfg.addition_time_embed_dim,
                projection_class_embeddings_input_dim=cfg.adm_in_channels, layers_per_block=cfg.num_res_blocks,
                cross_attention_dim=cfg.context_dim, transformer_layers_per_block=tuple(layers),
                num_attention_heads=tuple(c // cfg.head_dim for c in cfg.level_channels), num_frames=num_frames)


def read_unet_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The config fields a native (official) UNet state dict's shapes fix (works on meta tensors)."""
    try:
        conv_in = native["input_blocks.0.0.weight"]
        adm = native["label_emb.0.0.weight"].shape[1]
        out_ch = native["out.2.weight"].shape[0]
        kernel = next(v.shape[2] for k, v in native.items() if k.endswith("time_stack.in_layers.2.weight"))
    except (KeyError, StopIteration) as err:
        raise ConversionError(f"not an SVD UNet: {err!r} is missing (no time_stack, or no conv_in/label_emb)") from None
    mc = conv_in.shape[0]
    n_in = 1 + max(int(k.split(".")[1]) for k in native if k.startswith("input_blocks."))
    mults, depths, per_level, count, depth = [], [], [], 0, 0
    for n in range(1, n_in):
        if f"input_blocks.{n}.0.op.weight" in native:
            per_level.append(count)
            depths.append(depth)
            count = depth = 0
            continue
        width = native[f"input_blocks.{n}.0.in_layers.2.weight"].shape[0]
        if count == 0:
            mults.append(width // mc)
        count += 1
        depth = len({k.split(".")[4] for k in native if k.startswith(f"input_blocks.{n}.1.transformer_blocks.")})
    per_level.append(count)
    depths.append(depth)
    if len(set(per_level)) != 1:
        raise ConversionError(f"uneven res blocks per level {per_level}: not an SVD UNet")
    mid = len({k.split(".")[3] for k in native if k.startswith("middle_block.1.transformer_blocks.")})
    context = next(v.shape[1] for k, v in native.items() if k.endswith("attn2.to_k.weight"))
    return dict(in_channels=conv_in.shape[1], out_channels=out_ch, model_channels=mc, channel_mult=tuple(mults),
                num_res_blocks=per_level[0], transformer_depth=tuple(depths), transformer_depth_middle=mid,
                context_dim=context, adm_in_channels=adm, addition_time_embed_dim=adm // 3, video_kernel_t=kernel)


UNET_UNDETERMINED = ("head_dim", "norm_groups")
"""What the weights do not store: the head size (nothing is normalised per head) and GroupNorm's groups."""


def infer_unet_config(native: Mapping[str, torch.Tensor], *, config: SVDUNetConfig | None = None,
                      preset: str | None = None, what: str = "the SVD UNet checkpoint") -> SVDUNetConfig:
    """The config of a native UNet state dict: `config` (checked against the shapes), else the preset
    whose sizes the file has, else a one-line UserError naming head_dim and norm_groups."""
    from models.video_generation.svd.config import UNET_PRESETS

    return settle_config(read_unet_sizes(native), UNET_PRESETS, SVDUNetConfig, UNET_UNDETERMINED, what,
                         config=config, prefer=preset)[0]


__all__ = ["UNET_UNDETERMINED", "block_map", "infer_unet_config", "read_unet_sizes", "unet_config_from_diffusers",
           "unet_config_to_diffusers", "unet_diffusers_to_native", "unet_native_to_diffusers"]
