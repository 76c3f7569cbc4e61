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

from utils.diffusion import pipeline_utils as common
from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from models.image_generation.stable_diffusion.spec import SD3
from models.image_generation.stable_diffusion.text import encode_sd3
from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
from utils.outputs import ImageOutput
from utils.diffusion import (InpaintBlend, cfg_model, get_scheduler, img2img_latents, img2img_start, randn, sample,
                             scheduler_from_diffusers_config)
from utils.errors import UserError
from utils.torch_utils import make_generator, resolve_device, resolve_dtype

PRESETS = SD3.presets


class SD3Pipeline:
    """An MMDiT, the 16-channel VAE, CLIP-L + CLIP-G (+ optional T5-XXL) and a flow-matching scheduler."""

    def __init__(self, transformer: MMDiT, vae: Any, clip_l: Any, clip_g: Any, t5: Any = None,
                 scheduler_config: dict | None = None, preset: str = "tiny", max_sequence_length: int = 256):
        self.transformer, self.vae = transformer, vae
        self.clip_l, self.clip_g, self.t5 = clip_l, clip_g, t5
        self.scheduler_config = dict(scheduler_config or cv.SD3_SCHEDULER)
        self.preset = preset
        self.max_sequence_length = max_sequence_length

    @property
    def config(self) -> MMDiTConfig:
        return self.transformer.config

    @property
    def device(self) -> torch.device:
        return self.transformer.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.patch_size

    @property
    def default_size(self) -> int:
        return 1024 if self.preset != "tiny" else 8 * self.pixel_multiple

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "SD3Pipeline":
        for m in (self.transformer, self.vae, self.clip_l, self.clip_g, self.t5):
            if m is not None:
                m.to(device=device, dtype=dtype)
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        text_encoders: str | os.PathLike | None = None, t5: bool | None = None,
                        tokenizers: Sequence[Any] | None = None, max_sequence_length: int = 256) -> "SD3Pipeline":
        """Load SD3 / SD3.5 from an official single file (with or without bundled text encoders), a
        diffusers folder, or a hub id (all gated: accept the licence on the hub and log in first).

        `text_encoders`: where CLIP-L/G (and T5) come from when the file has none (default: the preset's
        diffusers repo). `t5=False` never loads T5 (zeros stand in); None loads it when present.
        `tokenizers`: [clip-l, clip-g, t5] folders/ids/objects for single files.
        """
        SD3.check_preset(preset)
        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.bfloat16)
        if source is None and preset is None:
            preset = "sd3.5-medium"
        if source is None and preset == "tiny":
            pipe = cls._tiny(t5 is not False)
        else:
            src = source if source is not None else cv.HUB_REPOS[preset]
            try:
                path = cv.locate(src, cv.SD3_PATTERNS, f"SD3 weights '{src}'")
            except UserError as err:
                raise type(err)(f"{err} ({cv.gated_hint(preset or 'sd3-medium')})") from None
            if path.is_dir():
                if not cv.is_diffusers_folder(path, "transformer"):
                    raise UserError(f"{path} is not an SD3 diffusers folder (no transformer/config.json): pass the "
                                    "pipeline folder or an official single file (sd3.5_medium.safetensors)")
                pipe = cls._from_diffusers(path, dt, t5, max_sequence_length)
            else:
                pipe = cls._from_single_file(path, preset, dt, t5, tokenizers, text_encoders, max_sequence_length)
        return pipe.to(dev, dt)

    @classmethod
    def _tiny(cls, with_t5: bool = True) -> "SD3Pipeline":
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        torch.manual_seed(0)
        l_cfg = CLIPTextEncoderConfig.preset("tiny").with_(with_projection=True)
        g_cfg = CLIPTextEncoderConfig.preset("tiny-bigg")
        mmdit_cfg = MMDiTConfig.preset("tiny")
        clip_l = CLIPTextEncoder(l_cfg, tokenizer=tiny_clip_tokenizer(l_cfg))
        clip_g = CLIPTextEncoder(g_cfg, tokenizer=tiny_clip_tokenizer(g_cfg))
        t5 = None
        if with_t5:
            t_cfg = T5EncoderConfig.preset("tiny").with_(d_model=mmdit_cfg.context_in_dim)
            t5 = T5TextEncoder(t_cfg, tokenizer=tiny_t5_tokenizer(t_cfg))
        return cls(MMDiT(mmdit_cfg).eval(), AutoencoderKL("tiny-16").eval(), clip_l, clip_g, t5, preset="tiny",
                   max_sequence_length=16)

    @classmethod
    def _from_diffusers(cls, folder, dt: torch.dtype, t5: bool | None, max_len: int) -> "SD3Pipeline":
        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        transformer = cv.mmdit_from_diffusers(folder / "transformer", dt)
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
                   preset=cv.guess_sd3_preset(transformer.config), max_sequence_length=max_len)

    @classmethod
    def _from_single_file(cls, path, preset: str | None, dt: torch.dtype, t5: bool | None,
                          tokenizers: Sequence[Any] | None, text_encoders: Any, max_len: int) -> "SD3Pipeline":
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig, load_clip_tokenizer
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder, load_t5_tokenizer
        from utils.weights import load_state_dict

        sd = load_state_dict(path, dtype=dt)
        transformer = cv.mmdit_from_state(sd, preset)
        found = cv.guess_sd3_preset(transformer.config)
        preset = preset or found
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
                 strength: float | None = None, seed: int | None = None, control: Any = None,
                 latents: torch.Tensor | None = None, output_type: str = "pil", generator: torch.Generator | None = None,
                 callback: Any = None, interrupt: Any = None, progress: bool = True) -> ImageOutput:
        """Generate. With `image`: img2img (`strength`, default 0.6); with `mask` too: inpainting."""
        if control is not None:
            raise UserError("SD3 here has no ControlNet: drop --control (use --image for img2img)")
        if mask is not None and image is None:
            raise UserError("inpainting needs --image as well as --mask")
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        prompts = common.as_prompts(prompt, num_images)
        batch = len(prompts)
        if image is not None and (height is None or width is None):
            probe = common.load_image(image)
            height, width = height or probe.shape[-2], width or probe.shape[-1]
        height, width = height or self.default_size, width or self.default_size
        common.check_size(height, width, self.pixel_multiple, "SD3")
        steps = steps or SD3.default(self.preset, "steps")
        guidance = SD3.default(self.preset, "guidance") if guidance is None else float(guidance)
        gen = generator if generator is not None else make_generator(seed)
        device, dtype = self.device, self.dtype

        context, pooled = self.encode_prompt(prompts)
        cond = {"context": context.to(device, dtype), "y": pooled.to(device, dtype)}
        uncond = cond
        if guidance > 1.0:
            neg_context, neg_pooled = self.encode_prompt(common.as_prompts(negative_prompt or "", batch))
            uncond = {"context": neg_context.to(device, dtype), "y": neg_pooled.to(device, dtype)}
        denoiser = cfg_model(self.transformer, cond=cond, uncond=uncond, scale=guidance)

        sched = self._scheduler(scheduler)
        schedule = sched.schedule(steps)
        down = self.vae.config.downscale
        shape = (batch, self.config.in_channels, height // down, width // down)
        start, blend = 0, None
        if image is None:
            x = (latents if latents is not None else randn(shape, gen, device, torch.float32)).to(device, dtype)
        else:
            x0 = self.vae.encode_latents(common.load_image(image, (height, width)).to(device, self.vae.dtype), gen)
            x0 = x0.to(dtype).expand(batch, -1, -1, -1) if x0.shape[0] == 1 else x0.to(dtype)
            noise = randn(x0.shape, gen, device, dtype)
            strength = (1.0 if mask is not None else 0.6) if strength is None else strength
            start = img2img_start(steps, strength, sched.order)
            if start >= len(schedule.timesteps):
                raise UserError(f"strength {strength} with {steps} steps leaves no step to run: raise either")
            x = noise if (mask is not None and start == 0) else img2img_latents(sched, schedule, x0, noise, start)
            if mask is not None:
                blend = InpaintBlend(x0, common.load_mask(mask, tuple(shape[-2:])).to(device, dtype), noise)
        result = sample(denoiser, sched, schedule, x, generator=gen, start=start, callback=callback,
                        interrupt=interrupt, progress=progress, inpaint=blend)
        if output_type == "latent":
            return common.to_output(None, result)
        return common.to_output(self.vae.decode_latents(result), result)


__all__ = ["PRESETS", "SD3Pipeline"]
