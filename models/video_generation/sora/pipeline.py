"""The Sora stand-in's pipeline: Wan 2.1 and Wan 2.2 TI2V-5B text-to-video and image-to-video.

One call (as the Wan release and diffusers' `WanPipeline` / `WanImageToVideoPipeline` run it):

1. the prompt, optionally rewritten by a local text model first (`prompt_extender`: the recaptioning
   idea of DALL-E 3 and Sora, `prompt_extension.py`), cleaned (HTML entities, runs of spaces);
2. UMT5 reads it with its attention mask; the tokens past the prompt's end are set to zero and the
   sequence padded to `max_sequence_length` (512) with zeros; the negative prompt likewise;
3. image-to-video: CLIP ViT-H/14's penultimate-layer tokens of the image (CLIP's own resize and crop)
   for the image cross-attention, and the VAE latents of the clip [image, zeros...] (posterior mode,
   normalised) behind a 4-channel mask that marks the given frame: 16 + 4 + 16 = 36 input channels;
4. noise of (16, 1 + (frames - 1) / 4, H / 8, W / 8) per video (video i from seed + i), flow-matching
   Euler over sigmas 1 -> 0 shifted by `shift` (`utils.diffusion.FlowMatchEuler`), classifier-free
   guidance uncond + scale * (cond - uncond) on the velocity;
5. the latents de-normalised and decoded by the causal VAE, `decode_chunk_size` latent frames at a
   time after the first (bounded memory for long clips).

Wan 2.2 TI2V-5B (`expand_timesteps`, as diffusers names it) runs one model for both tasks over the
48-channel Wan 2.2 VAE (16x spatial): the latents are the transformer's whole input (48 channels, no
mask or CLIP), and every token gets its own timestep. Text-to-video: all tokens share t. Image-to-video:
the image alone is encoded as the first latent frame (posterior mode, normalised); at every step that
frame replaces the first frame of the sample before the transformer sees it, its tokens get timestep
0, and the final latents carry it too.

Sizes are free within the model's grid ("native" aspect ratios and durations, as the Sora report
describes training): height and width multiples of the VAE's ratio x the patch (16 for Wan 2.1,
32 for Wan 2.2), and 4k + 1 frames.
"""
from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from models.video_generation.sora.config import WanTransformerConfig, transformer_config
from models.video_generation.sora.model import WanTransformer
from models.video_generation.sora.spec import SPEC
from utils.diffusion import DiffusionPipeline, sample
from utils.diffusion.guidance import cfg_model
from utils.diffusion.inputs import check_size
from utils.diffusion.schedulers import FlowMatchEuler
from utils.errors import UserError
from utils.outputs import VideoOutput, check_generated
from utils.torch_utils import Generators, randn

CLIP_LAYER = -2
"""The CLIP layer whose tokens image-to-video attends to (the penultimate block's output)."""
CLIP_RESIZE = "torchvision"
"""How the CLIP input is resized: as diffusers' Wan pipelines do through transformers 5's CLIPImageProcessor."""
OFFICIAL_VAE = "Wan2.[12]_VAE.*"
"""The VAE file of an official release folder (Wan2.1_VAE.pth; Wan2.2_VAE.pth for TI2V-5B)."""


