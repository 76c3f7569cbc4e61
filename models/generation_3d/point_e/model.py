"""Point-E's networks in OpenAI's key layout: the point diffusion transformers and the SDF model.

Clouds are (B, channels, points) as in the release; the transformer trunk is the zoo's
`utils.nn.point_diffusion_transformer` (tokens last), shared with Shap-E.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from models.generation_3d.point_e.config import PointEConfig, SDFConfig
from utils.nn.fused_qkv_transformer import SimplePerceiver, Transformer
from utils.nn.point_diffusion_transformer import PointDiffusionTransformer


class PointETransformer(PointDiffusionTransformer):
    """x (B, in_channels, n_ctx), t (B,) and the conditioning -> (B, out_channels, n_ctx).

    - 'vec': `clip` (B, clip_dim) unit-norm CLIP text or image embeddings, x sqrt(clip_dim), one
      token (`clip_embed`) before the time token;
    - 'grid': `clip` (B, grid_dim, grid_tokens) CLIP patch features (the release's NCL), LayerNorm +
      Linear, after the time token;
    - 'upsample': as 'grid' (zeros when None: unconditional), then `low_res` (B, 6, cond_ctx) points,
      scaled and shifted per channel and projected (`cond_point_proj`);
    - 'none': the time token only.
    A zero `clip` is the unconditional branch of classifier-free guidance.
    """

    def __init__(self, cfg: PointEConfig):
        super().__init__(cfg.in_channels, cfg.out_channels, cfg.width, cfg.layers, cfg.heads)
        self.config = cfg
        if cfg.cond == "vec":
            self.clip_embed = nn.Linear(cfg.clip_dim, cfg.width)
        elif cfg.cond in ("grid", "upsample"):
            self.clip_embed = nn.Sequential(nn.LayerNorm(cfg.grid_dim), nn.Linear(cfg.grid_dim, cfg.width))
        if cfg.cond == "upsample":
            self.cond_point_proj = nn.Linear(cfg.in_channels, cfg.width)
            self.register_buffer("channel_scales", torch.tensor(cfg.channel_scales))
            self.register_buffer("channel_biases", torch.tensor(cfg.channel_biases))

    def forward(self, x: torch.Tensor, t: torch.Tensor, clip: torch.Tensor | None = None,  # type: ignore[override]
                low_res: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        t_embed = self.embed_time(t, x.shape[0])
        if cfg.cond == "vec":
            tokens = [self.clip_embed(math.sqrt(clip.shape[-1]) * clip.to(x.dtype)), t_embed]
        elif cfg.cond == "none":
            tokens = [t_embed]
        else:
            if clip is None:
                clip = x.new_zeros(x.shape[0], cfg.grid_dim, cfg.grid_tokens)
            tokens = [t_embed, self.clip_embed(clip.to(x.dtype).permute(0, 2, 1))]
            if cfg.cond == "upsample":
                if low_res is None:
                    raise ValueError("the upsampler needs the low-resolution cloud (low_res)")
                lr = low_res * self.channel_scales[None, :, None] + self.channel_biases[None, :, None]
                tokens.append(self.cond_point_proj(lr.permute(0, 2, 1)))
        return super().forward(x.permute(0, 2, 1), tokens=tokens).permute(0, 2, 1)


class PointESDF(nn.Module):
    """Point cloud (B, 3, n_ctx) and query points (B, 3, Q) -> signed distances (B, Q), positive
    outside (OpenAI's CrossAttentionPointCloudSDFModel)."""

    def __init__(self, cfg: SDFConfig):
        super().__init__()
        self.config = cfg
        self.encoder_input_proj = nn.Linear(3, cfg.width)
        self.encoder = Transformer(cfg.width, cfg.encoder_layers, cfg.encoder_heads)
        self.decoder_input_proj = nn.Linear(3, cfg.width)
        self.decoder = SimplePerceiver(cfg.width, cfg.decoder_layers, cfg.decoder_heads)
        self.ln_post = nn.LayerNorm(cfg.width)
        self.output_proj = nn.Linear(cfg.width, 1)

    def encode(self, cloud: torch.Tensor) -> torch.Tensor:
        """(B, 3, n_ctx) -> latents (B, n_ctx, width), reusable for any number of queries."""
        return self.encoder(self.encoder_input_proj(cloud.permute(0, 2, 1)))

    def predict(self, queries: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        h = self.decoder(self.decoder_input_proj(queries.permute(0, 2, 1)), latents)
        return self.output_proj(self.ln_post(h))[..., 0]

    def forward(self, queries: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
        return self.predict(queries, self.encode(cloud))
