"""The cascade as one call: IF stage I (64 px from T5-XXL), stage II (x4 super-resolution with noise
conditioning augmentation), stage III (the Stable Diffusion x4 upscaler, -> 1024 px).

Each stage samples as its release does. Stages I and II: DDPM over the cosine schedule with the
learned variance (`variance_type='learned_range'`), classifier-free guidance on the noise channels
only, and Imagen's dynamic thresholding of x0 (percentile 0.95; max 1.5 in stage I, 1.0 in stage II).
Stage II upsamples the 64 px image bilinearly (to 256 px: its UNet's training size, in proportion
for other sizes), noises it to `noise_level` (0..999 of its own cosine
schedule) and embeds that level; stage III does the same on the 256 px image with its latent UNet
and text from OpenCLIP ViT-H, then decodes with its VAE (x4).

Seeds: every stage draws from fresh generators seeded `seed + i` for image i (as DeepFloyd's examples
reseed each stage), so image i of a batch is the image made alone with seed + i, at every stage.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.image_generation.imagen import convert as cv
from models.image_generation.imagen.config import IFUNetConfig, UpscalerUNetConfig
from models.image_generation.imagen.spec import FIRST_STAGE, NEXT_STAGES, SPEC
from models.image_generation.imagen.unet import IFUNet
from models.image_generation.imagen.upscaler import UpscalerUNet
from utils.diffusion import DDPM, DiffusionPipeline, cfg_model, get_scheduler, sample, scheduler_from_diffusers_config
from utils.diffusion.inputs import as_prompts, check_size
from utils.diffusion.noise import initial_noise
from utils.errors import UserError
from utils.outputs import ImageOutput
from utils.torch_utils import Generators, randn

# The release schedulers (diffusers' convert_if.py and the x4 upscaler's scheduler folders).
IF_I_SCHEDULER = {"_class_name": "DDPMScheduler", "variance_type": "learned_range", "beta_schedule": "squaredcos_cap_v2",
                  "prediction_type": "epsilon", "thresholding": True, "dynamic_thresholding_ratio": 0.95,
                  "sample_max_value": 1.5, "num_train_timesteps": 1000}
IF_II_SCHEDULER = {**IF_I_SCHEDULER, "sample_max_value": 1.0}
IF_NOISING = {"_class_name": "DDPMScheduler", "beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000}
X4_SCHEDULER = {"_class_name": "DDIMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.0001,
                "beta_end": 0.02, "prediction_type": "v_prediction", "clip_sample": False, "set_alpha_to_one": False,
                "steps_offset": 1, "num_train_timesteps": 1000}
X4_LOW_RES = {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.0001,
              "beta_end": 0.02, "num_train_timesteps": 1000}
T5_TOKENS = 77  # IF's text length (diffusers' IFPipeline pads and truncates to 77)

_HUB_STAGE = {1: ["model_index.json", "scheduler/*", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                  "text_encoder/config.json", "text_encoder/model*.safetensors*", "tokenizer/*"],
              2: ["model_index.json", "scheduler/*", "image_noising_scheduler/*", "unet/config.json",
                  "unet/diffusion_pytorch_model.safetensors"],
              3: ["model_index.json", "scheduler/*", "low_res_scheduler/*", "unet/*", "vae/*", "text_encoder/*",
                  "tokenizer/*"]}


def _read_scheduler(folder: Path, sub: str, default: dict) -> dict:
    p = folder / sub / "scheduler_config.json"
    return json.loads(p.read_text()) if p.is_file() else dict(default)


def _locate(source: Any, stage: int, preset: str) -> Path:
    from utils.weights.hub import locate

    try:
        return locate(source, _HUB_STAGE[stage], f"Imagen stage {stage} weights '{source}'")
    except UserError as err:
        hint = (f"DeepFloyd's repos are gated: accept the licence at https://huggingface.co/{source}, run `hf auth "
                "login`, then `hf download`" if str(source).startswith("DeepFloyd/") else
                f"download it with `hf download {source}`")
        raise type(err)(f"{err} ({hint}; or pass a local diffusers folder)") from None


class ImagenPipeline(DiffusionPipeline):
    """Stages I-III of the cascade; any run of consecutive stages, from the preset's first one."""

    spec = SPEC
    components = ("t5", "unet", "sr_unet", "x4_text", "x4_unet", "vae")
    denoiser_name = "unet"
    cuda_dtype = torch.float16

    def __init__(self, t5: Any = None, unet: IFUNet | None = None, sr_unet: IFUNet | None = None, x4_text: Any = None,
                 x4_unet: UpscalerUNet | None = None, vae: Any = None, *, schedulers: dict | None = None,
                 preset: str = "tiny", first_stage: int | None = None, sources: dict | None = None,
                 max_noise_level: int = 350):
        self.t5, self.unet, self.sr_unet = t5, unet, sr_unet
        self.x4_text, self.x4_unet, self.vae = x4_text, x4_unet, vae
        self.schedulers = {"stage1": IF_I_SCHEDULER, "stage2": IF_II_SCHEDULER, "noising": IF_NOISING,
                           "stage3": X4_SCHEDULER, "x4_noising": X4_LOW_RES, **(schedulers or {})}
        self.preset = preset
        self.first_stage = first_stage or FIRST_STAGE.get(preset, 1)
        self.sources = dict(sources or {})
        """Where stages not loaded yet come from (stage number -> source), fetched on first use."""
        self.max_noise_level = max_noise_level

    # -- facts ----------------------------------------------------------------------------------

    @property
    def denoiser(self) -> nn.Module:
        found = next((m for m in (self.unet, self.sr_unet, self.x4_unet) if m is not None), None)
        if found is None:
            raise UserError("this Imagen pipeline holds no UNet")
        return found

    def has_stage(self, stage: int) -> bool:
        return {1: self.unet, 2: self.sr_unet, 3: self.x4_unet}[stage] is not None

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        stage_2: str | os.PathLike | None = None, stage_3: str | os.PathLike | None = None,
                        stages: int | None = None, offload: str | None = None, compile: bool = False,
                        attention: str | None = None) -> "ImagenPipeline":
        """Load the preset's stage from `source` (a diffusers folder or hub id; IF stage I/II also a DeepFloyd
        file), and name where later stages come from (`stage_2`, `stage_3`; default: the matching DeepFloyd
        II repo and stabilityai/stable-diffusion-x4-upscaler). Later stages load on the first call that runs
        them, or now with `stages=` (needed with `offload`). No source: `preset='tiny'` builds random
        weights for all three stages (offline, seconds)."""
        place = cls.resolve(source, preset, device, dtype, offload)
        name = place.preset or "if-i-xl"
        if source is None and name == "tiny":
            pipe = cls.tiny()
        else:
            first = FIRST_STAGE.get(name, 1)
            src = source if source is not None else SPEC.weights_for(name).source
            pipe = cls(preset=name, first_stage=first)
            pipe._load_stage(first, src, place.dtype)
            if place.preset is None:  # the weights tell: a release's sizes name its preset (tiny folders: 'tiny')
                pipe.preset = pipe._guess_preset(name)
            nxt = NEXT_STAGES.get(name, "if-ii-l")
            pipe.sources = {2: stage_2 or SPEC.weights_for(nxt).source,
                            3: stage_3 or SPEC.weights_for("sd-x4-upscaler").source}
        if stages is not None:
            for s in range(pipe.first_stage, int(stages) + 1):
                if not pipe.has_stage(s):
                    pipe._load_stage(s, pipe.sources[s], place.dtype)
        return pipe.configure(place.device, place.dtype, offload=offload, compile=compile, attention=attention)

    @classmethod
    def tiny(cls) -> "ImagenPipeline":
        """Random tiny stages I-III with a character tokenizer: the whole cascade offline, in seconds."""
        from utils.encoders.clip import CLIPTextEncoder, CLIPTextEncoderConfig
        from utils.encoders.t5 import T5TextEncoder, T5EncoderConfig
        from utils.encoders.tiny_tokenizer import tiny_clip_tokenizer, tiny_t5_tokenizer
        from utils.encoders.vae import AutoencoderKL, VAEConfig
        from utils.torch_utils import local_seed

        with local_seed(0):
            t5_cfg = T5EncoderConfig.preset("tiny").with_(max_length=T5_TOKENS)
            t5 = T5TextEncoder(t5_cfg, tokenizer=tiny_t5_tokenizer(t5_cfg))
            clip_cfg = CLIPTextEncoderConfig.preset("tiny")
            clip = CLIPTextEncoder(clip_cfg, tokenizer=tiny_clip_tokenizer(clip_cfg))
            vae = AutoencoderKL(VAEConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8,
                                          scaling_factor=0.08333))
            pipe = cls(t5, IFUNet("tiny"), IFUNet("tiny-sr"), clip, UpscalerUNet("tiny"), vae, preset="tiny")
        for m in (pipe.t5, pipe.unet, pipe.sr_unet, pipe.x4_text, pipe.x4_unet, pipe.vae):
            m.eval()
        return pipe

    def _load_stage(self, stage: int, source: Any, dt: torch.dtype) -> None:
        """Fill in one stage's models from a diffusers folder, a hub id, or (IF) an official file."""
        from utils.encoders.clip import CLIPTextEncoder
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.vae import AutoencoderKL

        path = Path(os.path.expanduser(str(source)))
        if not path.exists():
            path = _locate(source, stage, self.preset)
        if stage in (1, 2):
            unet = cv.load_if_unet(path, dtype=dt)
            if unet.config.super_resolution != (stage == 2):
                raise UserError(f"'{source}' is an IF stage {'II' if unet.config.super_resolution else 'I'} UNet, "
                                f"not stage {'I' if stage == 1 else 'II'}: pass it as "
                                f"{'stage_2=' if unet.config.super_resolution else 'the source'}")
            folder = path if path.is_dir() else path.parent
            if stage == 1:
                self.unet = unet
                self.schedulers["stage1"] = _read_scheduler(folder, "scheduler", IF_I_SCHEDULER)
            else:
                self.sr_unet = unet
                self.schedulers["stage2"] = _read_scheduler(folder, "scheduler", IF_II_SCHEDULER)
                self.schedulers["noising"] = _read_scheduler(folder, "image_noising_scheduler", IF_NOISING)
            if self.t5 is None:
                if (folder / "text_encoder" / "config.json").is_file():
                    self.t5 = T5TextEncoder.from_pretrained(folder, subfolder="text_encoder", device="cpu", dtype=dt,
                                                            max_length=T5_TOKENS)
                else:  # IF-II repos and official files carry no text encoder: IF-I-XL's T5 (the same weights)
                    t5_src = _locate(SPEC.weights_for("if-i-xl").source, 1, "if-i-xl")
                    self.t5 = T5TextEncoder.from_pretrained(t5_src, subfolder="text_encoder", device="cpu", dtype=dt,
                                                            max_length=T5_TOKENS)
            return
        if not (path / "unet" / "config.json").is_file():
            raise UserError(f"{path} is not the x4 upscaler's diffusers folder (no unet/config.json): pass "
                            "stabilityai/stable-diffusion-x4-upscaler or its local copy")
        self.x4_unet = cv.load_upscaler_unet(path / "unet", dtype=dt)
        self.vae = AutoencoderKL.from_pretrained(path, subfolder="vae", device="cpu", dtype=dt)
        self.x4_text = CLIPTextEncoder.from_pretrained(path, subfolder="text_encoder", device="cpu", dtype=dt)
        self.schedulers["stage3"] = _read_scheduler(path, "scheduler", X4_SCHEDULER)
        self.schedulers["x4_noising"] = _read_scheduler(path, "low_res_scheduler", X4_LOW_RES)
        index = path / "model_index.json"
        if index.is_file():
            self.max_noise_level = int(json.loads(index.read_text()).get("max_noise_level", self.max_noise_level))

    def _sr_size(self, low: Sequence[int]) -> tuple[int, int]:
        """Stage II's output size: its training size (256) for stage I's (64), in proportion otherwise (as
        diffusers, which makes the UNet's sample_size, for a 64 px input)."""
        out = self.sr_unet.config.image_size
        base = self.unet.config.image_size if self.unet is not None else out // 4
        h, w = (int(round(out * side / base)) for side in low)
        check_size(h, w, self.sr_unet.config.downscale, "IF stage II")
        return h, w

    def _guess_preset(self, fallback: str) -> str:
        from models.image_generation.imagen.config import IF_UNET_PRESETS

        unet = self.unet if self.first_stage == 1 else self.sr_unet
        if unet is None:
            return fallback
        for name, cfg in IF_UNET_PRESETS.items():
            if cfg == unet.config:
                return "tiny" if name.startswith("tiny") else name
        return fallback

    def _ensure(self, stage: int) -> None:
        if self.has_stage(stage):
            return
        if stage not in self.sources:
            raise UserError(f"this pipeline has no stage {stage} and no source for it: load it with "
                            f"stage_{stage}=... or run fewer stages (--stages)")
        if self.offload is not None:
            raise UserError(f"stage {stage} is not loaded and CPU offload is on: load the cascade with "
                            f"from_pretrained(..., stages={stage}) so every stage is offloaded")
        self._load_stage(stage, self.sources[stage], self.dtype)
        self.to(self.device, self.dtype)

    # -- the stages -------------------------------------------------------------------------------

    def _t5(self, prompts: list[str], negative: Any, guided: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        # IF lower-cases and strips prompts (diffusers' _text_preprocessing without caption cleaning)
        prompts = [p.lower().strip() for p in prompts]
        cond = self.t5.encode(prompts, max_length=T5_TOKENS, use_attention_mask=True).last_hidden_state
        if not guided:
            return cond, None
        neg = [p.lower().strip() for p in as_prompts(negative or "", len(prompts))]
        return cond, self.t5.encode(neg, max_length=T5_TOKENS, use_attention_mask=True).last_hidden_state

    def _scheduler(self, key: str, name: str | None):
        base = self.schedulers[key]
        return scheduler_from_diffusers_config(base) if name is None else get_scheduler(name, base)

    @staticmethod
    def _variance_head(sched) -> bool:
        return isinstance(sched, DDPM) and sched.variance_type in ("learned", "learned_range")

    def _if_stage(self, unet: IFUNet, key: str, text: tuple, shape: tuple, steps: int, guidance: float,
                  gens: Generators, scheduler: str | None, low: torch.Tensor | None, noise_level: int,
                  callback: Any, interrupt: Any, progress: bool) -> torch.Tensor:
        device, dtype = self.device, unet.dtype
        sched = self._scheduler(key, scheduler)
        schedule = sched.schedule(steps)
        x = initial_noise(shape, gens, device, init_sigma=schedule.init_noise_sigma).to(dtype)
        cond, neg = text
        extra: dict = {}
        if low is not None:  # noise conditioning augmentation of the upscaled low-resolution image
            up = F.interpolate(low.to(device, torch.float32), size=shape[-2:], mode="bilinear", align_corners=True)
            acp = scheduler_from_diffusers_config(self.schedulers["noising"]).alphas_cumprod()[noise_level]
            up = acp.sqrt() * up + (1 - acp).sqrt() * randn(up.shape, gens, device, torch.float32)
            extra = {"low": up.to(dtype), "noise_level": torch.full((shape[0],), noise_level, device=device)}

        def net(z: torch.Tensor, t: torch.Tensor, text: torch.Tensor, low: torch.Tensor | None = None,
                noise_level: torch.Tensor | None = None) -> torch.Tensor:
            inp = z if low is None else torch.cat([z, low], dim=1)
            return unet(inp, t, text, noise_level=noise_level)

        learned = self._variance_head(sched)
        cond_kw = {"text": cond.to(device, dtype), **extra}
        uncond_kw = {"text": neg.to(device, dtype), **extra} if neg is not None else cond_kw
        guided = cfg_model(net, cond_kw, uncond_kw, guidance, learned_variance=True)
        channels = shape[1]

        def denoiser(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = guided(z, t)
            return out if learned else out[:, :channels]

        return sample(denoiser, sched, schedule, x, generator=gens, callback=callback, interrupt=interrupt,
                      progress=progress)

    def _x4_stage(self, prompts: list[str], negative: Any, low: torch.Tensor, steps: int, guidance: float,
                  noise_level: int, gens: Generators, scheduler: str | None, callback: Any, interrupt: Any,
                  progress: bool) -> torch.Tensor:
        device, dtype = self.device, self.x4_unet.dtype
        if not 0 <= noise_level <= self.max_noise_level:
            raise UserError(f"the x4 upscaler's noise level must be between 0 and {self.max_noise_level}, "
                            f"got {noise_level}")
        guided = guidance > 1.0
        cond = self.x4_text.encode(prompts).last_hidden_state
        neg = self.x4_text.encode(as_prompts(negative or "", len(prompts))).last_hidden_state if guided else cond
        low = low.to(device, torch.float32)
        acp = scheduler_from_diffusers_config(self.schedulers["x4_noising"]).alphas_cumprod()[noise_level]
        low = (acp.sqrt() * low + (1 - acp).sqrt() * randn(low.shape, gens, device, torch.float32)).to(dtype)
        sched = self._scheduler("stage3", scheduler)
        schedule = sched.schedule(steps)
        b = low.shape[0]
        shape = (b, self.x4_unet.config.out_channels, *low.shape[-2:])
        x = initial_noise(shape, gens, device, init_sigma=schedule.init_noise_sigma).to(dtype)
        level = torch.full((b,), noise_level, device=device, dtype=torch.long)

        def net(z, t, context, low, level):
            return self.x4_unet(torch.cat([z, low], dim=1), t, context, level)

        kw = {"low": low, "level": level}
        denoiser = cfg_model(net, {"context": cond.to(device, dtype), **kw}, {"context": neg.to(device, dtype), **kw},
                             guidance)
        return sample(denoiser, sched, schedule, x, generator=gens, callback=callback, interrupt=interrupt,
                      progress=progress)

    # -- a call -----------------------------------------------------------------------------------

    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_images: int = 1, height: int | None = None, width: int | None = None, steps: int | None = None,
                 guidance: float | None = None, scheduler: str | None = None, image: Any = None,
                 seed: int | Sequence[int] | None = None, stages: int | None = None, sr_steps: int | None = None,
                 sr_guidance: float | None = None, noise_level: int | None = None, upscale_steps: int | None = None,
                 upscale_guidance: float | None = None, upscale_noise_level: int | None = None,
                 generator: Generators = None, callback: Any = None, interrupt: Any = None,
                 progress: bool = True) -> ImageOutput:
        """Run the cascade from the preset's first stage to `stages` (1: 64 px, 2: 256 px, 3: 1024 px).

        `steps`, `guidance`, `scheduler`, `height`/`width` are the first stage's; `sr_steps`/`sr_guidance` and
        `upscale_steps`/`upscale_guidance` those of stages II and III when they follow; `noise_level` and
        `upscale_noise_level` the augmentation of their low-resolution inputs. A preset that starts at stage
        II or III upsamples `image` (a path, PIL image or tensor in [0, 1])."""
        first = self.first_stage
        last = int(self.default("stages", stages)) if stages is not None or first == 1 else first
        if not first <= last <= 3:
            raise UserError(f"--stages must be between {first} and 3 for preset '{self.preset}' (it starts at stage "
                            f"{first}), got {last}")
        if first > 1 and image is None:
            raise UserError(f"preset '{self.preset}' is a super-resolution stage: give --image to upsample")
        if first > 1 and (height is not None or width is not None):
            raise UserError("a super-resolution preset's output size is 4x its --image: drop --height/--width")
        if first == 1 and image is not None:
            raise UserError("the cascade starts from text at stage I: drop --image (or use an IF-II or x4 upscaler "
                            "preset to upsample an image)")
        prompts = as_prompts(prompt, num_images)
        batch = len(prompts)
        steps_of = {first: int(self.default("steps", steps))}
        guide_of = {first: float(self.default("guidance", guidance))}
        for s, (st, gd, kst, kgd) in {2: (sr_steps, sr_guidance, "sr_steps", "sr_guidance"),
                                      3: (upscale_steps, upscale_guidance, "upscale_steps", "upscale_guidance")}.items():
            if s != first:
                steps_of[s], guide_of[s] = int(self.default(kst, st)), float(self.default(kgd, gd))
        if any(v < 1 for v in steps_of.values()):
            raise UserError(f"steps must be at least 1, got {steps_of}")
        for s in range(first, last + 1):
            self._ensure(s)
        sr_level = int(self.default("noise_level", noise_level))
        if first <= 2 <= last and not 0 <= sr_level < 1000:
            raise UserError(f"noise_level must be between 0 and 999, got {sr_level}")

        with self.session():
            device = self.device
            current: torch.Tensor | None = None
            if image is not None:
                from utils.data.image_inputs import load_image

                current = load_image(image).to(device)
                current = current.expand(batch, -1, -1, -1) if current.shape[0] == 1 else current
                if current.shape[0] != batch:
                    raise UserError(f"got {current.shape[0]} input images for {batch} outputs: give one or one per image")
            text = None
            result = None
            for s in range(first, last + 1):
                gens = self.generators(seed, batch, generator)
                if s in (1, 2):
                    if text is None:
                        text = self._t5(prompts, negative_prompt, guide_of[s] > 1.0 or guide_of.get(2, 0) > 1.0)
                    unet = self.unet if s == 1 else self.sr_unet
                    if s == 1:
                        size = unet.config.image_size
                        h, w = height or size, width or size
                        check_size(h, w, unet.config.downscale, "IF stage I")
                        shape = (batch, unet.config.sample_channels, h, w)
                    else:
                        shape = (batch, unet.config.sample_channels, *self._sr_size(current.shape[-2:]))
                    stage_text = text if guide_of[s] > 1.0 else (text[0], None)
                    result = self._if_stage(unet, f"stage{s}", stage_text, shape, steps_of[s], guide_of[s], gens,
                                            scheduler if s == first else None, current if s == 2 else None, sr_level,
                                            callback, interrupt, progress)
                    current = result.float()
                else:
                    level = int(self.default("upscale_noise_level", upscale_noise_level))
                    result = self._x4_stage(prompts, negative_prompt, current, steps_of[s], guide_of[s], level, gens,
                                            scheduler if s == first else None, callback, interrupt, progress)
                    current = self.decode_latents(result).float()
        return ImageOutput.from_tensor(current, latents=result)


__all__ = ["IF_I_SCHEDULER", "IF_II_SCHEDULER", "IF_NOISING", "ImagenPipeline", "X4_LOW_RES", "X4_SCHEDULER"]
