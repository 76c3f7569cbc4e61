"""Plücker ray embeddings of camera poses, per pixel and packed to a video latent's token grid.

A ray with origin o and unit direction d is the line {o + s d}; its Plücker coordinates are the pair
(m, d) with moment m = o x d. The moment is the same for every point of the line ((o + s d) x d = o x d),
so the six numbers name the line, not a point on it. CameraCtrl (He et al. 2024, arXiv:2404.02101) feeds a
video model one such 6-vector per pixel and frame, which tells it where every pixel looks.

Conventions are those of `utils.rendering.cameras` (and `camera_rays`, which this module builds on):
OpenCV camera axes (x right, y down, z forward), world-to-camera `viewmats`, intrinsics in pixels, pixel
centres at (i + 0.5, j + 0.5). Channels are ordered (m_x, m_y, m_z, d_x, d_y, d_z).

`relative_to_first` re-expresses a pose sequence in the first camera's frame (frame 0 becomes the
identity pose), as CameraCtrl does: the embedding then describes the camera's motion, and does not
depend on where the sequence sits in the world (a rigid change of world coordinates leaves it unchanged).

`plucker_tokens` packs a video's per-pixel embeddings to the token grid of a causal video VAE that keeps
frame 0 alone and then groups `temporal_ratio` frames per latent frame (LTX-Video: 1 + (T - 1) / 8 latent
frames, 32x32 pixels per token; the grid LTX's patch size 1 tokenises one token per latent voxel):
- `mode="mean"`: 6 channels per token, the mean of its pixels' (and frames') embeddings;
- `mode="unshuffle"`: every pixel and frame of the token stacked, 6 * temporal_ratio * spatial_ratio^2
  channels (frame 0 repeated to fill its group, as the causal VAE pads it).
Tokens are ordered row-major over (latent frame, row, column), the order of the pipeline's `pack`.
"""
from __future__ import annotations

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.cameras import Cameras, camera_rays

__all__ = ["plucker", "plucker_embedding", "plucker_tokens", "relative_to_first", "token_grid"]


def plucker(origins: Tensor, directions: Tensor, normalize: bool = True) -> Tensor:
    """(..., 3) origins and directions -> (..., 6) Plücker coordinates (o x d, d), d made unit first."""
    if normalize:
        directions = torch.nn.functional.normalize(directions, dim=-1)
    return torch.cat([torch.linalg.cross(origins.expand_as(directions), directions, dim=-1), directions], -1)


def plucker_embedding(cameras: Cameras) -> Tensor:
    """The Plücker embedding of every pixel of every camera: (C, H, W, 6)."""
    origins, dirs = camera_rays(cameras, normalize=True)
    return plucker(origins, dirs, normalize=False)


def relative_to_first(cameras: Cameras) -> Cameras:
    """The same cameras in the coordinates of camera 0: its camera-to-world becomes the identity, every
    other camera's is inv(c2w_0) @ c2w_i (so viewmat_i' = viewmat_i @ c2w_0). Intrinsics are unchanged."""
    c2w0 = cameras.camtoworlds[:1]
    return Cameras(cameras.viewmats @ c2w0, cameras.Ks, cameras.width, cameras.height)


def token_grid(num_frames: int, height: int, width: int, temporal_ratio: int, spatial_ratio: int
               ) -> tuple[int, int, int]:
    """(latent frames, rows, columns) of a clip of `num_frames` frames of height x width pixels."""
    if num_frames < 1 or (num_frames - 1) % temporal_ratio:
        raise UserError(f"Plücker tokens need 1 + {temporal_ratio}k frames, got {num_frames}")
    if height % spatial_ratio or width % spatial_ratio:
        raise UserError(f"Plücker tokens need sides that are multiples of {spatial_ratio}, got {height}x{width}")
    return 1 + (num_frames - 1) // temporal_ratio, height // spatial_ratio, width // spatial_ratio


def plucker_tokens(cameras: Cameras, temporal_ratio: int, spatial_ratio: int, mode: str = "mean",
                   relative: bool = True) -> Tensor:
    """One camera per frame (T = 1 + temporal_ratio * k) -> (F' * H' * W', channels) tokens, row-major over
    (latent frame, row, column); see the module docstring for `mode`. `relative`: the poses relative to
    frame 0's first (`relative_to_first`)."""
    if mode not in ("mean", "unshuffle"):
        raise UserError(f"Plücker token mode must be 'mean' or 'unshuffle', got '{mode}'")
    frames, rows, cols = token_grid(len(cameras), cameras.height, cameras.width, temporal_ratio, spatial_ratio)
    if relative:
        cameras = relative_to_first(cameras)
    emb = plucker_embedding(cameras)  # (T, H, W, 6)
    # causal grouping: frame 0 alone (repeated to a full group), then groups of temporal_ratio frames
    emb = torch.cat([emb[:1].expand(temporal_ratio, -1, -1, -1), emb[1:]])
    emb = emb.view(frames, temporal_ratio, rows, spatial_ratio, cols, spatial_ratio, 6)
    emb = emb.permute(0, 2, 4, 1, 3, 5, 6)  # (F', H', W', rt, rs, rs, 6)
    if mode == "mean":
        out = emb.mean(dim=(3, 4, 5))
    else:
        out = emb.reshape(frames, rows, cols, -1)
    return out.reshape(frames * rows * cols, -1)
