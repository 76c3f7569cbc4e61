"""SD3 / SD3.5 pipeline: rectified-flow sampling of the MMDiT, text-to-image and img2img.

Conditioning: CLIP-L and CLIP-G (penultimate states and projected pooled embeddings) and, when
loaded, T5-XXL; without T5 its 256 tokens are zeros, which the release supports (less prompt
adherence, 5 GB less memory). Sampling: Euler on the flow ODE with the static shift of 3.0
(`FlowMatchEuler` of the shared layer); classifier-free guidance, default scale 7 (SD3) / 4.5 (3.5 large).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.spec import SD3
from models.image_generation.stable_diffusion.text import encode_sd3
from utils.data.image_inputs import load_image, load_mask
from utils.diffusion import (DiffusionPipeline, InpaintBlend, cfg_model, get_scheduler, img2img_latents, img2img_start,
                             sample, scheduler_from_diffusers_config)
from utils.diffusion.inputs import as_prompts, output_size
from utils.diffusion.noise import initial_noise
from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import Generators, randn

PRESETS = SD3.presets


class SD3Pipeline(DiffusionPipeline):
    """An MMDiT, the 16-channel VAE, CLIP-L + CLIP-G (+ optional T5-XXL) and a flow-matching scheduler."""

    spec = SD3
    components = ("clip_l", "clip_g", "t5", "transformer", "vae")
    denoiser_name = "transformer"
    cuda_dtype = torch.bfloat16

    def __init__(self, transformer: MMDiT, vae: Any, clip_l: Any, clip_g: Any, t5: Any = None,
                 scheduler_config: dict | None = None, preset: str = "tiny", max_sequence_length: int | None = None):
        self.transformer, self.vae = transformer, vae
        self.clip_l, self.clip_g, self.t5 = clip_l, clip_g, t5
        self.scheduler_config = dict(scheduler_config or cv.SD3_SCHEDULER)
        self.preset = preset
        self.max_sequence_length = int(self.default("max_sequence_length", max_sequence_length))

    @property
    def config(self) -> MMDiTConfig:
        return self.transformer.config

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.patch_size

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 8 * self.pixel_multiple

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        text_encoders: str | os.PathLike | None = None, t5: bool | None = None,
                        tokenizers: Sequence[Any] | None = None, max_sequence_length: int | None = None,
                        offload: str | None = None, vae_tiling: bool = False, compile: bool = False,
                        attention: str | None = None) -> "SD3Pipeline":
        """Load SD3 / SD3.5 from an official single file (with or without bundled text encoders), a
        diffusers folder, or a hub id (all gated: accept the licence on the hub and log in first).

        `text_encoders`: where CLIP-L/G (and T5) come from when the file has none (default: the preset's
        diffusers repo). `t5=False` never loads T5 (zeros stand in); None loads it when present.
        `tokenizers`: [clip-l, clip-g, t5] folders/ids/objects for single files. `max_sequence_length`:
        T5 tokens (default: the preset's, 256). `offload`: None, "model" or "sequential" (accelerate);
        `vae_tiling`, `compile` (the MMDiT) and `attention` (a backend name) as for every diffusion
        pipeline. `dtype`: default bf16 on CUDA, fp32 on CPU.
        """
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny(t5 is not False)
        else:
            src = source if source is not None else cv.HUB_REPOS[place.preset]
            try:
                path = cv.locate(src, cv.SD3_PATTERNS, f"SD3 weights '{src}'")
            except UserError as err:
                raise type(err)(f"{err} ({cv.gated_hint(place.preset or 'sd3-medium')})") from None
            if path.is_dir():
                if not cv.is_diffusers_folder(path, "transformer"):
                    raise UserError(f"{path} is not an SD3 diffusers folder (no transformer/config.json): pass the "
                                    "pipeline folder or an official single file (sd3.5_medium.safetensors)")
                pipe = cls._from_diffusers(path, place.dtype, t5, max_sequence_length)
            else:
                pipe = cls._from_single_file(path, place.preset, place.dtype, t5, tokenizers, text_encoders,
                                             max_sequence_length)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls, with_t5: bool = True) -> "SD3Pipeline":
        """Random tiny components (MMDiT, CLIP-L/G, optional T5, VAE) with tokenizers built in code: runs offline."""
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        from utils.torch_utils import local_seed

        with local_seed(0):  # a generator of its own, never the global RNG
            l_cfg = CLIPTextEncoderConfig.preset("tiny").with_(with_projection=True)
            g_cfg = CLIPTextEncoderConfig.preset("tiny-bigg")
            mmdit_cfg = MMDiTConfig.preset("tiny")
            clip_l = CLIPTextEncoder(l_cfg, tokenizer=tiny_clip_tokenizer(l_cfg))
            clip_g = CLIPTextEncoder(g_cfg, tokenizer=tiny_clip_tokenizer(g_cfg))
            t5 = None
            if with_t5:
                t_cfg = T5EncoderConfig.preset("tiny").with_(d_model=mmdit_cfg.context_in_dim)
                t5 = T5TextEncoder(t_cfg, tokenizer=tiny_t5_tokenizer(t_cfg))
            return cls(MMDiT(mmdit_cfg).eval(), AutoencoderKL("tiny-16").eval(), clip_l, clip_g, t5, preset="tiny")

    @classmethod
    def _from_diffusers(cls, folder, dt: torch.dtype, t5: bool | None, max_len: int | None) -> "SD3Pipeline":
        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        transformer = cv.mmdit_from_diffusers(folder / "transformer", dt)
        preset = cv.guess_sd3_preset(transformer.config)
        max_len = max_len or SD3.default(preset, "max_sequence_length")
        clip_l = CLIPTextEncoder.from_pretrained(folder, subfolder="text_encoder", device="cpu", dtype=dt,
                                                 with_projection=True)
        clip_g = CLIPTextEncoder.from_pretrained(folder, subfolder="text_encoder_2", device="cpu", dtype=dt,
                                                 with_projection=True)
        enc3 = None
        if t5 is not False and (folder / "text_encoder_3" / "config.json").exists():
            enc3 = T5TextEncoder.from_pretrained(folder, subfolder="text_encoder_3", device="cpu", dtype=dt,
                                                 max_length=max_len)
        elif t5 is True:
            raise UserError(f"t5=True but {folder} has no text_encoder_3/: download the full repo, or leave t5 unset")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)
        return cls(transformer, vae, clip_l, clip_g, enc3, cv.scheduler_config(folder, cv.SD3_SCHEDULER),
                   preset=preset, max_sequence_length=max_len)

    @classmethod
    def _from_single_file(cls, path, preset: str | None, dt: torch.dtype, t5: bool | None,
                          tokenizers: Sequence[Any] | None, text_encoders: Any, max_len: int | None) -> "SD3Pipeline":
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig, load_clip_tokenizer
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder, load_t5_tokenizer
        from utils.weights import load_state_dict

        sd = load_state_dict(path, dtype=dt)
        transformer = cv.mmdit_from_state(sd, preset)
        found = cv.guess_sd3_preset(transformer.config)
        preset = preset or found
        max_len = max_len or SD3.default(preset, "max_sequence_length")
        tiny = found == "tiny"
        repo = cv.HUB_REPOS.get(preset if preset != "tiny" else "sd3-medium", cv.HUB_REPOS["sd3-medium"])
        toks = list(tokenizers) if tokenizers is not None else [None, None, None]
        toks += [None] * (3 - len(toks))
        vae = cv.vae_from_state(sd, "tiny-16" if tiny else "sd3", str(path))
        if vae is None:
            raise UserError(f"{path.name} has no VAE (first_stage_model.*): use an official SD3 single file")
        names = ("tiny", "tiny-bigg") if tiny else ("clip-l", "bigg")
        if cv.has_clip(sd):
            clips = []
            for name, tok, sub in zip(names, toks[:2], ("tokenizer", "tokenizer_2")):
                cfg = CLIPTextEncoderConfig.preset(name)
                if tok is None:
                    tok = tiny_clip_tokenizer(cfg) if tiny else f"{repo}:{sub}"
                if isinstance(tok, (str, os.PathLike)):
                    tok = load_clip_tokenizer(tok)
                clips.append(cv.clip_from_state(sd, name, tok, with_projection=True))
            clip_l, clip_g = clips
        else:  # sd3_medium.safetensors ships without text encoders: take them from a diffusers source
            src = text_encoders or repo
            try:
                clip_l = CLIPTextEncoder.from_pretrained(src, subfolder="text_encoder", device="cpu", dtype=dt,
                                                         with_projection=True)
                clip_g = CLIPTextEncoder.from_pretrained(src, subfolder="text_encoder_2", device="cpu", dtype=dt,
                                                         with_projection=True)
            except UserError as err:
                raise type(err)(f"{path.name} has no text encoders and loading them from '{src}' failed ({err}): "
                                "use an *_incl_clips* file, or pass text_encoders=<diffusers folder or hub id>") from None
        enc3 = None
        if t5 is not False and cv.has_t5(sd):
            t_cfg_name = "tiny" if tiny else "t5-xxl"
            tok = toks[2]
            if tok is None:
                tok = tiny_t5_tokenizer(T5EncoderConfig.preset("tiny")) if tiny else f"{repo}:tokenizer_3"
            if isinstance(tok, (str, os.PathLike)):
                tok = load_t5_tokenizer(tok)
            enc3 = cv.t5_from_state(sd, t_cfg_name, tok, max_len)
        elif t5 is True and text_encoders is not None:
            enc3 = T5TextEncoder.from_pretrained(text_encoders, subfolder="text_encoder_3", device="cpu", dtype=dt,
                                                 max_length=max_len)
        elif t5 is True:
            raise UserError(f"t5=True but {path.name} has no T5: use an *_incl_clips_t5xxlfp16* file or pass "
                            "text_encoders=<diffusers folder with text_encoder_3/>")
        return cls(transformer, vae, clip_l, clip_g, enc3, dict(cv.SD3_SCHEDULER), preset=preset,
                   max_sequence_length=max_len)

    def lora_components(self) -> list:
        """The models LoRA files adapt and how their names map (lora.py)."""
        from models.image_generation.stable_diffusion.lora import sd3_components

        return sd3_components(self)

    # -- generation -----------------------------------------------------------------------------

    def encode_prompt(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_sd3(self.clip_l, self.clip_g, self.t5, prompts, self.max_sequence_length,
                          self.config.context_in_dim)

    def _scheduler(self, name: str | None):
        if name is None:
            return scheduler_from_diffusers_config(self.scheduler_config)
        key = name.lower()
        if not key.startswith("flow"):
            raise UserError(f"scheduler '{name}' does not fit SD3 (a rectified-flow model): use flow-euler")
        return get_scheduler(name, self.scheduler_config)

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: Any = None, mask: Any = None,
                 strength: float | None = None, seed: int | Sequence[int] | None = None, control: Any = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", generator: Generators = None,
                 callback: Any = None, interrupt: Any = None, progress: bool = True) -> ImageOutput:
        """Generate. With `image`: img2img (`strength`, default 0.6); with `mask` too: inpainting.
        `seed`: image i uses seed + i (or give one seed per image); `generator` (one for the whole
        batch, or one per image) replaces it."""
        if control is not None:
            raise UserError("SD3 here has no ControlNet: drop --control (use --image for img2img)")
        if mask is not None and image is None:
            raise UserError("inpainting needs --image as well as --mask")
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        prompts = as_prompts(prompt, num_images)
        batch = len(prompts)
        height, width = output_size(height, width, image, self.pixel_multiple, self.default_size, "SD3")
        steps = int(self.default("steps", steps))
        if steps < 1:
            raise UserError(f"steps must be at least 1, got {steps}")
        guidance = float(self.default("guidance", guidance))
        gens = self.generators(seed, batch, generator)

        with self.session():
            device, dtype = self.device, self.dtype
            context, pooled = self.encode_prompt(prompts)
            cond = {"context": context.to(device, dtype), "y": pooled.to(device, dtype)}
            uncond = cond
            if guidance > 1.0:
                neg_context, neg_pooled = self.encode_prompt(as_prompts(negative_prompt or "", batch))
                uncond = {"context": neg_context.to(device, dtype), "y": neg_pooled.to(device, dtype)}
            denoiser = cfg_model(self.transformer, cond=cond, uncond=uncond, scale=guidance)

            sched = self._scheduler(scheduler)
            schedule = sched.schedule(steps)
            down = self.vae.config.downscale
            shape = (batch, self.config.in_channels, height // down, width // down)
            start, blend = 0, None
            if image is None:
                x = (latents if latents is not None else initial_noise(shape, gens, device)).to(device, dtype)
            else:
                x0 = self.encode_latents(load_image(image, (height, width)), gens).to(device, dtype)
                x0 = x0.expand(batch, -1, -1, -1) if x0.shape[0] == 1 else x0
                noise = randn(x0.shape, gens, device, dtype)
                strength = (1.0 if mask is not None else 0.6) if strength is None else strength
                start = img2img_start(steps, strength, sched.order)
                if start >= len(schedule.timesteps):
                    raise UserError(f"strength {strength} with {steps} steps leaves no step to run: raise either")
                x = noise if (mask is not None and start == 0) else img2img_latents(sched, schedule, x0, noise, start)
                if mask is not None:
                    blend = InpaintBlend(x0, load_mask(mask, tuple(shape[-2:])).to(device, dtype), noise)
            result = sample(denoiser, sched, schedule, x, generator=gens, start=start, callback=callback,
                            interrupt=interrupt, progress=progress, inpaint=blend)
            pixels = self.decode_latents(result) if output_type == "pil" else None
        return self.output(pixels, result)


__all__ = ["PRESETS", "SD3Pipeline"]
