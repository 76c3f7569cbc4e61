"""Temporal building blocks of video models: what turns an image network into a video network.

Video tensors come in two layouts; the helpers `to_volume` / `to_frames` convert between them:

    frames  (B*T, C, H, W)   every frame an image: what spatial layers (2-D convs, spatial attention) see
    volume  (B, C, T, H, W)  what 3-D convolutions see

The blocks (parameter names follow Stability's generative-models release, which SVD's checkpoints use):

- `AlphaBlender` (`mix_factor`): the learned mix of a spatial and a temporal branch,
  alpha * one + (1 - alpha) * other with alpha = sigmoid(mix_factor) ("learned"), the same but 1
  for frames that are still images ("learned_with_images": image-only batches skip the temporal path),
  or mix_factor itself ("fixed", a buffer).
- `TemporalConv3d` / `TemporalResBlock` (`in_layers.{0,2}`, `emb_layers.1`, `out_layers.{0,3}`,
  `skip_connection`): GroupNorm-SiLU-conv over time only (kernel (k, 1, 1)), with an optional
  per-frame embedding added between the convs; `CausalConv3d` pads time on the past side only, so frame
  t never sees frames after it (the convolution of causal video VAEs).
- `frame_embedding` / `FramePositionEmbedding` (`0`, `2`): sinusoidal features of the frame index
  ([cos, sin], as the releases) through a two-layer MLP.
- `TemporalTransformerBlock` (`norm_in`, `ff_in`, `norm1`, `attn1`, `norm2`, `attn2`, `norm3`, `ff`):
  attention across the frames of each spatial position: an optional feed-forward in, self-attention
  over time, cross-attention to a context (or self-attention when there is none), feed-forward.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError
from utils.nn.embeddings import timestep_embedding
from utils.nn.norms import GroupNorm32
from utils.nn.transformer_blocks import CrossAttention, FeedForward, inference_mode_active

MERGE_STRATEGIES = ("fixed", "learned", "learned_with_images")


# -- layouts --------------------------------------------------------------------------------------


def to_volume(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B*T, C, H, W) frames -> (B, C, T, H, W) volume."""
    bt, c, h, w = x.shape
    if num_frames < 1 or bt % num_frames:
        raise UserError(f"{bt} frames do not split into videos of {num_frames} frames")
    return x.reshape(bt // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)


def to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) volume -> (B*T, C, H, W) frames."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


# -- the spatial / temporal mix --------------------------------------------------------------------


class AlphaBlender(nn.Module):
    """alpha * x_spatial + (1 - alpha) * x_temporal (or the other way round with `alpha_weighs='temporal'`).

    `strategy`: "learned" (alpha = sigmoid(mix_factor)), "learned_with_images" (the same, but alpha = 1 on
    the spatial branch for frames flagged as still images), "fixed" (alpha = mix_factor, not trained).
    Inputs are frame-batched (B*T, ...); `image_only` is (B, T), nonzero for still-image frames.
    """

    def __init__(self, alpha: float = 0.5, strategy: str = "learned_with_images", alpha_weighs: str = "spatial"):
        super().__init__()
        if strategy not in MERGE_STRATEGIES:
            raise UserError(f"unknown merge strategy '{strategy}': use one of {', '.join(MERGE_STRATEGIES)}")
        if alpha_weighs not in ("spatial", "temporal"):
            raise UserError(f"alpha_weighs must be 'spatial' or 'temporal', got '{alpha_weighs}'")
        self.strategy, self.alpha_weighs = strategy, alpha_weighs
        if strategy == "fixed":
            self.register_buffer("mix_factor", torch.tensor([float(alpha)]))
        else:
            self.mix_factor = nn.Parameter(torch.tensor([float(alpha)]))

    def alpha(self, image_only: torch.Tensor | None = None) -> torch.Tensor:
        """The weight of the branch `alpha_weighs` names: shape (1,), or (B*T,) with `image_only`."""
        return mix_alpha(self.mix_factor, self.strategy, image_only if self.alpha_weighs == "spatial" else None)

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor,
                image_only: torch.Tensor | None = None) -> torch.Tensor:
        return blend_branches(x_spatial, x_temporal, self.alpha(image_only), self.alpha_weighs)


def mix_alpha(mix_factor: torch.Tensor, strategy: str = "learned", image_only: torch.Tensor | None = None) -> torch.Tensor:
    """alpha of a `mix_factor` parameter or buffer: itself ("fixed") or its sigmoid; with
    "learned_with_images", 1 for every frame `image_only` (B, T) flags, giving shape (B*T,)."""
    if strategy == "fixed":
        return mix_factor
    a = torch.sigmoid(mix_factor.float())
    if strategy == "learned_with_images" and image_only is not None:
        flags = image_only.reshape(-1).to(a.device).bool()
        a = torch.where(flags, torch.ones_like(flags, dtype=a.dtype), a.expand(flags.shape))
    return a


