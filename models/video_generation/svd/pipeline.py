"""The SVD pipeline: image-to-video (and text-to-video through an image model of the zoo), with frame interpolation.

One call (as generative-models' sampler and diffusers' StableVideoDiffusionPipeline run it):

1. the conditioning image: the given one, or (with a prompt and no image) one made by an image model
   of the zoo (`image_model`: sdxl or flux, through `models.load`);
2. its CLIP ViT-H/14 embedding (from the image as given, anti-aliased to 224 pixels): the context of
   every cross-attention; zeros for the unguided branch;
3. the image resized to the video size, plus `noise_aug_strength` x Gaussian noise, through the VAE
   encoder (the posterior's mode, unscaled): concatenated to the noisy latents of every frame;
4. the vector: Fourier features of (fps - 1, motion_bucket_id, noise_aug_strength);
5. Euler over the EDM/Karras sigmas (0.002..700, rho 7) with v-prediction and c_noise = log(sigma)/4
   (`utils.diffusion` Euler with the release's scheduler config); classifier-free guidance whose scale
   ramps linearly from `min_guidance` on the first frame to `max_guidance` on the last;
6. the temporal VAE decodes `decode_chunk_size` frames at a time.

Seeds: video i uses seed + i; its noise augmentation is drawn first, then its initial latents.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from models.video_generation.svd import convert as cv
from models.video_generation.svd.conditioning import svd_ids, svd_vector
from models.video_generation.svd.model import SVDUNet
from models.video_generation.svd.spec import SPEC
from utils.diffusion import DiffusionPipeline, sample, scheduler_from_diffusers_config
from utils.diffusion.inputs import check_size
from utils.errors import UserError
from utils.outputs import VideoOutput
from utils.torch_utils import Generators, randn

IMAGE_MODELS = ("sdxl", "flux")


def load_condition_image(image: Any) -> torch.Tensor:
    """A path, PIL image, or (3, H, W) / (B, 3, H, W) tensor in [0, 1] -> (B, 3, H, W) in [-1, 1]."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, torch.Tensor):
        x = image.float()
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4 or x.shape[1] != 3:
            raise UserError(f"an image tensor must be (3, H, W) or (B, 3, H, W) in [0, 1], got {tuple(image.shape)}")
        return x * 2 - 1
    if isinstance(image, (list, tuple)):
        return torch.cat([load_condition_image(i) for i in image])
    if isinstance(image, (str, os.PathLike)):
        path = Path(os.path.expanduser(str(image)))
        if not path.is_file():
            raise UserError(f"image file not found: {path}: give the path of a .png or .jpg")
        try:
            with Image.open(path) as im:
                image = im.convert("RGB")
        except (OSError, UnidentifiedImageError):
            raise UserError(f"cannot read the image {path}: it is not an image file PIL can open") from None
    if not isinstance(image, Image.Image):
        raise UserError(f"image must be a path, a PIL image or a tensor, got {type(image).__name__}")
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1


