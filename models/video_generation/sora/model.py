"""The Wan video diffusion transformer (Wan 2.1 / 2.2), in the official release's module layout.

A video latent (B, C, F, H, W) is cut into spacetime patches (1x2x2 -> one token each); every block
runs self-attention over all tokens with RMS-normed q/k and 3-D rotary positions over (frame, row,
col), cross-attention to the text tokens (plus, for image-to-video, a second attention to CLIP image
tokens whose result is added), and a feed-forward. One time embedding, projected once to six vectors
per token width, modulates every block (shift/scale/gate around self-attention and the feed-forward)
with a learned per-block offset (`modulation`); the head uses the embedding itself with two offsets.
Timesteps may be (B,) or per token (B, L) (Wan 2.2's 5B model gives conditioning frames t = 0).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.video_generation.sora.config import WanTransformerConfig
from utils.errors import UserError
from utils.nn.attention import attention
from utils.nn.embeddings import timestep_embedding
from utils.nn.norms import RMSNorm
from utils.nn.rope import apply_rope, grid_ids, rope_nd


class WanLayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype (the release's `WanLayerNorm`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


class WanRMSNorm(RMSNorm):
    """`utils.nn.norms.RMSNorm` (same math, same `weight`) in one fused kernel: the q/k norms see every token.
    Float32 math, the input's dtype back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps).to(x.dtype)


def _per_token(p: torch.Tensor) -> torch.Tensor:
    # (B, D) per-sample modulation -> (B, 1, D) over the tokens; (B, L, D) per-token stays.
    return p.unsqueeze(1) if p.ndim == 2 else p


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift (`utils.nn.modulation.modulate`) as one fused multiply-add pass."""
    return torch.addcmul(_per_token(shift), x, 1 + _per_token(scale))


def _gate(residual: torch.Tensor, g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """residual + g * y (`utils.nn.modulation.gate`) as one fused multiply-add pass."""
    return torch.addcmul(residual, _per_token(g), y)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)  # (B, L, D) -> (B, heads, L, D/heads)


def _merge(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2).flatten(2)


class WanSelfAttention(nn.Module):
    """Self-attention over all spacetime tokens; q and k RMS-normed across heads, then rotated."""

    def __init__(self, dim: int, num_heads: int, eps: float):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = WanRMSNorm(dim, eps)
        self.norm_k = WanRMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        q = apply_rope(_heads(self.norm_q(self.q(x)), self.num_heads), cos, sin, interleaved=True)
        k = apply_rope(_heads(self.norm_k(self.k(x)), self.num_heads), cos, sin, interleaved=True)
        return self.o(_merge(attention(q, k, _heads(self.v(x), self.num_heads))))


class WanCrossAttention(nn.Module):
    """Attention from the video tokens to the text tokens; with `image=True` also to CLIP image tokens
    (own key/value projections `k_img`/`v_img`, same queries), the two results summed."""

    def __init__(self, dim: int, num_heads: int, eps: float, image: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = WanRMSNorm(dim, eps)
        self.norm_k = WanRMSNorm(dim, eps)
        if image:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = WanRMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None = None) -> torch.Tensor:
        h = self.num_heads
        q = _heads(self.norm_q(self.q(x)), h)
        out = attention(q, _heads(self.norm_k(self.k(context)), h), _heads(self.v(context), h))
        if hasattr(self, "k_img"):
            if context_img is None:
                raise UserError("this Wan transformer is image-to-video and needs CLIP image tokens: pass clip_fea")
            out = out + attention(q, _heads(self.norm_k_img(self.k_img(context_img)), h),
                                  _heads(self.v_img(context_img), h))
        return self.o(_merge(out))


def _chunks(table: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # (1, n, D) learned offsets + (B, n, D) or (B, L, n, D) projected embedding -> n tensors (B, D) / (B, L, D).
    return (table.float() + e.float()).unbind(-2)


class WanAttentionBlock(nn.Module):
    """norm1 -> self_attn (modulated, gated); norm3 -> cross_attn; norm2 -> ffn (modulated, gated)."""

    def __init__(self, cfg: WanTransformerConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = WanLayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = WanLayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = WanCrossAttention(dim, cfg.num_heads, cfg.eps, image=cfg.i2v)
        self.norm2 = WanLayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                context: torch.Tensor, context_img: torch.Tensor | None = None) -> torch.Tensor:
        shift, scale, g, c_shift, c_scale, c_g = _chunks(self.modulation, e)
        y = self.self_attn(_modulate(self.norm1(x).float(), shift, scale).type_as(x), cos, sin)
        x = _gate(x.float(), g, y.float()).type_as(x)
        x = x + self.cross_attn(self.norm3(x), context, context_img)
        y = self.ffn(_modulate(self.norm2(x).float(), c_shift, c_scale).type_as(x))
        return _gate(x.float(), c_g, y.float()).type_as(x)


class WanHead(nn.Module):
    """Final modulated norm and the projection of each token back to a (pt, ph, pw, out_dim) patch."""

    def __init__(self, cfg: WanTransformerConfig):
        super().__init__()
        self.norm = WanLayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim ** 0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = _chunks(self.modulation, e.unsqueeze(-2))
        return self.head(_modulate(self.norm(x).float(), shift, scale).type_as(x))


class WanImageProjection(nn.Module):
    """CLIP image tokens -> token width (the release's `MLPProj`: LN, Linear, GELU, Linear, LN)."""

    def __init__(self, image_dim: int, dim: int, pos_len: int | None = None):
        super().__init__()
        self.proj = nn.Sequential(WanLayerNorm(image_dim), nn.Linear(image_dim, image_dim), nn.GELU(),
                                  nn.Linear(image_dim, dim), WanLayerNorm(dim))
        if pos_len is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, pos_len, image_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):
            # First-last-frame: the two images' token sets arrive stacked on the batch axis.
            tokens = tokens.reshape(-1, self.emb_pos.shape[1], tokens.shape[-1]) + self.emb_pos
        return self.proj(tokens)


