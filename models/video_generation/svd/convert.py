"""Every checkpoint layout of SVD -> native components (UNet, temporal VAE, CLIP image encoder).

- Official single files (`svd.safetensors`, `svd_xt.safetensors`, `svd_xt_1_1.safetensors`, from
  generative-models' DiffusionEngine), whose parts sit under

      model.diffusion_model.                           the UNet (its keys are the native ones)
      conditioner.embedders.0.open_clip.model.visual.  the CLIP ViT-H/14 image encoder (OpenCLIP layout)
      conditioner.embedders.3.encoder.                 the conditioning frame's encoder + quant_conv
      first_stage_model.decoder.                       the temporal decoder

  and parts the image-to-video pipeline does not use: the OpenCLIP text tower's leftovers (token and
  position embeddings, ln_final, text_projection, logit_scale: the release deletes only its
  transformer), the conditioner autoencoder's image decoder and post_quant_conv, and the first
  stage's training-time encoder (`UNUSED_PREFIXES`). Any other key is an error that names it.
- diffusers folders (`unet/`, `vae/`, `image_encoder/`, `scheduler/`; `feature_extractor/` is not
  read: the preprocessing is fixed), whose tensors go through `convert_unet`,
  `utils.encoders.temporal_vae_convert` and `utils.encoders.clip_vision_convert`;
- a hub id: the preset's single file is fetched.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from models.video_generation.svd.config import SVDUNetConfig
from models.video_generation.svd.convert_unet import infer_unet_config, unet_config_from_diffusers, unet_diffusers_to_native
from models.video_generation.svd.model import SVDUNet
from models.video_generation.svd.spec import SPEC
from utils.errors import ConversionError, UserError
from utils.weights.keys import key_report, strip_prefix

StateDict = dict[str, torch.Tensor]

UNET_PREFIX = "model.diffusion_model."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model."
UNUSED_PREFIXES = ("first_stage_model.encoder.", "conditioner.embedders.3.encoder.decoder.",
                   "conditioner.embedders.3.encoder.post_quant_conv.")
UNUSED_CLIP_KEYS = ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias",
                    "text_projection", "logit_scale")
"""The OpenCLIP text tower's parts that the release keeps (it deletes only `transformer`)."""

SVD_SCHEDULER: dict[str, Any] = {
    # The EDM sampler of the release (EDMDiscretization sigma_min 0.002, sigma_max 700, rho 7; VScalingWithEDMcNoise)
    # as diffusers' EulerDiscreteScheduler config of the SVD repos expresses it.
    "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "prediction_type": "v_prediction", "timestep_spacing": "leading",
    "steps_offset": 1, "interpolation_type": "linear", "use_karras_sigmas": True, "sigma_min": 0.002,
    "sigma_max": 700.0, "timestep_type": "continuous", "final_sigmas_type": "zero",
}
HUB_REPOS = {w.preset: w.source for w in SPEC.weights}
FILES = {w.preset: w.file for w in SPEC.weights}
DIFFUSERS_PATTERNS = ["model_index.json", "scheduler/*", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                      "vae/config.json", "vae/diffusion_pytorch_model.safetensors", "image_encoder/config.json",
                      "image_encoder/model.safetensors"]


@dataclass
class OfficialParts:
    """The native tensors of each part of an official single file, and what was left unused."""

    unet: StateDict
    vae: StateDict
    image_encoder: StateDict = field(default_factory=dict)
    unused: list[str] = field(default_factory=list)


def is_official(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(UNET_PREFIX) for k in sd)


def split_official(sd: Mapping[str, torch.Tensor]) -> OfficialParts:
    """The parts of an official SVD file (see the module docstring); unknown keys are a ConversionError."""
    from utils.encoders import temporal_vae_convert as tvc

    unet = strip_prefix(sd, UNET_PREFIX)
    if "input_blocks.0.0.weight" not in unet:
        raise ConversionError(f"no SVD UNet in this file (no {UNET_PREFIX}input_blocks.0.0.weight): pass an official "
                              "SVD checkpoint (svd.safetensors, svd_xt.safetensors) or a diffusers folder")
    vae = tvc.official_to_native(sd)
    clip = {k: v for k, v in sd.items() if k.startswith(CLIP_PREFIX + "visual.")}
    used = {UNET_PREFIX + k for k in unet} | set(tvc.native_to_official(vae)) | set(clip)
    unused = [k for k in sd if k.startswith(UNUSED_PREFIXES)
              or (k.startswith(CLIP_PREFIX) and k[len(CLIP_PREFIX):] in UNUSED_CLIP_KEYS)]
    unknown = [k for k in sd if k not in used and k not in set(unused)]
    if unknown:
        raise ConversionError(f"this SVD file has keys no part of SVD uses ({key_report([], unknown)}): it is not an "
                              "SVD release, or a variant this loader does not know")
    return OfficialParts(unet, vae, clip, sorted(unused))


