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

from utils.diffusion import pipeline_utils as common
from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.conditioning import sdxl_time_ids, sdxl_vector
from models.image_generation.stable_diffusion.text import encode_sdxl
from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer
from models.image_generation.stable_diffusion.spec import SDXL
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.outputs import ImageOutput
from utils.diffusion import (InpaintBlend, cfg_model, get_scheduler, img2img_latents, img2img_start, randn, sample,
                             scheduler_from_diffusers_config)
from utils.errors import UserError
from utils.torch_utils import make_generator, resolve_device, resolve_dtype

PRESETS = SDXL.presets


class SDXLPipeline:
    """SDXL base or refiner: a UNet, the 4-channel VAE, CLIP-L + bigG (refiner: bigG) and a scheduler."""

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
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.downscale

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 8 * self.pixel_multiple

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "SDXLPipeline":
        for m in [self.unet, self.vae, *self.text_encoders]:
            m.to(device=device, dtype=dtype)
        if self.refiner is not None:
            self.refiner.to(device, dtype)
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        refiner: "str | os.PathLike | SDXLPipeline | None" = None, vae: str | os.PathLike | None = None,
                        tokenizers: Sequence[Any] | None = None) -> "SDXLPipeline":
        """Load SDXL base or refiner from an official single file, a diffusers folder or a hub id.

        No source: `preset='tiny'` builds random weights (offline, seconds); an official preset fetches
        its hub repo. `refiner`: a second source (or pipeline) used for the ensemble hand-off. `vae`: a
        replacement VAE (e.g. madebyollin/sdxl-vae-fp16-fix, which decodes in fp16 without upcasting).
        `tokenizers`: folders, hub ids ('repo:subfolder') or tokenizer objects for single files.
        """
        SDXL.check_preset(preset)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.float16)
        if source is None and preset is None:
            preset = "sdxl-base"  # the registry's default: fetched from its hub repo
        if source is None and preset == "tiny":
            pipe = cls._tiny()
        else:
            pipe = cls._load(source if source is not None else cv.HUB_REPOS[preset], preset, dt, tokenizers)
        if vae is not None:
            from utils.encoders.vae import AutoencoderKL

            pipe.vae = AutoencoderKL.from_pretrained(vae, preset="sdxl", dtype=dt)
        if refiner is not None:
            pipe.refiner = refiner if isinstance(refiner, SDXLPipeline) else cls.from_pretrained(
                refiner, preset="sdxl-refiner" if preset != "tiny" else "tiny", device=dev, dtype=dt)
        return pipe.to(dev, dt)

    @classmethod
    def _tiny(cls, refiner_style: bool = False) -> "SDXLPipeline":
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.vae import AutoencoderKL

        torch.manual_seed(0)
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

    # -- generation -----------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str], negative: str | Sequence[str] | None,
                      guided: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        context, pooled = encode_sdxl(self.text_encoders, prompts)
        if not guided:
            return context, pooled, None, None
        if negative is None and self.force_zeros_for_empty_prompt:
            return context, pooled, torch.zeros_like(context), torch.zeros_like(pooled)
        neg_context, neg_pooled = encode_sdxl(self.text_encoders, common.as_prompts(negative or "", len(prompts)))
        return context, pooled, neg_context, neg_pooled

    def _scheduler(self, name: str | None):
        if name is None:
            return scheduler_from_diffusers_config(self.scheduler_config)
        if name.lower().startswith(("flow", "edm")):
            raise UserError(f"scheduler '{name}' does not fit SDXL (a DDPM-trained epsilon model): use euler, "
                            "euler-a, dpm++2m-karras, ddim, heun...")
        return get_scheduler(name, self.scheduler_config)

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: Any = None, mask: Any = None,
                 strength: float | None = None, seed: int | None = None, control: Any = None,
                 denoising_end: float | None = None, denoising_start: float | None = None,
                 refiner_switch: float | None = 0.8, latents: torch.Tensor | None = None,
                 original_size: tuple[int, int] | None = None, crop_top_left: tuple[int, int] = (0, 0),
                 target_size: tuple[int, int] | None = None, aesthetic_score: float = 6.0,
                 negative_aesthetic_score: float = 2.5, guidance_rescale: float = 0.0, output_type: str = "pil",
                 generator: torch.Generator | None = None, callback: Any = None, interrupt: Any = None,
                 progress: bool = True) -> ImageOutput:
        """Generate. With `image`: img2img (`strength`), with `mask` too: inpainting (white = repaint).
        `image` may also be latents (B, 4, h, w) from a base run with `denoising_end` (then pass
        `denoising_start`). `output_type='latent'` skips decoding (the output's `latents`)."""
        if control is not None:
            raise UserError("SDXL here has no ControlNet: drop --control (use --image for img2img)")
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

        prompts = common.as_prompts(prompt, num_images)
        batch = len(prompts)
        latent_input = isinstance(image, torch.Tensor) and image.ndim == 4 and image.shape[1] == self.config.in_channels
        if latent_input:
            height = height or image.shape[-2] * self.vae.config.downscale
            width = width or image.shape[-1] * self.vae.config.downscale
        elif image is not None and (height is None or width is None):
            probe = common.load_image(image)
            height, width = height or probe.shape[-2], width or probe.shape[-1]
        height, width = height or self.default_size, width or self.default_size
        common.check_size(height, width, self.pixel_multiple, "SDXL")
        steps = steps or SDXL.default(self.preset, "steps")
        guidance = SDXL.default(self.preset, "guidance") if guidance is None else float(guidance)
        gen = generator if generator is not None else make_generator(seed)
        device, dtype = self.device, self.dtype

        guided = guidance > 1.0
        context, pooled, neg_context, neg_pooled = self.encode_prompt(prompts, negative_prompt, guided)
        orig = tuple(original_size or (height, width))
        target = tuple(target_size or (height, width))
        if self.is_refiner:
            ids = sdxl_time_ids(orig, crop_top_left, aesthetic_score=aesthetic_score, batch=batch)
            neg_ids = sdxl_time_ids(orig, crop_top_left, aesthetic_score=negative_aesthetic_score, batch=batch)
        else:
            ids = neg_ids = sdxl_time_ids(orig, crop_top_left, target, batch=batch)
        atd = self.config.addition_time_embed_dim
        cond = {"context": context.to(device, dtype), "y": sdxl_vector(pooled, ids.to(pooled.device), atd).to(device, dtype)}
        uncond = cond
        if guided:
            uncond = {"context": neg_context.to(device, dtype),
                      "y": sdxl_vector(neg_pooled, neg_ids.to(neg_pooled.device), atd).to(device, dtype)}
        denoiser = cfg_model(self.unet, cond=cond, uncond=uncond, scale=guidance, rescale=guidance_rescale)

        sched = self._scheduler(scheduler)
        schedule = sched.schedule(steps)
        shape = (batch, self.config.in_channels, height // self.vae.config.downscale, width // self.vae.config.downscale)
        start, blend = 0, None
        if image is None:
            x = latents if latents is not None else randn(shape, gen, device, torch.float32)
            x = (x.to(device, torch.float32) * schedule.init_noise_sigma).to(dtype)
        else:
            x0 = (image.to(device, dtype) if latent_input else
                  self.vae.encode_latents(common.load_image(image, (height, width)).to(device, self.vae.dtype), gen))
            x0 = x0.to(dtype).expand(batch, -1, -1, -1) if x0.shape[0] == 1 else x0.to(dtype)
            noise = randn(x0.shape, gen, device, dtype)
            if denoising_start is not None:
                start = common.start_index(schedule.timesteps, denoising_start, sched.order,
                                           self.scheduler_config.get("num_train_timesteps", 1000))
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
                m = common.load_mask(mask, tuple(shape[-2:])).to(device, dtype)
                blend = InpaintBlend(x0, m, noise)

        stop_after = None
        if denoising_end is not None:
            stop_after = common.cutoff_steps(schedule.timesteps, denoising_end,
                                             self.scheduler_config.get("num_train_timesteps", 1000)) - start
        stop = common.StopAfter(stop_after, interrupt)

        def on_step(info):
            stop.count(info)
            return callback(info) if callback is not None else None

        result = sample(denoiser, sched, schedule, x, generator=gen, start=start, callback=on_step, interrupt=stop,
                        progress=progress, inpaint=blend)
        if refine:
            return self.refiner(prompt=prompts, negative_prompt=negative_prompt, height=height, width=width,
                                steps=steps, guidance=guidance, scheduler=scheduler, image=result,
                                denoising_start=denoising_end, generator=gen, aesthetic_score=aesthetic_score,
                                negative_aesthetic_score=negative_aesthetic_score, original_size=original_size,
                                crop_top_left=crop_top_left, guidance_rescale=guidance_rescale, callback=callback,
                                interrupt=interrupt, progress=progress)
        if output_type == "latent":
            return common.to_output(None, result)
        pixels = self.vae.decode_latents(result)
        return common.to_output(pixels, result)


__all__ = ["PRESETS", "SDXLPipeline"]
