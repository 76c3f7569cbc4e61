"""Checkpoint layouts of the cascade's UNets -> the native (official) ones, configs both ways, and loaders.

IF UNets (stage I and II):

    native (DeepFloyd)                          diffusers UNet2DConditionModel (IF configs)
    time_embed.0 / .2                           time_embedding.linear_1 / linear_2
    aug_proj.0 / .2                             class_embedding.linear_1 / linear_2 (class_embed_type 'timestep')
    encoder_proj                                encoder_hid_proj
    encoder_pooling.0 / .1.* / .2 / .3          add_embedding.norm1 / pool.* / proj / norm2
    input_blocks.0.0, out.0, out.2              conv_in, conv_norm_out, conv_out
    input_blocks.N.0 / .1                       down_blocks.L.resnets.i / attentions.i
    input_blocks.N.0 (level end)                down_blocks.L.downsamplers.0 (a ResBlock, down=True)
    middle_block.0 / .1 / .2                    mid_block.resnets.0 / attentions.0 / resnets.1
    output_blocks.N.0 / .1 / last               up_blocks.K.resnets.i / attentions.i / upsamplers.0
    ResBlock in_layers.0/.2, emb_layers.1,      norm1 / conv1, time_emb_proj,
             out_layers.0/.3, skip_connection   norm2 / conv2, conv_shortcut
    Attention norm, norm_encoder, proj_out      group_norm, norm_cross, to_out.0 (1x1 conv <-> linear)
              qkv (per head [q k v] rows)        to_q, to_k, to_v (to_q alone when cross-attention only)
              encoder_kv (per head [k v] rows)   add_k_proj, add_v_proj

The x4 upscaler UNet uses the Stable Diffusion UNet's key map (`stable_diffusion.convert_unet.block_map`,
the same names in both layouts) plus `label_emb` <-> `class_embedding`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from models.image_generation.imagen.config import IF_UNET_PRESETS, IFUNetConfig, UpscalerUNetConfig
from utils.errors import ConversionError, UserError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

_RES = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
        "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_ATTN = {"norm": "group_norm", "norm_encoder": "norm_cross", "proj_out": "to_out.0"}
_FIXED = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
          "aug_proj.0": "class_embedding.linear_1", "aug_proj.2": "class_embedding.linear_2",
          "encoder_proj": "encoder_hid_proj", "encoder_pooling.0": "add_embedding.norm1",
          "encoder_pooling.1": "add_embedding.pool", "encoder_pooling.2": "add_embedding.proj",
          "encoder_pooling.3": "add_embedding.norm2", "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out",
          "out.2": "conv_out"}


# -- the IF block map ---------------------------------------------------------------------------------


def if_block_map(cfg: IFUNetConfig) -> list[tuple[str, str, str]]:
    """(native prefix, diffusers prefix, kind) of every module; kind is plain, res or attn."""
    if cfg.efficient:
        raise UserError("the Efficient U-Net order has no diffusers layout (and no released weights)")
    rows = [(n, d, "plain") for n, d in _FIXED.items()]
    idx = 1
    for level in range(cfg.levels):
        for i in range(cfg.num_res_blocks[level]):
            rows.append((f"input_blocks.{idx}.0", f"down_blocks.{level}.resnets.{i}", "res"))
            if cfg.attention[level]:
                rows.append((f"input_blocks.{idx}.1", f"down_blocks.{level}.attentions.{i}", "attn"))
            idx += 1
        if level != cfg.levels - 1:
            rows.append((f"input_blocks.{idx}.0", f"down_blocks.{level}.downsamplers.0", "res"))
            idx += 1
    rows += [("middle_block.0", "mid_block.resnets.0", "res"), ("middle_block.1", "mid_block.attentions.0", "attn"),
             ("middle_block.2", "mid_block.resnets.1", "res")]
    idx = 0
    for k, level in enumerate(reversed(range(cfg.levels))):
        n = cfg.num_res_blocks[level] + 1
        for i in range(n):
            rows.append((f"output_blocks.{idx}.0", f"up_blocks.{k}.resnets.{i}", "res"))
            if cfg.attention[level]:
                rows.append((f"output_blocks.{idx}.1", f"up_blocks.{k}.attentions.{i}", "attn"))
            if level and i == n - 1:
                at = 2 if cfg.attention[level] else 1
                rows.append((f"output_blocks.{idx}.{at}", f"up_blocks.{k}.upsamplers.0", "res"))
            idx += 1
    return rows


def _interleave(parts: list[torch.Tensor], head: int) -> torch.Tensor:
    """[q, k, v] (each C rows) -> per-head [q_h; k_h; v_h] rows (the release's fused layout)."""
    split = [p.reshape(-1, head, *p.shape[1:]) for p in parts]
    return torch.cat(split, dim=1).reshape(-1, *parts[0].shape[1:])


def _deinterleave(fused: torch.Tensor, n: int, head: int) -> list[torch.Tensor]:
    per = fused.reshape(-1, n * head, *fused.shape[1:])
    return [per[:, i * head:(i + 1) * head].reshape(-1, *fused.shape[1:]) for i in range(n)]


def _unmatched(what: str, keys: list[str]) -> ConversionError:
    return ConversionError(f"{what} has keys this IF UNet layout does not know ({key_report([], sorted(keys))}): "
                           "check that the file is a DeepFloyd IF UNet and that its config matches it")


def if_diffusers_to_native(sd: Mapping[str, torch.Tensor], cfg: IFUNetConfig) -> StateDict:
    """diffusers UNet2DConditionModel (IF) keys -> DeepFloyd's (qkv fused per head, 1x1 convs 3-D)."""
    rows = sorted(if_block_map(cfg), key=lambda r: -len(r[1]))
    head = cfg.head_channels
    out: StateDict = {}
    attn: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in sd.items():
        row = next((r for r in rows if key.startswith(r[1] + ".")), None)
        if row is None:
            unknown.append(key)
            continue
        native, diffusers, kind = row
        rest = key[len(diffusers) + 1:]
        layer, _, tail = rest.rpartition(".")
        if kind == "res":
            if layer not in _RES.values():
                unknown.append(key)
                continue
            out[f"{native}.{next(n for n, d in _RES.items() if d == layer)}.{tail}"] = value
        elif kind == "attn":
            attn.setdefault(native, {})[rest] = value
        else:
            out[f"{native}.{rest}"] = value
    if unknown:
        raise _unmatched("the diffusers IF UNet", unknown)
    for native, parts in attn.items():
        try:
            for suffix in ("weight", "bias"):
                qkv = [parts.pop(f"to_{n}.{suffix}") for n in (("q",) if cfg.only_cross_attention else ("q", "k", "v"))]
                out[f"{native}.qkv.{suffix}"] = _interleave(qkv, head)
                ekv = [parts.pop(f"add_{n}_proj.{suffix}") for n in ("k", "v")]
                out[f"{native}.encoder_kv.{suffix}"] = _interleave(ekv, head)
        except KeyError as err:
            raise ConversionError(f"the diffusers IF UNet attention {native} lacks {err}: the file does not match "
                                  f"its config (only_cross_attention={cfg.only_cross_attention})") from None
        for rest, value in parts.items():
            layer, _, tail = rest.rpartition(".")
            name = next((n for n, d in _ATTN.items() if d == layer), None)
            if name is None:
                raise _unmatched("the diffusers IF UNet", [f"{native}.{rest}"])
            out[f"{native}.{name}.{tail}"] = value
    for key in list(out):  # the release keeps 1x1 convs where diffusers has linears
        if key.endswith(".weight") and (".qkv." in key or ".encoder_kv." in key or ".proj_out." in key):
            if out[key].ndim == 2:
                out[key] = out[key][..., None]
    return out


def if_native_to_diffusers(sd: Mapping[str, torch.Tensor], cfg: IFUNetConfig) -> StateDict:
    """DeepFloyd's keys -> diffusers UNet2DConditionModel (IF) keys."""
    rows = sorted(if_block_map(cfg), key=lambda r: -len(r[0]))
    head = cfg.head_channels
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        row = next((r for r in rows if key.startswith(r[0] + ".")), None)
        if row is None:
            unknown.append(key)
            continue
        native, diffusers, kind = row
        rest = key[len(native) + 1:]
        layer, _, tail = rest.rpartition(".")
        if kind == "res":
            if layer not in _RES:
                unknown.append(key)
                continue
            out[f"{diffusers}.{_RES[layer]}.{tail}"] = value
        elif kind == "attn":
            v = value[..., 0] if value.ndim == 3 else value
            if layer == "qkv":
                names = ("q",) if cfg.only_cross_attention else ("q", "k", "v")
                for n, part in zip(names, _deinterleave(v, len(names), head)):
                    out[f"{diffusers}.to_{n}.{tail}"] = part
            elif layer == "encoder_kv":
                for n, part in zip(("k", "v"), _deinterleave(v, 2, head)):
                    out[f"{diffusers}.add_{n}_proj.{tail}"] = part
            elif layer in _ATTN:
                out[f"{diffusers}.{_ATTN[layer]}.{tail}"] = v if layer == "proj_out" else value
            else:
                unknown.append(key)
        else:
            out[f"{diffusers}.{rest}"] = value
    if unknown:
        raise _unmatched("the native IF UNet", unknown)
    return out


# -- IF configs ---------------------------------------------------------------------------------------


def _levels(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def if_config_from_diffusers(cfg: Mapping[str, Any]) -> IFUNetConfig:
    """The IFUNetConfig of an IF unet/config.json (diffusers)."""
    down = list(cfg.get("down_block_types", ()))
    if cfg.get("addition_embed_type") != "text" or not any("SimpleCrossAttn" in t for t in down):
        raise UserError("this UNet is not a DeepFloyd IF UNet (its config has no addition_embed_type 'text' and "
                        "SimpleCrossAttn blocks): load an IF stage I or II UNet")
    if cfg.get("resnet_time_scale_shift") != "scale_shift":
        raise UserError("this IF UNet does not use scale-shift ResBlocks: not a DeepFloyd release layout")
    blocks = tuple(cfg["block_out_channels"])
    mc = blocks[0]
    levels = len(blocks)
    heads = set(_levels(cfg.get("attention_head_dim", 64), levels))
    only = _levels(cfg.get("only_cross_attention", False), levels)
    attends = tuple("SimpleCrossAttn" in t for t in down)
    mid_only = cfg.get("mid_block_only_cross_attention")
    mid_only = only[0] if mid_only is None and isinstance(cfg.get("only_cross_attention", False), bool) else \
        bool(mid_only)
    used = {o for o, a in zip(only, attends) if a} | {mid_only}
    if len(heads) != 1 or len(used) != 1:
        raise UserError(f"this IF UNet mixes head sizes {sorted(heads)} or cross-attention-only settings {only}: "
                        "not a DeepFloyd release layout")
    out_scale = float(cfg.get("resnet_out_scale_factor", 1.0))
    mid_scale = float(cfg.get("mid_block_scale_factor", 1.0))
    if abs(out_scale - mid_scale) > 1e-6:
        raise UserError(f"this IF UNet scales its middle ResBlocks ({mid_scale}) unlike the others ({out_scale}): "
                        "not a DeepFloyd release layout")
    efficient_act = cfg.get("time_embedding_act_fn") is not None
    if efficient_act != bool(cfg.get("resnet_skip_time_act", False)):
        raise UserError("this IF UNet activates its time embedding once but not in the ResBlocks (or the reverse): "
                        "not a DeepFloyd release layout")
    encoder_dim = cfg.get("encoder_hid_dim") or cfg["cross_attention_dim"]
    ted = cfg.get("time_embedding_dim") or 4 * mc
    mult = tuple(b // mc for b in blocks)
    if ted != mc * max(mult):
        raise UserError(f"this IF UNet's time embedding ({ted}) is not model_channels x the largest multiplier: "
                        "not a DeepFloyd release layout")
    return IFUNetConfig(in_channels=cfg.get("in_channels", 3), out_channels=cfg.get("out_channels", 6),
                        model_channels=mc, channel_mult=mult,
                        num_res_blocks=_levels(cfg.get("layers_per_block", 2), levels), attention=attends,
                        only_cross_attention=used.pop(), head_channels=heads.pop(), encoder_dim=encoder_dim,
                        encoder_channels=cfg["cross_attention_dim"],
                        att_pool_heads=cfg.get("addition_embed_type_num_heads", 64), activation=cfg.get("act_fn", "gelu"),
                        efficient_activation=efficient_act, skip_scale=1.0 / out_scale,
                        super_resolution=cfg.get("class_embed_type") == "timestep",
                        norm_groups=cfg.get("norm_num_groups", 32), norm_eps=cfg.get("norm_eps", 1e-5),
                        image_size=cfg.get("sample_size", 64))


def if_config_to_diffusers(cfg: IFUNetConfig) -> dict[str, Any]:
    """The diffusers UNet2DConditionModel kwargs of the same network (IF configs)."""
    if cfg.efficient:
        raise UserError("the Efficient U-Net order has no diffusers equivalent")
    att = cfg.attention
    down = tuple("SimpleCrossAttnDownBlock2D" if a else "ResnetDownsampleBlock2D" for a in att)
    up = tuple("SimpleCrossAttnUpBlock2D" if a else "ResnetUpsampleBlock2D" for a in reversed(att))
    out = dict(sample_size=cfg.image_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
               down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2DSimpleCrossAttn",
               block_out_channels=cfg.level_channels, layers_per_block=cfg.num_res_blocks,
               cross_attention_dim=cfg.encoder_channels, attention_head_dim=cfg.head_channels,
               addition_embed_type="text", addition_embed_type_num_heads=cfg.att_pool_heads,
               cross_attention_norm="group_norm", resnet_time_scale_shift="scale_shift", act_fn=cfg.activation,
               norm_num_groups=cfg.norm_groups, norm_eps=cfg.norm_eps, only_cross_attention=cfg.only_cross_attention,
               time_embedding_dim=cfg.time_embed_dim, resnet_out_scale_factor=1.0 / cfg.skip_scale,
               mid_block_scale_factor=1.0 / cfg.skip_scale)
    if cfg.encoder_dim != cfg.encoder_channels:
        out["encoder_hid_dim"] = cfg.encoder_dim
    if cfg.efficient_activation:
        out.update(time_embedding_act_fn=cfg.activation, resnet_skip_time_act=True)
    if cfg.super_resolution:
        out["class_embed_type"] = "timestep"
    return out


def read_if_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The IFUNetConfig fields a native state dict's shapes fix (works on meta tensors).

    Level boundaries are found where a ResBlock changes the width, so the widths must differ from level
    to level (true of every release); otherwise pass the config (or the release's config.yml)."""
    try:
        conv_in, conv_out = native["input_blocks.0.0.weight"], native["out.2.weight"]
        ted = native["time_embed.0.weight"].shape[0]
        encoder_dim = native["encoder_pooling.0.weight"].shape[0]
    except KeyError as err:
        raise ConversionError(f"not a DeepFloyd IF UNet: the key {err} is missing") from None
    mc = conv_in.shape[0]
    n_in = 1 + max(int(k.split(".")[1]) for k in native if k.startswith("input_blocks."))
    widths, attends, counts, only = [mc], [], [], set()
    count, attn = 0, False
    for n in range(1, n_in):
        w = native.get(f"input_blocks.{n}.0.in_layers.2.weight")
        if w is None:
            raise ConversionError(f"input block {n} is not a ResBlock: not an IF UNet with ResBlock resampling")
        cin, cout = w.shape[1], w.shape[0]
        qkv = native.get(f"input_blocks.{n}.1.qkv.weight")
        if cout != widths[-1] and count:  # a new level starts: the previous block was the downsampler
            counts.append(count - 1)
            attends.append(attn)
            widths.append(cout)
            count, attn = 0, False
        elif cout != widths[-1]:
            widths[-1] = cout
        count += 1
        if qkv is not None:
            attn = True
            only.add(qkv.shape[0] == cout)
    counts.append(count)
    attends.append(attn)
    mid_qkv = native.get("middle_block.1.qkv.weight")
    if mid_qkv is not None:
        only.add(mid_qkv.shape[0] == widths[-1])
    if len(only) > 1:
        raise ConversionError("this IF UNet mixes self- and cross-only attention blocks: not a release layout")
    enc = native["encoder_proj.weight"].shape[0] if "encoder_proj.weight" in native else encoder_dim
    return dict(in_channels=conv_in.shape[1], out_channels=conv_out.shape[0], model_channels=mc,
                channel_mult=tuple(w // mc for w in widths), num_res_blocks=tuple(counts), attention=tuple(attends),
                only_cross_attention=only.pop() if only else False, encoder_dim=encoder_dim, encoder_channels=enc,
                super_resolution="aug_proj.0.weight" in native, time_embed_dim=ted)


def _yaml_params(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("params", data))


def config_from_release_yaml(params: Mapping[str, Any]) -> dict[str, Any]:
    """IFUNetConfig fields of DeepFloyd's config.yml `params` (what the shapes cannot tell)."""
    out: dict[str, Any] = {}
    if "num_head_channels" in params and int(params["num_head_channels"]) > 0:
        out["head_channels"] = int(params["num_head_channels"])
    for src, dst in (("att_pool_heads", "att_pool_heads"), ("activation", "activation"),
                     ("efficient_activation", "efficient_activation"), ("image_size", "image_size")):
        if src in params:
            out[dst] = params[src]
    if "scale_skip_connection" in params:
        out["skip_scale"] = 0.7071 if params["scale_skip_connection"] else 1.0
    return out


def infer_if_config(native: Mapping[str, torch.Tensor], *, config: IFUNetConfig | None = None,
                    release_params: Mapping[str, Any] | None = None, preset: str | None = None) -> IFUNetConfig:
    """The IFUNetConfig of a native state dict: its shapes, over the release's config.yml when given, over the
    stage's preset (head size, pooling heads, activation, embedding activation and residual scale are not
    stored in the weights). `config`: explicit, checked against the shapes."""
    facts = read_if_sizes(native)
    ted = facts.pop("time_embed_dim")
    if config is not None:
        wrong = {k: v for k, v in facts.items() if getattr(config, k) != v}
        if wrong or config.time_embed_dim != ted:
            raise ConversionError(f"the IF UNet weights do not fit the config given ({wrong or {'time_embed_dim': ted}} "
                                  "in the weights): leave config out to read it from the weights")
        return config
    base_name = preset or ("if-ii-l" if facts["super_resolution"] else "if-i-xl")
    base = IF_UNET_PRESETS[base_name] if base_name in IF_UNET_PRESETS else IFUNetConfig.preset(base_name)
    cfg = base.with_(**facts, **config_from_release_yaml(release_params or {}))
    if cfg.time_embed_dim != ted:
        raise ConversionError(f"the IF UNet's time embedding is {ted} wide, not model_channels x the largest "
                              "multiplier: not a release layout")
    cfg.check()
    return cfg


# -- the x4 upscaler --------------------------------------------------------------------------------


def upscaler_rows(cfg: UpscalerUNetConfig) -> list[tuple[str, str, str]]:
    """The SD UNet key map at the upscaler's sizes, plus the noise-level embedding."""
    from models.image_generation.stable_diffusion.convert_unet import block_map

    rows = [r for r in block_map(cfg) if not r[0].startswith("label_emb.")]
    return rows + [("label_emb", "class_embedding", "plain")]


def _sd_rename(sd: Mapping[str, torch.Tensor], rows, to_native: bool, what: str) -> StateDict:
    table = sorted(rows, key=lambda r: -len(r[1] if to_native else r[0]))
    res = {v: k for k, v in _RES.items()} if to_native else _RES
    out, unknown = {}, []
    for key, value in sd.items():
        row = next((r for r in table if key.startswith((r[1] if to_native else r[0]) + ".")), None)
        if row is None:
            unknown.append(key)
            continue
        src, dst = (row[1], row[0]) if to_native else (row[0], row[1])
        rest = key[len(src) + 1:]
        if row[2] == "res":
            layer, _, tail = rest.rpartition(".")
            if layer not in res:
                unknown.append(key)
                continue
            rest = f"{res[layer]}.{tail}"
        out[f"{dst}.{rest}"] = value
    if unknown:
        raise ConversionError(f"{what} has keys the x4 upscaler UNet does not know ({key_report([], unknown)}): "
                              "check that it is stabilityai/stable-diffusion-x4-upscaler's UNet")
    return out


def upscaler_diffusers_to_native(sd: Mapping[str, torch.Tensor], cfg: UpscalerUNetConfig) -> StateDict:
    return _sd_rename(sd, upscaler_rows(cfg), True, "the diffusers x4 upscaler UNet")


def upscaler_native_to_diffusers(sd: Mapping[str, torch.Tensor], cfg: UpscalerUNetConfig) -> StateDict:
    return _sd_rename(sd, upscaler_rows(cfg), False, "the native x4 upscaler UNet")


def upscaler_config_from_diffusers(cfg: Mapping[str, Any]) -> UpscalerUNetConfig:
    if not cfg.get("num_class_embeds"):
        raise UserError("this UNet has no noise-level embedding (num_class_embeds): not the x4 upscaler's UNet")
    blocks = tuple(cfg["block_out_channels"])
    mc = blocks[0]
    levels = len(blocks)
    attends = tuple("CrossAttn" in t for t in cfg["down_block_types"])
    heads = set(_levels(cfg.get("num_attention_heads") or cfg.get("attention_head_dim", 8), levels))
    if len(heads) != 1:
        raise UserError(f"this upscaler UNet uses {sorted(heads)} heads per level: not the release layout")
    return UpscalerUNetConfig(in_channels=cfg.get("in_channels", 7), out_channels=cfg.get("out_channels", 4),
                              model_channels=mc, channel_mult=tuple(b // mc for b in blocks),
                              num_res_blocks=cfg.get("layers_per_block", 2),
                              transformer_depth=tuple(1 if a else 0 for a in attends),
                              only_cross_attention=_levels(cfg.get("only_cross_attention", False), levels),
                              num_heads=heads.pop(), context_dim=cfg["cross_attention_dim"],
                              num_classes=cfg["num_class_embeds"], norm_groups=cfg.get("norm_num_groups", 32))


def upscaler_config_to_diffusers(cfg: UpscalerUNetConfig) -> dict[str, Any]:
    att = [d > 0 for d in cfg.transformer_depth]
    return dict(sample_size=128, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in att),
                up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(att)),
                block_out_channels=cfg.level_channels, layers_per_block=cfg.num_res_blocks,
                attention_head_dim=cfg.num_heads, cross_attention_dim=cfg.context_dim,
                only_cross_attention=cfg.only_cross_attention, num_class_embeds=cfg.num_classes,
                use_linear_projection=True, norm_num_groups=cfg.norm_groups)


# -- reading folders and files ---------------------------------------------------------------------------


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found: pass a diffusers pipeline folder") from None


def load_if_unet(source: str | os.PathLike, dtype: torch.dtype | None = None, config: IFUNetConfig | None = None,
                 preset: str | None = None):
    """An IFUNet from a diffusers unet/ folder (or its pipeline folder), or an official file (DeepFloyd's
    pytorch_model.bin / a safetensors of native keys, with config.yml beside it when there is one)."""
    from models.image_generation.imagen.unet import IFUNet
    from utils.weights import load_folder_state_dict, load_into, load_state_dict

    path = Path(source)
    if path.is_dir() and (path / "unet" / "config.json").is_file():
        path = path / "unet"
    if path.is_dir() and (path / "config.json").is_file():
        cfg = if_config_from_diffusers(read_json(path / "config.json"))
        native = if_diffusers_to_native(load_folder_state_dict(path, dtype=dtype), cfg)
    else:
        file = path
        if path.is_dir():
            found = sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
            if not found:
                raise UserError(f"{path} holds no IF UNet (no unet/config.json, no pytorch_model.bin): pass a "
                                "DeepFloyd folder")
            file = found[0]
        native = load_state_dict(file, dtype=dtype)
        if any(k.startswith("down_blocks.") for k in native):
            raise UserError(f"{file.name} is in diffusers' layout but has no config.json beside it: pass its folder")
        yml = file.parent / "config.yml"
        cfg = infer_if_config(native, config=config, release_params=_yaml_params(yml) if yml.is_file() else None,
                              preset=preset)
    with torch.device("meta"):
        unet = IFUNet(cfg)
    load_into(unet, native, what="IF UNet")
    return unet.eval()


def load_upscaler_unet(folder: Path, dtype: torch.dtype | None = None):
    from models.image_generation.imagen.upscaler import UpscalerUNet
    from utils.weights import load_folder_state_dict, load_into

    cfg = upscaler_config_from_diffusers(read_json(folder / "config.json"))
    native = upscaler_diffusers_to_native(load_folder_state_dict(folder, dtype=dtype), cfg)
    with torch.device("meta"):
        unet = UpscalerUNet(cfg)
    load_into(unet, native, what="x4 upscaler UNet")
    return unet.eval()


__all__ = ["config_from_release_yaml", "if_block_map", "if_config_from_diffusers", "if_config_to_diffusers",
           "if_diffusers_to_native", "if_native_to_diffusers", "infer_if_config", "load_if_unet", "load_upscaler_unet",
           "read_if_sizes", "upscaler_config_from_diffusers", "upscaler_config_to_diffusers",
           "upscaler_diffusers_to_native", "upscaler_native_to_diffusers", "upscaler_rows"]