def clean_prompt(text: str) -> str:
    """The release's prompt cleaning: HTML entities unescaped (twice), whitespace runs collapsed, trimmed
    (ftfy's mojibake repair is applied too when ftfy is installed, as the release does)."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


def check_frames(num_frames: int, ratio: int = 4) -> None:
    """Wan generates 1 + 4k frames (the VAE's first frame alone, then groups of four)."""
    if num_frames < 1 or (num_frames - 1) % ratio:
        below = max(1, 1 + ratio * ((num_frames - 1) // ratio))
        raise UserError(f"Wan generates 1 + {ratio}k frames (1, 5, ..., 81, ...), got {num_frames}: "
                        f"use {below} or {below + ratio}")


def fit_size(image_hw: tuple[int, int], area: int, multiple: int = 16) -> tuple[int, int]:
    """A (height, width) of about `area` pixels with the image's aspect ratio, both multiples of `multiple`
    (how the release sizes image-to-video clips)."""
    h, w = image_hw
    aspect = h / w
    height = max(multiple, round((area * aspect) ** 0.5 / multiple) * multiple)
    width = max(multiple, round((area / aspect) ** 0.5 / multiple) * multiple)
    return height, width


class WanPipeline(DiffusionPipeline):
    """Wan 2.1 / 2.2 TI2V-5B: the transformer, the causal video VAE, UMT5 and (Wan 2.1 image-to-video) the
    CLIP image encoder. `expand_timesteps` (default: on for a Wan 2.2 VAE under a transformer that takes
    only the latents) selects the TI2V scheme: per-token timesteps, the image as the first latent frame."""

    spec = SPEC
    components = ("text_encoder", "image_encoder", "transformer", "vae")
    denoiser_name = "transformer"
    cuda_dtype = torch.bfloat16

    def __init__(self, transformer: WanTransformer, vae: Any, text_encoder: Any, image_encoder: Any = None,
                 preset: str = "tiny", expand_timesteps: bool | None = None):
        self.transformer, self.vae, self.text_encoder, self.image_encoder = transformer, vae, text_encoder, image_encoder
        self.preset = preset
        if expand_timesteps is None:
            expand_timesteps = bool(getattr(vae.config, "is_residual", False)) and not transformer.config.i2v \
                and transformer.config.in_dim == vae.config.z_dim
        if expand_timesteps and (transformer.config.i2v or transformer.config.in_dim != vae.config.z_dim):
            raise UserError("expand_timesteps (the Wan 2.2 TI2V scheme) needs a transformer that takes only the "
                            f"{vae.config.z_dim} latent channels, got {transformer.config.in_dim} and CLIP "
                            f"{'on' if transformer.config.i2v else 'off'}: the components come from different models")
        self.expand_timesteps = bool(expand_timesteps)
        if transformer.config.i2v and image_encoder is None:
            raise UserError("this Wan transformer is image-to-video and needs the CLIP image encoder "
                            "(image_encoder/ of the diffusers folder)")
        if transformer.config.in_dim not in (vae.config.z_dim, 2 * vae.config.z_dim + vae.config.temporal_ratio):
            raise UserError(f"the Wan transformer takes {transformer.config.in_dim} channels, which does not fit a VAE "
                            f"of {vae.config.z_dim} latent channels: the components come from different models")

    @property
    def config(self) -> WanTransformerConfig:
        return self.transformer.config

    @property
    def i2v(self) -> bool:
        """Wan 2.1 image-to-video: an image is required (CLIP tokens + mask and image latents as channels)."""
        return self.config.i2v

    @property
    def takes_image(self) -> bool:
        """Whether a call may be given an image: the Wan 2.1 i2v models (always) and TI2V (optionally)."""
        return self.i2v or self.expand_timesteps

    @property
    def pixel_multiple(self) -> int:
        return self.vae.config.spatial_ratio * self.config.patch_size[1]

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        offload: str | None = None, vae_tiling: bool = False, compile: bool = False,
                        attention: str | None = None) -> "WanPipeline":
        """Load Wan from a diffusers folder (Wan-AI/Wan2.1-*-Diffusers, Wan-AI/Wan2.2-TI2V-5B-Diffusers:
        transformer/, vae/, text_encoder/, tokenizer/, image_encoder/ for Wan 2.1 i2v, model_index.json's
        expand_timesteps), the official release's folder (Wan-AI/Wan2.1-T2V-*, Wan-AI/Wan2.2-TI2V-5B:
        config.json, diffusion_pytorch_model*.safetensors, Wan2.1_VAE.pth or Wan2.2_VAE.pth,
        models_t5_umt5-xxl-enc-bf16.pth, google/umt5-xxl/), or a hub id; two-expert Wan 2.2 folders (A14B)
        are refused; no source: `preset='tiny'` builds random tiny weights offline,
        an official preset fetches its diffusers repo. `offload`: None, "model" (one model on the device
        at a time) or "sequential" (layer by layer); `vae_tiling`: the VAE decodes large frames in
        overlapping spatial tiles (`enable_vae_tiling` sets the sizes). On CUDA the default dtype is
        bfloat16 (the release's), on the CPU float32."""
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            pipe = cls._load(source, place.preset, place.dtype)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls, image_to_video: bool = False, ti2v: bool = False) -> "WanPipeline":
        """Random tiny components (a character tokenizer stands in for UMT5's): runs offline in seconds.
        `ti2v`: the Wan 2.2 TI2V scheme over the tiny Wan 2.2 VAE (text- and image-to-video in one model)."""
        from utils.encoders.clip_vision import CLIPVisionConfig, CLIPVisionEncoder
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.tiny_tokenizer import tiny_t5_tokenizer
        from utils.encoders.wan_vae import WanVAE, wan_vae_config
        from utils.torch_utils import local_seed

        with local_seed(0):
            t5_cfg = T5EncoderConfig.preset("umt5-tiny")
            text = T5TextEncoder(t5_cfg, tokenizer=tiny_t5_tokenizer(t5_cfg))
            vae = WanVAE(wan_vae_config("tiny-2.2" if ti2v else "tiny")).eval()
            name = "tiny-ti2v" if ti2v else "tiny-i2v" if image_to_video else "tiny"
            transformer = WanTransformer(transformer_config(name)).eval()
            clip = (CLIPVisionEncoder(CLIPVisionConfig.preset("tiny").with_(projection=False))
                    if image_to_video else None)
        return cls(transformer, vae, text, clip, preset="tiny")

    @classmethod
    def _load(cls, source: Any, preset: str | None, dt: torch.dtype) -> "WanPipeline":
        from utils.weights.hub import locate

        if source is None:
            weights = SPEC.weights_for(preset or SPEC.default_preset)
            if weights is None:
                raise UserError(f"Wan preset '{preset}' has no weights to download: pass a folder")
            source = weights.source
        path = locate(source, what=f"Wan weights '{source}'")
        if not path.is_dir():
            raise UserError(f"{path} is a file; Wan loads from a folder (a diffusers folder with transformer/ and vae/, "
                            "or the official release's folder with Wan2.1_VAE.pth / Wan2.2_VAE.pth)")
        if (path / "transformer_2").is_dir() or (path / "high_noise_model").is_dir():
            raise UserError(f"{path} is a two-expert Wan 2.2 model (transformer_2/ or high/low_noise_model/: the A14B "
                            "mixture of experts), which this package does not run: use wan2.2-ti2v-5b or a Wan 2.1 model")
        if (path / "transformer").is_dir() and (path / "vae").is_dir():
            pipe = cls._from_diffusers(path, dt)
        elif any(path.glob(OFFICIAL_VAE)):
            pipe = cls._from_official(path, dt)
        else:
            raise UserError(f"{path} is no Wan folder: expected transformer/ and vae/ (diffusers) or Wan2.1_VAE.pth / "
                            "Wan2.2_VAE.pth and diffusion_pytorch_model*.safetensors (the official release)")
        pipe.preset = preset or _preset_of(pipe.config)
        return pipe

    @staticmethod
    def _transformer(folder: Path, sd: dict[str, torch.Tensor], cfg: WanTransformerConfig | None,
                     dt: torch.dtype) -> WanTransformer:
        from dataclasses import replace

        from models.video_generation.sora.convert import infer_config, to_native
        from utils.weights import load_into

        native = to_native(sd)
        cfg = cfg or infer_config(native)
        if cfg.i2v and cfg.in_dim == cfg.out_dim and not any(k.startswith("img_emb.") for k in native):
            # Some TI2V-5B diffusers configs name image_dim/added_kv_proj_dim although the weights hold no
            # image projection (the 5B takes no CLIP tokens): the weights decide.
            cfg = replace(cfg, image_dim=None, image_pos_len=None)
        with torch.device("meta"):
            model = WanTransformer(cfg)
        load_into(model, native, what=f"Wan transformer in {folder}")
        return model.to(dt).eval()

    @classmethod
    def _from_diffusers(cls, folder: Path, dt: torch.dtype) -> "WanPipeline":
        from utils.encoders.clip_vision import CLIPVisionEncoder
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.wan_vae import WanVAE
        from utils.weights import load_folder_state_dict

        cfg_file = folder / "transformer" / "config.json"
        cfg = WanTransformerConfig.from_diffusers(json.loads(cfg_file.read_text())) if cfg_file.exists() else None
        index = folder / "model_index.json"
        expand = json.loads(index.read_text()).get("expand_timesteps") if index.exists() else None
        transformer = cls._transformer(folder, load_folder_state_dict(folder / "transformer", dtype=dt), cfg, dt)
        vae = WanVAE.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)
        text = T5TextEncoder.from_pretrained(folder, device="cpu", dtype=dt, max_length=512)
        clip = (CLIPVisionEncoder.from_pretrained(folder, subfolder="image_encoder", device="cpu", dtype=dt)
                if transformer.config.i2v else None)
        return cls(transformer, vae, text, clip, expand_timesteps=None if expand is None else bool(expand))

    @classmethod
    def _from_official(cls, folder: Path, dt: torch.dtype) -> "WanPipeline":
        from utils.encoders.t5 import T5TextEncoder
        from utils.encoders.wan_vae import WanVAE
        from utils.weights import load_folder_state_dict

        from models.video_generation.sora.convert import infer_config, to_native

        sd = to_native(load_folder_state_dict(folder, dtype=dt))
        heads = json.loads((folder / "config.json").read_text()).get("num_heads") if (folder / "config.json").exists() \
            else None  # the release's config.json names the head count, which the weights do not fix
        dim = int(sd["patch_embedding.weight"].shape[0]) if "patch_embedding.weight" in sd else 128
        transformer = cls._transformer(folder, sd, infer_config(sd, dim // int(heads)) if heads else None, dt)
        if transformer.config.i2v:
            raise UserError("the official image-to-video release keeps CLIP in the Wan team's own XLM-RoBERTa CLIP "
                            "file, which is not converted yet: load Wan-AI/Wan2.1-I2V-14B-480P-Diffusers")
        vae = WanVAE.from_pretrained(next(iter(sorted(folder.glob(OFFICIAL_VAE)))), device="cpu", dtype=dt)
        t5_files = sorted(folder.glob("models_t5_umt5-xxl-enc*"))
        if not t5_files:
            raise UserError(f"no UMT5 encoder in {folder}: expected models_t5_umt5-xxl-enc-bf16.pth")
        tokenizer = folder / "google" / "umt5-xxl"
        if not tokenizer.is_dir():
            raise UserError(f"no UMT5 tokenizer in {folder}: expected the release's google/umt5-xxl/ folder")
        text = T5TextEncoder.from_pretrained(t5_files[0], preset="umt5-xxl", device="cpu", dtype=dt,
                                             tokenizer=tokenizer)
        return cls(transformer, vae, text, None)

    # -- pieces of a call -----------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str], max_length: int) -> torch.Tensor:
        """(B, max_length, text_dim) UMT5 states: the prompt's tokens, then zeros (the release pads so)."""
        enc = self.text_encoder
        tokens = enc.tokenize([clean_prompt(p) for p in prompts], max_length)
        mask = tokens["attention_mask"]
        states = enc(tokens["input_ids"], mask).last_hidden_state.float()
        keep = mask.to(states.device).bool().unsqueeze(-1)
        return torch.where(keep, states, torch.zeros_like(states)).to(self.device, self.dtype)

    def encode_image_tokens(self, images: Sequence[Any]) -> torch.Tensor:
        """(B, tokens, image_dim) CLIP penultimate-layer tokens of the conditioning images."""
        from utils.encoders.clip_preprocess import clip_pixels

        side = self.image_encoder.config.image_size
        pixels = torch.cat([clip_pixels(im, side, resize=CLIP_RESIZE) for im in images])
        return self.image_encoder.hidden_states(pixels, CLIP_LAYER).to(self.device, self.dtype)

    def image_condition(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, 3, H, W) first frames in [-1, 1] -> y (B, 4 + z_dim, T', h, w): which frames are given
        (4 mask channels per latent frame: the first latent frame holds the image, 4 times) and the
        normalised latents of [image, zeros, ...]."""
        b, _, h, w = frames.shape
        clip = torch.cat([frames[:, :, None], frames.new_zeros(b, 3, num_frames - 1, h, w)], dim=2)
        latents = self.vae.normalize(self._vae_calls()("encode", clip.to(self.device, self.vae.dtype)).mode().float())
        r = self.vae.config.temporal_ratio
        mask = torch.zeros(b, r, latents.shape[2], *latents.shape[3:], device=latents.device)
        mask[:, :, 0] = 1.0
        return torch.cat([mask, latents], dim=1).to(self.dtype)

    def first_frame_latents(self, frames: torch.Tensor) -> torch.Tensor:
        """TI2V: (B, 3, H, W) images in [-1, 1] -> their normalised latents (B, z_dim, 1, h, w), each image
        encoded alone as a one-frame clip (posterior mode): the first latent frame of the video."""
        clip = frames[:, :, None].to(self.device, self.vae.dtype)
        return self.vae.normalize(self._vae_calls()("encode", clip).mode().float())

    def token_timesteps(self, t: torch.Tensor, latent_shape: Sequence[int], given_first: bool) -> torch.Tensor:
        """TI2V's per-token timesteps (B, tokens): t for every spacetime patch, 0 for those of the given first
        latent frame (the patch spans one latent frame in every release)."""
        pt, ph, pw = self.config.patch_size
        b, _, f, h, w = latent_shape
        per_frame = t.float().reshape(-1, 1).expand(b, f // pt).clone()
        if given_first:
            per_frame[:, 0] = 0.0
        return per_frame.repeat_interleave((h // ph) * (w // pw), dim=1)

    def _images(self, image: Any, count: int) -> list[Any]:
        from utils.encoders.clip_preprocess import open_image

        images = list(image) if isinstance(image, (list, tuple)) else [image]
        images = [open_image(im) if isinstance(im, (str, os.PathLike)) else im for im in images]
        if len(images) not in (1, count):
            raise UserError(f"got {len(images)} images for {count} prompts: give one image, or one per prompt")
        return images * count if len(images) == 1 else images

    @staticmethod
    def _frame_pixels(images: Sequence[Any], size: tuple[int, int]) -> torch.Tensor:
        """Images resized to the video size (Lanczos, as diffusers' video processor) -> (B, 3, H, W) in [-1, 1]."""
        import numpy as np
        from PIL import Image

        out = []
        for im in images:
            if isinstance(im, torch.Tensor):
                x = im[None] if im.ndim == 3 else im
                out.append(torch.nn.functional.interpolate(x.float(), size=size, mode="bicubic", align_corners=False)
                           .clamp(0, 1) * 2 - 1)
                continue
            if not isinstance(im, Image.Image):
                raise UserError(f"image must be a path, a PIL image or a (3, H, W) tensor in [0, 1], got "
                                f"{type(im).__name__}")
            im = im.convert("RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), resample=Image.LANCZOS)
            arr = np.asarray(im, dtype=np.float32) / 255.0
            out.append(torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1)
        return torch.cat(out)

    def denoiser_fn(self, context: torch.Tensor, negative: torch.Tensor | None, guidance: float,
                    clip_tokens: torch.Tensor | None, y: torch.Tensor | None,
                    first: torch.Tensor | None = None) -> Callable:
        """model(x, t) for the sampler: the transformer with classifier-free guidance (both branches see
        the same image tokens and conditioning latents). TI2V (`expand_timesteps`): per-token timesteps;
        `first` (B, z_dim, 1, h, w), the given first latent frame, replaces the sample's first frame."""
        def run(x: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            t = t.expand(b) if t.ndim == 0 or t.shape[0] == 1 else t
            if first is not None:  # text-to-video: every token has t, so one (B,) timestep says the same
                x = torch.cat([first[:b].to(x.dtype), x[:, :, 1:]], dim=2)
                t = self.token_timesteps(t, x.shape, given_first=True)
            return self.transformer(x.to(self.dtype), t, context,
                                    clip_fea=clip_tokens if clip_tokens is None else clip_tokens[:b],
                                    y=y if y is None else y[:b]).float()

        if negative is None:
            return lambda x, t: run(x, t, context)
        return cfg_model(run, {"context": context}, {"context": negative}, guidance, batched=False)

    # -- the call -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 image: Any = None, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 shift: float | None = None, num_videos: int = 1, seed: int | Sequence[int] | None = None,
                 generator: Generators = None, latents: torch.Tensor | None = None, fps: float | None = None,
                 max_sequence_length: int | None = None, decode_chunk_size: int | None = 1,
                 prompt_extender: Any = None, output_type: str = "pil", callback: Any = None,
                 interrupt: Any = None, progress: bool = True) -> VideoOutput:
        """Generate `num_videos` clips per prompt (video i from seed + i). Text-to-video, or with `image`
        (a path, PIL image or (3, H, W) tensor in [0, 1]; one, or one per prompt) image-to-video on an
        image-to-video model, or with or without it on Wan 2.2 TI2V-5B (the image becomes the first latent
        frame). `num_frames` 1 + 4k; `height`/`width` multiples of 16 (Wan 2.2: 32; image-to-video
        without them: about the preset's area at the image's aspect ratio). `shift` bends the flow-matching
        schedule towards the noisy end. `prompt_extender`: a local causal text-model folder or a
        function str -> str that rewrites each prompt first. `output_type='latent'` returns the latents only."""
        from models.video_generation.sora.prompt_extension import extend_prompts

        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        if prompt is None:
            raise UserError("Wan needs a prompt (prompt= / --prompt): it describes the clip to generate")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if image is not None and not self.takes_image:
            raise UserError("this Wan model is text-to-video and takes no image: load an image-to-video model "
                            "(--preset wan2.1-i2v-14b-480p or wan2.2-ti2v-5b) or leave out --image")
        if image is None and self.i2v:
            raise UserError("this Wan model is image-to-video: give the first frame (image= / --image in.png)")
        images = self._images(image, len(prompts)) if image is not None else None
        num_frames = int(self.default("num_frames", num_frames))
        if images is not None and (height is None or width is None):
            from utils.diffusion.inputs import image_size

            area = int(self.default("height")) * int(self.default("width"))
            height, width = fit_size(image_size(images[0]), area, self.pixel_multiple)
        height, width = int(self.default("height", height)), int(self.default("width", width))
        steps = int(self.default("steps", steps))
        guidance = float(self.default("guidance_scale", guidance_scale))
        shift = float(self.default("shift", shift))
        fps = float(self.default("fps", fps))
        max_len = int(self.default("max_sequence_length", max_sequence_length))
        check_frames(num_frames, self.vae.config.temporal_ratio)
        check_size(height, width, self.pixel_multiple, "Wan")
        for name, value in (("steps", steps), ("num_videos", num_videos), ("max_sequence_length", max_len)):
            if value < 1:
                raise UserError(f"{name} must be at least 1, got {value}")
        if guidance < 0 or shift <= 0:
            raise UserError(f"guidance_scale must be >= 0 and shift > 0, got {guidance} and {shift}")
        if prompt_extender is not None:
            prompts = extend_prompts(prompts, prompt_extender)
        negative = self.default("negative_prompt", negative_prompt) if guidance > 1.0 else None
        negatives = None if negative is None else ([negative] * len(prompts) if isinstance(negative, str)
                                                   else list(negative))
        if negatives is not None and len(negatives) != len(prompts):
            raise UserError(f"got {len(negatives)} negative prompts for {len(prompts)} prompts: give one, or one each")
        order = torch.arange(len(prompts)).repeat_interleave(num_videos)
        batch = len(order)
        gens = self.generators(seed, batch, generator)

        with self.session():
            context = self.encode_prompt(prompts, max_len)[order]
            uncond = self.encode_prompt(negatives, max_len)[order] if negatives is not None else None
            clip_tokens = y = first = None
            if images is not None and self.expand_timesteps:
                first = self.first_frame_latents(self._frame_pixels(images, (height, width)))[order]
            elif images is not None:
                clip_tokens = self.encode_image_tokens(images)[order]
                y = self.image_condition(self._frame_pixels(images, (height, width)), num_frames)[order]
            sched = FlowMatchEuler(shift=shift)
            schedule = sched.schedule(steps)
            s, z = self.vae.config.spatial_ratio, self.vae.config.z_dim
            shape = (batch, z, self.vae.latent_frames(num_frames), height // s, width // s)
            if latents is not None:
                if tuple(latents.shape) != shape:
                    raise UserError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
                x = latents.to(self.device, torch.float32)
            else:
                x = randn(shape, gens, self.device, torch.float32)
            model = self.denoiser_fn(context, uncond, guidance, clip_tokens, y, first)
            result = sample(model, sched, schedule, x, generator=gens, callback=callback, interrupt=interrupt,
                            progress=progress)
            if first is not None:  # the clip starts on the given image
                result = torch.cat([first.to(result), result[:, :, 1:]], dim=2)
            if output_type == "latent":
                return VideoOutput([], fps=fps, latents=result.float().cpu())
            raw = self.vae.denormalize(result.float()).to(self.device, self.vae.dtype)
            pixels = self._vae_calls()("decode", raw, decode_chunk_size, progress=progress)
        return self.video_output(pixels, result, fps)

    def video_output(self, pixels: torch.Tensor, latents: torch.Tensor, fps: float) -> VideoOutput:
        """Decoded clips (B, 3, T, H, W) in [-1, 1] -> a VideoOutput of PIL frames (pixels (B, T, 3, H, W) in [0, 1])."""
        from utils.visualization.grid import to_pil

        check_generated(pixels, "frames", flat=False)
        unit = ((pixels.float().cpu() + 1) / 2).clamp(0, 1).permute(0, 2, 1, 3, 4)
        frames = [to_pil(video, value_range=(0.0, 1.0)) for video in unit]
        return VideoOutput(frames, fps=fps, pixels=unit, latents=latents.float().cpu())


def _preset_of(cfg: WanTransformerConfig) -> str:
    from models.video_generation.sora.config import TRANSFORMER_PRESETS

    for name, preset in TRANSFORMER_PRESETS.items():
        if preset == cfg and name in SPEC.presets:
            return name
    return "tiny" if cfg.dim < 512 else SPEC.default_preset


__all__ = ["CLIP_LAYER", "WanPipeline", "check_frames", "clean_prompt", "fit_size"]
