"""LTX-Video sampling: text-to-video and first-frame image-to-video (the Dream Machine stand-in's pipeline).

One call, as the release and diffusers' `LTXPipeline` / `LTXImageToVideoPipeline` run it:

1. the prompt (and the negative prompt, for guidance) through T5-XXL: tokens padded to
   `max_sequence_length` (128), the encoder run without a mask, the padding mask kept for the
   transformer's cross-attention;
2. seeded noise latents (B, 128, 1 + (T-1)/8, H/32, W/32), one token per latent voxel. Image-to-video
   (`image=`): the image is encoded as a one-frame clip (posterior sample, standardised), written into
   latent frame 0, and that frame's tokens are given timestep 0 (a per-token timestep mask) and are not
   stepped, so every step sees the clean first frame. Frame conditioning (`conditions=`, as diffusers'
   `LTXConditionPipeline`): images and videos at frame 0 or later frames, each with a strength, placed in
   the token sequence by conditions.py (extra tokens with their own positions, per-token timesteps, a
   per-token denoise mask); the prompt is then encoded with its padding mask, as that pipeline does;
3. flow-matching Euler through `utils.diffusion.schedulers.FlowMatchEuler` with the release's
   resolution-dependent shift (mu from the token count, base 0.95 at 1024 tokens, 2.05 at 4096) stretched
   to end at sigma 0.1 (`shift_terminal`); or the fixed timestep list of the distilled releases
   (`timesteps=`, no shift); classifier-free guidance on a [negative, positive] batch;
4. optionally a live preview after every step: the step's denoised estimate through a linear
   latent-to-RGB map (`fit_preview.py`), handed to `callback(step, total, preview_frames)`;
5. the latents de-standardised and decoded; 0.9.1+ decoders at `decode_timestep` after mixing in
   `decode_noise_scale` of fresh noise from the video's generator (their injected noise comes from a
   generator seeded from the video's seed).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from models.video_generation.luma_dream.conditions import (ConditionedTokens, EncodedCondition, VideoCondition,
                                                          as_conditions, check_conditions, condition_pixels,
                                                          per_token_step, prepare_tokens)
from models.video_generation.luma_dream.model import LTXVideoTransformer, latent_coords
from models.video_generation.luma_dream.spec import SPEC
from utils.diffusion import DiffusionPipeline
from utils.diffusion.schedulers import FlowMatchEuler
from utils.encoders.ltx_vae import LTXVideoVAE
from utils.errors import UserError
from utils.outputs import VideoOutput
from utils.torch_utils import Generators, randn

# The scheduler config of the LTX-Video releases (diffusers' scheduler/scheduler_config.json).
LTX_SCHEDULER = FlowMatchEuler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                               max_image_seq_len=4096, shift_terminal=0.1)
# Fixed timestep lists (the distilled releases) are used as given: no shift, no terminal stretch.
FIXED_SCHEDULER = FlowMatchEuler()
TEXT_MAX_LENGTH = 128
"""T5 tokens per prompt in the release (diffusers' LTXPipeline max_sequence_length)."""

PreviewCallback = Callable[[int, int, torch.Tensor], Any]
CONDITION_NOISE_SCALE = 0.15
"""Fresh noise given to strength-1 condition tokens each step, times (t / 1000)^2 (the release's and
diffusers' `image_cond_noise_scale`)."""


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, F*H*W, C) tokens, row-major over (frame, row, col)."""
    return latents.flatten(2).transpose(1, 2)


def unpack(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).unflatten(2, (frames, height, width))


def check_frames(num_frames: int, ratio: int = 8) -> None:
    """LTX-Video generates 1 + 8k frames (its VAE keeps the first frame alone, then groups of eight)."""
    if num_frames < 1 or (num_frames - 1) % ratio:
        below = max(1, 1 + ratio * ((num_frames - 1) // ratio))
        raise UserError(f"LTX-Video generates 1 + {ratio}k frames (1, {1 + ratio}, ..., 121, ...), got {num_frames}: "
                        f"use {below} or {below + ratio}")


class LTXVideoPipeline(DiffusionPipeline):
    """Transformer + VAE + T5 encoder: prompts (or T5 embeddings), optionally a first frame -> `VideoOutput`."""

    spec = SPEC
    components = ("text_encoder", "transformer", "vae")
    denoiser_name = "transformer"
    cuda_dtype = torch.bfloat16

    def __init__(self, transformer: LTXVideoTransformer, vae: LTXVideoVAE, text_encoder: Any = None,
                 scheduler: FlowMatchEuler = LTX_SCHEDULER, preset: str = "tiny"):
        self.transformer, self.vae, self.text_encoder, self.scheduler = transformer, vae, text_encoder, scheduler
        self.preset = preset
        self.preview_map = None
        """The fitted latent-to-RGB map of live previews (`fit_preview.LatentPreview`), fitted on first use."""
        self.camera_adapter = None
        """The camera adapter `camera=` needs (`camera_adapter.CameraAdapter`; `load_camera_adapter(path)`)."""
        if transformer.config.in_channels != vae.config.latent_channels:
            raise UserError(f"the LTX transformer takes {transformer.config.in_channels} channels, its VAE makes "
                            f"{vae.config.latent_channels}: the components come from different models")

    def _check(self, height: int, width: int, num_frames: int) -> None:
        check_frames(num_frames, self.vae.config.temporal_ratio)
        self.vae.check_size(height, width)

    def enable_vae_tiling(self, tile_latent: int = 16, overlap_latent: int = 4) -> "LTXVideoPipeline":
        """Decode in overlapping spatial tiles of `tile_latent` latent pixels (16: 512 frame pixels)."""
        self.vae.enable_tiling(tile_latent, overlap_latent)
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None, *,
                        text_encoder: str | os.PathLike | None = None, offload: str | None = None,
                        vae_tiling: bool = False, compile: bool = False,
                        attention: str | None = None) -> "LTXVideoPipeline":
        """Load LTX-Video from a diffusers folder (Lightricks/LTX-Video's root, Lightricks/LTX-Video-0.9.5:
        transformer/, vae/, text_encoder/, tokenizer/), an official single file
        (ltx-video-2b-v0.9*.safetensors, ltxv-2b-0.9.6-*.safetensors: `model.diffusion_model.` and `vae.`
        tensors), a folder holding one, or a hub id; no source: `preset='tiny'` builds random tiny weights
        offline, a release preset fetches its single file. A single file has no text encoder: T5-XXL comes
        from `text_encoder` (a diffusers folder or hub id with text_encoder/ and tokenizer/; default the
        Lightricks/LTX-Video repo). `offload`: None, "model" or "sequential"; `vae_tiling`: decode in
        overlapping spatial tiles."""
        place = cls.resolve(source, preset, device, dtype, offload)
        if source is None and place.preset == "tiny":
            pipe = cls.tiny()
        else:
            pipe = cls._load(source, place.preset, place.dtype, text_encoder)
        return pipe.configure(place.device, place.dtype, offload=offload, vae_tiling=vae_tiling, compile=compile,
                              attention=attention)

    @classmethod
    def tiny(cls) -> "LTXVideoPipeline":
        """Random tiny components (a character tokenizer stands in for T5's): runs offline in seconds."""
        from dataclasses import replace

        from models.video_generation.luma_dream.config import transformer_preset
        from utils.encoders.ltx_vae import ltx_vae_config
        from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder
        from utils.encoders.tiny_tokenizer import tiny_t5_tokenizer
        from utils.torch_utils import local_seed

        with local_seed(0):
            t5_cfg = T5EncoderConfig.preset("tiny")
            text = T5TextEncoder(t5_cfg, tokenizer=tiny_t5_tokenizer(t5_cfg))
            transformer = LTXVideoTransformer(replace(transformer_preset("tiny"), caption_channels=t5_cfg.d_model)).eval()
            vae = LTXVideoVAE(ltx_vae_config("tiny")).eval()
        return cls(transformer, vae, text, preset="tiny")

    @classmethod
    def _load(cls, source: Any, preset: str | None, dt: torch.dtype, text_encoder: Any) -> "LTXVideoPipeline":
        from utils.weights.hub import locate

        if source is None:
            weights = SPEC.weights_for(preset or SPEC.default_preset)
            if weights is None:
                raise UserError(f"LTX-Video preset '{preset}' has no weights to download: pass a file or folder")
            path = locate(weights.source, what=f"LTX-Video weights '{weights.source}'", filename=weights.file)
        else:
            path = locate(source, what=f"LTX-Video weights '{source}'",
                          patterns=["model_index.json", "transformer/*", "vae/*", "text_encoder/*", "tokenizer/*"])
        if path.is_dir() and (path / "transformer").is_dir() and (path / "vae").is_dir():
            pipe = cls._from_diffusers(path, dt)
        else:
            if path.is_dir():
                files = sorted(path.glob("ltx*.safetensors"))
                if not files:
                    raise UserError(f"{path} is no LTX-Video folder: expected transformer/ and vae/ (diffusers) or "
                                    "an ltx-video-2b-v0.9*.safetensors single file")
                path = files[-1]
            pipe = cls._from_single_file(path, dt, text_encoder or SPEC.default(preset or "*", "text_encoder_source"))
        pipe.preset = preset or pipe._preset_of()
        return pipe

    @staticmethod
    def _transformer(sd: dict[str, torch.Tensor], cfg: Any, dt: torch.dtype, what: str) -> LTXVideoTransformer:
        from models.video_generation.luma_dream.convert import infer_config, to_native
        from utils.weights import load_into

        native = to_native(sd)
        cfg = cfg or infer_config(native)
        with torch.device("meta"):
            model = LTXVideoTransformer(cfg)
        load_into(model, native, what=what)
        return model.to(dt).eval()

    @classmethod
    def _from_diffusers(cls, folder: Path, dt: torch.dtype) -> "LTXVideoPipeline":
        import json

        from models.video_generation.luma_dream.config import LTXTransformerConfig
        from utils.encoders.text import read_config
        from utils.encoders.t5 import T5TextEncoder
        from utils.weights import load_folder_state_dict

        cfg_dir = folder / "transformer"
        cfg = LTXTransformerConfig.from_diffusers(read_config(cfg_dir)) if (cfg_dir / "config.json").exists() else None
        transformer = cls._transformer(load_folder_state_dict(cfg_dir, dtype=dt), cfg, dt, f"LTX transformer in {folder}")
        vae = LTXVideoVAE.from_pretrained(folder, subfolder="vae", device="cpu", dtype=dt)
        text = T5TextEncoder.from_pretrained(folder, subfolder="text_encoder", device="cpu", dtype=dt,
                                             max_length=TEXT_MAX_LENGTH, tokenizer=_tokenizer_of(folder))
        sched = folder / "scheduler" / "scheduler_config.json"  # the folder's own sampler settings, when it has them
        scheduler = (FlowMatchEuler.from_diffusers_config(json.loads(sched.read_text())) if sched.exists()
                     else LTX_SCHEDULER)
        return cls(transformer, vae, text, scheduler)

    @classmethod
    def _from_single_file(cls, path: Path, dt: torch.dtype, text_source: Any) -> "LTXVideoPipeline":
        from models.video_generation.luma_dream.config import LTXTransformerConfig
        from models.video_generation.luma_dream.convert import split_single_file
        from utils.encoders.ltx_vae import match_vae_config
        from utils.encoders.ltx_vae_convert import to_native as vae_to_native
        from utils.encoders.t5 import T5TextEncoder
        from utils.weights import load_into, load_state_dict
        from utils.weights.hub import locate

        sd = load_state_dict(path, dtype=dt)
        tr_sd, vae_sd = split_single_file(sd)
        if not vae_sd:
            raise UserError(f"{path} holds no `vae.` tensors: an LTX-Video single file has the transformer and the "
                            "VAE (ltx-video-2b-v0.9*.safetensors); load a diffusers folder otherwise")
        from models.video_generation.luma_dream.convert import RELEASED_HEADS, infer_config, to_native

        tr_sd = to_native(tr_sd)
        meta = _single_file_config(path)  # sizes from the tensors; heads and rotary bases from the metadata
        cfg = infer_config(tr_sd, heads=int(meta.get("num_attention_heads", RELEASED_HEADS)),
                           base=LTXTransformerConfig.from_diffusers(meta) if meta else None)
        transformer = cls._transformer(tr_sd, cfg, dt, f"LTX transformer in {path.name}")
        _, vcfg = match_vae_config(vae_sd)
        with torch.device("meta"):
            vae = LTXVideoVAE(vcfg)
        load_into(vae, vae_to_native(vae_sd, vcfg), what=f"LTX VAE in {path.name}")
        vae = vae.to(dt).eval()
        folder = locate(text_source, what=f"T5-XXL text encoder '{text_source}'",
                        patterns=["text_encoder/*", "tokenizer/*"])
        text = T5TextEncoder.from_pretrained(folder, subfolder="text_encoder" if (folder / "text_encoder").is_dir()
                                             else None, device="cpu", dtype=dt, max_length=TEXT_MAX_LENGTH,
                                             tokenizer=_tokenizer_of(folder))
        pipe = cls(transformer, vae, text)
        # A timestep-distilled file names the timesteps it allows: it samples with the distilled preset's defaults.
        pipe._distilled = bool(_file_metadata_config(path).get("allowed_inference_steps"))
        return pipe

    def _preset_of(self) -> str:
        """The release preset these components fit (by the VAE version; the 2B transformer is one size)."""
        if self.transformer.config.inner_dim < 512:
            return "tiny"
        if getattr(self, "_distilled", False):
            return "ltxv-2b-0.9.6-distilled"
        from utils.encoders.ltx_vae import LTX_VAE_PRESETS

        version = next((n for n, c in LTX_VAE_PRESETS.items() if c == self.vae.config), "ltxv-0.9.5")
        return {"ltxv-0.9": "ltxv-2b-0.9", "ltxv-0.9.1": "ltxv-2b-0.9.1"}.get(version, SPEC.default_preset)

    # -- pieces of a call -----------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str], max_length: int = TEXT_MAX_LENGTH, masked: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, max_length, 4096) T5 states and their (B, max_length) padding mask: the tokens padded to
        `max_length`, the encoder run without a mask (as diffusers' LTXPipeline does) or, `masked`, with the
        padding mask (as the official LTX-Video pipeline and diffusers' LTXConditionPipeline do); the mask is
        kept for cross-attention either way."""
        if self.text_encoder is None:
            raise UserError("this LTX pipeline has no text encoder: pass prompt_embeds/prompt_mask, or load one "
                            "(text_encoder=<folder or hub id with text_encoder/ and tokenizer/>)")
        if self.text_encoder.tokenizer is None:
            raise UserError("the T5 text encoder has no tokenizer: load it with tokenizer=<folder>")
        out = self.text_encoder.encode(list(prompts), max_length, use_attention_mask=masked)
        return out.last_hidden_state.to(self.device, self.dtype), out.attention_mask.to(self.device)

    def encode_image(self, images: Sequence[Any], height: int, width: int, generators: Generators) -> torch.Tensor:
        """Conditioning images -> (B, C, 1, h, w) standardised latents: each image resized to the clip's size
        (Lanczos, as diffusers' video processor), encoded as a one-frame clip, the posterior sampled from its
        video's generator."""
        from utils.encoders.vae import DiagonalGaussian

        pixels = _frame_pixels(images, (height, width)).to(self.device, self.vae.dtype)
        gens = generators if isinstance(generators, (list, tuple)) else [generators] * pixels.shape[0]
        calls = self._vae_calls()
        z = [DiagonalGaussian(calls("encode", pixels[i:i + 1, :, None]).moments.float()).sample(g)
             for i, g in enumerate(gens)]
        return self.vae.normalize(torch.cat(z))

    def encode_conditions(self, conditions: Sequence[VideoCondition], pixels: Sequence[torch.Tensor]
                          ) -> list[EncodedCondition]:
        """Each condition's frames (1, 3, T, H, W) in [-1, 1] through the VAE encoder: its posterior (sampled per
        video later, from that video's generator)."""
        from utils.encoders.vae import DiagonalGaussian

        calls = self._vae_calls()
        return [EncodedCondition(c.frame_index, float(c.strength),
                                 DiagonalGaussian(calls("encode", x.to(self.device, self.vae.dtype)).moments.float()),
                                 int(x.shape[2]))
                for c, x in zip(conditions, pixels)]

    @torch.no_grad()
    def sample_latents(self, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor,
                       negative_embeds: torch.Tensor | None = None, negative_mask: torch.Tensor | None = None,
                       height: int = 512, width: int = 704, num_frames: int = 121, fps: float = 25.0,
                       steps: int = 40, guidance: float = 3.0, generator: Generators = None,
                       callback: Callable | None = None, image_latents: torch.Tensor | None = None,
                       timesteps: Sequence[float] | None = None, token_bias: torch.Tensor | None = None,
                       preview: PreviewCallback | None = None, progress: bool = False,
                       conditions: Sequence[EncodedCondition] | None = None,
                       condition_noise_scale: float = CONDITION_NOISE_SCALE, camera_scale: float = 1.0) -> torch.Tensor:
        """The denoised, still standardised latents (B, 128, F', H', W').

        `image_latents` (B, C, 1, h, w): latent frame 0 is given (image-to-video): its tokens get timestep 0
        and keep their values. `timesteps`: a fixed sigma list in (0, 1] (the distilled releases), else `steps`
        shifted levels. `callback(i, t, x)`: the raw latent tokens after step i. `preview(i, total, x0)`:
        the step's denoised estimate (B, 128, F', H', W'). `token_bias` (B, L, width): added to the
        projected tokens (both guidance branches). `conditions` (encoded `VideoCondition`s, see conditions.py):
        LTXConditionPipeline's conditioning: frame-0 conditions blended into the first latent frames, later ones
        as extra tokens with their own positions, a per-token timestep and denoise mask from their strengths,
        `condition_noise_scale` of fresh noise on the strength-1 tokens each step; causal frame positions.
        `camera_scale` != 1 (with `token_bias`): camera guidance, v = v_plain + camera_scale (v_camera - v_plain),
        v_plain the transformer's prediction without the bias (one more transformer call a step)."""
        self._check(height, width, num_frames)
        vcfg = self.vae.config
        f, h, w = self.vae.latent_frames(num_frames), height // vcfg.spatial_ratio, width // vcfg.spatial_ratio
        b = prompt_embeds.shape[0]
        dev = self.device
        x = pack(randn((b, self.transformer.config.in_channels, f, h, w), generator, dev, torch.float32))
        cond = None
        ct: ConditionedTokens | None = None
        if conditions:
            if image_latents is not None:
                raise UserError("give image latents (first-frame image-to-video) or conditions, not both")
            if condition_noise_scale < 0:
                raise UserError(f"condition_noise_scale must be >= 0, got {condition_noise_scale}")
            ct = prepare_tokens(unpack(x, f, h, w), conditions, generator, self.vae.normalize, vcfg.temporal_ratio,
                                vcfg.spatial_ratio, fps)
            x, init = ct.tokens, ct.tokens.clone()
        if image_latents is not None:
            if tuple(image_latents.shape) != (b, x.shape[-1], 1, h, w):
                raise UserError(f"image latents must have shape {(b, x.shape[-1], 1, h, w)}, got "
                                f"{tuple(image_latents.shape)}")
            cond = torch.zeros(b, f * h * w, device=dev)
            cond[:, :h * w] = 1.0  # the tokens of latent frame 0
            given = pack(image_latents.float().to(dev).expand(-1, -1, f, -1, -1))
            x = torch.where(cond[..., None].bool(), given, x)
        cfg_on = guidance > 1.0
        if cfg_on:
            if negative_embeds is None:
                raise UserError("guidance > 1 needs negative prompt embeddings (the empty prompt's): pass them")
            ctx = torch.cat([negative_embeds, prompt_embeds]).to(dev)
            mask = torch.cat([negative_mask, prompt_mask]).to(dev)
        else:
            ctx, mask = prompt_embeds.to(dev), prompt_mask.to(dev)
        if timesteps is not None:
            sig = [float(s) for s in timesteps]
            if not sig or any(not 0 < s <= 1 for s in sig) or any(a <= c for a, c in zip(sig, sig[1:])):
                raise UserError(f"timesteps must decrease within (0, 1], got {list(timesteps)}")
            scheduler, schedule = FIXED_SCHEDULER, FIXED_SCHEDULER.schedule(sigmas=sig)
        else:
            if steps < 1:
                raise UserError(f"steps must be at least 1, got {steps}")
            scheduler = self.scheduler
            mu = scheduler.mu_for(f * h * w) if scheduler.use_dynamic_shifting else None
            schedule = scheduler.schedule(sigmas=np.linspace(1.0, 1.0 / steps, steps), mu=mu)
        coords = latent_coords(ctx.shape[0], f, h, w, (vcfg.temporal_ratio / fps, vcfg.spatial_ratio, vcfg.spatial_ratio),
                               device=dev)
        extra = 0
        if ct is not None:  # causal positions, and the extra tokens' own in front
            coords, extra = (torch.cat([ct.coords, ct.coords]) if cfg_on else ct.coords), ct.num_extra
            if token_bias is not None:  # the camera steers the clip's tokens, not the extra ones
                token_bias = torch.cat([token_bias.new_zeros(b, extra, token_bias.shape[-1]), token_bias], dim=1)
        bias = None
        if token_bias is not None:
            bias = torch.cat([token_bias, token_bias]) if cfg_on else token_bias
        dtype = self.dtype
        total = len(schedule.timesteps)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="sampling", leave=False)
        try:
            for i, t in enumerate(schedule.timesteps):
                if ct is not None and condition_noise_scale > 0:  # fresh noise on the strength-1 tokens
                    fresh = randn(tuple(x.shape), generator, dev, torch.float32)
                    level = (t.float() / 1000.0) ** 2
                    x = torch.where(ct.hard[..., None], init + condition_noise_scale * fresh * level, x)
                inp = torch.cat([x, x]) if cfg_on else x
                tt = t.to(dev).expand(inp.shape[0])
                if cond is not None:  # per-token timesteps: the given frame is clean (t = 0)
                    tt = tt[:, None] * (1 - (torch.cat([cond, cond]) if cfg_on else cond))
                if ct is not None:  # per-token timesteps from the conditioning strengths
                    token_t = ct.timesteps(t.to(dev))
                    tt = torch.cat([token_t, token_t]) if cfg_on else token_t
                v = self.transformer(inp.to(dtype), ctx.to(dtype), tt, coords, mask, token_bias=bias).float()
                if bias is not None and camera_scale != 1.0:  # camera guidance, away from the camera-free branch
                    plain = self.transformer(inp.to(dtype), ctx.to(dtype), tt, coords, mask).float()
                    v = plain + camera_scale * (v - plain)
                if cfg_on:
                    uncond, cnd = v.chunk(2)
                    v = uncond + guidance * (cnd - uncond)
                if ct is not None:  # each token from its own level; only those the schedule has reached move
                    prev, x0 = per_token_step(x, v, token_t, schedule.sigmas)
                    move = ct.to_denoise(t.to(dev))[..., None]
                    x, x0 = torch.where(move, prev, x), torch.where(move, x0, x)
                else:
                    stepped = scheduler.step(v, x, i, schedule)
                    x = stepped.prev_sample if cond is None else torch.where(cond[..., None].bool(), x,
                                                                             stepped.prev_sample)
                    x0 = stepped.denoised if cond is None else torch.where(cond[..., None].bool(), x, stepped.denoised)
                if callback is not None:
                    callback(i, t, x[:, extra:])
                if preview is not None:
                    preview(i, total, unpack(x0[:, extra:], f, h, w))
                if bar is not None:
                    bar.update()
        finally:
            if bar is not None:
                bar.close()
        return unpack(x[:, extra:], f, h, w)  # the extra condition tokens dropped

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decode_timestep: float = 0.05, decode_noise_scale: float | None = None,
               generator: Generators = None, noise_generator: torch.Generator | None = None) -> torch.Tensor:
        """Standardised latents -> frames (B, T, 3, H, W) in [0, 1]. 0.9.1+ decoders: `decode_noise_scale`
        (default: `decode_timestep`) of fresh noise from `generator` mixed in, then decoded at
        `decode_timestep`; `noise_generator` (on the VAE's device) feeds the decoder's injected noise."""
        z = self.vae.denormalize(latents.float().to(self.device))
        t = None
        if self.vae.config.timestep_conditioning:
            s = decode_timestep if decode_noise_scale is None else decode_noise_scale
            z = (1 - s) * z + s * randn(tuple(z.shape), generator, z.device, z.dtype)
            t = torch.full((z.shape[0],), float(decode_timestep), device=z.device)
        video = self._vae_calls()("decode", z.to(self.vae.dtype), t, noise_generator)
        return (video.float() / 2 + 0.5).clamp(0, 1).transpose(1, 2)

    # -- the call -------------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, prompt: str | Sequence[str] | None = None, negative_prompt: str | Sequence[str] | None = None,
                 image: Any = None, num_frames: int | None = None, height: int | None = None,
                 width: int | None = None, steps: int | None = None, guidance_scale: float | None = None,
                 timesteps: Sequence[float] | None = None, num_videos: int = 1,
                 seed: int | Sequence[int] | None = 0, generator: Generators = None, fps: float | None = None,
                 max_sequence_length: int | None = None, decode_timestep: float | None = None,
                 decode_noise_scale: float | None = None, prompt_embeds: torch.Tensor | None = None,
                 prompt_mask: torch.Tensor | None = None, negative_embeds: torch.Tensor | None = None,
                 negative_mask: torch.Tensor | None = None, callback: PreviewCallback | None = None,
                 camera: Any = None, conditions: VideoCondition | Sequence[VideoCondition] | None = None,
                 condition_noise_scale: float | None = None, text_mask: bool | None = None,
                 camera_scale: float = 1.0, output_type: str = "pil", progress: bool = True) -> VideoOutput:
        """Generate `num_videos` clips per prompt (video i from seed + i). Text-to-video, or with `image` (a
        path, PIL image or (3, H, W) tensor in [0, 1]; one, or one per prompt) image-to-video from that first
        frame. `num_frames` 1 + 8k; `height`/`width` multiples of 32. `timesteps`: a fixed sigma list
        (default: the preset's, the 8 distilled levels for `ltxv-2b-0.9.6-distilled`). `callback(step, total,
        preview_frames)`: after every step, the step's denoised estimate as RGB frames (B, F', 3, H/32, W/32)
        in [0, 1] through the fitted linear latent-to-RGB map (a live preview). Instead of prompts, T5
        embeddings: `prompt_embeds` + `prompt_mask` (+ `negative_embeds`/`negative_mask` for guidance).
        `output_type='latent'` returns the latents only. `camera`: camera motion through `camera_adapter`, a
        preset name ('orbit', 'pan-left', ...), a .json camera path or poses (camera.py); `camera_scale`: camera
        guidance (1: none; > 1 amplifies the adapter's effect against the camera-free prediction). `conditions`: one
        or more `VideoCondition(image= or video=, frame_index=, strength=)` (conditions.py): a first frame, a
        keyframe at a later frame (a multiple of the VAE's 8 frames), a short video, each pulled towards with
        its strength, as diffusers' LTXConditionPipeline does (not with `image`); `condition_noise_scale`
        (default 0.15): fresh noise on the strength-1 condition tokens each step. `text_mask`: run T5 with the
        prompt's padding mask (default: with conditions, as LTXConditionPipeline; without, as LTXPipeline)."""
        if output_type not in ("pil", "latent"):
            raise UserError(f"output_type must be 'pil' or 'latent', got '{output_type}'")
        if prompt is None and prompt_embeds is None:
            raise UserError("LTX-Video needs a prompt (prompt= / --prompt): it describes the clip to generate")
        if isinstance(prompt, torch.Tensor):  # the older call: pipe(prompt_embeds, prompt_mask, ...)
            prompt, prompt_embeds, prompt_mask = None, prompt, prompt_mask if prompt_mask is not None else negative_prompt
            negative_prompt = None
        prompts = None if prompt is None else ([prompt] if isinstance(prompt, str) else list(prompt))
        count = len(prompts) if prompts is not None else prompt_embeds.shape[0]
        num_frames = int(self.default("num_frames", num_frames))
        height, width = int(self.default("height", height)), int(self.default("width", width))
        steps = int(self.default("steps", steps))
        guidance = float(self.default("guidance_scale", guidance_scale))
        fps = float(self.default("fps", fps))
        max_len = int(self.default("max_sequence_length", max_sequence_length))
        decode_timestep = float(self.default("decode_timestep", decode_timestep))
        decode_noise_scale = float(self.default("decode_noise_scale", decode_noise_scale))
        if timesteps is None:
            timesteps = self.spec.default(self.preset, "timesteps")
        self._check(height, width, num_frames)
        camera_bias = None if camera is None else self._camera_bias(camera, num_frames, height, width, count * num_videos)
        if not camera_scale >= 0:
            raise UserError(f"camera_scale must be >= 0, got {camera_scale}")
        if num_videos < 1 or max_len < 1:
            raise UserError(f"num_videos and max_sequence_length must be at least 1, got {num_videos} and {max_len}")
        if guidance < 0:
            raise UserError(f"guidance_scale must be >= 0, got {guidance}")
        images = _images(image, count) if image is not None else None
        conds, cond_pixels = None, None
        if conditions is not None:
            conds = as_conditions(conditions) or None
        if conds:
            if image is not None:
                raise UserError("give image= (first-frame image-to-video) or conditions=, not both: a first frame is "
                                "VideoCondition(image=..., frame_index=0)")
            noise_scale = CONDITION_NOISE_SCALE if condition_noise_scale is None else float(condition_noise_scale)
            if noise_scale < 0:
                raise UserError(f"condition_noise_scale must be >= 0, got {noise_scale:g}")
            r = self.vae.config.temporal_ratio
            check_conditions(conds, num_frames, r)
            cond_pixels = [condition_pixels(c, num_frames, (height, width), r) for c in conds]
        masked = bool(conds) if text_mask is None else bool(text_mask)
        order = torch.arange(count).repeat_interleave(num_videos)
        batch = len(order)
        gens = self.generators(seed, batch, generator)

        with self.session():
            if prompt_embeds is None:
                ctx, mask = self.encode_prompt(prompts, max_len, masked)
            else:
                if prompt_mask is None:
                    raise UserError("prompt_embeds need their prompt_mask (1 = a real token)")
                ctx, mask = prompt_embeds.to(self.device), prompt_mask.to(self.device)
            neg = neg_mask = None
            if guidance > 1.0:
                if negative_embeds is not None:
                    neg, neg_mask = negative_embeds.to(self.device), negative_mask.to(self.device)
                else:
                    if self.text_encoder is None:
                        raise UserError("guidance > 1 without a text encoder needs negative_embeds/negative_mask")
                    negative = self.default("negative_prompt", negative_prompt)
                    negatives = [negative] * count if isinstance(negative, str) else list(negative)
                    if len(negatives) != count:
                        raise UserError(f"got {len(negatives)} negative prompts for {count} prompts: give one, or "
                                        "one each")
                    neg, neg_mask = self.encode_prompt(negatives, max_len, masked)
                neg, neg_mask = neg[order], neg_mask[order]
            ctx, mask = ctx[order], mask[order]
            image_latents = None
            if images is not None:
                image_latents = self.encode_image([images[i] for i in order.tolist()], height, width, gens)
            encoded = None
            if cond_pixels is not None:
                encoded = self.encode_conditions(conds, cond_pixels)
            on_preview = self._preview_hook(callback) if callback is not None else None
            latents = self.sample_latents(ctx, mask, neg, neg_mask, height=height, width=width, num_frames=num_frames,
                                          fps=fps, steps=steps, guidance=guidance, generator=gens,
                                          image_latents=image_latents, timesteps=timesteps, preview=on_preview,
                                          progress=progress, token_bias=camera_bias, conditions=encoded,
                                          camera_scale=float(camera_scale),
                                          **({} if encoded is None else {"condition_noise_scale": noise_scale}))
            if output_type == "latent":
                return VideoOutput([], fps=fps, latents=latents.float().cpu())
            noise_gen = torch.Generator(device=self.device).manual_seed(_base_seed(seed, gens))
            pixels = self.decode(latents, decode_timestep, decode_noise_scale, gens, noise_gen).float().cpu()
        return _video_output(pixels, latents, fps)

    def load_camera_adapter(self, path: str | os.PathLike) -> "LTXVideoPipeline":
        """Load a camera adapter file (train_video.py --model luma_dream --camera writes one) for `camera=`."""
        from models.video_generation.luma_dream.camera_adapter import load_camera_adapter

        self.camera_adapter = load_camera_adapter(path, self.transformer.config.inner_dim).to(self.device)
        return self

    def _camera_bias(self, camera: Any, num_frames: int, height: int, width: int, batch: int) -> torch.Tensor:
        """The camera adapter's (batch, L, width) token offsets for `camera` (checked before any sampling)."""
        from models.video_generation.luma_dream.camera_adapter import camera_token_bias

        if self.camera_adapter is None:
            raise UserError("camera= needs a camera adapter: pipe.load_camera_adapter('camera_adapter.safetensors') "
                            "(train one with train/train_video.py --model luma_dream --camera)")
        vc = self.vae.config
        return camera_token_bias(self.camera_adapter, camera, num_frames, height, width, vc.temporal_ratio,
                                 vc.spatial_ratio, batch, self.device, self.dtype)

    def _preview_hook(self, callback: PreviewCallback) -> PreviewCallback:
        """x0 latents -> RGB preview frames (B, F', 3, h, w) for the user's `callback(step, total, frames)`."""
        from models.video_generation.luma_dream.fit_preview import LatentPreview

        if self.preview_map is None:
            self.preview_map = LatentPreview.fit(self.vae)

        def hook(i: int, total: int, x0: torch.Tensor) -> None:
            callback(i, total, self.preview_map(x0))
        return hook


def _file_metadata_config(path: Path) -> dict:
    """The JSON under "config" in a single file's safetensors metadata (the 0.9.1+ releases store
    {"transformer": ..., "vae": ..., and for the distilled files "allowed_inference_steps"} there); {} if none."""
    import json

    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    try:
        cfg = json.loads(meta.get("config", "{}"))
    except ValueError:
        return {}
    return cfg if isinstance(cfg, dict) else {}


def _single_file_config(path: Path) -> dict:
    """The transformer config of a single file's metadata ({} when there is none)."""
    cfg = _file_metadata_config(path).get("transformer")
    return cfg if isinstance(cfg, dict) else {}


def _base_seed(seed: Any, gens: Generators) -> int:
    if isinstance(seed, int):
        return seed
    if isinstance(seed, (list, tuple)) and seed:
        return int(seed[0])
    g = gens[0] if isinstance(gens, (list, tuple)) else gens
    return int(g.initial_seed()) if g is not None else 0


def _tokenizer_of(folder: Path) -> Any:
    """The tokenizer/ folder next to text_encoder/, else let the encoder's loader decide."""
    tok = folder / "tokenizer"
    return tok if tok.is_dir() else None


def _images(image: Any, count: int) -> list[Any]:
    from utils.encoders.clip_preprocess import open_image

    images = list(image) if isinstance(image, (list, tuple)) else [image]
    images = [open_image(im) if isinstance(im, (str, os.PathLike)) else im for im in images]
    if len(images) not in (1, count):
        raise UserError(f"got {len(images)} images for {count} prompts: give one image, or one per prompt")
    return images * count if len(images) == 1 else images


def _frame_pixels(images: Sequence[Any], size: tuple[int, int]) -> torch.Tensor:
    """Images resized to the clip's size (Lanczos for PIL images, bicubic for tensors) -> (B, 3, H, W) in [-1, 1]."""
    from PIL import Image

    out = []
    for im in images:
        if isinstance(im, torch.Tensor):
            x = im[None] if im.ndim == 3 else im
            if tuple(x.shape[-2:]) != size:
                x = torch.nn.functional.interpolate(x.float(), size=size, mode="bicubic", align_corners=False)
            out.append(x.float().clamp(0, 1) * 2 - 1)
            continue
        if not isinstance(im, Image.Image):
            raise UserError(f"image must be a path, a PIL image or a (3, H, W) tensor in [0, 1], got {type(im).__name__}")
        im = im.convert("RGB")
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), resample=Image.LANCZOS)
        arr = np.asarray(im, dtype=np.float32) / 255.0
        out.append(torch.from_numpy(arr).permute(2, 0, 1)[None] * 2 - 1)
    return torch.cat(out)


def _video_output(pixels: torch.Tensor, latents: torch.Tensor, fps: float) -> VideoOutput:
    from utils.outputs import check_generated
    from utils.visualization.grid import to_pil

    check_generated(pixels, "frames", flat=False)
    frames = [to_pil(video, value_range=(0.0, 1.0)) for video in pixels]
    return VideoOutput(frames=frames, fps=fps, pixels=pixels, latents=latents.float().cpu())


__all__ = ["CONDITION_NOISE_SCALE", "FIXED_SCHEDULER", "LTXVideoPipeline", "LTX_SCHEDULER", "TEXT_MAX_LENGTH",
           "check_frames", "pack", "unpack"]
