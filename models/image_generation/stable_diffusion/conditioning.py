"""How SDXL and SD3 turn text-encoder outputs and image sizes into the inputs of their denoisers.

SDXL (sgm's `GeneralConditioner`): the UNet's `context` is the penultimate hidden states of CLIP-L
(768) and OpenCLIP bigG (1280) side by side (2048; the refiner uses bigG alone, 1280). Its vector
`y` is the pooled, projected bigG embedding followed by Fourier features (256 each, cos first) of
the "micro-conditioning" numbers the model was trained with:

    base:    original height, width | crop top, left | target height, width      -> 1280 + 6 x 256 = 2816
    refiner: original height, width | crop top, left | aesthetic score           -> 1280 + 5 x 256 = 2560

SD3: the token sequence is [CLIP-L | CLIP-G penultimate states (768 + 1280), zero-padded to 4096]
followed by the T5-XXL states (4096; zeros when T5 is not loaded, as the release allows); the
pooled vector is CLIP-L's and CLIP-G's projected embeddings side by side (2048).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from utils.nn import timestep_embedding


def sdxl_time_ids(original_size: Sequence[int], crop_top_left: Sequence[int] = (0, 0),
                  target_size: Sequence[int] | None = None, aesthetic_score: float | None = None,
                  batch: int = 1) -> torch.Tensor:
    """(batch, 6) base or (batch, 5) refiner micro-conditioning numbers (sizes as height, width)."""
    values = [*original_size, *crop_top_left]
    if aesthetic_score is not None:
        values.append(float(aesthetic_score))
    else:
        values += list(target_size if target_size is not None else original_size)
    return torch.tensor([values], dtype=torch.float32).repeat(batch, 1)


def sdxl_vector(pooled: torch.Tensor, time_ids: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """The UNet's `y`: pooled text embedding, then `dim` Fourier features per micro-conditioning number."""
    b, n = time_ids.shape
    feats = timestep_embedding(time_ids.reshape(-1).float(), dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    return torch.cat([pooled, feats.reshape(b, n * dim).to(pooled.dtype)], dim=-1)


def sd3_context(clip_l: torch.Tensor, clip_g: torch.Tensor, t5: torch.Tensor | None, t5_tokens: int = 256,
                width: int = 4096) -> torch.Tensor:
    """[CLIP-L | CLIP-G zero-padded to `width`] then the T5 tokens (zeros when `t5` is None)."""
    clip = torch.cat([clip_l, clip_g], dim=-1)
    clip = F.pad(clip, (0, width - clip.shape[-1]))
    if t5 is None:
        t5 = torch.zeros(clip.shape[0], t5_tokens, width, dtype=clip.dtype, device=clip.device)
    return torch.cat([clip, t5.to(clip.dtype)], dim=-2)


__all__ = ["sd3_context", "sdxl_time_ids", "sdxl_vector"]
