"""Wan video VAE weights: the official release and diffusers' `AutoencoderKLWan` <-> the native layout.

Native names are diffusers' with one difference: every causal convolution is a
`utils.nn.temporal.CausalConv3d`, whose weights sit one level down (`encoder.conv_in.conv.weight`
for diffusers' `encoder.conv_in.weight`). The official release (`Wan2.1_VAE.pth`) names blocks by
their place in `nn.Sequential`s:

    official                                   native
    conv1 / conv2                              quant_conv.conv / post_quant_conv.conv
    {encoder,decoder}.conv1                    {encoder,decoder}.conv_in.conv
    encoder.downsamples.N.residual.{0,2,3,6}   encoder.down_blocks.N.{norm1,conv1.conv,norm2,conv2.conv}
    ....shortcut                               ....conv_shortcut.conv
    ....resample.1 / ....time_conv             ....resample.1 / ....time_conv.conv
    X.middle.{0,1,2}                           X.mid_block.{resnets.0,attentions.0,resnets.1}
    X.head.{0,2}                               X.norm_out / X.conv_out.conv
    decoder.upsamples.K                        decoder.up_blocks.(K // P).{resnets.(K % P) | upsamplers.0}
                                               (P = num_res_blocks + 2: the level's resnets and its upsampler)

The Wan 2.2 release (`Wan2.2_VAE.pth`) nests one `nn.Sequential` per level instead (its shortcuts hold
no weights; the top, middle and head names are the 2.1 ones):

    encoder.downsamples.I.downsamples.J        encoder.down_blocks.I.resnets.J (J < num_res_blocks)
                                               or encoder.down_blocks.I.downsampler (the last entry)
    decoder.upsamples.I.upsamples.J            decoder.up_blocks.I.resnets.J (J <= num_res_blocks)
                                               or decoder.up_blocks.I.upsampler (the last entry)
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from utils.errors import ConversionError
from utils.weights.keys import key_report, strip_shared_prefixes

StateDict = dict[str, torch.Tensor]

PREFIXES = ("module.", "vae.", "first_stage_model.", "model.")
CAUSAL = {"conv_in", "conv_out", "conv1", "conv2", "conv_shortcut", "time_conv", "quant_conv", "post_quant_conv"}
RESIDUAL = {"residual.0": "norm1", "residual.2": "conv1", "residual.3": "norm2", "residual.6": "conv2",
            "shortcut": "conv_shortcut"}
MIDDLE = {"middle.0": "mid_block.resnets.0", "middle.1": "mid_block.attentions.0", "middle.2": "mid_block.resnets.1"}
HEAD = {"head.0": "norm_out", "head.2": "conv_out"}
TOP = {"conv1": "quant_conv", "conv2": "post_quant_conv", "encoder.conv1": "encoder.conv_in",
       "decoder.conv1": "decoder.conv_in"}
_UP = re.compile(r"^decoder\.upsamples\.(\d+)\.(.+)$")
_UP_NATIVE = re.compile(r"^decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.+)$")
_NESTED = re.compile(r"^(encoder\.downsamples|decoder\.upsamples)\.(\d+)\.(?:downsamples|upsamples)\.(\d+)\.(.+)$")
_LEVEL_NATIVE = re.compile(r"^(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)"
                           r"\.(.+)$")
_SAMPLER = ("resample.", "time_conv.")


def is_wan22(keys) -> bool:
    """Whether official or native Wan VAE names are the Wan 2.2 VAE's (levels nested / residual blocks)."""
    return any(re.match(r"^encoder\.(downsamples\.\d+\.downsamples|down_blocks\.\d+\.resnets)\.", k) for k in keys)


def _split(key: str) -> tuple[str, str]:
    module, _, leaf = key.rpartition(".")
    return module, leaf


def _add_conv(key: str) -> str:
    """diffusers name -> native: causal convs hold their weights at `.conv`."""
    module, leaf = _split(key)
    return f"{module}.conv.{leaf}" if module.rpartition(".")[2] in CAUSAL else key


def _drop_conv(key: str) -> str:
    module, leaf = _split(key)
    if module.endswith(".conv") and module[:-5].rpartition(".")[2] in CAUSAL:
        return f"{module[:-5]}.{leaf}"
    return key


def _sub(rest: str, table: Mapping[str, str]) -> str | None:
    for src, dst in table.items():
        if rest == src or rest.startswith(src + "."):
            return dst + rest[len(src):]
    return None


