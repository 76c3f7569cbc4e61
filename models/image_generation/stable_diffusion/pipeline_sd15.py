"""SD 1.5 / 2.1 pipeline: text-to-image (and img2img) on the SD 1.x / 2.x presets of the shared UNet.

SD 1.x conditions on the last hidden states of CLIP ViT-L/14 (final layer norm applied) and predicts
the noise (epsilon); SD 2.x on the penultimate layer of OpenCLIP ViT-H/14 (final layer norm applied:
the 24-layer tower is cut to 23 layers, as diffusers stores it) and, at 768 px, predicts v. There is
no pooled embedding and no micro-conditioning; an absent negative prompt is the empty prompt's states.

Sources: a CompVis / runwayml single file (`v1-5-pruned-emaonly.safetensors`: UNet under
`model.diffusion_model.`, VAE under `first_stage_model.`, CLIP-L under `cond_stage_model.transformer.`;
`v2-1_768-ema-pruned.safetensors`: OpenCLIP-H under `cond_stage_model.model.`), a diffusers folder, a
hub id, or `preset='tiny'` (random tiny components, offline).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.controlnet_pipeline import ControlNetSupport
from models.image_generation.stable_diffusion.spec import SD15
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.data.image_inputs import load_image
from utils.diffusion import (DiffusionPipeline, cfg_model, get_scheduler, img2img_latents, img2img_start, sample,
                             scheduler_from_diffusers_config)
from utils.diffusion.inputs import as_prompts, output_size
from utils.diffusion.noise import initial_noise
from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import Generators, randn

PRESETS = SD15.presets

_SCHEDULER = {"_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
              "beta_end": 0.012, "beta_schedule": "scaled_linear", "timestep_spacing": "leading", "steps_offset": 1,
              "interpolation_type": "linear", "use_karras_sigmas": False}
SD15_SCHEDULER: dict[str, Any] = dict(_SCHEDULER, prediction_type="epsilon")
SD21_SCHEDULER: dict[str, Any] = dict(_SCHEDULER, prediction_type="v_prediction")  # the 768 px model

SD15_PATTERNS = [p for p in cv.SDXL_PATTERNS if "_2" not in p]


def _clip_h():
    """OpenCLIP ViT-H/14's text tower as SD 2.x uses it: 23 of its 24 layers, no projection."""
    from utils.encoders.clip import CLIPTextEncoderConfig

    return CLIPTextEncoderConfig.preset("bigg").with_(hidden_size=1024, intermediate_size=4096, num_layers=23,
                                                      num_heads=16, projection_dim=1024, with_projection=False,
                                                      tokenizer_source="stabilityai/stable-diffusion-2-1:tokenizer")


