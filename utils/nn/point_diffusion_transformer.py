"""The denoising transformer over a set of tokens that OpenAI's Point-E and Shap-E share.

Point-E runs it over the points of a cloud (a token per point, xyz + rgb channels); Shap-E over
the rows of its latent (1024 tokens of 1024 channels). Both releases store it under the same names:

    input_proj     channels -> width, per token
    time_embed     MLP (c_fc, GELU, c_proj) over the sinusoidal timestep features ([cos | sin])
    pos_emb        (n_ctx, width) learned positions of the data tokens (Shap-E only)
    ln_pre         LayerNorm before the trunk
    backbone       `utils.nn.fused_qkv_transformer.Transformer` (resblocks.N)
    ln_post        LayerNorm after it
    output_proj    width -> output channels

Conditioning enters as extra tokens placed before the data tokens (their outputs are dropped) or
as vectors added to every data token; each model builds its own conditioning embeddings
(`clip_embed`, `low_res_embed`...) and passes them to `forward`. Tokens are (B, L, C) here; the
releases' (B, C, L) is the caller's business.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from utils.nn.embeddings import timestep_embedding
from utils.nn.fused_qkv_transformer import MLP, Transformer

__all__ = ["PointDiffusionTransformer"]


class PointDiffusionTransformer(nn.Module):
    """Tokens (B, L, in_channels) and timesteps (B,) -> (B, L, out_channels)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, layers: int, heads: int,
                 pos_emb_ctx: int | None = None):
        super().__init__()
        self.width = width
        self.input_proj = nn.Linear(in_channels, width)
        self.time_embed = MLP(width)
        if pos_emb_ctx:
            self.pos_emb = nn.Parameter(torch.zeros(pos_emb_ctx, width))
        else:
            self.pos_emb = None
        self.ln_pre = nn.LayerNorm(width)
        self.backbone = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, out_channels)

    def embed_time(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """(B, width) embedding of timesteps t (a scalar or (B,), may be fractional)."""
        t = torch.as_tensor(t, device=self.input_proj.weight.device).reshape(-1).float()
        if t.numel() == 1 and batch > 1:
            t = t.expand(batch)
        feats = timestep_embedding(t, self.width, flip_sin_to_cos=True, downscale_freq_shift=0.0)
        return self.time_embed(feats.to(self.input_proj.weight.dtype))

    def forward(self, x: torch.Tensor, tokens: Sequence[torch.Tensor] = (),
                added: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """x (B, L, in_channels); `tokens`: (B, T, width) or (B, width) embeddings placed before the
        data tokens, in order; `added`: (B, width) embeddings added to every data token."""
        h = self.input_proj(x)
        for emb in added:
            h = h + emb[:, None]
        if self.pos_emb is not None:
            h = h + self.pos_emb
        extra = [t[:, None] if t.ndim == 2 else t for t in tokens]
        n_extra = sum(t.shape[1] for t in extra)
        if extra:
            h = torch.cat([*extra, h], dim=1)
        h = self.ln_post(self.backbone(self.ln_pre(h)))
        return self.output_proj(h[:, n_extra:])
