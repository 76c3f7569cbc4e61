"""The FLUX.1 rectified-flow transformer (Black Forest Labs, 2024), in the official parameter layout.

    img (B, L_img, in_channels) ── img_in ──┐
    txt (B, L_txt, 4096)        ── txt_in ──┤  19 DoubleStreamBlocks (separate img/txt weights,
    timesteps, guidance, y      ── vec ─────┤  joint attention) -> concat -> 38 SingleStreamBlocks
    img_ids, txt_ids            ── RoPE ────┘  -> image tokens -> final_layer -> (B, L_img, out_channels)

`vec` = time_in(t) [+ guidance_in(g)] + vector_in(y) modulates every block (AdaLN). Image tokens are
2x2 patches of 16-channel VAE latents (64 channels); Fill and Control variants append conditioning
channels to the image tokens (in_channels 384 and 128) and still predict 64.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from models.image_generation.flux.layers import DoubleStreamBlock, LastLayer, MLPEmbedder, SingleStreamBlock, rope_tables
from utils.errors import UserError, did_you_mean
from utils.nn import RotaryEmbedding, timestep_embedding


@dataclass(frozen=True)
class FluxParams:
    """Sizes of a FLUX transformer; field names follow the official `FluxParams`."""

    in_channels: int = 64
    out_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(f"axes_dim {self.axes_dim} must sum to the head dim {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def preset(cls, name: str) -> "FluxParams":
        if name not in PRESETS:
            raise UserError(f"unknown FLUX preset '{name}': {did_you_mean(name, PRESETS)}")
        return PRESETS[name]

    def with_(self, **changes: Any) -> "FluxParams":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["axes_dim"] = list(self.axes_dim)
        return d


_DEV = FluxParams()
PRESETS: dict[str, FluxParams] = {
    "dev": _DEV,
    "schnell": _DEV.with_(guidance_embed=False),
    "fill": _DEV.with_(in_channels=384),
    "canny": _DEV.with_(in_channels=128),
    "depth": _DEV.with_(in_channels=128),
    # Tests and the offline demo: same structure, a few thousand times smaller.
    "tiny": FluxParams(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=32, hidden_size=32,
                       num_heads=2, depth=1, depth_single_blocks=1, axes_dim=(4, 6, 6), guidance_embed=True),
}
"""Official sizes (flux/util.py of the BFL release): hidden 3072, 24 heads, 19 + 38 blocks."""


class FluxTransformer(nn.Module):
    """FLUX.1 denoiser. `forward(img, img_ids, txt, txt_ids, timesteps, y, guidance)` as the official
    model: timesteps in [0, 1] (sigma), guidance the raw scale (e.g. 3.5); returns the velocity."""

    def __init__(self, params: FluxParams | str = "dev"):
        super().__init__()
        p = FluxParams.preset(params) if isinstance(params, str) else params
        self.params = p
        self.in_channels, self.out_channels = p.in_channels, p.out_channels
        self.hidden_size, self.num_heads = p.hidden_size, p.num_heads
        self.pe_embedder = RotaryEmbedding(p.axes_dim, p.theta)
        self.img_in = nn.Linear(p.in_channels, p.hidden_size, bias=True)
        self.time_in = MLPEmbedder(256, p.hidden_size)
        self.vector_in = MLPEmbedder(p.vec_in_dim, p.hidden_size)
        self.guidance_in = MLPEmbedder(256, p.hidden_size) if p.guidance_embed else nn.Identity()
        self.txt_in = nn.Linear(p.context_in_dim, p.hidden_size)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio, p.qkv_bias) for _ in range(p.depth))
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(p.hidden_size, p.num_heads, p.mlp_ratio) for _ in range(p.depth_single_blocks))
        self.final_layer = LastLayer(p.hidden_size, 1, p.out_channels)
        self.gradient_checkpointing = False

    # -- properties -------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.img_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.img_in.weight.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- forward ------------------------------------------------------------------------------------

    @staticmethod
    def _time_features(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # FLUX embeds 1000 * t with cos first and frequencies exp(-ln(1e4) * i / 128).
        return timestep_embedding(t, 256, flip_sin_to_cos=True, downscale_freq_shift=0,
                                  time_factor=1000.0).to(dtype)

    def embed_vec(self, timesteps: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None) -> torch.Tensor:
        """The conditioning vector that modulates every block: time [+ guidance] + pooled text."""
        dtype = self.dtype
        vec = self.time_in(self._time_features(timesteps, dtype))
        if self.params.guidance_embed:
            if guidance is None:
                raise UserError("this FLUX model is guidance-distilled (dev, fill, canny, depth) and needs a "
                                "guidance value: pass guidance= (e.g. 3.5)")
            vec = vec + self.guidance_in(self._time_features(guidance, dtype))
        return vec + self.vector_in(y.to(dtype))

    def _check(self, img: torch.Tensor, txt: torch.Tensor, y: torch.Tensor) -> None:
        p = self.params
        if img.ndim != 3 or img.shape[-1] != p.in_channels:
            raise UserError(f"FLUX expects packed image tokens (B, L, {p.in_channels}), got {tuple(img.shape)}: "
                            "pack 2x2 latent patches first (sampling.pack_latents)")
        if txt.ndim != 3 or txt.shape[-1] != p.context_in_dim:
            raise UserError(f"FLUX expects text tokens (B, L, {p.context_in_dim}), got {tuple(txt.shape)}")
        if y.shape[-1] != p.vec_in_dim:
            raise UserError(f"FLUX expects a pooled text vector of {p.vec_in_dim} features, got {tuple(y.shape)}")

    def forward(self, img: torch.Tensor, img_ids: torch.Tensor, txt: torch.Tensor, txt_ids: torch.Tensor,
                timesteps: torch.Tensor, y: torch.Tensor, guidance: torch.Tensor | None = None) -> torch.Tensor:
        """img (B, L, in_ch), img_ids (B, L, 3) or (L, 3), txt (B, T, ctx), txt_ids (B, T, 3) or (T, 3),
        timesteps (B,) in [0, 1], y (B, vec_in), guidance (B,) -> (B, L, out_ch)."""
        self._check(img, txt, y)
        dtype = self.dtype
        vec = self.embed_vec(timesteps.reshape(-1).expand(img.shape[0]),
                             y, None if guidance is None else guidance.reshape(-1).expand(img.shape[0]))
        x = self.img_in(img.to(dtype))
        ctx = self.txt_in(txt.to(dtype))
        ids = torch.cat((txt_ids, img_ids), dim=-2)
        pe = rope_tables(self.pe_embedder(ids))

        ckpt = self.gradient_checkpointing and torch.is_grad_enabled()
        for block in self.double_blocks:
            if ckpt:
                x, ctx = torch.utils.checkpoint.checkpoint(block, x, ctx, vec, pe, use_reentrant=False)
            else:
                x, ctx = block(x, ctx, vec, pe)
        n_txt = ctx.shape[1]
        h = torch.cat((ctx, x), dim=1)
        for block in self.single_blocks:
            if ckpt:
                h = torch.utils.checkpoint.checkpoint(block, h, vec, pe, use_reentrant=False)
            else:
                h = block(h, vec, pe)
        return self.final_layer(h[:, n_txt:], vec)

    # -- speed ----------------------------------------------------------------------------------

    def compile_blocks(self, **kwargs: Any) -> "FluxTransformer":
        """torch.compile each transformer block in place (state-dict keys unchanged); kwargs go to compile."""
        for block in (*self.double_blocks, *self.single_blocks):
            block.compile(**kwargs)
        return self

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        params: FluxParams | None = None) -> "FluxTransformer":
        """Load a FLUX transformer from an official single file (flux1-dev.safetensors, also with the
        `model.diffusion_model.` prefix, fp8/bf16/fp16/fp32), a diffusers folder (the repo root or its
        transformer/ folder) or a hub id; with no source, random weights of `preset` (or `params`).

        The model is built on the meta device and takes the loaded tensors, so weights are held once.
        """
        from models.image_generation.flux.convert import load_transformer_checkpoint
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_into

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev, default_cuda=torch.bfloat16)
        if source is None:
            p = params or FluxParams.preset(preset or "dev")
            with torch.device(dev):
                model = cls(p)
            return model.to(dtype=dt).eval()
        p, native = load_transformer_checkpoint(source, preset=preset, params=params, dtype=dt, device=dev)
        with torch.device("meta"):
            model = cls(p)
        load_into(model, native, what="FLUX transformer checkpoint")
        return model.to(device=dev).eval()


Flux = FluxTransformer
"""The official class name."""

__all__ = ["Flux", "FluxParams", "FluxTransformer", "PRESETS"]