def blend_branches(x_spatial: torch.Tensor, x_temporal: torch.Tensor, alpha: torch.Tensor,
                   alpha_weighs: str = "spatial") -> torch.Tensor:
    """alpha * the branch `alpha_weighs` names + (1 - alpha) * the other; alpha (1,) or (B*T,) frame-batched."""
    a = alpha.to(x_spatial.dtype).reshape(-1, *([1] * (x_spatial.ndim - 1)))
    if alpha_weighs == "temporal":
        return torch.lerp(x_spatial, x_temporal, a)  # a * temporal + (1 - a) * spatial, in one pass
    return torch.lerp(x_temporal, x_spatial, a)


# -- convolutions over time ------------------------------------------------------------------------


class TemporalConv3d(nn.Conv3d):
    """A 3-D convolution over time only: kernel (kernel_t, 1, 1), zero padding that keeps the frame count.

    It is an `nn.Conv3d` (same parameters and names), computed as a 2-D convolution over (time,
    pixels) with kernel (kernel_t, 1): the same sums, and oneDNN's 2-D kernels instead of PyTorch's
    slow 3-D CPU path (several times faster on CPU)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_t: int = 3):
        if kernel_t < 1 or kernel_t % 2 == 0:
            raise UserError(f"the temporal kernel must be odd and positive, got {kernel_t}")
        super().__init__(in_channels, out_channels, (kernel_t, 1, 1), padding=(kernel_t // 2, 0, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C_out, T, H, W)."""
        b, c, t, h, w = x.shape
        weight = self.weight.view(*self.weight.shape[:3], 1)
        out = F.conv2d(x.reshape(b, c, t, h * w), weight, self.bias, padding=(self.padding[0], 0))
        return out.view(b, -1, t, h, w)


def temporal_conv3d(in_channels: int, out_channels: int, kernel_t: int = 3) -> TemporalConv3d:
    """A `TemporalConv3d`: kernel (kernel_t, 1, 1), the frame count kept."""
    return TemporalConv3d(in_channels, out_channels, kernel_t)


class CausalConv3d(nn.Module):
    """A 3-D convolution whose output at frame t depends on frames <= t only.

    Time is padded with kernel_t - 1 frames before the first one (copies of it, `pad_mode='replicate'`,
    or zeros, `'zeros'`) and none after; space is padded symmetrically (zeros) to keep H and W at
    stride 1. The weights sit at `conv`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int] = 3,
                 stride: int | Sequence[int] = 1, pad_mode: str = "replicate"):
        super().__init__()
        k = (kernel_size,) * 3 if isinstance(kernel_size, int) else tuple(kernel_size)
        if len(k) != 3 or any(v < 1 for v in k) or k[1] % 2 == 0 or k[2] % 2 == 0:
            raise UserError(f"kernel_size must be (t, h, w) with odd h and w, got {kernel_size}")
        if pad_mode not in ("replicate", "zeros"):
            raise UserError(f"pad_mode must be 'replicate' or 'zeros', got '{pad_mode}'")
        self.kernel_t, self.pad_mode = k[0], pad_mode
        self.conv = nn.Conv3d(in_channels, out_channels, k, stride=stride, padding=(0, k[1] // 2, k[2] // 2))

    def forward(self, x: torch.Tensor, past: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, C_out, T', H', W').

        `past`: the last frames (at most kernel_t - 1) of the input the previous chunk of a stream
        ended with; they stand in for as much of the padding, so a clip convolved chunk by chunk gives
        the frames it gives in one pass (the feature cache of causal video VAEs)."""
        if self.kernel_t > 1:
            pad = self.kernel_t - 1
            if past is not None and past.shape[2]:
                past = past[:, :, -pad:].to(x)
                x, pad = torch.cat([past, x], dim=2), pad - past.shape[2]
            if pad and self.pad_mode == "replicate":
                x = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1, -1), x], dim=2)
            elif pad:
                x = F.pad(x, (0, 0, 0, 0, pad, 0))
        return self.conv(x)


