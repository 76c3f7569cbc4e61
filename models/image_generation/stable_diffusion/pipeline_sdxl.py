"""SDXL pipeline: text-to-image, img2img, inpainting, and the base + refiner ensemble of experts.

The ensemble (Podell et al. 2023, sec. 2.5): the base model denoises the high-noise part of the
schedule (`denoising_end`, e.g. 0.8) and hands its still-noisy latents to the refiner, which was
trained on the low-noise end and finishes the same schedule from `denoising_start` = 0.8. With a
refiner attached (`from_pretrained(..., refiner=...)` or `.refiner = ...`) a plain call does this.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.controlnet_pipeline import ControlNetSupport
from models.image_generation.stable_diffusion.conditioning import sdxl_time_ids, sdxl_vector
from models.image_generation.stable_diffusion.spec import SDXL
from models.image_generation.stable_diffusion.text import encode_sdxl
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.data.image_inputs import load_image, load_mask
from utils.diffusion import (DiffusionPipeline, InpaintBlend, StopAfter, cfg_model, cutoff_steps, get_scheduler,
                             img2img_latents, img2img_start, sample, scheduler_from_diffusers_config, start_index)
from utils.diffusion.inputs import as_prompts, output_size
from utils.diffusion.noise import initial_noise
from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import Generators, randn

PRESETS = SDXL.presets


class SDXLPipeline(ControlNetSupport, DiffusionPipeline):
    """SDXL base or refiner: a UNet, the 4-channel VAE, CLIP-L + bigG (refiner: bigG) and a scheduler."""

    spec = SDXL
    components = ("text_encoders", "controlnet", "unet", "vae")
    denoiser_name = "unet"
    cuda_dtype = torch.float16

    def __init__(self, unet: SDXLUNet, vae: Any, text_encoders: Sequence[Any], scheduler_config: dict | None = None,
                 force_zeros_for_empty_prompt: bool = True, preset: str = "tiny", refiner: "SDXLPipeline | None" = None):
        self.unet, self.vae, self.text_encoders = unet, vae, list(text_encoders)
        self.scheduler_config = dict(scheduler_config or cv.SDXL_SCHEDULER)
        self.force_zeros_for_empty_prompt = force_zeros_for_empty_prompt
        self.preset = preset
        self.refiner = refiner

    # -- facts ----------------------------------------------------------------------------------

    @property
    def config(self) -> UNetConfig:
        return self.unet.config

    @property
    def is_refiner(self) -> bool:
        return self.config.micro_conditioning == "refiner"

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.downscale

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 8 * self.pixel_multiple

    def sub_pipelines(self) -> list[DiffusionPipeline]:
        return [self.refiner] if self.refiner is not None else []

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        refiner: "str | os.PathLike | SDXLPipeline | None" = None, vae: str | os.PathLike | None = None,
                        tokenizers: Sequence[Any] | None = None, offload: str | None = None, vae_tiling: bool = False,
                        compile: bool = False, attention: str | None = None,
                        controlnet: Any = None) -> "SDXLPipeline":
        """Load SDXL base or refiner from an official single file, a diffusers folder or a hub id.

        No source: `preset='tiny'` builds random weights (offline, seconds); an official preset fetches
        its hub repo. `refiner`: a second source (or pipeline) used for the ensemble hand-off. `vae`: a
        replacement VAE (e.g. madebyollin/sdxl-vae-fp16-fix, which decodes in fp16 without upcasting).
        `tokenizers`: folders, hub ids ('repo:subfolder') or tokenizer objects for single files.
        `offload`: None, "model" or "sequential" (accelerate; the refiner too); `vae_tiling`, `compile`
        (the UNet) and `attention` (a backend name) as for every diffusion pipeline. `dtype`: default
        fp16 on CUDA, fp32 on CPU.
        """
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            src = source if source is not None else cv.HUB_REPOS[place.preset]
            pipe = cls._load(src, place.preset, place.dtype, tokenizers)
        if vae is not None:
            from utils.encoders.vae import AutoencoderKL

            pipe.vae = AutoencoderKL.from_pretrained(vae, preset="sdxl", dtype=place.dtype)
        if refiner is not None:
            pipe.refiner = refiner if isinstance(refiner, SDXLPipeline) else cls.from_pretrained(
                refiner, preset="sdxl-refiner" if place.preset != "tiny" else "tiny", device="cpu",
                dtype=place.dtype)
        if controlnet is not None:  # before configure, so that offload places it too
            pipe.load_controlnet(controlnet)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls) -> "SDXLPipeline":
        """Random tiny components (UNet, CLIP-L, bigG, VAE) with tokenizers built in code: runs offline."""
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.vae import AutoencoderKL

        from utils.torch_utils import local_seed

        with local_seed(0):  # a generator of its own, never the global RNG
            l_cfg, g_cfg = CLIPTextEncoderConfig.preset("tiny"), CLIPTextEncoderConfig.preset("tiny-bigg")
            encoders = [CLIPTextEncoder(l_cfg, tokenizer=tiny_clip_tokenizer(l_cfg)),
                        CLIPTextEncoder(g_cfg, tokenizer=tiny_clip_tokenizer(g_cfg))]
            unet = SDXLUNet(UNetConfig.preset("tiny")).eval()
            return cls(unet, AutoencoderKL("tiny").eval(), encoders, preset="tiny")

    @classmethod
    def _load(cls, source: Any, preset: str | None, dt: torch.dtype, tokenizers: Sequence[Any] | None) -> "SDXLPipeline":
        what = f"SDXL weights '{source}'"
        try:
            path = cv.locate(source, cv.SDXL_PATTERNS, what)
        except UserError as err:
            raise type(err)(f"{err} ({cv.gated_hint(preset or 'sdxl-base')})") from None
        if path.is_dir():
            if not cv.is_diffusers_folder(path, "unet"):
                raise UserError(f"{path} is not an SDXL diffusers folder (no unet/config.json): pass the folder of "
                                "the whole pipeline, or an official single file (sd_xl_base_1.0.safetensors)")
            return cls._from_diffusers(path, dt)
        return cls._from_single_file(path, preset, dt, tokenizers)

    @classmethod
    def _from_diffusers(cls, folder, dt: torch.dtype) -> "SDXLPipeline":
        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.vae import AutoencoderKL

        index = cv.model_index(folder)
        # model_index.json says whether the UNet embeds an aesthetic score (the refiner) or a target size.
        micro = {True: "refiner", False: "base"}.get(index.get("requires_aesthetics_score"))
        unet = cv.unet_from_diffusers(folder / "unet", dt, micro)
        encoders = []
        for sub in ("text_encoder", "text_encoder_2"):
            if (folder / sub / "config.json").exists():
                encoders.append(CLIPTextEncoder.from_pretrained(folder, subfolder=sub, device="cpu", dtype=dt))
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)  # its config.json scales
        force_zeros = bool(index.get("force_zeros_for_empty_prompt", not unet.config.micro_conditioning == "refiner"))
        return cls(unet, vae, encoders, cv.scheduler_config(folder, cv.SDXL_SCHEDULER), force_zeros,
                   preset=cv.guess_sdxl_preset(unet.config))

    @classmethod
    def _from_single_file(cls, path, preset: str | None, dt: torch.dtype,
                          tokenizers: Sequence[Any] | None) -> "SDXLPipeline":
        from utils.encoders.clip import CLIPTextEncoderConfig, load_clip_tokenizer
        from utils.weights import load_state_dict

        sd = load_state_dict(path, dtype=dt)
        unet = cv.unet_from_state(sd, preset)
        found = cv.guess_sdxl_preset(unet.config)
        preset = preset or found
        tiny = found == "tiny"
        refiner = unet.config.micro_conditioning == "refiner"
        names = (["tiny-bigg"] if refiner else ["tiny", "tiny-bigg"]) if tiny else (["bigg"] if refiner else
                                                                                     ["clip-l", "bigg"])
        repo = cv.HUB_REPOS["sdxl-refiner" if refiner else "sdxl-base"]
        default_toks = ([f"{repo}:tokenizer_2"] if refiner else [f"{repo}:tokenizer", f"{repo}:tokenizer_2"])
        toks = list(tokenizers) if tokenizers is not None else [None] * len(names)
        if len(toks) != len(names):
            raise UserError(f"this checkpoint has {len(names)} text encoder(s): pass {len(names)} tokenizers")
        encoders = []
        for name, tok, default in zip(names, toks, default_toks):
            cfg = CLIPTextEncoderConfig.preset(name)
            if tok is None:
                tok = tiny_clip_tokenizer(cfg) if tiny else default
            if isinstance(tok, (str, os.PathLike)):
                tok = load_clip_tokenizer(tok)
            encoders.append(cv.clip_from_state(sd, name, tok, with_projection=name in ("bigg", "tiny-bigg")))
        vae = cv.vae_from_state(sd, "tiny" if tiny else "sdxl", str(path))
        if vae is None:
            raise UserError(f"{path.name} has no VAE (first_stage_model.*): pass an official SDXL checkpoint, "
                            "or a diffusers folder")
        return cls(unet, vae, encoders, dict(cv.SDXL_SCHEDULER), force_zeros_for_empty_prompt=not refiner,
                   preset=preset)

    def lora_components(self) -> list:
        """The models LoRA files adapt and how their names map (lora.py)."""
        from models.image_generation.stable_diffusion.lora import sdxl_components

        return sdxl_components(self)

    # -- generation -----------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str], negative: str | Sequence[str] | None,
                      guided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        context, pooled = encode_sdxl(self.text_encoders, prompts)
        if not guided:
            return context, pooled, None, None
        if negative is None and self.force_zeros_for_empty_prompt:
            return context, pooled, torch.zeros_like(context), torch.zeros_like(pooled)
        neg_context, neg_pooled = encode_sdxl(self.text_encoders, as_prompts(negative or "", len(prompts)))
        return context, pooled, neg_context, neg_pooled

    def _scheduler(self, name: str | None):
        if name is None:
            return scheduler_from_diffusers_config(self.scheduler_config)
        if name.lower().startswith(("flow", "edm")):
            raise UserError(f"scheduler '{name}' does not fit SDXL (a DDPM-trained epsilon model): use euler, "
                            "euler-a, dpm++2m-karras, ddim, heun...")
        return get_scheduler(name, self.scheduler_config)

    def _conditioning(self, prompts: list[str], negative_prompt: Any, guided: bool, size: tuple[int, int],
                      original_size: Any, crop_top_left: tuple[int, int], target_size: Any, aesthetic_score: float,
                      negative_aesthetic_score: float) -> tuple[dict, dict]:
        """The UNet inputs (context, y = pooled + micro-conditioning) of the conditional and unconditional branches."""
        device, dtype, batch = self.device, self.dtype, len(prompts)
        context, pooled, neg_context, neg_pooled = self.encode_prompt(prompts, negative_prompt, guided)
        orig = tuple(original_size or size)
        if self.is_refiner:
            ids = sdxl_time_ids(orig, crop_top_left, aesthetic_score=aesthetic_score, batch=batch)
            neg_ids = sdxl_time_ids(orig, crop_top_left, aesthetic_score=negative_aesthetic_score, batch=batch)
        else:
            ids = neg_ids = sdxl_time_ids(orig, crop_top_left, tuple(target_size or size), batch=batch)
        atd = self.config.addition_time_embed_dim
        cond = {"context": context.to(device, dtype), "y": sdxl_vector(pooled, ids.to(pooled.device), atd).to(device, dtype)}
        uncond = cond
        if guided:
            uncond = {"context": neg_context.to(device, dtype),
                      "y": sdxl_vector(neg_pooled, neg_ids.to(neg_pooled.device), atd).to(device, dtype)}
        return cond, uncond

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: Any = None, mask: Any = None,
                 strength: float | None = None, seed: int | Sequence[int] | None = None, control: str | None = None,
                 control_image: Any = None, control_scale: float = 1.0,
                 denoising_end: float | None = None, denoising_start: float | None = None,
                 refiner_switch: float | None = 0.8, latents: torch.Tensor | None = None,
                 original_size: tuple[int, int] | None = None, crop_top_left: tuple[int, int] = (0, 0),
                 target_size: tuple[int, int] | None = None, aesthetic_score: float = 6.0,
                 negative_aesthetic_score: float = 2.5, guidance_rescale: float = 0.0, output_type: str = "pil",
                 generator: Generators = None, callback: Any = None, interrupt: Any = None,
                 progress: bool = True) -> ImageOutput:
        """Generate. With `image`: img2img (`strength`), with `mask` too: inpainting (white = repaint).
        `image` may also be latents (B, 4, h, w) from a base run with `denoising_end` (then pass
        `denoising_start`). `seed`: image i uses seed + i (or give one seed per image); `generator`
        (one for the whole batch, or one per image) replaces it. `output_type='latent'` skips decoding
        (the output's `latents`). `control` ('canny', 'depth', 'pose') with `control_image`: steered by a
        ControlNet at `control_scale` (controlnet_pipeline.py); the refiner, if any, runs without it."""
        if mask is not None and image is None:
            raise UserError("inpainting needs --image as well as --mask")
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        refine = (self.refiner is not None and denoising_end is None and denoising_start is None and mask is None
                  and refiner_switch is not None and output_type == "pil")
        if refine:
            if not 0.0 < refiner_switch < 1.0:
                raise UserError(f"refiner_switch must be between 0 and 1, got {refiner_switch}")
            denoising_end = refiner_switch
        for name, frac in (("denoising_end", denoising_end), ("denoising_start", denoising_start)):
            if frac is not None and not 0.0 < frac < 1.0:
                raise UserError(f"{name} must be between 0 and 1, got {frac}")

        prompts = as_prompts(prompt, num_images)
        batch = len(prompts)
        down = self.vae.config.downscale
        latent_input = isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == self.config.in_channels
        if latent_input:
            height, width = height or image.shape[-2] * down, width or image.shape[-1] * down
        height, width = output_size(height, width, None if latent_input else image, self.pixel_multiple,
                                    self.default_size, "SDXL")
        steps = int(self.default("steps", steps))
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        guidance = float(self.default("guidance", guidance))
        gens = self.generators(seed, batch, generator)
        num_train = self.scheduler_config.get("num_train_timesteps", 1000)

        with self.session():
            device, dtype = self.device, self.dtype
            guided = guidance > 1.0
            cond, uncond = self._conditioning(prompts, negative_prompt, guided, (height, width), original_size,
                                              crop_top_left, target_size, aesthetic_score, negative_aesthetic_score)
            unet = self.controlled(self.unet, control, control_image, control_scale, (height, width))
            denoiser = cfg_model(unet, cond=cond, uncond=uncond, scale=guidance, rescale=guidance_rescale)

            sched = self._scheduler(scheduler)
            schedule = sched.schedule(steps)
            shape = (batch, self.config.in_channels, height // down, width // down)
            start, blend = 0, None
            if image is None:
                if latents is not None:
                    x = (latents.to(device, torch.float32) * schedule.init_noise_sigma).to(dtype)
                else:
                    x = initial_noise(shape, gens, device, init_sigma=schedule.init_noise_sigma).to(dtype)
            else:
                x0 = (image.to(device, dtype) if latent_input else
                      self.encode_latents(load_image(image, (height, width)), gens).to(device, dtype))
                x0 = x0.expand(batch, -1, -1, -1) if x0.shape[0] == 1 else x0
                noise = randn(x0.shape, gens, device, dtype)
                if denoising_start is not None:
                    start = start_index(schedule.timesteps, denoising_start, sched.order, num_train)
                    x = x0  # already noisy: the base run stopped at this level
                else:
                    strength = (1.0 if mask is not None else 0.3) if strength is None else strength
                    start = img2img_start(steps, strength, sched.order)
                    if start >= len(schedule.timesteps):
                        raise UserError(f"strength {strength} with {steps} steps leaves no step to run: raise either")
                    if mask is not None and start == 0:
                        x = (noise.float() * schedule.init_noise_sigma).to(dtype)
                    else:
                        x = img2img_latents(sched, schedule, x0, noise, start)
                if mask is not None:
                    blend = InpaintBlend(x0, load_mask(mask, tuple(shape[-2:])).to(device, dtype), noise)

            stop_after = None
            if denoising_end is not None:
                stop_after = cutoff_steps(schedule.timesteps, denoising_end, num_train) - start
            stop = StopAfter(stop_after, interrupt)

            def on_step(info):
                stop.count(info)
                return callback(info) if callback is not None else None

            result = sample(denoiser, sched, schedule, x, generator=gens, start=start, callback=on_step,
                            interrupt=stop, progress=progress, inpaint=blend)
            pixels = self.decode_latents(result) if output_type == "pil" and not refine else None
        if refine:
            return self.refiner(prompt=prompts, negative_prompt=negative_prompt, height=height, width=width,
                                steps=steps, guidance=guidance, scheduler=scheduler, image=result,
                                denoising_start=denoising_end, generator=gens, aesthetic_score=aesthetic_score,
                                negative_aesthetic_score=negative_aesthetic_score, original_size=original_size,
                                crop_top_left=crop_top_left, guidance_rescale=guidance_rescale, callback=callback,
                                interrupt=interrupt, progress=progress)
        return self.output(pixels, result)


__all__ = ["PRESETS", "SDXLPipeline"]
