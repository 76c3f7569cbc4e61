"""Every checkpoint layout of SDXL and SD3 -> native components (denoiser, VAE, text encoders).

Sources, in the order they are tried:

- a single file (`sd_xl_base_1.0.safetensors`, `sd_xl_refiner_1.0.safetensors`, `sd3_medium.safetensors`,
  `sd3_medium_incl_clips[_t5xxlfp16].safetensors`, `sd3.5_large.safetensors`...). The denoiser sits under
  `model.diffusion_model.` (its keys are the native ones), the VAE under `first_stage_model.`, the
  text encoders under `conditioner.embedders.N.` (SDXL: CLIP-L in the transformers layout, bigG in the
  OpenCLIP layout) or `text_encoders.{clip_l,clip_g,t5xxl}.transformer.` (SD3). A bare denoiser file
  (no prefix) loads too. SD3 files without text encoders take them from `text_encoders=` (a diffusers
  folder or hub id, default: the preset's repo); without T5 the release's zeros stand in.
- a diffusers folder (`unet/` or `transformer/`, `vae/`, `text_encoder*/`, `tokenizer*/`, `scheduler/`),
  whose tensors go through `convert_unet` / `convert_mmdit`;
- a hub id: the diffusers layout of the repo is fetched (gated repos say so, with what to do).

The pure key conversions live in `convert_unet.py` and `convert_mmdit.py`; this module finds the parts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from models.image_generation.stable_diffusion.convert_mmdit import (infer_mmdit_config, mmdit_config_from_diffusers,
                                                                    mmdit_diffusers_to_native)
from models.image_generation.stable_diffusion.convert_unet import (infer_unet_config, unet_config_from_diffusers,
                                                                   unet_diffusers_to_native)
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.spec import SPECS
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.errors import ConversionError, UserError
from utils.weights.hub import locate
from utils.weights.keys import strip_prefix

DENOISER_PREFIX = "model.diffusion_model."

SDXL_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "prediction_type": "epsilon", "timestep_spacing": "leading",
    "steps_offset": 1, "interpolation_type": "linear", "use_karras_sigmas": False,
}
SD3_SCHEDULER: dict[str, Any] = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000,
                                 "shift": 3.0}

# Hub repos in the diffusers layout (each also holds the official single file).
HUB_REPOS = {w.preset: w.source for spec in SPECS for w in spec.weights}
GATED = {w.preset for spec in SPECS for w in spec.weights if w.gated}

_COMMON_PATTERNS = ["model_index.json", "scheduler/*", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
                    "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/*",
                    "text_encoder_2/config.json", "text_encoder_2/model.safetensors", "tokenizer_2/*"]
SDXL_PATTERNS = _COMMON_PATTERNS + ["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
SD3_PATTERNS = _COMMON_PATTERNS + ["transformer/config.json", "transformer/diffusion_pytorch_model*.safetensors*",
                                   "text_encoder_3/config.json", "text_encoder_3/model.safetensors",
                                   "text_encoder_3/model-*.safetensors", "text_encoder_3/model.safetensors.index.json",
                                   "tokenizer_3/*"]


# -- where a source is -----------------------------------------------------------------------------


def is_diffusers_folder(path: Path, denoiser: str) -> bool:
    return path.is_dir() and (path / denoiser / "config.json").exists()


def denoiser_state(sd: dict[str, torch.Tensor], anchor: str, what: str, hint: str) -> dict[str, torch.Tensor]:
    """The denoiser's tensors of a single file: under `model.diffusion_model.`, or a bare file."""
    inner = strip_prefix(sd, DENOISER_PREFIX)
    if inner:
        return inner
    if anchor in sd:
        return dict(sd)
    raise ConversionError(f"no {what} in this file (no key {DENOISER_PREFIX}{anchor} or {anchor}): {hint}")


def build(cls, cfg, native: dict[str, torch.Tensor], what: str):
    """Construct on the meta device (no allocation, no random init) and hand the tensors over."""
    from utils.weights import load_into

    with torch.device("meta"):
        model = cls(cfg)
    load_into(model, native, what=what)
    return model.eval()


# -- denoisers -------------------------------------------------------------------------------------