class SD15Pipeline(ControlNetSupport, DiffusionPipeline):
    """SD 1.5 or 2.1: a UNet, the 4-channel VAE, one CLIP text encoder and a scheduler."""

    spec = SD15
    components = ("text_encoder", "controlnet", "unet", "vae")
    denoiser_name = "unet"
    cuda_dtype = torch.float16

    def __init__(self, unet: SDXLUNet, vae: Any, text_encoder: Any, scheduler_config: dict | None = None,
                 preset: str = "tiny"):
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.scheduler_config = dict(scheduler_config or SD15_SCHEDULER)
        self.preset = preset

    @property
    def config(self) -> UNetConfig:
        return self.unet.config

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.downscale

    @property
    def default_size(self) -> int:
        return {"sd15": 512, "sd21": 768}.get(self.preset, 8 * self.pixel_multiple)

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        tokenizer: Any = None, offload: str | None = None, vae_tiling: bool = False,
                        compile: bool = False, attention: str | None = None,
                        controlnet: Any = None) -> "SD15Pipeline":
        """Load SD 1.5 / 2.1 from an official single file, a diffusers folder or a hub id; no source and
        `preset='tiny'`: random tiny components. `tokenizer`: a folder, hub id ('repo:subfolder') or
        tokenizer object for single files (default: the preset's hub tokenizer)."""
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            src = source if source is not None else cv.HUB_REPOS[place.preset]
            path = cv.locate(src, SD15_PATTERNS, f"SD 1.5 / 2.1 weights '{src}'")
            if path.is_dir():
                if not cv.is_diffusers_folder(path, "unet"):
                    raise UserError(f"{path} is not an SD diffusers folder (no unet/config.json): pass the folder of "
                                    "the whole pipeline, or an official single file (v1-5-pruned-emaonly.safetensors)")
                pipe = cls._from_diffusers(path, place.dtype)
            else:
                pipe = cls._from_single_file(path, place.preset, place.dtype, tokenizer)
        if controlnet is not None:  # before configure, so that offload places it too
            pipe.load_controlnet(controlnet)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls) -> "SD15Pipeline":
        """Random tiny components (SD 1.5-shaped UNet, tiny CLIP, tiny VAE), tokenizer built in code."""
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.vae import AutoencoderKL
        from utils.torch_utils import local_seed

        with local_seed(0):
            cfg = CLIPTextEncoderConfig.preset("tiny")
            encoder = CLIPTextEncoder(cfg, tokenizer=tiny_clip_tokenizer(cfg))
            return cls(SDXLUNet(UNetConfig.preset("tiny-sd15")).eval(), AutoencoderKL("tiny").eval(), encoder,
                       preset="tiny")

    @classmethod
    def _from_diffusers(cls, folder, dt: torch.dtype) -> "SD15Pipeline":
        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.vae import AutoencoderKL

        unet = cv.unet_from_diffusers(folder / "unet", dt)
        if unet.config.adm_in_channels:
            raise UserError(f"{folder} holds an SDXL UNet: use --model sdxl")
        encoder = CLIPTextEncoder.from_pretrained(folder, subfolder="text_encoder", device="cpu", dtype=dt)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)
        return cls(unet, vae, encoder, cv.scheduler_config(folder, SD15_SCHEDULER), preset=_guess(unet.config))

    @classmethod
    def _from_single_file(cls, path, preset: str | None, dt: torch.dtype, tokenizer: Any) -> "SD15Pipeline":
        from utils.encoders.clip import load_clip_tokenizer
        from utils.weights import load_state_dict

        sd = load_state_dict(path, dtype=dt)
        native = cv.denoiser_state(sd, "input_blocks.0.0.weight", "SD UNet",
                                   "pass an SD 1.5 / 2.1 checkpoint (v1-5-pruned-emaonly.safetensors)")
        if "label_emb.0.0.weight" in native:
            raise UserError(f"{path.name} holds an SDXL UNet: use --model sdxl")
        unet = cv.unet_from_state(sd, preset if preset in ("sd15", "sd21") else None)
        found = _guess(unet.config)
        tiny = found == "tiny"
        if tokenizer is None:
            tokenizer = None if tiny else (cv.HUB_REPOS["sd21"] + ":tokenizer" if found == "sd21"
                                           else "openai/clip-vit-large-patch14")
        if isinstance(tokenizer, (str, os.PathLike)):
            tokenizer = load_clip_tokenizer(tokenizer)
        encoder = text_encoder_from_state(sd, unet.config.context_dim, tokenizer)
        vae = cv.vae_from_state(sd, "tiny" if tiny else "sd", str(path))
        if vae is None:
            raise UserError(f"{path.name} has no VAE (first_stage_model.*): pass an official SD checkpoint, "
                            "or a diffusers folder")
        v = found == "sd21" or (tiny and unet.config.linear_projection)
        return cls(unet, vae, encoder, dict(SD21_SCHEDULER if v else SD15_SCHEDULER), preset=preset or found)

    def lora_components(self) -> list:
        """The models LoRA files adapt and how their names map (lora.py)."""
        from models.image_generation.stable_diffusion.lora import sd15_components

        return sd15_components(self)

    # -- generation -----------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        return self.text_encoder.encode(prompts).last_hidden_state

    def _scheduler(self, name: str | None):
        if name is None:
            return scheduler_from_diffusers_config(self.scheduler_config)
        if name.lower().startswith(("flow", "edm")):
            raise UserError(f"scheduler '{name}' does not fit SD 1.5 / 2.1 (DDPM-trained): use euler, euler-a, "
                            "dpm++2m-karras, ddim, heun...")
        return get_scheduler(name, self.scheduler_config)

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: Any = None,
                 strength: float | None = None, seed: int | Sequence[int] | None = None, mask: Any = None,
                 control: str | None = None, control_image: Any = None, control_scale: float = 1.0,
                 latents: torch.Tensor | None = None, guidance_rescale: float = 0.0,
                 output_type: str = "pil", generator: Generators = None, callback: Any = None, interrupt: Any = None,
                 progress: bool = True) -> ImageOutput:
        """Text-to-image; with `image`: img2img at `strength`. `seed`: image i uses seed + i. `control`
        ('canny', 'depth', 'pose') with `control_image`: steered by a ControlNet (controlnet_pipeline.py)."""
        if mask is not None:
            raise UserError("SD 1.5 inpainting is not built yet: drop --mask (or use --model sdxl)")
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        prompts = as_prompts(prompt, num_images)
        batch = len(prompts)
        down = self.vae.config.downscale
        height, width = output_size(height, width, image, self.pixel_multiple, self.default_size, "SD 1.5")
        steps = int(self.default("steps", steps))
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        guidance = float(self.default("guidance", guidance))
        gens = self.generators(seed, batch, generator)
        with self.session():
            device, dtype = self.device, self.dtype
            cond = {"context": self.encode_prompt(prompts).to(device, dtype)}
            uncond = cond
            if guidance > 1.0:
                uncond = {"context": self.encode_prompt(as_prompts(negative_prompt or "", batch)).to(device, dtype)}
            unet = self.controlled(self.unet, control, control_image, control_scale, (height, width))
            denoiser = cfg_model(unet, cond=cond, uncond=uncond, scale=guidance, rescale=guidance_rescale)
            sched = self._scheduler(scheduler)
            schedule = sched.schedule(steps)
            shape = (batch, self.config.in_channels, height // down, width // down)
            start = 0
            if image is None:
                if latents is not None:
                    x = (latents.to(device, torch.float32) * schedule.init_noise_sigma).to(dtype)
                else:
                    x = initial_noise(shape, gens, device, init_sigma=schedule.init_noise_sigma).to(dtype)
            else:
                x0 = self.encode_latents(load_image(image, (height, width)), gens).to(device, dtype)
                x0 = x0.expand(batch, -1, -1, -1) if x0.shape[0] == 1 else x0
                strength = 0.3 if strength is None else strength
                start = img2img_start(steps, strength, sched.order)
                if start >= len(schedule.timesteps):
                    raise UserError(f"strength {strength} with {steps} steps leaves no step to run: raise either")
                x = img2img_latents(sched, schedule, x0, randn(x0.shape, gens, device, dtype), start)
            result = sample(denoiser, sched, schedule, x, generator=gens, start=start, callback=callback,
                            interrupt=interrupt, progress=progress)
            pixels = self.decode_latents(result) if output_type == "pil" else None
        return self.output(pixels, result)


def _guess(cfg: UNetConfig) -> str:
    if cfg.model_channels == 320:
        return "sd21" if cfg.context_dim == 1024 else "sd15"
    return "tiny"


def text_encoder_from_state(sd: dict[str, torch.Tensor], width: int, tokenizer: Any):
    """The CLIP text encoder of a single file: CLIP-L (transformers layout, `cond_stage_model.transformer.`)
    for SD 1.x, OpenCLIP-H (`cond_stage_model.model.`, its last layer dropped) for SD 2.x, or a tiny one."""
    from utils.encoders import convert as ec
    from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig

    native, found = ec.clip_to_native(sd, width, keep_projection=False)
    if width == 1024:
        cfg = _clip_h()
    elif width == 768:
        cfg = CLIPTextEncoderConfig.preset("clip-l")
    else:
        cfg = CLIPTextEncoderConfig.preset("tiny")
        if tokenizer is None:
            tokenizer = tiny_clip_tokenizer(cfg)
    layers = found.layers
    if found.layout == "open_clip":  # SD 2.x takes the penultimate layer, then the final layer norm
        layers -= 1
        native = {k: v for k, v in native.items() if f"encoder.layers.{layers}." not in k}
        cfg = cfg.with_(hidden_act="gelu")
    cfg = cfg.with_(num_layers=layers)
    return CLIPTextEncoder(cfg, tokenizer=tokenizer, model=CLIPTextEncoder._build(cfg, native))


__all__ = ["PRESETS", "SD15Pipeline", "SD15_SCHEDULER", "SD21_SCHEDULER", "text_encoder_from_state"]
