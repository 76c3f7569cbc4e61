"""Consistency decoder checkpoints: diffusers' `ConsistencyDecoderVAE` layout <-> OpenAI's names (native).

    native (OpenAI)                     diffusers (decoder_unet.)
    embed_image.f                       conv_in
    embed_time.emb / f_1 / f_2          time_proj / time_embedding.linear_1 / linear_2
    down.L.i (i < n)                    down_blocks.L.resnets.i
    down.L.n                            down_blocks.L.downsamplers.0
    mid.j                               mid_block.resnets.j
    up.L.i (i <= n)                     up_blocks.(levels-1-L).resnets.i
    up.L.(n+1)                          up_blocks.(levels-1-L).upsamplers.0
    output.gn / output.f                conv_norm_out / conv_out
    inside a ResBlock: f_t gn_1 f_1 gn_2 f_2 f_s = time_emb_proj norm1 conv1 norm2 conv2 conv_shortcut

A diffusers file also holds the SD VAE encoder (`encoder.*`, `quant_conv.*`) the decoder replaces
nothing of: `split_consistency_vae` returns it apart, in the KL VAE's native layout, so every key of
the file is accounted for. The decoder's sizes are read from the shapes (`infer_config`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from utils.errors import ConversionError, UserError
from utils.weights.keys import key_report, strip_prefix

StateDict = dict[str, torch.Tensor]

_RES = {"f_t": "time_emb_proj", "gn_1": "norm1", "f_1": "conv1", "gn_2": "norm2", "f_2": "conv2",
        "f_s": "conv_shortcut"}
_FIXED = {"embed_image.f": "conv_in", "embed_time.emb": "time_proj", "embed_time.f_1": "time_embedding.linear_1",
          "embed_time.f_2": "time_embedding.linear_2", "output.gn": "conv_norm_out", "output.f": "conv_out"}
DIFFUSERS_PREFIX = "decoder_unet."


def block_map(levels: int, num_res_blocks: int) -> list[tuple[str, str, bool]]:
    """(native prefix, diffusers prefix, is a ResBlock) for every module of a decoder of this shape."""
    rows = [(n, d, False) for n, d in _FIXED.items()]
    n = num_res_blocks
    for level in range(levels):
        rows += [(f"down.{level}.{i}", f"down_blocks.{level}.resnets.{i}", True) for i in range(n)]
        if level != levels - 1:
            rows.append((f"down.{level}.{n}", f"down_blocks.{level}.downsamplers.0", True))
        k = levels - 1 - level
        rows += [(f"up.{level}.{i}", f"up_blocks.{k}.resnets.{i}", True) for i in range(n + 1)]
        if level:
            rows.append((f"up.{level}.{n + 1}", f"up_blocks.{k}.upsamplers.0", True))
    rows += [(f"mid.{j}", f"mid_block.resnets.{j}", True) for j in range(2)]
    return rows


def _rename(sd: Mapping[str, torch.Tensor], rows: list[tuple[str, str, bool]], to_native: bool, what: str) -> StateDict:
    table = sorted(rows, key=lambda r: -len(r[1] if to_native else r[0]))  # longest prefix wins
    res = {v: k for k, v in _RES.items()} if to_native else _RES
    out, unknown = {}, []
    for key, value in sd.items():
        new = _target(key, table, res, to_native)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ConversionError(f"{what} has keys the consistency decoder does not know "
                              f"({key_report([], unknown)}): pass openai/consistency-decoder weights")
    return out


def _target(key: str, table, res, to_native: bool) -> str | None:
    for native, diffusers, is_res in table:
        src, dst = (diffusers, native) if to_native else (native, diffusers)
        if key.startswith(src + "."):
            layer, _, tail = key[len(src) + 1:].rpartition(".")
            if is_res:
                if layer not in res:
                    return None
                layer = res[layer]
            return f"{dst}.{layer}.{tail}" if layer else f"{dst}.{tail}"
    return None


def read_sizes(native: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ConsistencyDecoderConfig fields a native state dict's shapes fix (works on meta tensors)."""
    try:
        first = native["embed_image.f.weight"]
        out = native["output.f.weight"]
        emb = native["embed_time.emb.weight"]
    except KeyError as err:
        raise ConversionError(f"not a consistency decoder: the key {err} is missing") from None
    levels = 1 + max(int(k.split(".")[1]) for k in native if k.startswith("down."))
    widths = tuple(native[f"down.{lv}.0.f_1.weight"].shape[0] for lv in range(levels))
    n = len({k.split(".")[2] for k in native if k.startswith("down.0.")}) - (1 if levels > 1 else 0)
    return dict(block_channels=widths, num_res_blocks=n, out_channels=out.shape[0],
                num_train_timesteps=emb.shape[0], latent_channels=first.shape[1] - 3, image_channels=3)


