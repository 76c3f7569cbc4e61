"""The Runway Gen-3 stand-in's pipeline: AnimateDiff (motion modules on SD 1.5) with Gen-3-style controls.

One call:

1. the prompt through SD 1.5's CLIP text encoder (the empty prompt, or the negative one, for guidance);
2. the starting latents (B, F, 4, h, w): noise drawn per video in the (C, F, h, w) order AnimateDiff's
   pipelines use (so a seed gives the same clip as diffusers' AnimateDiffPipeline); with `video`, the clip's
   encoded frames noised to `strength` (SDEdit, as AnimateDiffVideoToVideoPipeline: the frames' posterior is
   sampled first, then (F, C, h, w) noise); with a motion brush, the first frame's noise moved per frame
   inside the mask (controls.py);
3. the shared sampler (`utils.diffusion.sample`) over the scheduler (DDIM with AnimateDiff's linear betas by
   default), classifier-free guidance batched, the MotionUNet seeing all frames of a clip at once;
   with `image`, after each step frame 0 (and, with a motion brush, everything outside the mask) is pinned
   to the image's latents (the VAE posterior's mode) re-noised to the next level (controls.py); with
   `control_video`, a ControlNet adds its residuals per frame (the driving video's maps, one per frame);
4. the VAE decodes `decode_chunk_size` frames at a time; with a motion brush, the decoded still is pasted
   back outside the feathered mask.

Seeds: video i uses seed + i.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch

from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline
from models.video_generation.runway_gen3 import controls
from models.video_generation.runway_gen3.motion import MotionAdapter, MotionAdapterConfig
from models.video_generation.runway_gen3.spec import BASE_MODEL, SDXL_BASE_MODEL, SPEC
from models.video_generation.runway_gen3.unet_motion import MotionUNet
from utils.diffusion import (DiffusionPipeline, InpaintBlend, blend, cfg_model, get_scheduler, img2img_latents,
                             img2img_start, sample, scheduler_from_diffusers_config)
from utils.diffusion.inputs import as_prompts, check_size
from utils.errors import UserError
from utils.outputs import VideoOutput
from utils.torch_utils import Generators, randn

# AnimateDiff's configs/inference/inference-v2.yaml and v3: DDIM over linear betas 0.00085..0.012.
ANIMATEDIFF_SCHEDULER: dict[str, Any] = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
    "beta_schedule": "linear", "steps_offset": 1, "clip_sample": False, "prediction_type": "epsilon",
    "timestep_spacing": "leading", "set_alpha_to_one": True}


class RunwayGen3Pipeline(DiffusionPipeline):
    """SD 1.5's text encoder, VAE and UNet (frozen) + an AnimateDiff motion adapter, as a MotionUNet."""

    spec = SPEC
    components = ("text_encoder", "controlnet", "unet", "vae")
    denoiser_name = "unet"
    cuda_dtype = torch.float16

    def __init__(self, unet: MotionUNet, vae: Any, text_encoder: Any, scheduler_config: dict | None = None,
                 preset: str = "tiny", controlnet: Any = None):
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.scheduler_config = dict(scheduler_config or ANIMATEDIFF_SCHEDULER)
        self.preset = preset
        self.controlnet = controlnet
        self.control_kind: str | None = None

    @property
    def config(self):
        return self.unet.unet.config

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.downscale

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        base: Any = None, tokenizer: Any = None, controlnet: Any = None, offload: str | None = None,
                        vae_tiling: bool = False, compile: bool = False,
                        attention: str | None = None) -> "RunwayGen3Pipeline":
        """`source`: the motion adapter (a released `mm_sd_v15_v2.ckpt`-style file, a diffusers MotionAdapter
        folder or hub id; default: the preset's release file). `base`: the image model it animates (a pipeline,
        a single file, diffusers folder or hub id): SD 1.5 for the v15 presets (default the SD 1.5 release),
        SDXL for `sdxl-beta` (default SDXL base 1.0). No source and `preset='tiny'` / `'tiny-sdxl'`: random tiny
        components, offline. `controlnet`: a ControlNet for `control_video`."""
        from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline
        from models.video_generation.runway_gen3.convert import load_adapter

        place = cls.resolve(source, preset, device, dtype, offload)
        tiny = place.preset in ("tiny", "tiny-sdxl")
        adapter = None if tiny and source is None else load_adapter(source, place.preset)  # small: fails fast
        sdxl = isinstance(base, SDXLPipeline) or (not isinstance(base, SD15Pipeline)
                                                  and place.preset in ("sdxl-beta", "tiny-sdxl"))
        family = SDXLPipeline if sdxl else SD15Pipeline
        if isinstance(base, (SD15Pipeline, SDXLPipeline)):
            image = base
        elif base is None and tiny:  # the tiny image model (a user's adapter file must fit it)
            image = family.tiny()
        else:
            kw = {"tokenizers": tokenizer} if sdxl else {"tokenizer": tokenizer}
            image = family.from_pretrained(base if base is not None else (SDXL_BASE_MODEL if sdxl else BASE_MODEL),
                                           device="cpu", dtype=place.dtype, **kw)
        if getattr(image, "is_refiner", False):
            raise UserError("the SDXL refiner cannot carry motion modules: give the SDXL base model (--base)")
        if adapter is None:
            adapter = cls.tiny_adapter(image.unet.config, mid_block=not sdxl)
        unet = MotionUNet(image.unet, adapter.to(dtype=place.dtype))
        encoders = image.text_encoders if sdxl else image.text_encoder
        pipe = cls(unet, image.vae, encoders, preset=place.preset or ("sdxl-beta" if sdxl else "v15-v2"))
        if controlnet is not None:
            pipe.load_controlnet(controlnet)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @staticmethod
    def tiny_adapter(unet_config, mid_block: bool = True) -> MotionAdapter:
        """Random motion modules fitting a tiny UNet (seeded: the same weights every time); `mid_block=False`:
        none in the middle block, as AnimateDiff's SDXL beta."""
        from utils.torch_utils import local_seed

        with local_seed(0):
            return MotionAdapter(MotionAdapterConfig(
                block_out_channels=tuple(unet_config.level_channels), motion_layers_per_block=unet_config.num_res_blocks,
                motion_num_attention_heads=4, motion_norm_num_groups=unet_config.norm_groups,
                motion_max_seq_length=32, use_motion_mid_block=mid_block)).eval()

    @classmethod
    def tiny(cls) -> "RunwayGen3Pipeline":
        image = SD15Pipeline.tiny()
        return cls(MotionUNet(image.unet, cls.tiny_adapter(image.unet.config)), image.vae, image.text_encoder)

    def load_controlnet(self, source: Any, kind: str | None = None) -> Any:
        """A ControlNet for `control_video`: an SD 1.5 one (official `control_model.*` or diffusers layout, a
        file, folder, hub id or a ControlNet module); one made for another UNet (SDXL) is one clear line."""
        from models.image_generation.stable_diffusion.controlnet import ControlNet
        from models.image_generation.stable_diffusion.controlnet_convert import load_controlnet
        from models.image_generation.stable_diffusion.controlnet_pipeline import _unet_preset

        if getattr(self, "_offload", None) is not None:
            raise UserError("this pipeline runs with CPU offload: pass controlnet= to from_pretrained (CLI: "
                            "--controlnet) instead of loading one afterwards")
        image_unet = self.unet.unet
        net = source if isinstance(source, ControlNet) else load_controlnet(
            source, preset=_unet_preset(image_unet.config), dtype=image_unet.dtype)
        net.check_fits(image_unet.config)
        if net.config.hint_downscale != self.vae.config.downscale:
            raise UserError(f"this ControlNet embeds condition maps at 1/{net.config.hint_downscale} size but the "
                            f"VAE's latents are 1/{self.vae.config.downscale}: pass a ControlNet made for SD 1.5")
        self.controlnet = net.to(image_unet.device, image_unet.dtype).eval()
        self.control_kind = kind
        return self.controlnet

    def _controlnet_for(self, kind: str | None) -> Any:
        """The loaded ControlNet, else the default SD 1.5 release of `kind` (tiny preset: a random tiny one)."""
        from models.image_generation.stable_diffusion.controlnet_pipeline import tiny_controlnet
        from models.image_generation.stable_diffusion.spec import CONTROLNETS

        if self.controlnet is not None:
            if kind is not None and self.control_kind is not None and kind != self.control_kind:
                raise UserError(f"the loaded ControlNet is for {self.control_kind}, not {kind}: load a {kind} "
                                f"ControlNet (--controlnet) or pass --control {self.control_kind}")
            return self.controlnet
        if kind is None:
            raise UserError("ready condition maps (control=None) need a loaded ControlNet: pass --controlnet, or "
                            "--control canny|depth|pose to make the maps and use that kind's default ControlNet")
        if self.preset in ("tiny", "tiny-sdxl"):
            return self.load_controlnet(tiny_controlnet(self.unet.unet.config, self.vae.config.downscale), kind)
        family = "sdxl" if self.is_sdxl else "sd15"
        if (family, kind) not in CONTROLNETS:
            raise UserError(f"no default {kind} ControlNet for {family}: pass one with --controlnet PATH_OR_REPO")
        source = CONTROLNETS[(family, kind)][0]
        try:
            return self.load_controlnet(source, kind)
        except UserError as err:  # offline, not cached
            raise type(err)(f"{err} (or pass a local ControlNet with --controlnet PATH)") from None

    # -- pieces of a call -----------------------------------------------------------------------

    @property
    def is_sdxl(self) -> bool:
        return bool(self.config.adm_in_channels)

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        return self.text_encoder.encode(prompts).last_hidden_state

    def _conditioning(self, prompts: list[str], negative: Any, guided: bool, size: tuple[int, int]) -> tuple[dict, dict]:
        """The MotionUNet inputs of the conditional and unconditional branches: SD 1.5's CLIP-L states (the empty
        prompt for guidance, as AnimateDiff does); SDXL's two encoders, pooled text and size ids as the SDXL
        pipeline makes them (no crop, original = target = the clip's size)."""
        device, dtype = self.device, self.dtype
        if self.is_sdxl:
            from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline

            view = SDXLPipeline(self.unet.unet, self.vae, self.text_encoder, preset=self.preset)
            return view._conditioning(prompts, negative, guided, size, None, (0, 0), None, 6.0, 2.5)
        cond = {"context": self.encode_prompt(prompts).to(device, dtype)}
        if not guided:
            return cond, cond
        return cond, {"context": self.encode_prompt(as_prompts(negative or "", len(prompts))).to(device, dtype)}

    def _scheduler(self, name: str | None):
        if name is None:
            return scheduler_from_diffusers_config(self.scheduler_config)
        if name.lower().startswith(("flow", "edm")):
            raise UserError(f"scheduler '{name}' does not fit AnimateDiff on SD 1.5 (DDPM-trained): use ddim, euler, "
                            "euler-a, dpm++2m...")
        return get_scheduler(name, self.scheduler_config)

    def encode_frames(self, frames: torch.Tensor, gens: Generators, chunk: int) -> torch.Tensor:
        """(F, 3, H, W) in [-1, 1] -> (B, F, 4, h, w) normalised latents: video i's posterior sampled from
        generator i (`chunk` frames through the encoder at a time)."""
        from utils.encoders.vae import DiagonalGaussian

        calls = self._vae_calls()
        x = frames.to(self.device, self.vae.dtype)
        moments = torch.cat([calls("encode", x[i:i + chunk]).moments.float() for i in range(0, len(x), chunk)])
        per_video = gens if isinstance(gens, (list, tuple)) else [gens]
        z = torch.stack([DiagonalGaussian(moments).sample(g) for g in per_video])
        return self.vae.scale_latents(z)

    def image_latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) in [-1, 1] -> (1, 4, h, w) normalised latents: the VAE posterior's mode (deterministic)."""
        from utils.encoders.vae import DiagonalGaussian

        moments = self._vae_calls()("encode", pixels.to(self.device, self.vae.dtype)).moments.float()
        return self.vae.scale_latents(DiagonalGaussian(moments).mode())

    def decode_frames(self, latents: torch.Tensor, chunk: int) -> torch.Tensor:
        """(B, F, 4, h, w) -> (B, F, 3, H, W) in [-1, 1], `chunk` frames at a time."""
        b, f = latents.shape[:2]
        flat = latents.reshape(b * f, *latents.shape[2:]).to(self.device, self.vae.dtype)
        calls = self._vae_calls()
        pixels = torch.cat([calls("decode_latents", flat[i:i + chunk]) for i in range(0, b * f, chunk)])
        return pixels.reshape(b, f, *pixels.shape[1:])

    def video_output(self, pixels: torch.Tensor, latents: torch.Tensor, fps: float) -> VideoOutput:
        from utils.outputs import check_generated
        from utils.visualization.grid import to_pil

        unit = ((pixels.float().cpu() + 1) / 2).clamp(0, 1)
        check_generated(unit, "frames")
        return VideoOutput([to_pil(v, value_range=(0.0, 1.0)) for v in unit], fps=fps, pixels=unit,
                           latents=latents.float().cpu())

    def _denoiser(self, cond: dict, uncond: dict, guidance: float, control: torch.Tensor | None, scale: float):
        unet = self.unet
        if control is not None:
            unet = controls.FrameControl(self.unet, self.controlnet, control.to(self.device, self.dtype), scale)
        return cfg_model(unet, cond=cond, uncond=uncond, scale=guidance)

    # -- the call -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 num_frames: int | None = None, height: int | None = None, width: int | None = None,
                 steps: int | None = None, guidance: float | None = None, scheduler: str | None = None,
                 fps: float | None = None, num_videos: int = 1, image: Any = None, image_strength: float = 1.0,
                 video: Any = None, strength: float | None = None, motion_mask: Any = None,
                 motion: str | Sequence[float] | None = None, motion_strength: float = 1.0, brush_paste: bool = True,
                 control: str | None = None, control_video: Any = None, control_scale: float = 1.0,
                 decode_chunk_size: int | None = None, seed: int | Sequence[int] | None = None,
                 generator: Generators = None, latents: torch.Tensor | None = None, output_type: str = "pil",
                 callback: Any = None, interrupt: Any = None, progress: bool = True) -> VideoOutput:
        """Text-to-video; `image`: its latents pin frame 0 (`image_strength` 0..1); `video`: video-to-video,
        the clip noised to `strength` and denoised; `motion_mask` (white = moves) with `motion` ('left', 'right',
        'up', 'down', 'zoom-in', 'zoom-out' or (dx, dy) pixels per second; none: free motion inside) and `image`:
        the motion brush (`brush_paste`: frames 1.. outside the feathered mask are the decoded still, so the VAE
        decoder's reach does not stir the background);
        `control_video` (+ `control`: canny, depth or pose, or None for ready condition maps) with a loaded
        ControlNet: each frame steered by its map. `seed`: video i uses seed + i."""
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        num_frames = int(self.default("num_frames", num_frames))
        height, width = int(self.default("height", height)), int(self.default("width", width))
        steps, guidance = int(self.default("steps", steps)), float(self.default("guidance", guidance))
        fps, chunk = float(self.default("fps", fps)), int(self.default("decode_chunk_size", decode_chunk_size))
        for name, value in (("num_frames", num_frames), ("steps", steps), ("num_videos", num_videos),
                            ("decode_chunk_size", chunk)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        limit = self.unet.adapter.config.motion_max_seq_length
        if num_frames > limit:
            raise UserError(f"num_frames {num_frames} is more than this motion adapter's {limit} frame positions: "
                            f"ask for at most {limit}")
        if fps <= 0 or not 0 <= image_strength <= 1 or motion_strength < 0:
            raise UserError(f"fps must be positive, image_strength in [0, 1] and motion_strength >= 0; got {fps}, "
                            f"{image_strength}, {motion_strength}")
        check_size(height, width, self.pixel_multiple, "runway_gen3")
        if video is not None and (image is not None or motion_mask is not None):
            raise UserError("video-to-video takes no --image or --motion-mask: give the clip alone, or an image")
        if motion_mask is not None and image is None:
            raise UserError("the motion brush animates a still image: give --image with --motion-mask")
        if motion is not None and motion_mask is None:
            raise UserError("--motion needs --motion-mask (white = the region that moves)")
        if control is not None and control_video is None:
            raise UserError(f"--control {control} steers every frame by a driving video: give --control-video")
        if control_video is not None and not 0.0 <= float(control_scale) <= 10.0:
            raise UserError(f"control_scale must be in [0, 10], got {control_scale} (1 is the trained strength)")
        prompts = as_prompts(prompt, num_videos)
        batch = len(prompts)
        down = self.vae.config.downscale
        lat = (height // down, width // down)
        gens = self.generators(seed, batch, generator)
        control_maps = None
        if control_video is not None:
            control_maps = self._control_maps(control, control_video, num_frames, (height, width), fps)
            self._controlnet_for(control)
        with self.session():
            device, dtype = self.device, self.dtype
            cond, uncond = self._conditioning(prompts, negative_prompt, guidance > 1.0, (height, width))
            sched = self._scheduler(scheduler)
            schedule = sched.schedule(steps)
            shape = (batch, num_frames, self.config.in_channels, *lat)
            start, pin, paste = 0, None, None
            if video is not None:
                frames = controls.load_frames(video, (height, width), num_frames, fps)
                x0 = self.encode_frames(frames, gens, chunk).to(device, dtype)
                strength = 0.8 if strength is None else float(strength)
                start = img2img_start(steps, strength, sched.order)
                if start >= len(schedule.timesteps):
                    raise UserError(f"strength {strength} with {steps} steps leaves no step to run: raise either")
                x = img2img_latents(sched, schedule, x0, randn(x0.shape, gens, device, dtype), start)
            else:
                if latents is not None:
                    if tuple(latents.shape) != shape:
                        raise UserError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
                    noise = latents.to(device, torch.float32)
                else:  # drawn as (C, F, h, w) per video, AnimateDiff's layout
                    noise = randn((batch, shape[2], num_frames, *lat), gens, device).permute(0, 2, 1, 3, 4)
                if image is not None:
                    noise, pin, paste = self._pins(image, (height, width), lat, noise, image_strength,
                                                   motion_mask, motion, motion_strength, fps, brush_paste)
                x = (noise * schedule.init_noise_sigma).to(dtype)
                if pin is not None:  # the first step starts from the pinned latents at its level too
                    x = blend(x, sched.add_noise(pin.init_latents, pin.noise, 0, schedule), pin.mask)
            model = self._denoiser(cond, uncond, guidance, control_maps, control_scale)
            result = sample(model, sched, schedule, x, generator=gens, start=start, inpaint=pin, callback=callback,
                            interrupt=interrupt, progress=progress)
            if output_type == "latent":
                return VideoOutput([], fps=fps, latents=result.float().cpu())
            pixels = self.decode_frames(result, chunk)
            if paste is not None:  # the motion brush: frames 1.. outside the mask are the decoded still itself
                soft, still = paste
                pixels[:, 1:] = blend(pixels[:, 1:], still[:, None], soft[:, None])
        return self.video_output(pixels, result, fps)

    def _pins(self, image: Any, size: tuple[int, int], lat: tuple[int, int], noise: torch.Tensor,
              image_strength: float, motion_mask: Any, motion: Any, motion_strength: float, fps: float,
              brush_paste: bool) -> tuple[torch.Tensor, InpaintBlend, tuple[torch.Tensor, torch.Tensor] | None]:
        """The image's latents as the pinned target of every frame, the weights of the pin, and (with a motion
        brush) the first frame's noise moved inside the mask."""
        from utils.data.image_inputs import load_image

        batch, num_frames = noise.shape[:2]
        raw = load_image(image)
        pixels = load_image(image, size)
        z0 = self.image_latents(pixels)  # (1, 4, h, w): the posterior's mode (the pin is the same for every seed)
        known = z0[:, None].expand(batch, num_frames, -1, -1, -1).to(self.device, torch.float32)
        region, paste = None, None
        if motion_mask is not None:
            region = controls.brush_mask(motion_mask, tuple(raw.shape[-2:]), lat)
            if brush_paste:
                soft = controls.feather(controls.brush_mask(motion_mask, None, size, warn=False),
                                        self.vae.config.downscale)
                paste = (soft.to(self.device), self.decode_latents(z0.to(self.dtype)).float())
            inside = region.to(noise.device).reshape(1, 1, 1, *lat)
            moved = noise  # no direction: the frames' own noise inside (ambient motion, the motion modules' choice)
            if motion is not None:
                kind, a, b = controls.motion_vector(motion, size)
                moved = controls.warp_noise(noise[:, 0].cpu(), num_frames, kind, a, b, fps,
                                            self.vae.config.downscale, motion_strength).to(noise.device)
            noise = inside * moved + (1 - inside) * noise[:, :1]  # still noise where the image stays still
        weights = controls.pin_weights(batch, num_frames, lat, image_strength, region).to(noise.device)
        return noise, InpaintBlend(known.to(self.dtype), weights.to(self.dtype), noise.to(self.dtype)), paste

    def _control_maps(self, control: str | None, control_video: Any, num_frames: int, size: tuple[int, int],
                      fps: float) -> torch.Tensor:
        frames = controls.load_frames(control_video, size, num_frames, fps, what="control video")
        return controls.control_maps(control, frames, size)


__all__ = ["ANIMATEDIFF_SCHEDULER", "RunwayGen3Pipeline"]
