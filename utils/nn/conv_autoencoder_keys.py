"""One key map for the conv autoencoder trunk (`utils.nn.conv_autoencoder`): diffusers <-> native.

The native names are the official ones (CompVis ldm single files, taming-transformers .ckpt). The
diffusers layouts of `AutoencoderKL` and `VQModel` differ from them in names and in two shapes:

    native (official)                          diffusers
    {enc,dec}.norm_out                         {enc,dec}.conv_norm_out
    encoder.down.{i}.block.{j}                 encoder.down_blocks.{i}.resnets.{j}
    encoder.down.{i}.attn.{j}                  encoder.down_blocks.{i}.attentions.{j}
    encoder.down.{i}.downsample.conv           encoder.down_blocks.{i}.downsamplers.0.conv
    decoder.up.{i}.block / attn / upsample     decoder.up_blocks.{L-1-i}.resnets / attentions / upsamplers.0
    {enc,dec}.mid.block_1 / attn_1 / block_2   {enc,dec}.mid_block.resnets.0 / attentions.0 / resnets.1
    ResNet: nin_shortcut                       conv_shortcut
    attention: norm, q, k, v, proj_out         group_norm, to_q, to_k, to_v, to_out.0
      (1x1 convs, 4-D weights)                   (linears, 2-D weights; diffusers < 0.14: query, key,
                                                  value, proj_attn)

(L is the number of levels: diffusers counts decoder blocks from the lowest resolution.) The heads
between encoder and decoder (`quant_conv`, `post_quant_conv`, `quantize.`) keep their names; which
ones a model has is its owner's business (`heads=`). Unknown keys are a ConversionError naming them.
All functions are pure and work on meta tensors.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch

from utils.errors import ConversionError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

KL_HEADS = ("quant_conv.", "post_quant_conv.")
VQ_HEADS = ("quant_conv.", "quantize.", "post_quant_conv.")

_RES_D2N = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_RES_N2D = {v: k for k, v in _RES_D2N.items()}
_ATTN_D2N = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out",
             "query": "q", "key": "k", "value": "v", "proj_attn": "proj_out"}  # the last four: diffusers < 0.14
_ATTN_N2D = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_PROJECTION = re.compile(r"\.(?:attn\.\d+|attn_1)\.(?:q|k|v|proj_out)\.weight$")
_LEAF = r"(?P<leaf>[\w.]+?)\.(?P<param>weight|bias)"


def is_attention_projection(native_key: str) -> bool:
    """True for the q/k/v/proj_out weights of an attention block (1x1 convs natively, linears in diffusers)."""
    return bool(_ATTN_PROJECTION.search(native_key))


def count_levels(sd: Iterable[str]) -> int:
    """Resolution levels of a trunk state dict in either layout (from `encoder.down.N` / `down_blocks.N`)."""
    found = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.(?:down|down_blocks)\.(\d+)\.", k))}
    if not found:
        raise ConversionError("the autoencoder checkpoint has no encoder levels (encoder.down.N / "
                              "encoder.down_blocks.N): it is not a VAE or VQGAN")
    return max(found) + 1


def detect_layout(sd: Iterable[str]) -> str | None:
    """'diffusers', 'native' or None (no trunk keys) for an unprefixed state dict."""
    keys = list(sd)
    if any(".down_blocks." in k or ".up_blocks." in k or ".mid_block." in k for k in keys):
        return "diffusers"
    if any(k.startswith(("encoder.down.", "decoder.up.", "encoder.mid.", "decoder.mid.")) for k in keys):
        return "native"
    return None


def _leaf(kind: str, leaf: str, table_res: dict, table_attn: dict) -> str | None:
    table = table_res if kind == "res" else table_attn
    return table.get(leaf)


def diffusers_key_to_native(key: str, levels: int, heads: tuple[str, ...] = VQ_HEADS) -> str | None:
    """The native name of one diffusers key, or None when the trunk has no such key."""
    if key.startswith(heads):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)\.(weight|bias)", key):
        return f"{m[1]}.{'norm_out' if m[2] == 'conv_norm_out' else m[2]}.{m[3]}"
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    if m := re.fullmatch(rf"(?P<part>encoder\.down_blocks|decoder\.up_blocks)\.(?P<i>\d+)\.(?P<kind>resnets|attentions)"
                         rf"\.(?P<j>\d+)\.{_LEAF}", key):
        kind = "res" if m["kind"] == "resnets" else "attn"
        leaf = _leaf(kind, m["leaf"], _RES_D2N, _ATTN_D2N)
        if leaf is None:
            return None
        level = int(m["i"]) if m["part"].startswith("encoder") else levels - 1 - int(m["i"])
        part = "encoder.down" if m["part"].startswith("encoder") else "decoder.up"
        return f"{part}.{level}.{'block' if kind == 'res' else 'attn'}.{m['j']}.{leaf}.{m['param']}"
    if m := re.fullmatch(rf"(?P<part>encoder|decoder)\.mid_block\.(?P<kind>resnets|attentions)\.(?P<j>\d+)\.{_LEAF}",
                         key):
        kind = "res" if m["kind"] == "resnets" else "attn"
        leaf = _leaf(kind, m["leaf"], _RES_D2N, _ATTN_D2N)
        j = int(m["j"])
        if leaf is None or (kind == "res" and j > 1) or (kind == "attn" and j > 0):
            return None
        name = f"block_{j + 1}" if kind == "res" else "attn_1"
        return f"{m['part']}.mid.{name}.{leaf}.{m['param']}"
    return None


def native_key_to_diffusers(key: str, levels: int, heads: tuple[str, ...] = VQ_HEADS) -> str | None:
    """The diffusers name of one native key, or None when the trunk has no such key."""
    if key.startswith(heads):
        return key
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(weight|bias)", key):
        return f"{m[1]}.{'conv_norm_out' if m[2] == 'norm_out' else m[2]}.{m[3]}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", key):
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", key):
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    if m := re.fullmatch(rf"(?P<part>encoder\.down|decoder\.up)\.(?P<i>\d+)\.(?P<kind>block|attn)\.(?P<j>\d+)\.{_LEAF}",
                         key):
        kind = "res" if m["kind"] == "block" else "attn"
        leaf = _leaf(kind, m["leaf"], _RES_N2D, _ATTN_N2D)
        if leaf is None:
            return None
        encoder = m["part"] == "encoder.down"
        block = int(m["i"]) if encoder else levels - 1 - int(m["i"])
        part = "encoder.down_blocks" if encoder else "decoder.up_blocks"
        return f"{part}.{block}.{'resnets' if kind == 'res' else 'attentions'}.{m['j']}.{leaf}.{m['param']}"
    if m := re.fullmatch(rf"(?P<part>encoder|decoder)\.mid\.(?P<name>block_1|block_2|attn_1)\.{_LEAF}", key):
        kind = "attn" if m["name"] == "attn_1" else "res"
        leaf = _leaf(kind, m["leaf"], _RES_N2D, _ATTN_N2D)
        if leaf is None:
            return None
        inner = "attentions.0" if kind == "attn" else f"resnets.{int(m['name'][-1]) - 1}"
        return f"{m['part']}.mid_block.{inner}.{leaf}.{m['param']}"
    return None


def diffusers_to_native(sd: Mapping[str, torch.Tensor], heads: tuple[str, ...] = VQ_HEADS,
                        what: str = "autoencoder", levels: int | None = None) -> StateDict:
    """A diffusers AutoencoderKL / VQModel state dict -> native keys; attention linears become 1x1 convs."""
    levels = count_levels(sd) if levels is None else levels
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        new = diffusers_key_to_native(key, levels, heads)
        if new is None:
            unknown.append(key)
            continue
        if value.ndim == 2 and is_attention_projection(new):
            value = value[:, :, None, None]
        out[new] = value
    if unknown:
        raise ConversionError(f"the diffusers {what} checkpoint has keys this converter does not know "
                              f"({key_report([], unknown)}): check that it is the {what} it claims to be")
    return out


def native_to_diffusers(sd: Mapping[str, torch.Tensor], heads: tuple[str, ...] = VQ_HEADS,
                        what: str = "autoencoder", levels: int | None = None) -> StateDict:
    """Native (official) keys -> diffusers keys; 1x1-conv attention weights become linear weights."""
    levels = count_levels(sd) if levels is None else levels
    out: StateDict = {}
    unknown = []
    for key, value in sd.items():
        new = native_key_to_diffusers(key, levels, heads)
        if new is None:
            unknown.append(key)
            continue
        if value.ndim == 4 and is_attention_projection(key):
            value = value[:, :, 0, 0]
        out[new] = value
    if unknown:
        raise ConversionError(f"the {what} checkpoint has keys this converter does not know "
                              f"({key_report([], unknown)}): check that it is the {what} it claims to be")
    return out


def attention_as_conv(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """Native state dict with every attention projection as a 1x1 conv weight (some ldm exports store
    them as linears, 2-D, or 1-D convs, 3-D)."""
    out = dict(sd)
    for key, value in sd.items():
        if value.ndim in (2, 3) and is_attention_projection(key):
            out[key] = value.reshape(value.shape[0], value.shape[1], 1, 1)
    return out


def read_trunk_sizes(native: Mapping[str, torch.Tensor]) -> dict:
    """The trunk sizes a native state dict's shapes fix (works on meta tensors).

    Returns in_channels, out_channels, base_channels, channel_mult, num_res_blocks, encoder_out
    (the encoder's output channels), z_channels (the decoder's input channels) and attn_levels.
    GroupNorm's group count leaves no trace in the weights and is not among them.
    """
    try:
        conv_in = native["encoder.conv_in.weight"]
        levels = count_levels(native)
        base = conv_in.shape[0]
        widths = [native[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
        blocks = 1 + max(int(k.split(".")[4]) for k in native if k.startswith("encoder.down.0.block."))
        sizes = dict(in_channels=conv_in.shape[1], out_channels=native["decoder.conv_out.weight"].shape[0],
                     base_channels=base, num_res_blocks=blocks,
                     encoder_out=native["encoder.conv_out.weight"].shape[0],
                     z_channels=native["decoder.conv_in.weight"].shape[1],
                     attn_levels=tuple(i for i in range(levels) if f"encoder.down.{i}.attn.0.q.weight" in native))
    except (KeyError, ValueError) as err:
        raise ConversionError(f"cannot read the autoencoder's sizes off the checkpoint (no {err}): the file is "
                              "incomplete or not a VAE / VQGAN") from None
    if any(w % base for w in widths):
        raise ConversionError(f"the autoencoder's level widths {widths} are not multiples of its first width {base}")
    sizes["channel_mult"] = tuple(w // base for w in widths)
    return sizes


__all__ = ["KL_HEADS", "VQ_HEADS", "attention_as_conv", "count_levels", "detect_layout", "diffusers_key_to_native",
           "diffusers_to_native", "is_attention_projection", "native_key_to_diffusers", "native_to_diffusers",
           "read_trunk_sizes"]