def _official_period(keys: list[str]) -> int:
    """Entries per decoder level in the official flat list: the index of the first upsampler + 1."""
    ups = [int(m.group(1)) for k in keys if (m := _UP.match(k)) and m.group(2).startswith("resample.")]
    if not ups:
        raise ConversionError("the official Wan VAE weights have no decoder upsamplers "
                              "(decoder.upsamples.N.resample.1): check that the file is a Wan 2.1 VAE")
    return min(ups) + 1


def _official_key(key: str, period: int) -> str | None:
    """An official key -> its diffusers name (None if unknown)."""
    module, leaf = _split(key)
    if module in TOP:
        return f"{TOP[module]}.{leaf}"
    part, _, rest = key.partition(".")
    if part not in ("encoder", "decoder"):
        return None
    if (new := _sub(rest, MIDDLE)) is not None:
        inner = new.split(".", 3)
        if new.startswith("mid_block.resnets"):
            res = _sub(inner[3], RESIDUAL)
            return None if res is None else f"{part}.{'.'.join(inner[:3])}.{res}"
        return f"{part}.{new}"
    if (new := _sub(rest, HEAD)) is not None:
        return f"{part}.{new}"
    m = _NESTED.match(key)
    if m:  # Wan 2.2: one nested Sequential per level
        level = f"{part}.{'down_blocks' if part == 'encoder' else 'up_blocks'}.{m.group(2)}"
        tail = m.group(4)
        if tail.startswith(_SAMPLER):
            return f"{level}.{'downsampler' if part == 'encoder' else 'upsampler'}.{tail}"
        res = _sub(tail, RESIDUAL)
        return None if res is None else f"{level}.resnets.{m.group(3)}.{res}"
    m = re.match(r"^downsamples\.(\d+)\.(.+)$", rest) if part == "encoder" else None
    if m:
        tail = m.group(2)
        res = _sub(tail, RESIDUAL)
        if res is None and not (tail.startswith("resample.") or tail.startswith("time_conv.")):
            return None
        return f"encoder.down_blocks.{m.group(1)}.{res or tail}"
    m = _UP.match(key)
    if m:
        level, pos = divmod(int(m.group(1)), period)
        tail = m.group(2)
        if pos == period - 1:
            if not (tail.startswith("resample.") or tail.startswith("time_conv.")):
                return None
            return f"decoder.up_blocks.{level}.upsamplers.0.{tail}"
        res = _sub(tail, RESIDUAL)
        return None if res is None else f"decoder.up_blocks.{level}.resnets.{pos}.{res}"
    return None


def official_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official `Wan2.1_VAE.pth` / `Wan2.2_VAE.pth` tensors -> native names; an unknown key is a ConversionError."""
    keys = list(state_dict)
    period = 0 if is_wan22(keys) else _official_period(keys)
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _official_key(key, period)
        if new is None:
            unknown.append(key)
        else:
            out[_add_conv(new)] = value
    if unknown:
        raise ConversionError(f"the official Wan VAE weights have keys this converter does not know "
                              f"({key_report([], unknown)}): check that the file is a Wan 2.1 or 2.2 VAE")
    return out


def native_to_official(state_dict: Mapping[str, torch.Tensor], num_res_blocks: int = 2) -> StateDict:
    """Native tensors -> the official release's names (what `Wan2.1_VAE.pth` / `Wan2.2_VAE.pth` holds)."""
    period = num_res_blocks + 2
    inv_res = {v: k for k, v in RESIDUAL.items()}
    nested = is_wan22(state_dict)
    out = {}
    for key, value in state_dict.items():
        k = _drop_conv(key)
        module, leaf = _split(k)
        top = {v: t for t, v in TOP.items()}
        if module in top:
            out[f"{top[module]}.{leaf}"] = value
            continue
        part, _, rest = k.partition(".")
        m = _LEVEL_NATIVE.match(k) if nested else None
        if m:
            group = "downsamples" if part == "encoder" else "upsamples"
            if m.group(4) is not None:
                inner = f"{m.group(4)}.{_sub(m.group(5), inv_res)}"
            else:  # the sampler follows the level's resnets
                inner = f"{num_res_blocks + (part == 'decoder')}.{m.group(5)}"
            out[f"{part}.{group}.{m.group(2)}.{group}.{inner}"] = value
            continue
        m = _UP_NATIVE.match(k)
        if m:
            level = int(m.group(1))
            if m.group(3) is None:
                out[f"decoder.upsamples.{level * period + period - 1}.{m.group(4)}"] = value
            else:
                idx = level * period + int(m.group(3))
                out[f"decoder.upsamples.{idx}.{_sub(m.group(4), inv_res)}"] = value
            continue
        m = re.match(r"^down_blocks\.(\d+)\.(.+)$", rest)
        if m:
            out[f"encoder.downsamples.{m.group(1)}.{_sub(m.group(2), inv_res) or m.group(2)}"] = value
            continue
        if (new := _sub(rest, {v: s for s, v in HEAD.items()})) is not None:
            out[f"{part}.{new}"] = value
            continue
        for src, dst in MIDDLE.items():
            if rest.startswith(dst + "."):
                tail = rest[len(dst) + 1:]
                tail = _sub(tail, inv_res) or tail if "resnets" in dst else tail
                out[f"{part}.{src}.{tail}"] = value
                break
        else:
            raise ConversionError(f"native Wan VAE key '{key}' has no official name")
    return out