def diffusers_to_native(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """diffusers `decoder_unet.*` (prefix optional) -> OpenAI's names; sizes from the shapes."""
    unet = strip_prefix(sd, DIFFUSERS_PREFIX) if any(k.startswith(DIFFUSERS_PREFIX) for k in sd) else dict(sd)
    try:
        levels = 1 + max(int(k.split(".")[1]) for k in unet if k.startswith("down_blocks."))
        n = 1 + max(int(k.split(".")[3]) for k in unet if k.startswith("down_blocks.0.resnets."))
    except ValueError:
        raise ConversionError("not a diffusers consistency decoder: no decoder_unet.down_blocks.* keys") from None
    return _rename(unet, block_map(levels, n), to_native=True, what="the diffusers consistency decoder")


def native_to_diffusers(sd: Mapping[str, torch.Tensor]) -> StateDict:
    """OpenAI's names -> diffusers `decoder_unet.*` keys (without the prefix)."""
    sizes = read_sizes(sd)
    rows = block_map(len(sizes["block_channels"]), sizes["num_res_blocks"])
    return _rename(sd, rows, to_native=False, what="the native consistency decoder")


def split_consistency_vae(sd: Mapping[str, torch.Tensor]) -> tuple[StateDict, StateDict]:
    """A whole diffusers `ConsistencyDecoderVAE` state dict -> (native decoder, the KL encoder part in
    the VAE's native layout: `encoder.*`, `quant_conv.*`). Any other key is a ConversionError."""
    from utils.encoders import vae_convert

    decoder = {k: v for k, v in sd.items() if k.startswith(DIFFUSERS_PREFIX)}
    encoder = {k: v for k, v in sd.items() if k.startswith(("encoder.", "quant_conv."))}
    rest = sorted(set(sd) - set(decoder) - set(encoder))
    if rest:
        raise ConversionError(f"the consistency decoder file has keys of no known part ({key_report([], rest)}): "
                              "pass openai/consistency-decoder weights")
    kl = vae_convert.diffusers_to_native(encoder) if encoder else {}
    return diffusers_to_native(decoder), kl


def infer_config(native: Mapping[str, torch.Tensor], preset: str | None = None, config: Any = None):
    """The config of a native decoder state dict: the shapes' sizes over a preset's other fields."""
    from utils.encoders.consistency_decoder import ConsistencyDecoderConfig

    sizes = read_sizes(native)
    if config is not None:
        wrong = {k: v for k, v in sizes.items() if getattr(config, k) != v}
        if wrong:
            raise ConversionError(f"the consistency decoder weights do not fit the config given ({wrong} in the "
                                  "weights): leave config out to read it from the weights")
        return config
    base = ConsistencyDecoderConfig.preset(preset or ("tiny" if sizes["block_channels"][0] < 64 else "openai"))
    return base.with_(**sizes)


def _state_of(source: str | os.PathLike) -> StateDict:
    from utils.weights import load_state_dict
    from utils.weights.hub import locate

    path = locate(source, ["*.json", "*.safetensors"], "consistency decoder weights")
    if path.is_dir():
        files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not files:
            raise UserError(f"{path} holds no .safetensors weights: pass the openai/consistency-decoder folder")
        if (path / "config.json").is_file():
            cfg = json.loads((path / "config.json").read_text())
            if cfg.get("_class_name") not in (None, "ConsistencyDecoderVAE"):
                raise UserError(f"{path} is a {cfg.get('_class_name')}, not a ConsistencyDecoderVAE: pass "
                                "openai/consistency-decoder")
        sd: StateDict = {}
        for f in files:
            sd.update(load_state_dict(f))
        return sd
    if Path(path).suffix in (".pt", ".jit") and _is_torchscript(path):
        raise UserError(f"{path} is OpenAI's TorchScript decoder.pt, which would run code to load: use the "
                        "safetensors release openai/consistency-decoder instead")
    return load_state_dict(path)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/code/__torch__.py") or "/code/" in n for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def load_consistency_decoder(source: str | os.PathLike, config: Any = None, preset: str | None = None):
    """A ConsistencyDecoder from a diffusers folder/file or a native file (format told by the keys)."""
    from utils.encoders.consistency_decoder import ConsistencyDecoder, ConsistencyDecoderUNet
    from utils.weights import load_into

    sd = _state_of(source)
    if any(k.startswith(DIFFUSERS_PREFIX) for k in sd):
        native, _ = split_consistency_vae(sd)
    elif any(k.startswith("embed_image.") for k in sd):
        native = {k: v for k, v in sd.items()}
    elif any(k.startswith("unet.embed_image.") for k in sd):
        native = strip_prefix(sd, "unet.")
    else:
        raise ConversionError(f"'{source}' is not a consistency decoder (no decoder_unet.* nor embed_image.* keys): "
                              "pass openai/consistency-decoder")
    cfg = infer_config(native, preset, config)
    with torch.device("meta"):
        unet = ConsistencyDecoderUNet(cfg)
    load_into(unet, native, what="consistency decoder")
    return ConsistencyDecoder(cfg, unet=unet)  # the schedule buffers are built here, on the CPU


__all__ = ["block_map", "diffusers_to_native", "infer_config", "load_consistency_decoder", "native_to_diffusers",
           "read_sizes", "split_consistency_vae"]