def build(cls, cfg, native: StateDict, what: str):
    """Construct on the meta device (no allocation, no random init) and hand the tensors over."""
    from utils.weights import load_into

    with torch.device("meta"):
        model = cls(cfg)
    load_into(model, native, what=what)
    return model.eval()


def unet_from_state(native: StateDict, preset: str | None = None, config: SVDUNetConfig | None = None) -> SVDUNet:
    """The UNet of native tensors; release sizes load as their preset, others need `config`."""
    cfg = infer_unet_config(native, config=config, preset="svd" if preset not in (None, "tiny") else preset,
                            what="the SVD UNet in this file")
    return build(SVDUNet, cfg, native, "SVD UNet checkpoint")


def unet_from_diffusers(folder: Path, dtype: torch.dtype | None) -> SVDUNet:
    from utils.weights import load_folder_state_dict

    cfg = unet_config_from_diffusers(json.loads((folder / "config.json").read_text()))
    native = unet_diffusers_to_native(load_folder_state_dict(folder, dtype=dtype), cfg)
    return build(SVDUNet, cfg, native, "SVD UNet (diffusers folder)")


def scheduler_config(folder: Path | None) -> dict:
    if folder is not None and (folder / "scheduler" / "scheduler_config.json").exists():
        return json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    return dict(SVD_SCHEDULER)


def is_diffusers_folder(path: Path) -> bool:
    return path.is_dir() and (path / "unet" / "config.json").exists()


def gated_hint(preset: str | None) -> str:
    repo = HUB_REPOS.get(preset or SPEC.default_preset, "")
    file = FILES.get(preset or SPEC.default_preset, "")
    if any(w.gated for w in SPEC.weights if w.preset == preset):
        return (f"{repo} is gated: accept its licence at https://huggingface.co/{repo}, run `hf auth login`, then "
                f"`hf download {repo} {file}`; or pass a local single file or diffusers folder")
    if not repo:  # a preset with no released weights (tiny): nothing to download
        return "pass a local single file or diffusers folder of this model"
    return f"download it with `hf download {repo} {file}`, or pass a local single file or diffusers folder"


def preset_of(cfg: SVDUNetConfig, preset: str | None) -> str:
    """The preset name a loaded UNet answers to: the asked one, else 'tiny' or the default release."""
    if preset is not None:
        return preset
    return "tiny" if cfg == SVDUNetConfig.preset("tiny") else SPEC.default_preset


def check_preset_fits(preset: str | None, cfg: SVDUNetConfig) -> None:
    if preset is None:
        return
    want = SVDUNetConfig.preset("tiny" if preset == "tiny" else "svd")
    if (cfg.model_channels, cfg.channel_mult) != (want.model_channels, want.channel_mult):
        raise UserError(f"these weights are not the {preset} preset's size (model_channels {cfg.model_channels}, "
                        f"channel_mult {cfg.channel_mult}): leave --preset out, or pass the matching one")


def export_official(path: str | Path, unet: SVDUNet, vae: Any, image_encoder: Any) -> Path:
    """Write the three components as an official SVD single file (the layout `split_official` reads,
    what other tools load), atomically, as safetensors."""
    from safetensors.torch import save_file

    from utils.encoders import temporal_vae_convert as tvc
    from utils.encoders.clip_vision_convert import hf_visual_to_open_clip
    from utils.io import atomic_path

    sd = {UNET_PREFIX + k: v for k, v in unet.state_dict().items()}
    sd.update(tvc.native_to_official(vae.state_dict()))
    sd.update(hf_visual_to_open_clip(image_encoder.model.state_dict(), CLIP_PREFIX))
    sd = {k: v.detach().cpu().contiguous() for k, v in sd.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt", "model": "svd"})
    return path


__all__ = ["CLIP_PREFIX", "DIFFUSERS_PATTERNS", "FILES", "HUB_REPOS", "OfficialParts", "SVD_SCHEDULER", "UNET_PREFIX",
           "UNUSED_CLIP_KEYS", "UNUSED_PREFIXES", "build", "check_preset_fits", "export_official", "gated_hint",
           "is_diffusers_folder", "is_official", "preset_of", "scheduler_config", "split_official", "unet_from_diffusers",
           "unet_from_state"]