def diffusers_to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers `AutoencoderKLWan` tensors -> native names."""
    return {_add_conv(k): v for k, v in state_dict.items()}


def native_to_diffusers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    return {_drop_conv(k): v for k, v in state_dict.items()}


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'official', 'diffusers' or 'native'; anything else is a ConversionError."""
    keys = set(state_dict)
    if "decoder.middle.0.residual.0.gamma" in keys or any(k.startswith("encoder.downsamples.") for k in keys):
        return "official"
    if "encoder.conv_in.conv.weight" in keys:
        return "native"
    if "encoder.conv_in.weight" in keys and any(k.startswith("decoder.up_blocks.") for k in keys):
        return "diffusers"
    raise ConversionError(f"these tensors are not a Wan VAE ({key_report([], sorted(keys))}): "
                          "expected the official Wan2.1_VAE / Wan2.2_VAE or a diffusers AutoencoderKLWan")


def _read_sizes22(native: Mapping[str, torch.Tensor]) -> dict:
    levels = sorted({int(m.group(1)) for k in native if (m := re.match(r"^encoder\.down_blocks\.(\d+)\.", k))})
    base = int(native["encoder.conv_in.conv.weight"].shape[0])
    mult = tuple(int(native[f"encoder.down_blocks.{i}.resnets.0.conv1.conv.weight"].shape[0]) // base for i in levels)
    blocks = len({m.group(1) for k in native if (m := re.match(r"^encoder\.down_blocks\.0\.resnets\.(\d+)\.", k))})
    patch = round((int(native["encoder.conv_in.conv.weight"].shape[1]) / 3) ** 0.5)
    return dict(base_dim=base, z_dim=int(native["post_quant_conv.conv.weight"].shape[0]), dim_mult=mult,
                num_res_blocks=blocks, is_residual=True, patch_size=patch,
                decoder_base_dim=int(native["decoder.conv_in.conv.weight"].shape[0]) // mult[-1],
                temporal_downsample=tuple(f"encoder.down_blocks.{i}.downsampler.time_conv.conv.weight" in native
                                          for i in levels[:-1]))


def read_sizes(native: Mapping[str, torch.Tensor]) -> dict:
    """The structural `WanVAEConfig` fields native tensors fix (the latent statistics are not stored)."""
    if is_wan22(native):
        try:
            return _read_sizes22(native)
        except (KeyError, IndexError) as err:
            raise ConversionError(f"these tensors are not a Wan 2.2 VAE (no {err}): check the file") from None
    try:
        base = int(native["encoder.conv_in.conv.weight"].shape[0])
        z = int(native["post_quant_conv.conv.weight"].shape[0])
        idx = sorted({int(m.group(1)) for k in native if (m := re.match(r"^encoder\.down_blocks\.(\d+)\.", k))})
        resamplers = [i for i in idx if f"encoder.down_blocks.{i}.resample.1.weight" in native]
        per_level = resamplers[0] if resamplers else len(idx)
        mult = [int(native[f"encoder.down_blocks.{i}.conv2.conv.weight"].shape[0]) // base
                for i in idx[per_level - 1::per_level + 1]]
        temporal = tuple(f"encoder.down_blocks.{i}.time_conv.conv.weight" in native for i in resamplers)
    except (KeyError, IndexError) as err:
        raise ConversionError(f"these tensors are not a Wan VAE (no {err}): check the file") from None
    return dict(base_dim=base, z_dim=z, dim_mult=tuple(mult), num_res_blocks=per_level, temporal_downsample=temporal,
                decoder_base_dim=None, is_residual=False, patch_size=1)


def to_native(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Any released Wan VAE layout (prefixes taken off) -> native names."""
    sd = strip_shared_prefixes(state_dict, PREFIXES)
    layout = detect_layout(sd)
    if layout == "official":
        return official_to_native(sd)
    if layout == "diffusers":
        return diffusers_to_native(sd)
    return sd


__all__ = ["detect_layout", "is_wan22", "read_sizes", "diffusers_to_native", "native_to_diffusers", "native_to_official",
           "official_to_native", "to_native"]
