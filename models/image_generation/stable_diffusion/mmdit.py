"""The SD3 / SD3.5 MMDiT in the layout of Stability's official single files.

MMDiT (Esser et al. 2024, "Scaling Rectified Flow Transformers") keeps two token streams, the
image patches and the text tokens, each with its own weights (`x_block`, `context_block`), and lets
them meet in one joint attention over the concatenated sequence. Both streams are modulated (AdaLN)
by c = MLP(timestep) + MLP(pooled CLIP embedding). SD3.5 adds RMS normalisation of queries and keys
per head (`ln_q`, `ln_k`); SD3.5 Medium adds, in its first 13 blocks, a second self-attention of
the image stream alone (`attn2`, the "MMDiT-X" dual attention).

Parameter names are the official ones without the `model.diffusion_model.` prefix:

    x_embedder.proj                  patchify conv (patch 2)
    pos_embed                        (1, M*M, hidden) fixed 2-D sin-cos table, centre-cropped per size
    t_embedder.mlp.{0,2}             MLP on 256 sinusoidal features of t (t = 1000 sigma)
    y_embedder.mlp.{0,2}             MLP on the pooled text vector (CLIP-L + CLIP-G, 2048)
    context_embedder                 Linear 4096 -> hidden on the text tokens
    joint_blocks.N.{x_block,context_block}.adaLN_modulation.1 / .attn.qkv / .attn.ln_q / .attn.ln_k /
        .attn.proj / .attn2.* (dual) / .mlp.fc1 / .mlp.fc2
    final_layer.adaLN_modulation.1 / final_layer.linear

The context stream of the last block is "pre-only": it feeds keys and values to the last joint
attention and stops there (no output projection, no MLP, 2 modulation chunks instead of 6).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, did_you_mean
from utils.nn import RMSNorm, attention, gate, modulate, timestep_embedding


@dataclass(frozen=True)
class MMDiTConfig:
    """Sizes of an SD3-family MMDiT. hidden = num_heads * head_dim (64 * depth in every release)."""

    in_channels: int = 16
    """Latent channels in."""
    out_channels: int = 16
    """Predicted velocity channels."""
    patch_size: int = 2
    """Side of the latent patch each image token covers."""
    depth: int = 24
    """Joint blocks (the last one's text stream is pre-only)."""
    num_heads: int = 24
    """Attention heads of every stream."""
    head_dim: int = 64
    """Channels per head. Stored in the weights only with qk_norm (the width of ln_q / ln_k)."""
    context_in_dim: int = 4096
    """Width of the text tokens (T5-XXL's 4096; CLIP features are zero-padded to it)."""
    adm_in_channels: int = 2048
    """Width of the pooled vector (CLIP-L 768 + CLIP-G 1280)."""
    pos_embed_max_size: int = 192
    """Side of the stored position table in patches (192: up to 384 latents = 3072 px)."""
    qk_norm: bool = False
    """RMS-normalise q and k per head (SD3.5)."""
    dual_attention_layers: tuple[int, ...] = ()
    """Blocks whose image stream has a second self-attention (`attn2`, SD3.5 Medium's first 13)."""
    mlp_ratio: float = 4.0
    """MLP width as a multiple of the hidden size."""
    sample_size: int = 128
    """Latent side the position table was built for (its frequencies depend on it)."""

    @property
    def hidden_size(self) -> int:
        return self.num_heads * self.head_dim

    @classmethod
    def preset(cls, name: str) -> "MMDiTConfig":
        if name not in MMDIT_PRESETS:
            raise UserError(f"unknown SD3 transformer preset '{name}': {did_you_mean(name, MMDIT_PRESETS)}")
        return MMDIT_PRESETS[name]

    def with_(self, **changes) -> "MMDiTConfig":
        return replace(self, **changes)


MMDIT_PRESETS: dict[str, MMDiTConfig] = {
    "sd3-medium": MMDiTConfig(),  # 2 B
    "sd3.5-medium": MMDiTConfig(pos_embed_max_size=384, qk_norm=True, dual_attention_layers=tuple(range(13))),  # 2.5 B
    "sd3.5-large": MMDiTConfig(depth=38, num_heads=38, qk_norm=True),  # 8 B
    # Tests and offline runs: fits the tiny CLIP-L (32, projection 24), bigG (40, projection 32) and T5 (80).
    "tiny": MMDiTConfig(depth=2, num_heads=2, head_dim=16, context_in_dim=80, adm_in_channels=56,
                        pos_embed_max_size=16, qk_norm=True, dual_attention_layers=(0,), sample_size=16),
}


def sincos_pos_embed_2d(dim: int, grid: int, base_size: int) -> torch.Tensor:
    """(grid*grid, dim) fixed sin-cos table: half the channels encode the column, half the row.

    Positions are scaled so that `base_size` patches span the same range at any table size.
    """
    coords = torch.arange(grid, dtype=torch.float64) / (grid / base_size)
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def embed(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1)[:, None] * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    return torch.cat([embed(cols), embed(rows)], dim=1).float()


# -- blocks ---------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Fused qkv projection, optional per-head RMS norm of q and k, output projection (unless pre-only)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool, pre_only: bool = False):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.ln_q = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.ln_k = RMSNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = None if pre_only else nn.Linear(dim, dim)

    def qkv_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L, dim) -> q, k, v as (B, heads, L, head_dim), q and k normalised."""
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        return self.ln_q(q), self.ln_k(k), v


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _layer_norm(x: torch.Tensor) -> torch.Tensor:
    # LayerNorm without affine parameters (the modulation supplies scale and shift).
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class StreamBlock(nn.Module):
    """One stream's half of a joint block ("DismantledBlock" in the release).

    Modulation chunks: 6 (shift/scale/gate for attention and MLP), 2 when pre-only (shift/scale),
    9 with dual attention (a third shift/scale/gate set for `attn2`).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, pre_only: bool = False,
                 dual: bool = False):
        super().__init__()
        self.pre_only, self.dual = pre_only, dual
        self.attn = SelfAttention(dim, heads, qk_norm, pre_only)
        if dual:
            self.attn2 = SelfAttention(dim, heads, qk_norm)
        if not pre_only:
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        chunks = 2 if pre_only else (9 if dual else 6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, chunks * dim))

    def modulation(self, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.adaLN_modulation(c).chunk(self.adaLN_modulation[1].out_features // c.shape[-1], dim=-1)

    def post(self, x: torch.Tensor, attn_out: torch.Tensor, mod: tuple[torch.Tensor, ...],
             attn2_out: torch.Tensor | None = None) -> torch.Tensor:
        _, _, g_msa, shift_mlp, scale_mlp, g_mlp = mod[:6]
        x = gate(x, g_msa, self.attn.proj(attn_out))
        if attn2_out is not None:
            x = gate(x, mod[8], self.attn2.proj(attn2_out))
        return gate(x, g_mlp, self.mlp(modulate(_layer_norm(x), shift_mlp, scale_mlp)))


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


class JointBlock(nn.Module):
    """Image and text streams attend jointly; each then goes through its own projection and MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool, pre_only: bool, dual: bool):
        super().__init__()
        self.context_block = StreamBlock(dim, heads, mlp_ratio, qk_norm, pre_only=pre_only)
        self.x_block = StreamBlock(dim, heads, mlp_ratio, qk_norm, dual=dual)

    def forward(self, context: torch.Tensor, x: torch.Tensor,
                c: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        cb, xb = self.context_block, self.x_block
        c_mod, x_mod = cb.modulation(c), xb.modulation(c)
        x_norm = _layer_norm(x)
        cq, ck, cv = cb.attn.qkv_heads(modulate(_layer_norm(context), c_mod[0], c_mod[1]))
        xq, xk, xv = xb.attn.qkv_heads(modulate(x_norm, x_mod[0], x_mod[1]))
        # Text tokens first, then image tokens, as the release orders the joint sequence.
        joint = attention(torch.cat([cq, xq], 2), torch.cat([ck, xk], 2), torch.cat([cv, xv], 2))
        n_ctx = context.shape[1]
        c_out, x_out = _merge_heads(joint[:, :, :n_ctx]), _merge_heads(joint[:, :, n_ctx:])
        x2_out = None
        if xb.dual:
            q2, k2, v2 = xb.attn2.qkv_heads(modulate(x_norm, x_mod[6], x_mod[7]))
            x2_out = _merge_heads(attention(q2, k2, v2))
        x = xb.post(x, x_out, x_mod, x2_out)
        context = None if cb.pre_only else cb.post(context, c_out, c_mod)
        return context, x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int):
        super().__init__()
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(_layer_norm(x), shift, scale))


class MLPEmbedder(nn.Module):
    """Linear -> SiLU -> Linear, keys mlp.0 and mlp.2 (t_embedder, y_embedder)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Row-major (B, L, dim) tokens: left as the transposed view of the conv output, that layout would
        # carry through every residual add of the image stream (strided, slow) and make each layer norm copy.
        return self.proj(x).flatten(2).transpose(1, 2).contiguous()


# -- the model ------------------------------------------------------------------------------------


class MMDiT(nn.Module):
    """SD3 / SD3.5 denoiser: velocity prediction on 16-channel latents (rectified flow)."""

    def __init__(self, config: MMDiTConfig | str = "sd3-medium"):
        super().__init__()
        cfg = MMDiTConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        dim = cfg.hidden_size
        self.x_embedder = PatchEmbed(cfg.in_channels, dim, cfg.patch_size)
        self.t_embedder = MLPEmbedder(256, dim)
        self.y_embedder = MLPEmbedder(cfg.adm_in_channels, dim)
        self.context_embedder = nn.Linear(cfg.context_in_dim, dim)
        m = cfg.pos_embed_max_size
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, m, cfg.sample_size // cfg.patch_size)[None]
                             if not _on_meta() else torch.empty(1, m * m, dim))
        dual = set(cfg.dual_attention_layers)
        self.joint_blocks = nn.ModuleList([
            JointBlock(dim, cfg.num_heads, cfg.mlp_ratio, cfg.qk_norm, pre_only=i == cfg.depth - 1, dual=i in dual)
            for i in range(cfg.depth)])
        self.final_layer = FinalLayer(dim, cfg.patch_size, cfg.out_channels)

    @property
    def dtype(self) -> torch.dtype:
        return self.final_layer.linear.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.final_layer.linear.weight.device

    def cropped_pos_embed(self, h: int, w: int) -> torch.Tensor:
        """The centre h x w window of the stored table, as (1, h*w, hidden)."""
        m = self.config.pos_embed_max_size
        if h > m or w > m:
            p = self.config.patch_size
            raise UserError(f"image too large for this model: {h}x{w} patches, the position table holds "
                            f"{m}x{m} (at most {m * p * 8} px per side)")
        top, left = (m - h) // 2, (m - w) // 2
        table = self.pos_embed.view(1, m, m, -1)[:, top:top + h, left:left + w, :]
        return table.reshape(1, h * w, -1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) latents, (B,) times in [0, 1000], (B, L, context_in_dim) text, (B, adm) pooled."""
        p = self.config.patch_size
        b, _, H, W = x.shape
        if H % p or W % p:
            raise UserError(f"latent size {H}x{W} is not a multiple of the patch size {p}: "
                            f"use an image size that is a multiple of {8 * p}")
        if t.ndim == 0:
            t = t.expand(b)
        dtype = self.dtype
        h, w = H // p, W // p
        tokens = self.x_embedder(x.to(dtype)) + self.cropped_pos_embed(h, w).to(dtype)
        t_feat = timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0).to(dtype)
        c = self.t_embedder(t_feat) + self.y_embedder(y.to(dtype))
        ctx: torch.Tensor | None = self.context_embedder(context.to(dtype))
        for block in self.joint_blocks:
            ctx, tokens = block(ctx, tokens, c)
        out = self.final_layer(tokens, c)
        out = out.view(b, h, w, p, p, self.config.out_channels)
        return out.permute(0, 5, 1, 3, 2, 4).reshape(b, self.config.out_channels, H, W)


def _on_meta() -> bool:
    return torch.empty(0).is_meta


__all__ = ["MMDiT", "MMDiTConfig", "MMDIT_PRESETS", "sincos_pos_embed_2d"]
