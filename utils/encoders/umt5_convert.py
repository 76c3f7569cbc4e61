"""UMT5 encoder weights: the Wan release's own layout <-> transformers' `UMT5EncoderModel`.

UMT5 is T5 v1.1 with a relative position bias in every layer (T5 has one, in layer 0, shared), so
the zoo runs both through `utils.encoders.t5.T5TextEncoder` (`T5EncoderConfig.per_layer_bias`).
The Wan team ships the encoder half as `models_t5_umt5-xxl-enc-bf16.pth` in their own module names:

    official (wan/modules/t5.py)               transformers
    token_embedding                            shared (and encoder.embed_tokens)
    blocks.N.norm1 / .norm2                    encoder.block.N.layer.0.layer_norm / .layer.1.layer_norm
    blocks.N.attn.{q,k,v,o}                    encoder.block.N.layer.0.SelfAttention.{q,k,v,o}
    blocks.N.pos_embedding.embedding           encoder.block.N.layer.0.SelfAttention.relative_attention_bias
    blocks.N.ffn.gate.0 / .fc1 / .fc2          encoder.block.N.layer.1.DenseReluDense.wi_0 / .wi_1 / .wo
    norm                                       encoder.final_layer_norm

diffusers' Wan folders (`text_encoder/`) already hold the transformers layout.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch

from utils.errors import ConversionError
from utils.weights.keys import key_report

StateDict = dict[str, torch.Tensor]

IN_BLOCK = {
    "norm1": "layer.0.layer_norm",
    "attn.q": "layer.0.SelfAttention.q",
    "attn.k": "layer.0.SelfAttention.k",
    "attn.v": "layer.0.SelfAttention.v",
    "attn.o": "layer.0.SelfAttention.o",
    "pos_embedding.embedding": "layer.0.SelfAttention.relative_attention_bias",
    "norm2": "layer.1.layer_norm",
    "ffn.gate.0": "layer.1.DenseReluDense.wi_0",
    "ffn.fc1": "layer.1.DenseReluDense.wi_1",
    "ffn.fc2": "layer.1.DenseReluDense.wo",
}
_OFFICIAL = re.compile(r"^blocks\.(\d+)\.(.+)\.(weight)$")
_HF = re.compile(r"^encoder\.block\.(\d+)\.(.+)\.(weight)$")


def is_official(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for the Wan release's layout (`token_embedding.weight`, `blocks.N.attn.q.weight`)."""
    return "token_embedding.weight" in state_dict and "blocks.0.attn.q.weight" in state_dict


def read_sizes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """The `T5EncoderConfig` sizes the Wan release's tensors fix (the head count: the bias table's width)."""
    sd = state_dict
    try:
        vocab, d_model = sd["token_embedding.weight"].shape
        buckets, heads = sd["blocks.0.pos_embedding.embedding.weight"].shape
        layers = 1 + max(int(m.group(1)) for k in sd if (m := _OFFICIAL.match(k)))
        return dict(vocab_size=int(vocab), d_model=int(d_model), d_ff=int(sd["blocks.0.ffn.fc1.weight"].shape[0]),
                    d_kv=int(sd["blocks.0.attn.q.weight"].shape[0]) // int(heads), num_layers=layers,
                    num_heads=int(heads), relative_attention_num_buckets=int(buckets))
    except (KeyError, ValueError) as err:
        raise ConversionError(f"these tensors are not Wan's UMT5 encoder (no {err}): check the file") from None


def official_to_transformers(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The Wan release's UMT5 encoder tensors -> `UMT5EncoderModel` names; an unknown key is a ConversionError."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        if key == "token_embedding.weight":
            out["shared.weight"] = value
            out["encoder.embed_tokens.weight"] = value
        elif key == "norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        elif (m := _OFFICIAL.match(key)) and m.group(2) in IN_BLOCK:
            out[f"encoder.block.{m.group(1)}.{IN_BLOCK[m.group(2)]}.weight"] = value
        else:
            unknown.append(key)
    if unknown:
        raise ConversionError(f"the Wan UMT5 encoder weights have keys this converter does not know "
                              f"({key_report([], unknown)}): check that the file is models_t5_umt5-xxl-enc")
    return out


def transformers_to_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """`UMT5EncoderModel` tensors -> the Wan release's names (what `models_t5_umt5-xxl-enc-bf16.pth` holds)."""
    back = {v: k for k, v in IN_BLOCK.items()}
    out = {}
    for key, value in state_dict.items():
        if key in ("shared.weight", "encoder.embed_tokens.weight"):
            out["token_embedding.weight"] = value
        elif key == "encoder.final_layer_norm.weight":
            out["norm.weight"] = value
        elif (m := _HF.match(key)) and m.group(2) in back:
            out[f"blocks.{m.group(1)}.{back[m.group(2)]}.weight"] = value
        else:
            raise ConversionError(f"UMT5 encoder key '{key}' has no name in the Wan release")
    return out


__all__ = ["IN_BLOCK", "is_official", "read_sizes", "official_to_transformers", "transformers_to_official"]