def unet_from_state(sd: dict[str, torch.Tensor], preset: str | None = None,
                    config: UNetConfig | None = None) -> SDXLUNet:
    """The SDXL UNet of a single file's tensors (under `model.diffusion_model.`, or a bare file).

    Release sizes load as their preset; `config` (a UNetConfig, checked against the shapes) is needed
    for sizes no preset has, whose head size, norm groups and micro-conditioning are not in the weights.
    """
    native = denoiser_state(sd, "input_blocks.0.0.weight", "SDXL UNet",
                            "pass an SDXL base or refiner checkpoint (sd_xl_base_1.0.safetensors)")
    if "joint_blocks.0.x_block.attn.qkv.weight" in native:
        raise UserError("this file holds an SD3 transformer, not an SDXL UNet: use --model sd3")
    cfg = infer_unet_config(native, config=config, preset=_known(preset, _unet_presets()),
                            what="the SDXL UNet in this file")
    return build(SDXLUNet, cfg, native, "SDXL UNet checkpoint")


def unet_from_diffusers(folder: Path, dtype: torch.dtype | None, micro_conditioning: str | None = None,
                        config: UNetConfig | None = None) -> SDXLUNet:
    """The UNet of a diffusers `unet/` folder; `config` replaces its config.json (checked against the shapes)."""
    from utils.weights import load_folder_state_dict

    cfg = config or unet_config_from_diffusers(json.loads((folder / "config.json").read_text()), micro_conditioning)
    native = unet_diffusers_to_native(load_folder_state_dict(folder, dtype=dtype), cfg)
    if config is not None:
        infer_unet_config(native, config=config, what=f"the SDXL UNet in {folder}")
    return build(SDXLUNet, cfg, native, "SDXL UNet (diffusers folder)")


def mmdit_from_state(sd: dict[str, torch.Tensor], preset: str | None = None,
                     config: MMDiTConfig | None = None) -> MMDiT:
    """The SD3 transformer of a single file's tensors (under `model.diffusion_model.`, or a bare file).

    Release sizes load as their preset, other sizes when q/k norms fix the head size; else `config`
    (an MMDiTConfig, checked against the shapes) is needed.
    """
    native = denoiser_state(sd, "x_embedder.proj.weight", "SD3 transformer",
                            "pass an SD3 / SD3.5 checkpoint (sd3_medium.safetensors, sd3.5_large.safetensors)")
    if "input_blocks.0.0.weight" in native:
        raise UserError("this file holds an SDXL UNet, not an SD3 transformer: use --model sdxl")
    cfg = infer_mmdit_config(native, config=config, preset=_known(preset, _mmdit_presets()),
                             what="the SD3 transformer in this file")
    return build(MMDiT, cfg, native, "SD3 transformer checkpoint")


def mmdit_from_diffusers(folder: Path, dtype: torch.dtype | None, config: MMDiTConfig | None = None) -> MMDiT:
    """The transformer of a diffusers `transformer/` folder; `config` replaces its config.json (checked)."""
    from utils.weights import load_folder_state_dict

    native = mmdit_diffusers_to_native(load_folder_state_dict(folder, dtype=dtype))
    if config is not None:
        cfg = infer_mmdit_config(native, config=config, what=f"the SD3 transformer in {folder}")
    else:
        cfg = mmdit_config_from_diffusers(json.loads((folder / "config.json").read_text()))
    return build(MMDiT, cfg, native, "SD3 transformer (diffusers folder)")


def _unet_presets():
    from models.image_generation.stable_diffusion.unet import UNET_PRESETS

    return UNET_PRESETS


def _mmdit_presets():
    from models.image_generation.stable_diffusion.mmdit import MMDIT_PRESETS

    return MMDIT_PRESETS


def _known(preset: str | None, presets) -> str | None:
    """The pipeline preset as a denoiser preset to prefer, when it is one."""
    return preset if preset in presets else None


def guess_sdxl_preset(cfg: UNetConfig) -> str:
    return {320: "sdxl-base", 384: "sdxl-refiner"}.get(cfg.model_channels, "tiny")


def guess_sd3_preset(cfg: MMDiTConfig) -> str:
    if cfg.hidden_size == 2432:
        return "sd3.5-large"
    if cfg.hidden_size == 1536:
        return "sd3.5-medium" if cfg.dual_attention_layers else "sd3-medium"
    return "tiny"


# -- VAE -------------------------------------------------------------------------------------------


