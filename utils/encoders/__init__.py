"""Shared encoders of the diffusion models: the KL autoencoder and the CLIP / T5 text encoders.

    from utils.encoders import AutoencoderKL, CLIPTextEncoder, T5TextEncoder

Names are imported on first use, so `import utils.encoders` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AutoencoderKL": "utils.encoders.vae", "VAEConfig": "utils.encoders.vae", "VAE_PRESETS": "utils.encoders.vae",
    "DiagonalGaussian": "utils.encoders.vae",
    "CLIPTextEncoder": "utils.encoders.clip", "CLIPTextEncoderConfig": "utils.encoders.clip",
    "CLIP_PRESETS": "utils.encoders.clip", "load_clip_tokenizer": "utils.encoders.clip",
    "T5TextEncoder": "utils.encoders.t5", "T5EncoderConfig": "utils.encoders.t5", "T5_PRESETS": "utils.encoders.t5",
    "load_t5_tokenizer": "utils.encoders.t5",
    "TextEncoderOutput": "utils.encoders.text", "PromptTruncatedWarning": "utils.encoders.text",
    "WanVAE": "utils.encoders.wan_vae", "WanVAEConfig": "utils.encoders.wan_vae",
    "LTXVideoVAE": "utils.encoders.ltx_vae", "LTXVAEConfig": "utils.encoders.ltx_vae",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'utils.encoders' has no attribute '{name}'")


__all__ = sorted(_EXPORTS)
