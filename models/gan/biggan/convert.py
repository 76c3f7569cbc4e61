"""Checkpoint layouts of BigGAN-deep -> the native layout of `BigGANGenerator`.

Layouts:
- "pretrained_biggan": the `pytorch_model.bin` of pytorch-pretrained-biggan (the port of the
  DeepMind TF Hub modules, also on the hub as huggingface/biggan-deep-{128,256,512}), with its
  `config.json`. Spectral norm is stored the `torch.nn.utils.spectral_norm` way
  (`weight_orig`, `weight_u`, `weight_v`); self-attention sits inside `generator.layers`.
- "native": this package's own names (`stem`, `blocks.{i}`, `attention`, `out_norm`, `to_rgb`).

Every key of the source must map and every native key must be produced: anything else is a
`ConversionError` that names the keys.
"""
from __future__ import annotations

from typing import Mapping

import torch

from models.gan.biggan.config import BigGANConfig
from utils.errors import ConversionError
from utils.weights import check_keys, key_report
from utils.weights.keys import strip_shared_prefixes

WRAPPER_PREFIXES = ("module.", "model.")
"""Prefixes that wrappers put in front of every key (DataParallel, trainers); taken off before conversion."""

_SN = {"weight_orig": "weight", "weight_u": "u", "weight_v": "v"}
_ATTN = {"snconv1x1_theta": "query", "snconv1x1_phi": "key", "snconv1x1_g": "value", "snconv1x1_o_conv": "out"}


def _sn(ref: str, native: str, bias: bool) -> dict[str, str]:
    pairs = {f"{ref}.{r}": f"{native}.{n}" for r, n in _SN.items()}
    if bias:
        pairs[f"{ref}.bias"] = f"{native}.bias"
    return pairs


def reference_key_map(config: BigGANConfig) -> dict[str, str]:
    """Every key of a pytorch-pretrained-biggan state dict for `config` -> its native key."""
    m = {"embeddings.weight": "class_embed.weight"}
    m.update(_sn("generator.gen_z", "stem", bias=True))
    for i in range(len(config.layers)):
        # The reference keeps attention as an entry of `layers`, shifting later blocks by one.
        ref = f"generator.layers.{i + (i >= config.attention_index)}"
        nat = f"blocks.{i}"
        for k in range(4):
            for buf in ("running_means", "running_vars"):
                m[f"{ref}.bn_{k}.{buf}"] = f"{nat}.norm{k}.{buf}"
            m.update(_sn(f"{ref}.bn_{k}.scale", f"{nat}.norm{k}.scale", bias=False))
            m.update(_sn(f"{ref}.bn_{k}.offset", f"{nat}.norm{k}.offset", bias=False))
            m.update(_sn(f"{ref}.conv_{k}", f"{nat}.conv{k}", bias=True))
    ref = f"generator.layers.{config.attention_index}"
    for r, n in _ATTN.items():
        m.update(_sn(f"{ref}.{r}", f"attention.{n}", bias=False))
    m[f"{ref}.gamma"] = "attention.gamma"
    for name in ("weight", "bias", "running_means", "running_vars"):
        m[f"generator.bn.{name}"] = f"out_norm.{name}"
    m.update(_sn("generator.conv_to_rgb", "to_rgb", bias=True))
    return m


def detect_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = set(state_dict)
    if "generator.gen_z.weight_orig" in keys or "embeddings.weight" in keys:
        return "pretrained_biggan"
    if "stem.weight" in keys and "class_embed.weight" in keys:
        return "native"
    raise ConversionError(f"not a BigGAN-deep generator checkpoint (first keys: {', '.join(sorted(keys)[:4])}): "
                          "pass the pytorch_model.bin of pytorch-pretrained-biggan or a native checkpoint")


def convert_pretrained_biggan(state_dict: Mapping[str, torch.Tensor], config: BigGANConfig) -> dict[str, torch.Tensor]:
    """A pytorch-pretrained-biggan state dict -> native; strict in both directions."""
    key_map = reference_key_map(config)
    check_keys(key_map.keys(), state_dict.keys(), what="pytorch-pretrained-biggan checkpoint")
    return {key_map[k]: v for k, v in state_dict.items()}


def to_pretrained_biggan(state_dict: Mapping[str, torch.Tensor], config: BigGANConfig) -> dict[str, torch.Tensor]:
    """Native -> pytorch-pretrained-biggan (to run the reference on our weights)."""
    inverse = {v: k for k, v in reference_key_map(config).items()}
    check_keys(inverse.keys(), state_dict.keys(), what="native BigGAN state dict")
    return {inverse[k]: v for k, v in state_dict.items()}


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], config: BigGANConfig) -> dict[str, torch.Tensor]:
    """Any supported layout -> native (format detected from the keys)."""
    sd = strip_shared_prefixes(state_dict, WRAPPER_PREFIXES)
    layout = detect_layout(sd)
    if layout == "pretrained_biggan":
        return convert_pretrained_biggan(sd, config)
    return sd


def infer_config(state_dict: Mapping[str, torch.Tensor], base: BigGANConfig) -> BigGANConfig:
    """Check the checkpoint's embedding against `base` (num_classes, z_dim); a clear error if it differs."""
    sd = strip_shared_prefixes(state_dict, WRAPPER_PREFIXES)
    w = sd.get("embeddings.weight", sd.get("class_embed.weight"))
    if w is not None and tuple(w.shape) != (base.z_dim, base.num_classes):
        raise ConversionError(f"the checkpoint's class embedding is {tuple(w.shape)}, the config expects "
                              f"{(base.z_dim, base.num_classes)}: pass the config.json that came with the weights")
    return base


__all__ = ["convert_pretrained_biggan", "convert_state_dict", "detect_layout", "infer_config", "key_report",
           "reference_key_map", "to_pretrained_biggan"]
