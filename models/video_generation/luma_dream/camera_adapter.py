"""The camera adapter (the CameraCtrl approach, He et al. 2024, arXiv:2404.02101, on LTX-Video's tokens).

Each frame's camera becomes a Plücker ray embedding per pixel (`utils.rendering.plucker`: moment o x d and
direction d, poses relative to the first frame), packed to the transformer's token grid (one token per
latent voxel: frame 0 alone, then `temporal_ratio` frames, `spatial_ratio` x `spatial_ratio` pixels per
token; by default the mean of the token's 6-vectors). A small MLP maps every token's embedding (with
sin/cos features at `fourier_bands` octaves) to the transformer's width; its last layer starts at zero, so a
fresh adapter leaves the model exactly as it was. Its output is added to the projected latent tokens
right after `patchify_proj` (`LTXVideoTransformer.forward(token_bias=...)`), in both guidance branches.
Only the adapter trains (`training.py`); the transformer stays frozen.

Weights are a safetensors file whose metadata holds the adapter's config (`save` / `load_camera_adapter`).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from utils.errors import UserError
from utils.rendering.cameras import Cameras
from utils.rendering.plucker import plucker_tokens

ADAPTER_FORMAT = "cvgen-ltx-camera-adapter"
"""The `format` entry of an adapter file's safetensors metadata."""


@dataclass(frozen=True)
class CameraAdapterConfig:
    """Sizes of one camera adapter."""

    width: int
    """Token width of the transformer it feeds (2048 for the LTX-Video 2B releases)."""
    in_channels: int = 6
    """Channels of a Plücker token: 6 (`token_mode='mean'`) or 6 * temporal_ratio * spatial_ratio^2 ('unshuffle')."""
    hidden: int = 256
    """Width of the MLP's hidden layers."""
    num_layers: int = 2
    """Hidden layers (each Linear + SiLU) before the zero-initialised output layer."""
    fourier_bands: int = 4
    """Octaves of sin/cos features of the Plücker coordinates (frequencies pi * 2^k); 0: the raw coordinates only."""
    token_mode: str = "mean"
    """How pixels are packed into a token: 'mean' or 'unshuffle' (see utils/rendering/plucker.py)."""

    def __post_init__(self) -> None:
        if self.token_mode not in ("mean", "unshuffle"):
            raise UserError(f"camera adapter token_mode must be 'mean' or 'unshuffle', got '{self.token_mode}'")
        if min(self.width, self.in_channels, self.hidden, self.num_layers) < 1 or self.fourier_bands < 0:
            raise UserError(f"camera adapter sizes must be positive: {self}")


class CameraAdapter(nn.Module):
    """Plücker tokens (B, L, in_channels) -> additions to the transformer's tokens (B, L, width)."""

    def __init__(self, cfg: CameraAdapterConfig):
        super().__init__()
        self.config = cfg
        feats = cfg.in_channels * (1 + 2 * cfg.fourier_bands)
        layers: list[nn.Module] = []
        for i in range(cfg.num_layers):
            layers += [nn.Linear(feats if i == 0 else cfg.hidden, cfg.hidden), nn.SiLU()]
        self.encoder = nn.Sequential(*layers)
        self.proj_out = nn.Linear(cfg.hidden, cfg.width)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(cfg.fourier_bands, dtype=torch.float32),
                             persistent=False)

    def features(self, tokens: Tensor) -> Tensor:
        if not self.config.fourier_bands:
            return tokens
        x = tokens[..., None] * self.freqs.to(tokens)
        return torch.cat([tokens, torch.sin(x).flatten(-2), torch.cos(x).flatten(-2)], -1)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[-1] != self.config.in_channels:
            raise UserError(f"camera adapter takes {self.config.in_channels}-channel Plücker tokens, got "
                            f"{tokens.shape[-1]}: it was trained with token_mode '{self.config.token_mode}'")
        return self.proj_out(self.encoder(self.features(tokens)))

    def tokens(self, cameras: Cameras, temporal_ratio: int, spatial_ratio: int) -> Tensor:
        """The (L, in_channels) Plücker tokens of one clip's cameras (one per frame)."""
        return plucker_tokens(cameras, temporal_ratio, spatial_ratio, mode=self.config.token_mode)

    # -- files -----------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights as safetensors, the config in the metadata (atomically)."""
        from safetensors.torch import save_file

        from utils.io import atomic_path

        path = Path(path)
        state = {k: v.detach().float().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"format": ADAPTER_FORMAT, "config": json.dumps(asdict(self.config))}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
        return path


def load_camera_adapter(path: str | os.PathLike, width: int | None = None) -> CameraAdapter:
    """A camera adapter file written by `CameraAdapter.save`; `width`: the transformer's, checked."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"camera adapter {path} not found: train one with train/train_video.py --model luma_dream "
                        "--camera, or give its .safetensors file")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise UserError(f"cannot read camera adapter {path}: it is not a safetensors file") from None
    if meta.get("format") != ADAPTER_FORMAT:
        raise UserError(f"{path} is no LTX camera adapter (its metadata lacks format={ADAPTER_FORMAT}): pass a file "
                        "that train_video.py --model luma_dream --camera wrote")
    try:
        raw = json.loads(meta["config"])
        cfg = CameraAdapterConfig(**{f.name: raw[f.name] for f in fields(CameraAdapterConfig) if f.name in raw})
    except (KeyError, TypeError, ValueError):
        raise UserError(f"camera adapter {path} has a broken config in its metadata") from None
    if width is not None and cfg.width != width:
        raise UserError(f"camera adapter {path} feeds tokens of width {cfg.width}, this transformer's are {width}: "
                        "it was trained for another LTX-Video size")
    adapter = CameraAdapter(cfg)
    missing, unexpected = adapter.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"camera adapter {path} does not fit its config (missing {len(missing)}, unexpected "
                        f"{len(unexpected)} tensors)")
    return adapter.eval()


def camera_token_bias(adapter: CameraAdapter, camera: Any, num_frames: int, height: int, width: int,
                      temporal_ratio: int, spatial_ratio: int, batch: int = 1,
                      device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """`camera` (a preset name, a .json camera path, `Cameras` or (T, 4, 4) poses; see camera.py) -> the
    (batch, L, width) addition to the transformer's tokens of a clip of num_frames x height x width."""
    from models.video_generation.luma_dream.camera import camera_path

    cams = camera_path(camera, num_frames, width, height)
    p = next(adapter.parameters())
    tokens = adapter.tokens(cams.to(dtype=torch.float64), temporal_ratio, spatial_ratio)
    with torch.no_grad():
        bias = adapter(tokens.to(device=p.device, dtype=p.dtype)[None])
    return bias.expand(batch, -1, -1).to(device=device, dtype=dtype or bias.dtype)


__all__ = ["ADAPTER_FORMAT", "CameraAdapter", "CameraAdapterConfig", "camera_token_bias", "load_camera_adapter"]
