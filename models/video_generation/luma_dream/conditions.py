"""LTX-Video conditioning on frames: an image at frame 0, an image keyframe later in the clip, a short video.

This is how LTX-Video 0.9.5+ (and diffusers' `LTXConditionPipeline`) keeps a character or a scene fixed
through a clip. Each condition is a `VideoCondition` (an image or a video, the frame it is placed at, a
strength in [0, 1]). Its pixels are encoded by the VAE (the posterior sampled from the video's generator)
and standardised, then enter the token sequence in one of two ways:

- **at frame 0** the condition's latent frames replace the start of the noise latents, blended by strength
  (`lerp(noise, condition, strength)`), and those tokens get a conditioning mask equal to the strength;
- **later** (a keyframe, or a video starting at frame k) the condition's first two latent frames (the
  "prefix": the VAE's lone first frame and the next group of frames) become *extra tokens* put in front
  of the video's tokens, their own noise blended in by strength, with positions of their own: RoPE
  coordinates that place them at frame k of the clip. A video's latent frames past the prefix replace the
  matching latent frames of the clip (as at frame 0). Extra tokens are dropped before decoding.

Positions in this scheme are "causal": latent frame i sits at pixel frame max(0, 1 + r (i - 1)) (r the VAE's
temporal compression), which is where the last frame of its group lies; a later condition's frames add k.

During sampling a token with mask m takes the timestep min(t, 1000 (1 - m)) and is stepped only once the
schedule has come down below its own noise level (t / 1000 < 1 - m): a strength-1 token is never stepped
(timestep 0, the clean condition), a strength-0.5 token waits half the schedule. Strength-1 tokens also get
a little fresh noise every step (`noise_scale * (t / 1000)^2`), which the release uses for smoother motion
out of a single frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from utils.errors import UserError
from utils.torch_utils import Generators, randn

PREFIX_LATENT_FRAMES = 2
"""Latent frames of a later condition that become extra tokens (the rest replace the clip's latents)."""
HARD_EPS = 1e-6
"""Tolerance of 'strength 1' (the tokens that get the per-step noise) and of the denoise test."""


@dataclass(frozen=True)
class VideoCondition:
    """One conditioning item: an `image` (a path, PIL image or (3, H, W) tensor in [0, 1]) or a `video` (a
    video file, animated image or frame folder, a list of images, or a (T, 3, H, W) tensor in [0, 1]),
    placed at `frame_index` (0: the first frame; a multiple of the VAE's temporal compression, 8 in the
    releases) with `strength` in [0, 1] (1: exactly the condition; 0: no pull at all)."""

    image: Any = None
    video: Any = None
    frame_index: int = 0
    strength: float = 1.0

    def __post_init__(self) -> None:
        if (self.image is None) == (self.video is None):
            raise UserError("a VideoCondition holds an image or a video (one of the two): "
                            "VideoCondition(image=..., frame_index=...) or VideoCondition(video=..., ...)")
        if isinstance(self.frame_index, bool) or not isinstance(self.frame_index, int):
            raise UserError(f"a condition's frame_index must be an integer frame, got {self.frame_index!r}")
        try:
            strength = float(self.strength)
        except (TypeError, ValueError):
            raise UserError(f"a condition's strength must be a number in [0, 1], got {self.strength!r}") from None
        if not 0.0 <= strength <= 1.0:
            raise UserError(f"a condition's strength must be in [0, 1] (1: exactly the condition), got {strength:g}")

    @property
    def kind(self) -> str:
        return "image" if self.image is not None else "video"

    @property
    def what(self) -> str:
        return "an image" if self.image is not None else "a video"


def as_conditions(conditions: Any) -> list[VideoCondition]:
    """One condition or a sequence of them -> a list (anything else is one line)."""
    items = [conditions] if isinstance(conditions, VideoCondition) else list(conditions)
    for c in items:
        if not isinstance(c, VideoCondition):
            raise UserError(f"conditions must be VideoCondition items, got {type(c).__name__}: "
                            "VideoCondition(image=..., frame_index=0, strength=1.0)")
    return items


def check_conditions(conditions: Sequence[VideoCondition], num_frames: int, temporal_ratio: int) -> None:
    """Each condition's frame lies in the clip (0 .. num_frames - 1) on a multiple of `temporal_ratio`."""
    for c in conditions:
        k = c.frame_index
        if k < 0 or k >= num_frames:
            raise UserError(f"{c.what} condition at frame {k} is outside the clip of {num_frames} frames: "
                            f"use a frame from 0 to {num_frames - 1}")
        if k % temporal_ratio:
            below = k // temporal_ratio * temporal_ratio
            raise UserError(f"{c.what} condition at frame {k}: LTX-Video places conditions on multiples of "
                            f"{temporal_ratio} frames (its VAE's time step), use {below} or "
                            f"{below + temporal_ratio if below + temporal_ratio < num_frames else below}")


def trimmed_length(frame_index: int, length: int, num_frames: int, temporal_ratio: int) -> int:
    """Frames of a condition video that are used: what fits in the clip from `frame_index`, cut down to
    1 + r k (the VAE encodes a lone first frame, then groups of r)."""
    n = min(length, num_frames - frame_index)
    return (n - 1) // temporal_ratio * temporal_ratio + 1


def _video_frames(video: Any) -> list[Any]:
    """A condition video -> its frames (PIL images or (3, H, W) tensors in [0, 1])."""
    if isinstance(video, torch.Tensor):
        if video.ndim != 4 or video.shape[1] != 3:
            raise UserError(f"a condition video tensor must be (frames, 3, H, W) in [0, 1], got {tuple(video.shape)}")
        return list(video)
    if isinstance(video, (list, tuple)):
        from utils.encoders.clip_preprocess import open_image

        return [open_image(f) if isinstance(f, (str, os.PathLike)) else f for f in video]
    if isinstance(video, (str, os.PathLike)):
        from PIL import Image

        from utils.data.video import decode

        arrays, _ = decode(Path(video))
        return [Image.fromarray(a) for a in arrays]
    raise UserError(f"a condition video must be a video path, a list of frames or a (frames, 3, H, W) tensor, "
                    f"got {type(video).__name__}")


def condition_pixels(cond: VideoCondition, num_frames: int, size: tuple[int, int], temporal_ratio: int
                     ) -> torch.Tensor:
    """The condition's frames as the VAE takes them: (1, 3, T, H, W) in [-1, 1] at the clip's `size`, T = 1
    for an image, else the video's first `trimmed_length` frames."""
    from models.video_generation.luma_dream.pipeline import _frame_pixels
    from utils.encoders.clip_preprocess import open_image

    if cond.image is not None:
        image = open_image(cond.image) if isinstance(cond.image, (str, os.PathLike)) else cond.image
        return _frame_pixels([image], size).transpose(0, 1)[None]
    frames = _video_frames(cond.video)
    if not frames:
        raise UserError("the condition video has no frames")
    n = trimmed_length(cond.frame_index, len(frames), num_frames, temporal_ratio)
    return _frame_pixels(frames[:n], size).transpose(0, 1)[None]


def causal_frame_coords(latent_frames: int, temporal_ratio: int, start: int = 0,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel-frame coordinate of each latent frame: max(0, 1 + r (i - 1)) + start."""
    i = torch.arange(latent_frames, device=device, dtype=torch.float32)
    return (i * temporal_ratio + 1 - temporal_ratio).clamp(min=0) + start


def token_coords(batch: int, frames: int, height: int, width: int, temporal_ratio: int, spatial_ratio: int,
                 fps: float, start: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """(B, 3, frames*height*width) RoPE coordinates of a latent grid, row-major over (frame, row, col): causal
    frame coordinates from `start` in seconds (divided by `fps`), rows and columns in pixels."""
    f = causal_frame_coords(frames, temporal_ratio, start, device) / fps
    h = torch.arange(height, device=device, dtype=torch.float32) * spatial_ratio
    w = torch.arange(width, device=device, dtype=torch.float32) * spatial_ratio
    grid = torch.stack(torch.meshgrid(f, h, w, indexing="ij"), dim=0).flatten(1)
    return grid[None].expand(batch, -1, -1)


@dataclass
class EncodedCondition:
    """A condition after the VAE: its place, its strength, and the posterior of its frames."""

    frame_index: int
    strength: float
    posterior: Any
    """The VAE's posterior over the raw latents (`DiagonalGaussian`, (1, C, n, h, w))."""
    num_pixel_frames: int


@dataclass
class ConditionedTokens:
    """The starting token sequence of a conditioned call: extra tokens first, then the clip's."""

    tokens: torch.Tensor
    """(B, L, C) starting tokens (noise, conditions blended in)."""
    mask: torch.Tensor
    """(B, L) conditioning strength of each token (0: free)."""
    coords: torch.Tensor
    """(B, 3, L) RoPE coordinates (frames in seconds, rows and columns in pixels)."""
    num_extra: int
    """Extra (later-condition) tokens at the front; dropped before decoding."""

    def timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L) per-token timesteps at schedule timestep `t` (in [0, 1000]): min(t, 1000 (1 - mask))."""
        return torch.minimum(t.float().reshape(1, 1).to(self.mask.device), (1 - self.mask) * 1000.0)

    def to_denoise(self, t: torch.Tensor) -> torch.Tensor:
        """(B, L) bool: the tokens this step moves (the schedule has come below their noise level)."""
        return (t.float().to(self.mask.device) / 1000 - HARD_EPS) < (1 - self.mask)

    @property
    def hard(self) -> torch.Tensor:
        """(B, L) bool: the strength-1 tokens (they take the per-step conditioning noise)."""
        return self.mask > 1 - HARD_EPS


def prepare_tokens(noise: torch.Tensor, encoded: Sequence[EncodedCondition], generators: Generators,
                   normalize: Callable[[torch.Tensor], torch.Tensor], temporal_ratio: int, spatial_ratio: int,
                   fps: float) -> ConditionedTokens:
    """Noise latents (B, C, F, h, w) and the encoded conditions -> the starting tokens, their conditioning
    mask and their coordinates. Video b draws, from its own generator and in the conditions' order, the
    posterior sample of each condition and then (for a later condition) the noise of its extra tokens."""
    b, c, f, h, w = noise.shape
    dev = noise.device
    gens = list(generators) if isinstance(generators, (list, tuple)) else [generators] * b
    if len(gens) != b:
        raise UserError(f"got {len(gens)} generators for a batch of {b}")
    latents = noise.float().clone()
    frame_mask = torch.zeros(b, f, device=dev)
    extra_tokens: list[list[torch.Tensor]] = [[] for _ in encoded]
    extra_mask: list[torch.Tensor] = []
    extra_coords: list[torch.Tensor] = []
    for v, g in enumerate(gens):
        for j, e in enumerate(encoded):
            z = normalize(e.posterior.sample(g)).float().to(dev)  # (1, C, n, h, w)
            n, s = z.shape[2], float(e.strength)
            if e.frame_index == 0:
                latents[v:v + 1, :, :n] = torch.lerp(latents[v:v + 1, :, :n], z, s)
                frame_mask[v, :n] = s
                continue
            if e.num_pixel_frames > 1 and n > PREFIX_LATENT_FRAMES:
                start = e.frame_index // temporal_ratio + PREFIX_LATENT_FRAMES
                end = start + n - PREFIX_LATENT_FRAMES
                latents[v:v + 1, :, start:end] = torch.lerp(latents[v:v + 1, :, start:end],
                                                            z[:, :, PREFIX_LATENT_FRAMES:], s)
                frame_mask[v, start:end] = s
                z = z[:, :, :PREFIX_LATENT_FRAMES]
            own = randn(tuple(z.shape), g, dev, torch.float32)
            extra_tokens[j].append(torch.lerp(own, z, s).flatten(2).transpose(1, 2))
    for j, e in enumerate(encoded):
        if not extra_tokens[j]:
            continue
        toks = torch.cat(extra_tokens[j])
        n = toks.shape[1] // (h * w)
        extra_tokens[j] = [toks]
        extra_mask.append(torch.full(toks.shape[:2], float(e.strength), device=dev))
        extra_coords.append(token_coords(b, n, h, w, temporal_ratio, spatial_ratio, fps, e.frame_index, dev))
    extra = [t[0] for t in extra_tokens if t]
    main = latents.flatten(2).transpose(1, 2)
    mask = frame_mask.repeat_interleave(h * w, dim=1)
    coords = token_coords(b, f, h, w, temporal_ratio, spatial_ratio, fps, 0, dev)
    num_extra = sum(t.shape[1] for t in extra)
    return ConditionedTokens(tokens=torch.cat([*extra, main], dim=1), mask=torch.cat([*extra_mask, mask], dim=1),
                             coords=torch.cat([*extra_coords, coords], dim=2), num_extra=num_extra)


def per_token_step(x: torch.Tensor, velocity: torch.Tensor, token_t: torch.Tensor, sigmas: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching Euler step with a timestep per token: each token goes from its own sigma
    (token_t / 1000) to the next lower level of the schedule (`sigmas`, ending in 0). Returns
    (the stepped tokens, the denoised estimate x - sigma v), both float32 (B, L, C)."""
    cur = token_t.float() / 1000.0  # (B, L)
    levels = sigmas.float().to(x.device)
    below = levels[:, None, None] < cur[None] - HARD_EPS
    nxt = (below * levels[:, None, None]).amax(dim=0)
    x, v = x.float(), velocity.float()
    return x + (nxt - cur)[..., None] * v, x - cur[..., None] * v


__all__ = ["ConditionedTokens", "EncodedCondition", "PREFIX_LATENT_FRAMES", "VideoCondition", "as_conditions",
           "causal_frame_coords", "check_conditions", "condition_pixels", "per_token_step", "prepare_tokens",
           "token_coords", "trimmed_length"]
