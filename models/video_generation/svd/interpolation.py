"""Frame interpolation through the SVD UNet: N new frames between every pair of generated frames.

The method (chosen because it needs nothing but the model at hand, and keeps the temporal layers'
knowledge of motion in play): for frames a and b of a generated video, a short clip of N + 2 frames
starts as the linear blend of their latents (a, ..., b), is noised to the level `strength` of the
schedule (img2img), and is denoised by the same UNet, conditioned on the first frame (a as the
conditioning latents, with the video's image embedding and vector) and held to the last: after every
step the two end frames are put back at the next step's noise level (`utils.diffusion.InpaintBlend`
over a frame mask), so the in-between frames are generated between two fixed ends. The linear blend
alone would cross-fade (ghosting); the denoising turns it into motion the model finds plausible.
Conditioning on both ends through the UNet's own inputs (as SVD-based interpolators that fine-tune
the model do) would need weights trained for it; this needs none.
"""
from __future__ import annotations

from typing import Any

import torch

from utils.diffusion import InpaintBlend, img2img_start, sample
from utils.errors import UserError
from utils.torch_utils import Generators, randn


def blend_pairs(latents: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T, C, h, w) -> (B * (T - 1), n + 2, C, h, w): every consecutive pair with n linear blends between."""
    b, t = latents.shape[:2]
    w = torch.linspace(0, 1, n + 2, device=latents.device, dtype=torch.float32).view(1, 1, n + 2, 1, 1, 1)
    a, z = latents[:, :-1, None].float(), latents[:, 1:, None].float()
    return (a * (1 - w) + z * w).reshape(b * (t - 1), n + 2, *latents.shape[2:])


def weave(latents: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """Originals (B, T, ...) and interpolated clips (B * (T - 1), n + 2, ...) -> (B, T + (T - 1) * n, ...)."""
    b, t = latents.shape[:2]
    inner = clips[:, 1:-1].reshape(b, t - 1, clips.shape[1] - 2, *clips.shape[2:])
    parts = []
    for i in range(t - 1):
        parts += [latents[:, i:i + 1], inner[:, i].to(latents.dtype)]
    parts.append(latents[:, -1:])
    return torch.cat(parts, dim=1)


def interpolate_latents(pipe: Any, latents: torch.Tensor, n: int, context: torch.Tensor, y: torch.Tensor, guidance: tuple[float, float], steps: int, strength: float,
                        gens: Generators, progress: bool = True) -> torch.Tensor:
    """Insert `n` frames between each pair of `latents` (B, T, C, h, w) with `pipe`'s UNet; see the module docstring.

    `context` (B, 1, D) and `y` (B, adm) are the video's conditioning; each pair is conditioned on its
    first frame's latents (unscaled, as SVD's conditioning latents are). Video b's noise comes from its
    generator."""
    if not 0.0 < strength <= 1.0:
        raise UserError(f"interpolation_strength must be in (0, 1], got {strength}")
    b, t = latents.shape[:2]
    if t < 2 or n < 1:
        return latents
    length = n + 2
    x0 = blend_pairs(latents, n)
    pairs = t - 1
    rows = torch.arange(b).repeat_interleave(pairs)
    raw_first = (latents[:, :-1].float() / pipe.vae.config.scaling_factor).reshape(b * pairs, *latents.shape[2:])
    sched = pipe.scheduler()
    schedule = sched.schedule(steps)
    start = img2img_start(steps, strength, sched.order)
    if start >= len(schedule.timesteps):
        raise UserError(f"interpolation_strength {strength} with {steps} steps leaves no step to run: raise either")
    per_video = [g for g in gens] if isinstance(gens, (list, tuple)) else [gens] * b
    noise = torch.cat([randn((pairs, length, *latents.shape[2:]), per_video[i], "cpu") for i in range(b)])
    noise = noise.to(latents.device)
    mask = torch.ones(1, length, 1, 1, 1, device=latents.device)
    mask[:, 0] = mask[:, -1] = 0
    x0 = x0.to(latents.device)
    lo, hi = guidance
    ramp = torch.linspace(lo, hi, length, device=latents.device).view(1, length, 1, 1, 1) if hi > 1.0 else None
    per_batch = max(1, t // length)  # about as many frames per UNet call as the video itself
    out = []
    for s in range(0, b * pairs, per_batch):
        sl = slice(s, s + per_batch)
        model = pipe.guided_model(context[rows[sl]], raw_first[sl].to(pipe.dtype), y[rows[sl]], ramp, length)
        x = sched.add_noise(x0[sl], noise[sl], start, schedule).to(pipe.dtype)
        out.append(sample(model, sched, schedule, x, generator=None, start=start,
                          inpaint=InpaintBlend(x0[sl].to(pipe.dtype), mask, noise[sl].to(pipe.dtype)),
                          progress=progress))
    return weave(latents, torch.cat(out))


__all__ = ["blend_pairs", "interpolate_latents", "weave"]
