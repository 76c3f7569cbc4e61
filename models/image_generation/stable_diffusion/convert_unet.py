"""SDXL and SD 1.x / 2.x UNets: the diffusers layout <-> the native (official sgm / CompVis) layout, and
configs both ways (SD 1.x / 2.x have no `label_emb` / `add_embedding`; SD 1.x's 1x1-conv projections
keep their names).

The two layouts hold the same tensors under other names; nothing is reshaped. The map is derived
from the config (which numbered `input_blocks.N` is which resnet, attention or downsampler), so it
covers base, refiner and any custom size.

    native (official)                          diffusers
    time_embed.0 / .2                          time_embedding.linear_1 / linear_2
    label_emb.0.0 / .0.2                       add_embedding.linear_1 / linear_2
    input_blocks.0.0                           conv_in
    input_blocks.N.0 (ResBlock)                down_blocks.L.resnets.i
      in_layers.0/.2, emb_layers.1,              norm1/conv1, time_emb_proj,
      out_layers.0/.3, skip_connection           norm2/conv2, conv_shortcut
    input_blocks.N.1 (SpatialTransformer)      down_blocks.L.attentions.i  (same inner names)
    input_blocks.N.0.op                        down_blocks.L.downsamplers.0.conv
    middle_block.0 / .1 / .2                   mid_block.resnets.0 / attentions.0 / resnets.1
    output_blocks.N.{0,1}                      up_blocks.(levels-1-L).resnets.i / attentions.i
    output_blocks.N.{1,2}.conv                 up_blocks.K.upsamplers.0.conv
    out.0 / out.2                              conv_norm_out / conv_out
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from models.image_generation.stable_diffusion.unet import UNetConfig
from utils.errors import ConversionError, UserError
from utils.weights.configs import settle_config

StateDict = dict[str, torch.Tensor]

_RES_NATIVE_TO_DIFFUSERS = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}
_RES_DIFFUSERS_TO_NATIVE = {v: k for k, v in _RES_NATIVE_TO_DIFFUSERS.items()}
_FIXED = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
          "label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2",
          "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}


def block_map(cfg: UNetConfig) -> list[tuple[str, str, str]]:
    """(native prefix, diffusers prefix, kind) for every block; kind is res, attn, down, up or plain."""
    out = [(n, d, "plain") for n, d in _FIXED.items()
           if getattr(cfg, "adm_in_channels", 1) or not n.startswith("label_emb.")]  # SD 1.x / 2.x: no label_emb
    levels = len(cfg.channel_mult)
    idx = 1
    for level in range(levels):
        for i in range(cfg.num_res_blocks):
            out.append((f"input_blocks.{idx}.0", f"down_blocks.{level}.resnets.{i}", "res"))
            if cfg.transformer_depth[level]:
                out.append((f"input_blocks.{idx}.1", f"down_blocks.{level}.attentions.{i}", "attn"))
            idx += 1
        if level != levels - 1:
            out.append((f"input_blocks.{idx}.0.op", f"down_blocks.{level}.downsamplers.0.conv", "down"))
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
                out.append((f"output_blocks.{idx}.{2 if attends else 1}.conv", f"up_blocks.{k}.upsamplers.0.conv", "up"))
            idx += 1
    return out


def _rename(key: str, table: list[tuple[str, str, str]], reverse: bool) -> str | None:
    for native, diffusers, kind in table:
        src, dst = (diffusers, native) if reverse else (native, diffusers)
        if key == src or key.startswith(src + "."):
            rest = key[len(src) + 1:]
            if kind == "res":
                sub_table = _RES_DIFFUSERS_TO_NATIVE if reverse else _RES_NATIVE_TO_DIFFUSERS
                head, _, tail = rest.rpartition(".")
                if head not in sub_table:
                    return None
                rest = f"{sub_table[head]}.{tail}"
            return f"{dst}.{rest}" if rest else dst
    return None


def _convert(sd: Mapping[str, torch.Tensor], cfg: UNetConfig, reverse: bool, what: str) -> StateDict:
    table = block_map(cfg)
    # Longest prefixes first, so "input_blocks.3.0.op" wins over "input_blocks.3.0".
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
        raise ConversionError(f"{what} has keys this UNet layout does not know ({', '.join(sorted(unknown)[:5])}{more}): "
                              "check that the file is an SDXL UNet and the config matches it")
    return out


def unet_diffusers_to_native(sd: Mapping[str, torch.Tensor], cfg: UNetConfig) -> StateDict:
    """diffusers UNet2DConditionModel keys -> official sgm keys (no prefix)."""
    return _convert(sd, cfg, reverse=True, what="the diffusers UNet")


def unet_native_to_diffusers(sd: Mapping[str, torch.Tensor], cfg: UNetConfig) -> StateDict:
    """Official sgm keys (no prefix) -> diffusers UNet2DConditionModel keys."""
    return _convert(sd, cfg, reverse=False, what="the native UNet")


# -- configs --------------------------------------------------------------------------------------


def _per_level(value: Any, levels: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * levels


def unet_config_from_diffusers(cfg: Mapping[str, Any], micro_conditioning: str | None = None) -> UNetConfig:
    """UNetConfig of a diffusers UNet2DConditionModel config.json: SDXL family (text_time) or SD 1.x / 2.x
    (no added embedding)."""
    if cfg.get("addition_embed_type") != "text_time":
        if cfg.get("addition_embed_type") is not None or cfg.get("class_embed_type") is not None:
            raise UserError("this UNet is neither SDXL-shaped (addition_embed_type 'text_time') nor SD 1.x / 2.x "
                            "shaped (no added embedding): load an SD 1.5, SD 2.1 or SDXL UNet")
        return _sd1_config_from_diffusers(cfg)
    blocks = tuple(cfg["block_out_channels"])
    levels = len(blocks)
    mc = blocks[0]
    if any(b % mc for b in blocks):
        raise UserError(f"block_out_channels {blocks} are not multiples of the first: not an SDXL-shaped UNet")
    layers = _per_level(cfg.get("transformer_layers_per_block", 1), levels)
    attends = ["CrossAttn" in t for t in cfg["down_block_types"]]
    depth = tuple(layers[i] if attends[i] else 0 for i in range(levels))
    heads = cfg.get("num_attention_heads") or cfg.get("attention_head_dim")
    heads = _per_level(heads, levels)
    head_dims = {blocks[i] // heads[i] for i in range(levels) if attends[i]} or {blocks[-1] // heads[-1]}
    if len(head_dims) != 1:
        raise UserError(f"this UNet uses a different head size per level ({sorted(head_dims)}): not SDXL-shaped")
    atd = cfg.get("addition_time_embed_dim", 256)
    adm = cfg["projection_class_embeddings_input_dim"]
    context = cfg["cross_attention_dim"]
    if micro_conditioning is None:  # the refiner conditions on bigG alone and embeds 5 numbers, not 6
        micro_conditioning = "refiner" if (context == adm - 5 * atd) else "base"
    return UNetConfig(in_channels=cfg.get("in_channels", 4), out_channels=cfg.get("out_channels", 4),
                      model_channels=mc, channel_mult=tuple(b // mc for b in blocks),
                      num_res_blocks=cfg.get("layers_per_block", 2), transformer_depth=depth,
                      transformer_depth_middle=layers[-1], head_dim=head_dims.pop(), context_dim=context,
                      adm_in_channels=adm, norm_groups=cfg.get("norm_num_groups", 32),
                      micro_conditioning=micro_conditioning, addition_time_embed_dim=atd)


def _sd1_config_from_diffusers(cfg: Mapping[str, Any]) -> UNetConfig:
    """The SD 1.x / 2.x case: a fixed head count (SD 1.x) or a fixed head size (SD 2.x)."""
    blocks = tuple(cfg["block_out_channels"])
    levels = len(blocks)
    mc = blocks[0]
    if any(b % mc for b in blocks):
        raise UserError(f"block_out_channels {blocks} are not multiples of the first: not an SD-shaped UNet")
    layers = _per_level(cfg.get("transformer_layers_per_block", 1), levels)
    attends = ["CrossAttn" in t for t in cfg["down_block_types"]]
    depth = tuple(layers[i] if attends[i] else 0 for i in range(levels))
    # diffusers' `attention_head_dim` of these configs holds the number of heads (per level or one for all)
    heads = _per_level(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), levels)
    used = [i for i in range(levels) if attends[i]] or [levels - 1]
    head_counts = {heads[i] for i in used}
    head_dims = {blocks[i] // heads[i] for i in used}
    if len(head_dims) == 1:
        num_heads, head_dim = 0, head_dims.pop()
    elif len(head_counts) == 1:
        num_heads, head_dim = head_counts.pop(), 64
    else:
        raise UserError(f"this UNet has neither one head count nor one head size over its levels ({heads}): "
                        "not an SD 1.x / 2.x UNet")
    return UNetConfig(in_channels=cfg.get("in_channels", 4), out_channels=cfg.get("out_channels", 4),
                      model_channels=mc, channel_mult=tuple(b // mc for b in blocks),
                      num_res_blocks=cfg.get("layers_per_block", 2), transformer_depth=depth,
                      transformer_depth_middle=layers[-1], head_dim=head_dim, num_heads=num_heads,
                      linear_projection=bool(cfg.get("use_linear_projection", False)),
                      context_dim=cfg["cross_attention_dim"], adm_in_channels=0,
                      norm_groups=cfg.get("norm_num_groups", 32))


def unet_config_to_diffusers(cfg: UNetConfig) -> dict[str, Any]:
    """The diffusers UNet2DConditionModel config of the same network."""
    attends = [d > 0 for d in cfg.transformer_depth]
    layers = [d if d > 0 else 1 for d in cfg.transformer_depth]
    if not attends[-1]:
        layers[-1] = cfg.transformer_depth_middle  # diffusers sizes the middle block from the last level
    elif layers[-1] != cfg.transformer_depth_middle:
        raise UserError("diffusers cannot express a middle depth different from an attending last level")
    blocks = cfg.level_channels
    if not cfg.adm_in_channels:  # SD 1.x / 2.x
        return dict(
            sample_size=64, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends),
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
            block_out_channels=blocks, layers_per_block=cfg.num_res_blocks,
            transformer_layers_per_block=tuple(layers), attention_head_dim=tuple(cfg.heads_at(b)[0] for b in blocks),
            cross_attention_dim=cfg.context_dim, norm_num_groups=cfg.norm_groups,
            use_linear_projection=cfg.linear_projection, flip_sin_to_cos=True, freq_shift=0,
        )
    return dict(
        sample_size=128, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        block_out_channels=blocks, layers_per_block=cfg.num_res_blocks,
        transformer_layers_per_block=tuple(layers), attention_head_dim=tuple(b // cfg.head_dim for b in blocks),
        cross_attention_dim=cfg.context_dim, norm_num_groups=cfg.norm_groups, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=cfg.addition_time_embed_dim,
        projection_class_embeddings_input_dim=cfg.adm_in_channels, flip_sin_to_cos=True, freq_shift=0,
    )


def read_unet_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The UNetConfig fields a native (official) UNet state dict's shapes fix (works on meta tensors)."""
    try:
        mc = native["input_blocks.0.0.weight"].shape[0]
        in_ch = native["input_blocks.0.0.weight"].shape[1]
        out_ch = native["out.2.weight"].shape[0]
    except KeyError as err:
        raise ConversionError(f"not an SDXL UNet: the key {err} is missing") from None
    # Walk the input blocks: a ResBlock's conv1 gives its width, an `op` a level boundary.
    n_in = 1 + max(int(k.split(".")[1]) for k in native if k.startswith("input_blocks."))
    mults, depths, res_per_level = [], [], []
    count, depth = 0, 0
    for n in range(1, n_in):
        if f"input_blocks.{n}.0.op.weight" in native:
            res_per_level.append(count)
            depths.append(depth)
            count, depth = 0, 0
            continue
        try:
            width = native[f"input_blocks.{n}.0.in_layers.2.weight"].shape[0]
        except KeyError as err:
            raise ConversionError(f"not an SDXL UNet: the key {err} is missing") from None
        if count == 0:
            mults.append(width // mc)
        count += 1
        blocks = {int(k.split(".")[4]) for k in native if k.startswith(f"input_blocks.{n}.1.transformer_blocks.")}
        depth = len(blocks)
    res_per_level.append(count)
    depths.append(depth)
    if len(set(res_per_level)) != 1:
        raise ConversionError(f"uneven resnets per level {res_per_level}: not an SDXL UNet")
    mid = len({int(k.split(".")[3]) for k in native if k.startswith("middle_block.1.transformer_blocks.")})
    adm = native["label_emb.0.0.weight"].shape[1] if "label_emb.0.0.weight" in native else 0  # SD 1.x / 2.x: none
    proj = native.get("middle_block.1.proj_in.weight")
    linear = proj is None or len(proj.shape) == 2  # SD 1.x: 1x1 convolutions
    context = next((v.shape[1] for k, v in native.items() if k.endswith("attn2.to_k.weight")), None)
    if context is None:
        raise ConversionError("not an SDXL UNet: no cross-attention (attn2.to_k) weights")
    return dict(in_channels=in_ch, out_channels=out_ch, model_channels=mc, channel_mult=tuple(mults),
                num_res_blocks=res_per_level[0], transformer_depth=tuple(depths), transformer_depth_middle=mid,
                context_dim=context, adm_in_channels=adm, linear_projection=linear)


# What SDXL UNet weights do not store: the head size (no per-head parameter), GroupNorm's groups, the
# width of the Fourier features of each micro-conditioning number, and which numbers those are.
UNET_UNDETERMINED = ("head_dim", "num_heads", "norm_groups", "addition_time_embed_dim", "micro_conditioning")


def infer_unet_config(native: Mapping[str, torch.Tensor], micro_conditioning: str | None = None, *,
                      config: UNetConfig | None = None, preset: str | None = None,
                      what: str = "the SDXL UNet checkpoint") -> UNetConfig:
    """The UNetConfig of a native (official) UNet state dict.

    `config`: explicit, checked against the shapes and used whole. Otherwise the preset whose sizes
    the file has (`preset` first among several); sizes no preset has are a one-line UserError naming
    the fields the weights cannot tell (head_dim, norm_groups, addition_time_embed_dim,
    micro_conditioning). `micro_conditioning`, when given, overrides the preset's.
    """
    from models.image_generation.stable_diffusion.unet import UNET_PRESETS

    facts = read_unet_sizes(native)
    cfg, _ = settle_config(facts, UNET_PRESETS, UNetConfig, UNET_UNDETERMINED, what, config=config, prefer=preset)
    if config is None and micro_conditioning is not None:
        cfg = cfg.with_(micro_conditioning=micro_conditioning)
    return cfg


__all__ = ["UNET_UNDETERMINED", "block_map", "infer_unet_config", "read_unet_sizes", "unet_config_from_diffusers",
           "unet_config_to_diffusers", "unet_diffusers_to_native", "unet_native_to_diffusers"]