class WanTransformer(nn.Module):
    """Wan's denoiser: (B, C, F, H, W) latents, timesteps, text tokens [, CLIP tokens] -> the velocity."""

    def __init__(self, cfg: WanTransformerConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or WanTransformerConfig()
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList(WanAttentionBlock(cfg) for _ in range(cfg.num_layers))
        self.head = WanHead(cfg)
        if cfg.i2v:
            self.img_emb = WanImageProjection(cfg.image_dim, dim, cfg.image_pos_len)

    def rope(self, frames: int, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) tables (F*H*W, head_dim) of the token grid, positions counted from 0 on each axis."""
        return rope_nd(grid_ids(height, width, frames, device=device), self.config.rope_axes,
                       self.config.rope_theta, interleaved=True)

    def _check_grid(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise UserError(f"Wan latents must be (batch, channels, frames, height, width), got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_dim:
            raise UserError(f"Wan latents have {x.shape[1]} channels but this transformer takes {self.config.in_dim}: "
                            "check the VAE and the image conditioning")
        bad = [n for n, s, p in zip(("frames", "height", "width"), x.shape[2:], self.config.patch_size) if s % p]
        if bad:
            raise UserError(f"Wan latent size {tuple(x.shape[2:])} is not a multiple of the patch "
                            f"{tuple(self.config.patch_size)} in {', '.join(bad)}: choose a size the patch divides")

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                clip_fea: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, F, H, W) noisy latents; t (B,) or per-token (B, L) timesteps in [0, 1000];
        context (B, Lt, text_dim) text tokens (padded as the release pads them: to 512 with zeros);
        clip_fea (B, N, image_dim) CLIP image tokens (image-to-video); y (B, C', F, H, W) conditioning
        latents concatenated to x along channels (image-to-video: mask + encoded image).
        Returns (B, out_dim, F, H, W)."""
        if y is not None:
            x = torch.cat([x, y.to(x.dtype)], dim=1)
        self._check_grid(x)
        b = x.shape[0]
        pt, ph, pw = self.config.patch_size
        f, h, w = x.shape[2] // pt, x.shape[3] // ph, x.shape[4] // pw
        cos, sin = self.rope(f, h, w, x.device)
        # contiguous tokens: a transposed view would be copied again by every norm and slow every linear
        x = self.patch_embedding(x).flatten(2).transpose(1, 2).contiguous()

        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        freq = timestep_embedding(t.flatten(), self.config.freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0.0)
        freq = freq.unflatten(0, t.shape)
        e = self.time_embedding(freq.to(self.time_embedding[0].weight.dtype)).type_as(x)
        e0 = self.time_projection(e).unflatten(-1, (6, self.config.dim))

        context = self.text_embedding(context.to(x.dtype))
        context_img = None
        if self.config.i2v:
            if clip_fea is None:
                raise UserError("this Wan transformer is image-to-video and needs CLIP image tokens: pass clip_fea")
            context_img = self.img_emb(clip_fea.to(x.dtype))
        for block in self.blocks:
            x = block(x, e0, cos, sin, context, context_img)
        x = self.head(x, e)
        c = self.config.out_dim
        x = x.reshape(b, f, h, w, pt, ph, pw, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, c, f * pt, h * ph, w * pw)


__all__ = ["WanAttentionBlock", "WanCrossAttention", "WanHead", "WanImageProjection", "WanLayerNorm", "WanRMSNorm",
           "WanSelfAttention", "WanTransformer"]
