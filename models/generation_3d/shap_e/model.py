"""Shap-E's networks: the latent prior and the implicit decoder (NeRF + STF MLP) the latent parameterises.

Native keys are OpenAI's release names without their wrappers (`wrapped.` of the prior,
`encoder.` / `renderer.` of the transmitter): `convert.py` maps the official and diffusers layouts
onto them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.generation_3d.shap_e.config import DecoderConfig, PriorConfig
from utils.nn.point_diffusion_transformer import PointDiffusionTransformer


class ShapEPrior(PointDiffusionTransformer):
    """Noisy latent (B, n_ctx, channels), timesteps (B,) and CLIP conditioning -> (B, n_ctx, 2 channels).

    Text conditioning is a unit-norm CLIP text embedding (B, cond_dim), scaled to unit variance
    (x sqrt(cond_dim)) and embedded by `clip_embed` (a Linear) into one token before the time token.
    Image conditioning is CLIP's patch grid (B, cond_tokens, cond_dim) through `clip_embed`
    (LayerNorm, Linear), placed after the time token. A zero conditioning is the unconditional branch.
    The first `channels` outputs are the prediction of the clean latent, the rest its variance.
    """

    def __init__(self, cfg: PriorConfig):
        super().__init__(cfg.channels, cfg.channels * 2, cfg.width, cfg.layers, cfg.heads, pos_emb_ctx=cfg.n_ctx)
        self.config = cfg
        if cfg.cond == "text":
            self.clip_embed = nn.Linear(cfg.cond_dim, cfg.width)
        else:
            self.clip_embed = nn.Sequential(nn.LayerNorm(cfg.cond_dim), nn.Linear(cfg.cond_dim, cfg.width))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        t_embed = self.embed_time(t, x.shape[0])
        cond = cond.to(x.dtype)
        if self.config.cond == "text":
            tokens = [self.clip_embed(math.sqrt(cond.shape[-1]) * cond), t_embed]
        else:
            tokens = [t_embed, self.clip_embed(cond)]
        return super().forward(x, tokens=tokens)


def posenc(x: torch.Tensor, degrees: int) -> torch.Tensor:
    """x and sin/cos of x at frequencies 2^0 .. 2^(degrees-1): (..., 3) -> (..., 3 + 6 degrees)."""
    scales = 2.0 ** torch.arange(degrees, dtype=x.dtype, device=x.device)
    n = 3 * degrees
    out = x.new_empty(*x.shape[:-1], 3 + 2 * n)
    out[..., :3] = x
    # written in place into one buffer: [x, x 2^k (k-major), x 2^k + pi/2], then one sin over the last two
    # parts (cos t = sin(t + pi/2))
    out[..., 3:3 + n].unflatten(-1, (degrees, 3)).copy_(x[..., None, :] * scales[:, None])
    out[..., 3 + n:].copy_(out[..., 3:3 + n]).add_(math.pi / 2)
    out[..., 3:].sin_()
    return out


def sanitize(name: str) -> str:
    return name.replace(".", "__")


class ChannelsProj(nn.Module):
    """Latent rows (B, vectors, d_latent) -> one weight matrix (B, vectors, channels): a separate
    linear map per row, LayerNorm over the channels, plus a learned offset."""

    def __init__(self, vectors: int, channels: int, d_latent: int):
        super().__init__()
        self.vectors, self.channels, self.d_latent = vectors, channels, d_latent
        self.proj = nn.Linear(d_latent, vectors * channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.proj.weight.view(self.vectors, self.channels, self.d_latent)
        h = torch.einsum("bvd,vcd->bvc", x, w)
        return self.norm(h) + self.proj.bias.view(1, self.vectors, self.channels)


class NeRSTFMLP(nn.Module):
    """The MLP of the implicit function (`nerstf.mlp.N`); the first layers' weights may be given per object."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.config = cfg
        self.mlp = nn.ModuleList([nn.Linear(i, o) for o, i in cfg.layer_shapes()])

    def forward(self, position: torch.Tensor, weights: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """position (B, N, 3) -> raw outputs (B, N, outputs); `weights[i]` (B, out, in) replaces layer i's weight."""
        cfg = self.config
        h = posenc(position, cfg.pos_degrees)
        weights = weights or {}
        last = len(self.mlp) - 1
        for i, layer in enumerate(self.mlp):
            w = weights[i].to(h.dtype) if i in weights else layer.weight
            if i == cfg.insert_direction_at:
                # Shap-E renders without view dependence: the direction features are zeros, so the
                # columns that would multiply them drop out (the same sums, without the zeros).
                w = w[..., :h.shape[-1]]
            if w.dim() == 3:
                h = torch.baddbmm(layer.bias, h, w.transpose(1, 2))
            else:
                h = F.linear(h, w, layer.bias)
            if i < last:
                h = F.silu(h, inplace=True)
        return h


# where each quantity sits among the MLP's outputs
OUTPUTS = {"sdf": (0, 1), "density_coarse": (1, 2), "density_fine": (2, 3), "stf": (3, 6),
           "nerf_coarse": (6, 9), "nerf_fine": (9, 12)}


class ShapEDecoder(nn.Module):
    """Latent (B, n_ctx, d_latent) -> the implicit function's projected weights; `query` evaluates it."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.config = cfg
        self.param_names = [f"nerstf.mlp.{i}.weight" for i in range(cfg.projected)]
        shapes = cfg.layer_shapes()[:cfg.projected]
        self.params_proj = nn.Module()
        self.params_proj.projections = nn.ModuleDict({
            sanitize(n): ChannelsProj(o, i, cfg.d_latent) for n, (o, i) in zip(self.param_names, shapes)})
        self.nerstf = NeRSTFMLP(cfg)

    def project(self, latent: torch.Tensor) -> dict[int, torch.Tensor]:
        """The per-object weights {layer: (B, out, in)} the latent's rows make."""
        out, start = {}, 0
        for i, name in enumerate(self.param_names):
            proj = self.params_proj.projections[sanitize(name)]
            out[i] = proj(latent[:, start:start + proj.vectors].to(proj.proj.weight.dtype))
            start += proj.vectors
        return out

    def query(self, position: torch.Tensor, weights: dict[int, torch.Tensor], fine: bool = True,
              mode: str = "nerf") -> dict[str, torch.Tensor]:
        """position (B, N, 3) -> density (relu), signed distance (tanh) and channels (sigmoid) of
        the 'nerf' (coarse or fine) or 'stf' colour head."""
        raw = self.nerstf(position, weights)

        def part(key):
            a, b = OUTPUTS[key]
            return raw[..., a:b]

        level = "fine" if fine else "coarse"
        colour = part("stf") if mode == "stf" else part(f"nerf_{level}")
        return {"density": F.relu(part(f"density_{level}")), "sdf": torch.tanh(part("sdf")),
                "channels": torch.sigmoid(colour)}