class TemporalResBlock(nn.Module):
    """GroupNorm-SiLU-conv over time, plus a per-frame embedding, GroupNorm-SiLU-conv, residual.

    Works on volumes (B, C, T, H, W); `emb` is (B, T, emb_dim) (one embedding per frame) or None.
    Without `emb_dim` the block has no `emb_layers` (SVD's VAE decoder). GroupNorms are computed in
    float32 with `eps` (1e-5 in the releases).
    """

    def __init__(self, channels: int, emb_dim: int | None = None, out_channels: int | None = None,
                 kernel_t: int = 3, groups: int = 32, eps: float = 1e-5, dropout: float = 0.0):
        super().__init__()
        out = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(groups, channels, eps=eps), nn.SiLU(),
                                       temporal_conv3d(channels, out, kernel_t))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out)) if emb_dim else None
        self.out_layers = nn.Sequential(GroupNorm32(groups, out, eps=eps), nn.SiLU(),
                                        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
                                        temporal_conv3d(out, out, kernel_t))
        self.skip_connection = nn.Identity() if out == channels else nn.Conv3d(channels, out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        fast = inference_mode_active()
        norm1, _, conv1 = self.in_layers
        norm2, _, drop, conv2 = self.out_layers
        h = conv1(F.silu(norm1(x), inplace=fast))
        if self.emb_layers is not None and emb is not None:
            e = self.emb_layers(emb).to(h.dtype)  # (B, T, C)
            e = e.permute(0, 2, 1)[..., None, None]  # (B, C, T, 1, 1)
            h = h.add_(e) if fast else h + e
        h = conv2(drop(F.silu(norm2(h), inplace=fast)))
        skip = self.skip_connection(x)
        return h.add_(skip) if fast else skip + h


# -- frame positions -------------------------------------------------------------------------------


def frame_embedding(num_frames: int, dim: int, batch: int = 1, device: torch.device | str | None = None,
                    max_period: float = 10000.0) -> torch.Tensor:
    """(batch * num_frames, dim) float32 sinusoidal features of the frame indices 0..T-1 ([cos, sin])."""
    idx = torch.arange(num_frames, device=device, dtype=torch.float32).repeat(batch)
    return timestep_embedding(idx, dim, flip_sin_to_cos=True, downscale_freq_shift=0.0, max_period=max_period)


class FramePositionEmbedding(nn.Sequential):
    """Linear-SiLU-Linear on `frame_embedding` (parameters `0` and `2`): a learned embedding per frame index."""

    def __init__(self, dim: int, hidden: int | None = None, max_period: float = 10000.0):
        hidden = hidden or 4 * dim
        super().__init__(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))
        self.dim, self.max_period = dim, max_period

    def embed(self, num_frames: int, batch: int = 1) -> torch.Tensor:
        """(batch * num_frames, dim) in the weights' dtype."""
        weight = self[0].weight
        features = frame_embedding(num_frames, self.dim, batch, weight.device, self.max_period)
        return self(features.to(weight.dtype))


# -- attention over time ---------------------------------------------------------------------------


class TemporalTransformerBlock(nn.Module):
    """Attention over the frames of every spatial position (generative-models' VideoTransformerBlock).

    Input and output are frame-batched tokens (B*T, S, dim). Inside, tokens are regrouped to
    (B*S, T, inner) and run through: `ff_in` (when enabled; residual when inner == dim), self-attention
    over time (`attn1`), attention to `context` (`attn2`; self-attention again when the block has no
    context_dim), and the feed-forward `ff` (residual when inner == dim). Every sub-layer is pre-norm.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None, ff_in: bool = True,
                 inner_dim: int | None = None):
        super().__init__()
        inner = inner_dim or dim
        if heads * head_dim != inner:
            raise UserError(f"{heads} heads of {head_dim} channels do not make the block's width {inner}")
        self.is_res = inner == dim
        self.has_ff_in = ff_in or inner != dim
        if self.has_ff_in:
            self.norm_in = nn.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dim_out=inner)
        self.attn1 = CrossAttention(inner, inner, heads, head_dim)
        self.norm1 = nn.LayerNorm(inner)
        self.attn2 = CrossAttention(inner, context_dim or inner, heads, head_dim)
        self.norm2 = nn.LayerNorm(inner)
        self.ff = FeedForward(inner, dim_out=dim)
        self.norm3 = nn.LayerNorm(inner)

    def forward(self, x: torch.Tensor, num_frames: int, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B*T, S, dim); context (B*S, L, context_dim) (one context per video and position) or None."""
        bt, s, c = x.shape
        b = bt // num_frames
        h = x.reshape(b, num_frames, s, c).permute(0, 2, 1, 3).reshape(b * s, num_frames, c)
        fast = inference_mode_active()
        if self.has_ff_in:
            out = self.ff_in(self.norm_in(h))
            h = (out.add_(h) if fast else out + h) if self.is_res else out
        h = self.attn1(self.norm1(h)).add_(h) if fast else h + self.attn1(self.norm1(h))
        h = self.attn2(self.norm2(h), context).add_(h) if fast else h + self.attn2(self.norm2(h), context)
        out = self.ff(self.norm3(h))
        if self.is_res:
            out = out.add_(h) if fast else out + h
        return out.reshape(b, s, num_frames, -1).permute(0, 2, 1, 3).reshape(bt, s, -1)


__all__ = ["AlphaBlender", "CausalConv3d", "FramePositionEmbedding", "MERGE_STRATEGIES", "TemporalConv3d", "TemporalResBlock",
           "TemporalTransformerBlock", "blend_branches", "frame_embedding", "mix_alpha", "temporal_conv3d", "to_frames",
           "to_volume"]