def resize_condition(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> `size`, with PIL's Lanczos filter (what diffusers' SVD pipeline uses)."""
    import numpy as np
    from PIL import Image

    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = []
    for x in images:
        arr = ((x.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        im = Image.fromarray(arr).resize((size[1], size[0]), resample=Image.LANCZOS)
        out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))
    return torch.stack(out) * 2 - 1


class SVDPipeline(DiffusionPipeline):
    """Stable Video Diffusion: the spatio-temporal UNet, the temporal-decoder VAE and the CLIP image encoder."""

    spec = SPEC
    components = ("image_encoder", "vae", "unet")
    denoiser_name = "unet"
    cuda_dtype = torch.float16

    def __init__(self, unet: SVDUNet, vae: Any, image_encoder: Any, scheduler_config: dict | None = None,
                 preset: str = "tiny"):
        self.unet, self.vae, self.image_encoder = unet, vae, image_encoder
        self.scheduler_config = dict(scheduler_config or cv.SVD_SCHEDULER)
        self.preset = preset
        self.image_pipeline: Any = None
        """The text-to-image pipeline of the last text-to-video call (loaded on first use)."""
        self._image_key: tuple | None = None

    @property
    def config(self):
        return self.unet.config

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.downscale * self.config.downscale

    def sub_pipelines(self) -> list[DiffusionPipeline]:
        return [self.image_pipeline] if isinstance(self.image_pipeline, DiffusionPipeline) else []

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        offload: str | None = None, compile: bool = False,
                        attention: str | None = None) -> "SVDPipeline":
        """Load SVD from an official single file, a diffusers folder or a hub id.

        No source: `preset='tiny'` builds random tiny weights (offline, seconds); an official preset
        fetches its single file (svd.safetensors, svd_xt.safetensors, svd_xt_1_1.safetensors). A
        single file does not say whether it is SVD or SVD-XT (same shapes): `preset` does, else its
        file name. `offload`: None, "model" or "sequential"; `dtype`: default fp16 on CUDA, fp32 on CPU.
        """
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            pipe = cls._load(source, place.preset, place.dtype)
        return pipe.configure(place.device, place.dtype, offload=offload, compile=compile, attention=attention)

    @classmethod
    def tiny(cls) -> "SVDPipeline":
        """Random tiny components (UNet, temporal VAE, CLIP image encoder): runs offline in seconds."""
        from utils.encoders.clip_vision import CLIPVisionEncoder
        from utils.encoders.temporal_vae import AutoencoderKLTemporalDecoder

        torch.manual_seed(0)
        unet = SVDUNet("tiny").eval()
        return cls(unet, AutoencoderKLTemporalDecoder("tiny").eval(), CLIPVisionEncoder("tiny").eval(), preset="tiny")

    @classmethod
    def _load(cls, source: Any, preset: str | None, dt: torch.dtype) -> "SVDPipeline":
        from utils.weights.hub import locate

        wanted = preset or SPEC.default_preset
        if source is None:
            if wanted not in cv.HUB_REPOS:
                raise UserError(f"SVD preset '{wanted}' has no weights to download: pass a file or folder")
            source = cv.HUB_REPOS[wanted]
        local = Path(os.path.expanduser(str(source)))
        what = f"SVD weights '{source}'"
        try:
            path = local if local.exists() else locate(source, what=what, filename=cv.FILES.get(wanted))
        except UserError as err:
            raise type(err)(f"{err} ({cv.gated_hint(wanted)})") from None
        if path.is_dir():
            if not cv.is_diffusers_folder(path):
                raise UserError(f"{path} is not an SVD diffusers folder (no unet/config.json): pass the folder of the "
                                "whole pipeline, or an official single file (svd_xt.safetensors)")
            return cls._from_diffusers(path, preset, dt)
        return cls._from_single_file(path, preset, dt)

    @classmethod
    def _from_diffusers(cls, folder: Path, preset: str | None, dt: torch.dtype) -> "SVDPipeline":
        import json

        from utils.encoders.clip_vision import CLIPVisionEncoder
        from utils.encoders.temporal_vae import AutoencoderKLTemporalDecoder

        unet = cv.unet_from_diffusers(folder / "unet", dt)
        cv.check_preset_fits(preset, unet.config)
        vae = AutoencoderKLTemporalDecoder.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)
        clip = CLIPVisionEncoder.from_pretrained(folder, subfolder="image_encoder", device="cpu", dtype=dt)
        if preset is None:  # the UNet config's frame count tells SVD (14) from SVD-XT (25)
            frames = json.loads((folder / "unet" / "config.json").read_text()).get("num_frames")
            preset = cv.preset_of(unet.config, None) if frames is None or preset == "tiny" else (
                "svd" if frames == 14 else "svd-xt")
            if unet.config == cv.SVDUNetConfig.preset("tiny"):
                preset = "tiny"
        return cls(unet, vae, clip, cv.scheduler_config(folder), preset=preset)

    @classmethod
    def _from_single_file(cls, path: Path, preset: str | None, dt: torch.dtype) -> "SVDPipeline":
        from utils.encoders import clip_vision_convert as cvc
        from utils.encoders import temporal_vae_convert as tvc
        from utils.encoders.clip_vision import CLIPVisionEncoder
        from utils.encoders.temporal_vae import AutoencoderKLTemporalDecoder
        from utils.weights import load_state_dict

        sd = load_state_dict(path, dtype=dt)
        if not cv.is_official(sd):
            raise UserError(f"{path.name} is not an official SVD checkpoint (no model.diffusion_model.* keys): pass "
                            "svd.safetensors / svd_xt.safetensors, or a diffusers folder")
        parts = cv.split_official(sd)
        unet = cv.unet_from_state(parts.unet, preset)
        cv.check_preset_fits(preset, unet.config)
        tiny = unet.config == cv.SVDUNetConfig.preset("tiny")
        vae_cfg = tvc.infer_config(parts.vae, "tiny" if tiny else "svd", what=f"the VAE in {path.name}")
        vae = cv.build(AutoencoderKLTemporalDecoder, vae_cfg, parts.vae, "SVD VAE checkpoint")
        native, clip_cfg = cvc.vision_to_native(parts.image_encoder, "tiny" if tiny else "vit-h-14")
        clip = CLIPVisionEncoder(clip_cfg, model=CLIPVisionEncoder._build(clip_cfg, native))
        if preset is None:
            name = path.name.lower()
            preset = "tiny" if tiny else ("svd-xt-1.1" if "1_1" in name or "1.1" in name else
                                          "svd-xt" if "xt" in name else "svd")
        return cls(unet, vae, clip, dict(cv.SVD_SCHEDULER), preset=preset)

    # -- pieces of a call -----------------------------------------------------------------------

    def scheduler(self):
        return scheduler_from_diffusers_config(self.scheduler_config)

    def _offload_unet(self) -> None:
        """With model offload, send the UNet back to the CPU before decoding (the VAE runs alone)."""
        if self._offload == "model":
            names = [n for n, _ in self.named_components()]
            if "unet" in names:
                self._hooks[names.index("unet")].offload()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 1, D) CLIP image embeddings (the context)."""
        return self.image_encoder.encode(images.to(self.device)).to(self.dtype)[:, None, :]

    def encode_condition(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] (noise-augmented) -> unscaled VAE latents (the posterior's mode)."""
        dist = self._vae_calls()("encode", images.to(self.device, self.vae.dtype))
        return dist.mode().to(self.dtype)

    def guided_model(self, context: torch.Tensor, cond_latents: torch.Tensor, y: torch.Tensor,
                 guidance: torch.Tensor | None, frames: int):
        """model(x, t) for the sampler: the UNet on [x, conditioning latents] with frame-ramped guidance
        (the unguided branch sees zero context and zero conditioning latents)."""
        cond = cond_latents[:, None].expand(-1, frames, -1, -1, -1)

        def run(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            dtype = self.dtype
            x_c = torch.cat([x.to(dtype), cond], dim=2)
            if guidance is None:
                return self.unet(x_c, t, context, y)
            x_u = torch.cat([x.to(dtype), torch.zeros_like(cond)], dim=2)
            out = self.unet(torch.cat([x_u, x_c]), torch.cat([t, t]), torch.cat([torch.zeros_like(context), context]),
                            torch.cat([y, y]))
            out_u, out_c = out.float().chunk(2)
            return (out_u + guidance * (out_c - out_u)).to(out.dtype)

        return run

    def _image_from_prompt(self, prompt: Any, negative_prompt: Any, size: tuple[int, int], seed: Any,
                           image_model: str | None, image_preset: str | None, image_steps: int | None,
                           progress: bool) -> Any:
        from models import load

        name = image_model or "sdxl"
        if name not in IMAGE_MODELS:
            raise UserError(f"image_model must be one of {', '.join(IMAGE_MODELS)} (the image made from the prompt is "
                            f"then animated), got '{name}'")
        preset = image_preset if image_preset is not None else ("tiny" if self.preset == "tiny" else None)
        key = (name, preset)
        if self.image_pipeline is None or self._image_key != key:
            self.image_pipeline = load("image", name, preset=preset, device=str(self.device))
            self._image_key = key
        kwargs = dict(prompt=prompt, height=size[0], width=size[1], seed=seed, progress=progress)
        if negative_prompt is not None:
            kwargs["negative_prompt"] = negative_prompt
        if image_steps is not None:
            kwargs["steps"] = image_steps
        return self.image_pipeline(**kwargs).images

    # -- the call -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, image: Any = None, prompt: str | Sequence[str] | None = None,
                 negative_prompt: str | Sequence[str] | None = None, num_frames: int | None = None,
                 height: int | None = None, width: int | None = None, steps: int | None = None,
                 fps: float | None = None, motion_bucket_id: float | None = None,
                 noise_aug_strength: float | None = None, min_guidance: float | None = None,
                 max_guidance: float | None = None, decode_chunk_size: int | None = None, num_videos: int = 1,
                 seed: int | Sequence[int] | None = None, generator: Generators = None,
                 latents: torch.Tensor | None = None, interpolate: int = 0, interpolation_strength: float = 0.6,
                 image_model: str | None = None, image_preset: str | None = None, image_steps: int | None = None,
                 output_type: str = "pil", callback: Any = None, interrupt: Any = None,
                 progress: bool = True) -> VideoOutput:
        """Animate `image` (a path, PIL image or tensor in [0, 1]; several for a batch), or, with only a
        `prompt`, an image an image model of the zoo makes first (`image_model`: sdxl or flux).

        `fps` is the playback rate the UNet is conditioned on (as fps - 1) and the output's rate;
        `motion_bucket_id` (0..255) asks for more or less motion; `noise_aug_strength` is the noise
        added to the conditioning image (more noise, more freedom). Guidance ramps from `min_guidance`
        (first frame) to `max_guidance` (last). `interpolate=N` inserts N frames between each pair
        (`interpolation.py`) and multiplies the output's fps by N + 1. `seed`: video i uses seed + i.
        `output_type='latent'` returns the latents only (`VideoOutput.latents`)."""
        from tqdm.auto import tqdm

        from models.video_generation.svd.interpolation import interpolate_latents

        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        num_frames = int(self.default("num_frames", num_frames))
        height, width = int(self.default("height", height)), int(self.default("width", width))
        steps = int(self.default("steps", steps))
        fps = float(self.default("fps", fps))
        motion = float(self.default("motion_bucket_id", motion_bucket_id))
        aug = float(self.default("noise_aug_strength", noise_aug_strength))
        lo, hi = float(self.default("min_guidance", min_guidance)), float(self.default("max_guidance", max_guidance))
        chunk = int(self.default("decode_chunk_size", decode_chunk_size))
        for name, value, least in (("num_frames", num_frames, 1), ("steps", steps, 1), ("num_videos", num_videos, 1),
                                   ("decode_chunk_size", chunk, 1), ("interpolate", interpolate, 0)):
            if value < least:
                raise UserError(f"{name} must be at least {least}, got {value}")
        if fps <= 0 or aug < 0 or not 0 <= motion <= 1023:
            raise UserError(f"fps must be positive, noise_aug_strength >= 0 and motion_bucket_id in 0..1023; got "
                            f"{fps}, {aug}, {motion}")
        if lo < 0 or hi < 0:
            raise UserError(f"guidance scales must be >= 0, got {lo} and {hi}")
        check_size(height, width, self.pixel_multiple, "SVD")
        if image is None and prompt is None:
            raise UserError("give an image to animate (image= / --image in.png), or a prompt to make one first "
                            "(prompt= / --prompt)")

        if image is None:
            image = self._image_from_prompt(prompt, negative_prompt, (height, width), seed, image_model, image_preset,
                                            image_steps, progress)
        originals = [x[None] for im in (image if isinstance(image, (list, tuple)) else [image])
                     for x in load_condition_image(im)]
        tensors = isinstance(image, torch.Tensor)
        resized = torch.cat([torch.nn.functional.interpolate(o, size=(height, width), mode="bicubic",
                                                             align_corners=False).clamp(-1, 1)
                             if tensors and tuple(o.shape[-2:]) != (height, width) else
                             o if tensors else resize_condition(o, (height, width)) for o in originals])
        per_image = len(originals)
        batch = per_image * num_videos
        order = torch.arange(per_image).repeat_interleave(num_videos)  # video i animates image order[i]
        gens = self.generators(seed, batch, generator)

        with self.session():
            device, dtype = self.device, self.dtype
            context = torch.cat([self.encode_image(o) for o in originals])[order]
            cond_pixels = resized[order]
            cond_pixels = cond_pixels + aug * randn(cond_pixels.shape, gens, "cpu", torch.float32)
            cond_latents = self.encode_condition(cond_pixels)
            y = svd_vector(svd_ids(fps, motion, aug, batch), self.config.addition_time_embed_dim).to(device, dtype)
            guided = hi > 1.0
            ramp = (torch.linspace(lo, hi, num_frames, device=device).view(1, num_frames, 1, 1, 1)
                    if guided else None)
            sched = self.scheduler()
            schedule = sched.schedule(steps)
            down = self.vae.config.downscale
            shape = (batch, num_frames, self.config.latent_channels, height // down, width // down)
            if latents is not None:
                if tuple(latents.shape) != shape:
                    raise UserError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
                x = latents.to(device, torch.float32) * schedule.init_noise_sigma
            else:
                x = randn(shape, gens, device, torch.float32) * schedule.init_noise_sigma
            model = self.guided_model(context, cond_latents, y, ramp, num_frames)
            result = sample(model, sched, schedule, x.to(dtype), generator=gens, callback=callback,
                            interrupt=interrupt, progress=progress)
            out_fps = fps
            if interpolate > 0:
                result = interpolate_latents(self, result, interpolate, context, y, (lo, hi), steps,
                                             interpolation_strength, gens, progress)
                out_fps = fps * (interpolate + 1)
            if output_type == "latent":
                return VideoOutput([], fps=out_fps, latents=result.float().cpu())
            self._offload_unet()
            total = result.shape[0] * result.shape[1]
            bar = tqdm(total=total, desc="decoding", unit="frame", leave=False, disable=not progress)
            try:
                pixels = self._vae_calls()("decode_latents", result.to(device, self.vae.dtype), chunk,
                                           on_chunk=bar.update)
            finally:
                bar.close()
        return self.video_output(pixels, result, out_fps)

    def video_output(self, pixels: torch.Tensor, latents: torch.Tensor, fps: float) -> VideoOutput:
        """Decoded frames (B, T, 3, H, W) in [-1, 1] -> a VideoOutput of PIL frames."""
        from utils.visualization.grid import to_pil

        if not bool(torch.isfinite(pixels).all()):
            raise UserError("the model produced NaN or infinite frames: its weights are broken or the dtype overflows; "
                            "try dtype fp32 (--dtype fp32), or other weights")
        unit = ((pixels.float().cpu() + 1) / 2).clamp(0, 1)
        frames = [to_pil(video, value_range=(0.0, 1.0)) for video in unit]
        return VideoOutput(frames, fps=fps, pixels=unit, latents=latents.float().cpu())


__all__ = ["IMAGE_MODELS", "SVDPipeline", "load_condition_image", "resize_condition"]