def vae_from_state(sd: dict[str, torch.Tensor], vae_preset: str, hint: str, config: Any = None):
    """The VAE of a single file's tensors, or None when it has none. `vae_preset` gives the latent
    normalisation; `config` (a VAEConfig, checked against the shapes) is needed for VAE sizes no preset has."""
    from utils.encoders import vae_convert as vc
    from utils.encoders.vae import AutoencoderKL

    try:
        prefix = vc.find_vae_prefix(sd)
    except ConversionError:
        return None
    native = vc.to_native(vc.strip_vae_prefix(sd, prefix))
    cfg = vc.infer_config(native, preset=vae_preset, hint=hint, full_keys=sd, config=config)
    return build(AutoencoderKL, cfg, native, "VAE checkpoint")


# -- text encoders ---------------------------------------------------------------------------------


def clip_from_state(sd: dict[str, torch.Tensor], preset: str, tokenizer: Any, with_projection: bool):
    """A CLIP text encoder of the preset's width found in a single file's tensors (either layout)."""
    from utils.encoders import convert as ec
    from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig

    cfg = CLIPTextEncoderConfig.preset(preset).with_(with_projection=with_projection)
    native, found = ec.clip_to_native(sd, cfg.hidden_size, keep_projection=with_projection)
    if found.layers != cfg.num_layers:
        cfg = cfg.with_(num_layers=found.layers)
    if with_projection and "text_projection.weight" not in native:
        raise ConversionError(f"the {preset} text encoder in this file has no text projection, which the pooled "
                              "embedding needs: the file is incomplete")
    return CLIPTextEncoder(cfg, tokenizer=tokenizer, model=CLIPTextEncoder._build(cfg, native))


def t5_from_state(sd: dict[str, torch.Tensor], preset: str, tokenizer: Any, max_length: int):
    from utils.encoders import convert as ec
    from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder

    native, found = ec.t5_to_native(sd)
    cfg = T5EncoderConfig.preset(preset).with_(max_length=max_length, d_model=found.width)
    if found.layers != cfg.num_layers:
        cfg = cfg.with_(num_layers=found.layers)
    return T5TextEncoder(cfg, tokenizer=tokenizer, model=T5TextEncoder._build(cfg, native))


def has_clip(sd: dict[str, torch.Tensor]) -> bool:
    from utils.encoders import convert as ec

    return bool(ec.find_clip_encoders(sd))


def has_t5(sd: dict[str, torch.Tensor]) -> bool:
    from utils.encoders import convert as ec

    return bool(ec.find_t5_encoders(sd))


def model_index(folder: Path) -> dict:
    p = folder / "model_index.json"
    return json.loads(p.read_text()) if p.exists() else {}


def scheduler_config(folder: Path | None, default: dict) -> dict:
    if folder is not None:
        p = folder / "scheduler" / "scheduler_config.json"
        if p.exists():
            return json.loads(p.read_text())
    return dict(default)


def gated_hint(preset: str) -> str:
    repo = HUB_REPOS.get(preset, "")
    if preset in GATED:
        return (f"{repo} is gated: accept its licence at https://huggingface.co/{repo}, run `hf auth login`, "
                f"then `hf download {repo}`; or pass a local single file or diffusers folder")
    if not repo:  # a preset with no released weights (tiny): nothing to download
        return "pass a local single file or diffusers folder of this model"
    return f"download it with `hf download {repo}`, or pass a local single file or diffusers folder"


@dataclass
class Loaded:
    """What a loader found: the parts plus the facts the pipeline needs about them."""

    denoiser: torch.nn.Module
    vae: Any
    encoders: dict[str, Any] = field(default_factory=dict)
    scheduler_config: dict = field(default_factory=dict)
    index: dict = field(default_factory=dict)
    preset: str = "tiny"


__all__ = ["GATED", "HUB_REPOS", "Loaded", "SD3_PATTERNS", "SD3_SCHEDULER", "SDXL_PATTERNS", "SDXL_SCHEDULER",
           "build", "clip_from_state", "denoiser_state", "gated_hint", "guess_sd3_preset", "guess_sdxl_preset",
           "has_clip", "has_t5", "is_diffusers_folder", "locate", "mmdit_from_diffusers", "mmdit_from_state",
           "model_index", "scheduler_config", "strip_prefix", "t5_from_state", "unet_from_diffusers",
           "unet_from_state", "vae_from_state"]
