"""Shap-E weights: OpenAI's release files and diffusers folders onto the native (OpenAI) names.

Released files (openaipublic, `shap_e.models.download`):
- `text_cond.pt` / `image_cond.pt`: the prior, every key under `wrapped.` (the SplitVectorDiffusion
  wrapper); native keys are those names without it.
- `transmitter.pt`: the encoder and the decoder; the decoder is `encoder.params_proj.*` (the
  latent -> weights projections) and `renderer.nerstf.*` (the MLP); the point-cloud encoder's
  other keys are not needed to generate and are left out.

diffusers (`openai/shap-e`, `openai/shap-e-img2img`): `prior/` is a PriorTransformer (per-head
to_q/to_k/to_v instead of the fused per-head c_qkv; `clip_mean`/`clip_std` unused by Shap-E),
`shap_e_renderer/` a ShapERenderer (`params_proj.*`, `mlp.mlp.*`, plus the background colour and
the marching-cubes tables it keeps as buffers, which are not weights here).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping

import torch

from models.generation_3d.shap_e.config import DecoderConfig, PriorConfig
from utils.errors import ConversionError

Tensors = Mapping[str, torch.Tensor]

# diffusers PriorTransformer name -> native, outside the blocks
_PRIOR_TOP = {
    "time_embedding.linear_1": "time_embed.c_fc",
    "time_embedding.linear_2": "time_embed.c_proj",
    "proj_in": "input_proj",
    "norm_in": "ln_pre",
    "norm_out": "ln_post",
    "proj_to_clip_embeddings": "output_proj",
}
# inside block i: diffusers -> native
_PRIOR_BLOCK = {
    "attn1.to_out.0": "attn.c_proj",
    "ff.net.0.proj": "mlp.c_fc",
    "ff.net.2": "mlp.c_proj",
    "norm1": "ln_1",
    "norm3": "ln_2",
}


def detect_prior_layout(sd: Tensors) -> str:
    keys = set(sd)
    if any(k.startswith("wrapped.") for k in keys):
        return "official"
    if "proj_in.weight" in keys or "positional_embedding" in keys:
        return "diffusers"
    if "input_proj.weight" in keys:
        return "native"
    raise ConversionError("this file is not a Shap-E prior: expected OpenAI's text_cond.pt/image_cond.pt "
                          "(wrapped.*) or a diffusers prior/ folder (proj_in, transformer_blocks.*)")


def fuse_heads(parts: list[torch.Tensor], heads: int) -> torch.Tensor:
    """[q, k, v] (or [k, v]) projections, each (heads * d, ...) -> one fused per-head tensor
    (head h holds its q_h, k_h, v_h side by side)."""
    split = [p.reshape(heads, p.shape[0] // heads, *p.shape[1:]) for p in parts]
    fused = torch.stack(split, 1)
    return fused.reshape(-1, *parts[0].shape[1:])


def split_heads(fused: torch.Tensor, heads: int, n: int) -> list[torch.Tensor]:
    """The inverse of `fuse_heads`."""
    per = fused.reshape(heads, n, fused.shape[0] // (heads * n), *fused.shape[1:])
    return [per[:, i].reshape(-1, *fused.shape[1:]) for i in range(n)]


def prior_from_official(sd: Tensors) -> dict[str, torch.Tensor]:
    return {k[len("wrapped."):]: v for k, v in sd.items() if k.startswith("wrapped.")}


def prior_from_diffusers(sd: Tensors, heads: int) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    image = "embedding_proj_norm.weight" in sd
    for key, value in sd.items():
        if key in ("clip_mean", "clip_std"):
            continue
        if key == "positional_embedding":
            out["pos_emb"] = value[0]
            continue
        name, _, param = key.rpartition(".")
        if name == "embedding_proj":
            out[f"clip_embed{'.1' if image else ''}.{param}"] = value
        elif name == "embedding_proj_norm":
            out[f"clip_embed.0.{param}"] = value
        elif name in _PRIOR_TOP:
            out[f"{_PRIOR_TOP[name]}.{param}"] = value
        elif key.startswith("transformer_blocks."):
            _, idx, rest = key.split(".", 2)
            inner, _, param = rest.rpartition(".")
            if inner in ("attn1.to_q", "attn1.to_k", "attn1.to_v"):
                if inner == "attn1.to_q":
                    base = f"transformer_blocks.{idx}.attn1"
                    parts = [sd[f"{base}.to_{c}.{param}"] for c in "qkv"]
                    out[f"backbone.resblocks.{idx}.attn.c_qkv.{param}"] = fuse_heads(parts, heads)
            elif inner in _PRIOR_BLOCK:
                out[f"backbone.resblocks.{idx}.{_PRIOR_BLOCK[inner]}.{param}"] = value
            else:
                raise ConversionError(f"unexpected key '{key}' in the diffusers Shap-E prior")
        else:
            raise ConversionError(f"unexpected key '{key}' in the diffusers Shap-E prior")
    return out


def prior_to_diffusers(sd: Tensors, heads: int) -> dict[str, torch.Tensor]:
    """Native prior -> diffusers PriorTransformer keys (for exporting, and the parity tests)."""
    top = {v: k for k, v in _PRIOR_TOP.items()}
    block = {v: k for k, v in _PRIOR_BLOCK.items()}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name, _, param = key.rpartition(".")
        if key == "pos_emb":
            out["positional_embedding"] = value[None]
        elif name in top:
            out[f"{top[name]}.{param}"] = value
        elif name in ("clip_embed", "clip_embed.1"):
            out[f"embedding_proj.{param}"] = value
        elif name == "clip_embed.0":
            out[f"embedding_proj_norm.{param}"] = value
        elif key.startswith("backbone.resblocks."):
            idx, rest = key[len("backbone.resblocks."):].split(".", 1)
            inner, _, param = rest.rpartition(".")
            if inner == "attn.c_qkv":
                for c, part in zip("qkv", split_heads(value, heads, 3)):
                    out[f"transformer_blocks.{idx}.attn1.to_{c}.{param}"] = part
            else:
                out[f"transformer_blocks.{idx}.{block[inner]}.{param}"] = value
    out_dim = sd["output_proj.weight"].shape[0]
    out["clip_mean"] = torch.zeros(1, out_dim)
    out["clip_std"] = torch.zeros(1, out_dim)
    return out


def prior_to_native(sd: Tensors, heads: int | None = None) -> dict[str, torch.Tensor]:
    """Any prior layout -> native keys; diffusers needs the head count (its config's num_attention_heads)."""
    layout = detect_prior_layout(sd)
    if layout == "official":
        return prior_from_official(sd)
    if layout == "diffusers":
        if heads is None:
            raise ConversionError("a diffusers Shap-E prior needs its config.json (num_attention_heads)")
        return prior_from_diffusers(sd, heads)
    return dict(sd)


def prior_config_from_state(sd: Tensors, base: PriorConfig, heads: int | None = None) -> PriorConfig:
    """The prior config the native tensors describe (heads, not stored, from `heads` or 64 per head)."""
    try:
        width = sd["ln_pre.weight"].shape[0]
        channels = sd["input_proj.weight"].shape[1]
        n_ctx = sd["pos_emb"].shape[0]
        layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("backbone.resblocks."))
        image = "clip_embed.0.weight" in sd
        cond_dim = sd["clip_embed.0.weight" if image else "clip_embed.weight"].shape[-1]
    except (KeyError, ValueError) as err:
        raise ConversionError(f"the Shap-E prior lacks {err}: it is not a complete prior checkpoint") from None
    return replace(base, n_ctx=n_ctx, channels=channels, width=width, layers=layers,
                   heads=heads or max(1, width // 64), cond="image" if image else "text", cond_dim=cond_dim,
                   cond_tokens=base.cond_tokens if image else 1)


# -- the implicit decoder ---------------------------------------------------------------------------

def detect_decoder_layout(sd: Tensors) -> str:
    keys = set(sd)
    if any(k.startswith("renderer.nerstf.") for k in keys):
        return "official"
    if any(k.startswith("mlp.mlp.") for k in keys):
        return "diffusers"
    if any(k.startswith("nerstf.mlp.") for k in keys):
        return "native"
    raise ConversionError("this file is not a Shap-E decoder: expected OpenAI's transmitter.pt "
                          "(encoder.params_proj.*, renderer.nerstf.*) or a diffusers shap_e_renderer/ folder")


def decoder_to_native(sd: Tensors) -> dict[str, torch.Tensor]:
    layout = detect_decoder_layout(sd)
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if layout == "official":
            if key.startswith("encoder.params_proj."):
                out[key[len("encoder."):]] = value
            elif key.startswith("renderer.nerstf."):
                out[key[len("renderer."):]] = value
        elif layout == "diffusers":
            if key.startswith("params_proj."):
                out[key] = value
            elif key.startswith("mlp."):
                out["nerstf." + key[len("mlp."):]] = value
        else:
            out[key] = value
    return out


def decoder_to_diffusers(sd: Tensors, cfg: DecoderConfig) -> dict[str, torch.Tensor]:
    """Native decoder -> a ShapERenderer state dict (its background buffer, and empty marching-cubes
    tables, which diffusers fills from its own checkpoint)."""
    out = {("mlp." + k[len("nerstf."):] if k.startswith("nerstf.") else k): v for k, v in sd.items()}
    out["void.background"] = torch.tensor(cfg.background, dtype=torch.float32)
    out["mesh_decoder.cases"] = torch.zeros(256, 5, 3, dtype=torch.long)
    out["mesh_decoder.masks"] = torch.zeros(256, 5, dtype=torch.bool)
    return out


def decoder_config_from_state(sd: Tensors, base: DecoderConfig) -> DecoderConfig:
    try:
        hidden = sd["nerstf.mlp.0.weight"].shape[0]
        n = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("nerstf.mlp."))
        outputs = sd[f"nerstf.mlp.{n - 1}.weight"].shape[0]
        projected = sum(1 for k in sd if k.startswith("params_proj.projections.") and k.endswith(".proj.weight"))
        d_latent = next(v.shape[1] for k, v in sd.items() if k.endswith(".proj.weight"))
    except (KeyError, ValueError, StopIteration) as err:
        raise ConversionError(f"the Shap-E decoder lacks {err}: it is not a complete decoder checkpoint") from None
    return replace(base, hidden=hidden, hidden_layers=n - 1, outputs=outputs, projected=projected, d_latent=d_latent)
