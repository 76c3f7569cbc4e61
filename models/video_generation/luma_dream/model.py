"""The LTX-Video transformer (Lightricks, 2024): a 28-block diffusion transformer over the tokens of
LTX's 1:192 video VAE (each latent voxel is one token: the VAE did the patchifying).

Tokens go in through `patchify_proj`; the timestep goes through adaLN-single (`adaln_single`: one
embedding, projected once to six vectors per block, to which each block adds its own
`scale_shift_table`); the T5 tokens through `caption_projection`. Positions are 3-D rotary embeddings
over fractional (frame, row, col) coordinates: a token's coordinates are its latent indices times the
VAE's compression (and frames divided by the frame rate), divided by fixed bases (20 frames, 2048
pixels), so clips of any size and rate share one position scale. Timesteps may be (B,) or per token
(B, L): image-to-video gives the conditioning frame's tokens t = 0.
"""
from __future__ import annotations

import torch
from torch import nn

from models.video_generation.luma_dream.config import LTXTransformerConfig
from models.video_generation.luma_dream.layers import LTXBlock, ltx_rope
from utils.encoders.ltx_vae_layers import LTXTimestepEmbedder
from utils.errors import UserError
from utils.nn.modulation import modulate


class AdaLNSingle(nn.Module):
    """Timestep -> (six modulation vectors for every block, the embedding itself): `emb` then SiLU + `linear`."""

    def __init__(self, dim: int):
        super().__init__()
        self.emb = LTXTimestepEmbedder(dim)
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.emb(t)
        return self.linear(nn.functional.silu(e)), e


class CaptionProjection(nn.Module):
    """T5 tokens -> token width: linear_1, tanh-GELU, linear_2."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(nn.functional.gelu(self.linear_1(x), approximate="tanh"))


def latent_coords(batch: int, frames: int, height: int, width: int, scale: tuple[float, float, float],
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(B, 3, F*H*W) coordinates of a latent grid, row-major over (frame, row, col): latent indices times
    `scale` (the pipeline's (temporal compression / fps, spatial compression, spatial compression))."""
    f = torch.arange(frames, dtype=torch.float32, device=device) * scale[0]
    h = torch.arange(height, dtype=torch.float32, device=device) * scale[1]
    w = torch.arange(width, dtype=torch.float32, device=device) * scale[2]
    grid = torch.stack(torch.meshgrid(f, h, w, indexing="ij"), dim=0).flatten(1)
    return grid[None].expand(batch, -1, -1)


class LTXVideoTransformer(nn.Module):
    """LTX-Video's denoiser: latent tokens, timesteps, T5 tokens -> the flow-matching velocity per token."""

    def __init__(self, cfg: LTXTransformerConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or LTXTransformerConfig()
        dim = cfg.inner_dim
        self.patchify_proj = nn.Linear(cfg.in_channels, dim)
        self.adaln_single = AdaLNSingle(dim)
        self.caption_projection = CaptionProjection(cfg.caption_channels, dim)
        self.transformer_blocks = nn.ModuleList(
            LTXBlock(dim, cfg.num_attention_heads, cfg.attention_head_dim, cfg.cross_attention_dim,
                     cfg.norm_eps, cfg.qk_norm_eps) for _ in range(cfg.num_layers))
        self.norm_out = nn.LayerNorm(dim, eps=1e-6, elementwise_affine=False)
        self.scale_shift_table = nn.Parameter(torch.randn(2, dim) / dim ** 0.5)
        self.proj_out = nn.Linear(dim, cfg.out_channels)
        self.gradient_checkpointing = False

    def rope(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, L) coordinates (see `latent_coords`) -> (cos, sin) tables (B, L, width)."""
        c = self.config
        base = torch.tensor([c.base_num_frames, c.base_height, c.base_width], dtype=torch.float32,
                            device=coords.device)
        return ltx_rope(coords.float().transpose(1, 2) / base, c.inner_dim, c.rope_theta)

    def forward(self, x: torch.Tensor, context: torch.Tensor, timestep: torch.Tensor, coords: torch.Tensor,
                context_mask: torch.Tensor | None = None,
                token_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, L, in_channels) latent tokens; context (B, Lt, caption_channels) T5 tokens; timestep (B,)
        or (B, L) in [0, 1000]; coords (B, 3, L) token coordinates; context_mask (B, Lt), 1 = attend;
        token_bias (B, L, width), an optional addition to the projected tokens (the camera adapter).
        Returns (B, L, out_channels)."""
        if x.ndim != 3 or x.shape[-1] != self.config.in_channels:
            raise UserError(f"LTX tokens must be (batch, length, {self.config.in_channels}), got shape "
                            f"{tuple(x.shape)}: pack the latents first")
        b, length = x.shape[:2]
        rope = self.rope(coords)
        mask = None
        if context_mask is not None:  # the release's additive key bias (-10000 on padding)
            mask = ((1 - context_mask.to(x.dtype)) * -10000.0)[:, None, None, :]
        h = self.patchify_proj(x)
        if token_bias is not None:
            h = h + token_bias.to(h.dtype)
        t = torch.as_tensor(timestep, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        temb, emb = self.adaln_single(t.flatten())
        temb, emb = temb.view(b, -1, temb.shape[-1]).to(h.dtype), emb.view(b, -1, emb.shape[-1]).to(h.dtype)
        ctx = self.caption_projection(context.to(h.dtype))
        for block in self.transformer_blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                h = torch.utils.checkpoint.checkpoint(block, h, ctx, temb, rope, mask, use_reentrant=False)
            else:
                h = block(h, ctx, temb, rope, mask)
        shift, scale = (self.scale_shift_table + emb[:, :, None]).unbind(-2)
        h = modulate(self.norm_out(h), shift, scale)
        return self.proj_out(h)


__all__ = ["LTXVideoTransformer", "latent_coords"]
