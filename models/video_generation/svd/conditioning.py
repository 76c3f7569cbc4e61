"""The vector conditioning of SVD: Fourier features of (fps - 1, motion bucket id, noise augmentation)."""
from __future__ import annotations

import torch

from utils.nn import timestep_embedding


def svd_vector(ids: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """(B, 3) numbers -> (B, 3 * dim): each number's [cos, sin] features of width `dim`, concatenated in order
    (the release's three ConcatTimestepEmbedderND embedders; diffusers' `added_time_ids`)."""
    b, n = ids.shape
    return timestep_embedding(ids.reshape(-1).float(), dim, flip_sin_to_cos=True, downscale_freq_shift=0).reshape(b, n * dim)


def svd_ids(fps: float, motion_bucket_id: float, noise_aug_strength: float, batch: int = 1) -> torch.Tensor:
    """(batch, 3) conditioning numbers. The UNet was trained on fps - 1 (the release's `fps_id`), so a
    clip meant to play at 7 fps is conditioned on 6."""
    return torch.tensor([[fps - 1.0, float(motion_bucket_id), float(noise_aug_strength)]]).repeat(batch, 1)


__all__ = ["svd_ids", "svd_vector"]
