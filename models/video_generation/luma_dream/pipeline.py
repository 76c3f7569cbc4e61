"""LTX-Video text-to-video sampling (work in progress: no spec, CLI or image conditioning yet).

The loop of the release: seeded noise latents (B, 128, 1 + (T-1)/8, H/32, W/32), packed one token per
latent voxel; flow-matching Euler through `utils.diffusion.schedulers.FlowMatchEuler` with the
release's resolution-dependent shift (mu from the token count, base 0.95 at 1024 tokens, 2.05 at 4096)
stretched to end at sigma 0.1 (`shift_terminal`); classifier-free guidance on a [negative, positive]
batch; then the latents are de-standardised and decoded, 0.9.1+ decoders at `decode_timestep` after
mixing in `decode_noise_scale` of fresh noise from the same generator.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from models.video_generation.luma_dream.model import LTXVideoTransformer, latent_coords
from utils.diffusion.schedulers import FlowMatchEuler
from utils.encoders.ltx_vae import LTXVideoVAE
from utils.errors import UserError
from utils.outputs import VideoOutput
from utils.torch_utils import randn

# The scheduler config of the LTX-Video releases (diffusers' scheduler/scheduler_config.json).
LTX_SCHEDULER = FlowMatchEuler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05, base_image_seq_len=1024,
                               max_image_seq_len=4096, shift_terminal=0.1)


def pack(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, F*H*W, C) tokens, row-major over (frame, row, col)."""
    return latents.flatten(2).transpose(1, 2)


def unpack(tokens: torch.Tensor, frames: int, height: int, width: int) -> torch.Tensor:
    return tokens.transpose(1, 2).unflatten(2, (frames, height, width))


class LTXVideoPipeline:
    """Transformer + VAE (+ an optional T5 encoder): text embeddings -> `VideoOutput`."""

    def __init__(self, transformer: LTXVideoTransformer, vae: LTXVideoVAE, text_encoder=None,
                 scheduler: FlowMatchEuler = LTX_SCHEDULER):
        self.transformer, self.vae, self.text_encoder, self.scheduler = transformer, vae, text_encoder, scheduler

    def _check(self, height: int, width: int, num_frames: int) -> None:
        self.vae.check_frames(num_frames)
        self.vae.check_size(height, width)

    @torch.no_grad()
    def sample_latents(self, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor,
                       negative_embeds: torch.Tensor | None = None, negative_mask: torch.Tensor | None = None,
                       height: int = 512, width: int = 704, num_frames: int = 121, fps: float = 25.0,
                       steps: int = 40, guidance: float = 3.0, generator: torch.Generator | None = None,
                       callback=None) -> torch.Tensor:
        """The denoised, still standardised latents (B, 128, F', H', W')."""
        self._check(height, width, num_frames)
        vcfg = self.vae.config
        f, h, w = self.vae.latent_frames(num_frames), height // vcfg.spatial_ratio, width // vcfg.spatial_ratio
        b = prompt_embeds.shape[0]
        dev = next(self.transformer.parameters()).device
        x = pack(randn((b, self.transformer.config.in_channels, f, h, w), generator, dev, torch.float32))
        cfg_on = guidance > 1.0
        if cfg_on:
            if negative_embeds is None:
                raise UserError("guidance > 1 needs negative prompt embeddings (the empty prompt's): pass them")
            ctx = torch.cat([negative_embeds, prompt_embeds]).to(dev)
            mask = torch.cat([negative_mask, prompt_mask]).to(dev)
        else:
            ctx, mask = prompt_embeds.to(dev), prompt_mask.to(dev)
        schedule = self.scheduler.schedule(sigmas=np.linspace(1.0, 1.0 / steps, steps), mu=self.scheduler.mu_for(f * h * w))
        coords = latent_coords(ctx.shape[0], f, h, w, (vcfg.temporal_ratio / fps, vcfg.spatial_ratio, vcfg.spatial_ratio),
                               device=dev)
        dtype = next(self.transformer.parameters()).dtype
        for i, t in enumerate(schedule.timesteps):
            inp = torch.cat([x, x]) if cfg_on else x
            v = self.transformer(inp.to(dtype), ctx.to(dtype), t.to(dev).expand(inp.shape[0]), coords, mask).float()
            if cfg_on:
                uncond, cond = v.chunk(2)
                v = uncond + guidance * (cond - uncond)
            x = self.scheduler.step(v, x, i, schedule).prev_sample
            if callback is not None:
                callback(i, t, x)
        return unpack(x, f, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, decode_timestep: float = 0.05, decode_noise_scale: float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Standardised latents -> frames (B, T, 3, H, W) in [0, 1]."""
        z = self.vae.denormalize(latents.float())
        t = None
        if self.vae.config.timestep_conditioning:
            s = decode_timestep if decode_noise_scale is None else decode_noise_scale
            z = (1 - s) * z + s * randn(tuple(z.shape), generator, z.device, z.dtype)
            t = torch.full((z.shape[0],), float(decode_timestep), device=z.device)
        video = self.vae.decode(z, t)
        return (video.float() / 2 + 0.5).clamp(0, 1).transpose(1, 2)

    def __call__(self, prompt_embeds: torch.Tensor, prompt_mask: torch.Tensor, seed: int = 0,
                 fps: float = 25.0, decode_timestep: float = 0.05, decode_noise_scale: float | None = None,
                 **kw) -> VideoOutput:
        from utils.diffusion.noise import generators

        g = generators(seed)
        latents = self.sample_latents(prompt_embeds, prompt_mask, fps=fps, generator=g, **kw)
        pixels = self.decode(latents, decode_timestep, decode_noise_scale, g).cpu()
        frames = [[Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype("uint8")) for f in v] for v in pixels]
        return VideoOutput(frames=frames, fps=fps, pixels=pixels, latents=latents.cpu())


__all__ = ["LTXVideoPipeline", "LTX_SCHEDULER", "pack", "unpack"]
