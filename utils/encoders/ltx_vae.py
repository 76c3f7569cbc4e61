"""The LTX-Video VAE (diffusers' `AutoencoderKLLTXVideo`): a 1:192 video autoencoder.

A clip of 1 + 8k frames (B, 3, T, H, W) in [-1, 1] becomes 1 + k latent frames of 128 channels at
H/32 x W/32: 4x4 pixels are first folded into channels (the VAE's own patchifier, 48 channels), then
three levels halve frames, rows and columns. 3x32x32 RGB values per 128 latent values is the 1:192
ratio of the LTX-Video report. The encoder is causal in time (the first frame is compressed on its
own, so a still image is a one-frame clip); the decoders of 0.9 / 0.9.1 repeat the edge frames on
both sides instead. 0.9.1+ decoders take the denoising timestep (`timestep_conditioning`: a shift and
scale on every residual block, a "last step" denoise) and may inject per-channel noise.

Blocks (module names are diffusers'; `utils.encoders.ltx_vae_convert` maps the official release's
flat `encoder.down_blocks.N` / `decoder.up_blocks.N` lists onto them):

    encoder.conv_in, encoder.down_blocks.I.{resnets.J, downsamplers.0, conv_out}, encoder.mid_block.resnets.J,
    encoder.conv_out (128 means + 1 shared log-variance); decoder.conv_in, decoder.mid_block,
    decoder.up_blocks.I.{conv_in, upsamplers.0, resnets.J}, decoder.conv_out (48 = 3 x 4 x 4 channels)

Latents are standardised per channel with `latents_mean` / `latents_std` (`normalize` / `denormalize`;
the 0.9 release stores zeros and ones, 0.9.1+ real statistics).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from utils.encoders.ltx_vae_layers import Downsampler3d, LTXConv3d, LTXTimestepEmbedder, ResnetBlock3d, Upsampler3d
from utils.encoders.vae import DiagonalGaussian
from utils.errors import UserError, did_you_mean
from utils.nn.norms import rms_norm


@dataclass(frozen=True)
class LTXVAEConfig:
    """Sizes of one LTX video VAE (diffusers' `AutoencoderKLLTXVideo` config names)."""

    in_channels: int = 3
    """Image channels in."""
    out_channels: int = 3
    """Image channels out."""
    latent_channels: int = 128
    """Latent channels (128 in every release)."""
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    """Encoder widths per level."""
    down_block_types: tuple[str, ...] = ("LTXVideoDownBlock3D",) * 4
    """Encoder level kinds: 'LTXVideoDownBlock3D' (0.9 / 0.9.1: strided conv, then a widening residual
    block) or 'LTXVideo095DownBlock3D' (0.9.5+: space-to-depth downsamplers that also widen)."""
    decoder_block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    """Decoder widths per level (listed from the output side, as the encoder's)."""
    layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    """Residual blocks per encoder level, the last entry for the middle."""
    decoder_layers_per_block: tuple[int, ...] = (4, 3, 3, 3, 4)
    """Residual blocks per decoder level (output side first), the last entry for the middle."""
    spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    """Which encoder levels halve frames, rows and columns."""
    decoder_spatio_temporal_scaling: tuple[bool, ...] = (True, True, True, False)
    """Which decoder levels double frames, rows and columns."""
    decoder_inject_noise: tuple[bool, ...] = (False, False, False, False, False)
    """Per decoder level (output side first, then the middle): add learned-scale noise in its residual blocks."""
    downsample_type: tuple[str, ...] = ("conv", "conv", "conv", "conv")
    """0.9.5+ encoder levels: 'conv', 'spatial', 'temporal' or 'spatiotemporal' downsampling."""
    upsample_residual: tuple[bool, ...] = (False, False, False, False)
    """Per decoder level: add a depth-to-space residual around its upsampler (0.9.1+)."""
    upsample_factor: tuple[int, ...] = (1, 1, 1, 1)
    """Per decoder level: the upsampler's channel reduction beyond depth-to-space (0.9.1+: 2)."""
    timestep_conditioning: bool = False
    """Whether the decoder takes the denoising timestep (0.9.1+)."""
    patch_size: int = 4
    """Pixels per side folded into channels before the first conv."""
    patch_size_t: int = 1
    """Frames folded into channels before the first conv (1 in every release)."""
    resnet_norm_eps: float = 1e-6
    """Epsilon of the shortcut LayerNorms."""
    scaling_factor: float = 1.0
    """Multiplier of the standardised latents (1.0 in every release)."""
    encoder_causal: bool = True
    """Encoder convs see only past frames (True in every release)."""
    decoder_causal: bool = False
    """Decoder convs see only past frames (False up to 0.9.5)."""

    def __post_init__(self) -> None:
        levels = len(self.block_out_channels) - (1 if self.down_block_types[-1] == "LTXVideo095DownBlock3D" else 0)
        if len(self.layers_per_block) < levels + 1:
            raise UserError("LTX VAE layers_per_block needs one entry per level plus one for the middle: fix the config")

    @property
    def spatial_ratio(self) -> int:
        if self.down_block_types[-1] == "LTXVideo095DownBlock3D":
            return self.patch_size * 2 ** sum(t in ("spatial", "spatiotemporal") for t in self.downsample_type)
        return self.patch_size * 2 ** sum(self.spatio_temporal_scaling)

    @property
    def temporal_ratio(self) -> int:
        if self.down_block_types[-1] == "LTXVideo095DownBlock3D":
            return self.patch_size_t * 2 ** sum(t in ("temporal", "spatiotemporal") for t in self.downsample_type)
        return self.patch_size_t * 2 ** sum(self.spatio_temporal_scaling)

    def to_diffusers(self) -> dict[str, Any]:
        """The config of the equivalent diffusers `AutoencoderKLLTXVideo`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_diffusers(cls, cfg: Mapping[str, Any]) -> "LTXVAEConfig":
        """Read a diffusers `AutoencoderKLLTXVideo` config.json (missing fields: diffusers' defaults)."""
        kept = {}
        for f in fields(cls):
            if f.name in cfg and cfg[f.name] is not None:
                v = cfg[f.name]
                kept[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kept)


LTX_VAE_PRESETS: dict[str, LTXVAEConfig] = {
    "ltxv-0.9": LTXVAEConfig(),
    # 0.9.1: a wider timestep-conditioned decoder with noise injection and residual depth-to-space upsampling
    # (diffusers' scripts/convert_ltx_to_diffusers.py, get_vae_config("0.9.1")).
    "ltxv-0.9.1": LTXVAEConfig(decoder_block_out_channels=(256, 512, 1024), decoder_layers_per_block=(5, 6, 7, 8),
                               decoder_spatio_temporal_scaling=(True, True, True),
                               decoder_inject_noise=(False, True, True, True), upsample_residual=(True, True, True),
                               upsample_factor=(2, 2, 2), timestep_conditioning=True),
    # 0.9.5 (also the VAE of the 2B 0.9.6 dev/distilled files): space-to-depth encoder levels that widen to 2048,
    # the decoder without noise injection.
    "ltxv-0.9.5": LTXVAEConfig(block_out_channels=(128, 256, 512, 1024, 2048),
                               down_block_types=("LTXVideo095DownBlock3D",) * 4, layers_per_block=(4, 6, 6, 2, 2),
                               spatio_temporal_scaling=(True, True, True, True),
                               downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
                               decoder_block_out_channels=(256, 512, 1024), decoder_layers_per_block=(5, 5, 5, 5),
                               decoder_spatio_temporal_scaling=(True, True, True),
                               decoder_inject_noise=(False, False, False, False), upsample_residual=(True, True, True),
                               upsample_factor=(2, 2, 2), timestep_conditioning=True),
    "tiny": LTXVAEConfig(block_out_channels=(8, 16), decoder_block_out_channels=(8, 16),
                         layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1),
                         spatio_temporal_scaling=(True, False), decoder_spatio_temporal_scaling=(True, False),
                         decoder_inject_noise=(False, False, False), downsample_type=("conv", "conv"),
                         upsample_residual=(False, False), upsample_factor=(1, 1), latent_channels=8,
                         down_block_types=("LTXVideoDownBlock3D",) * 2, patch_size=2),
}


def ltx_vae_config(preset: str, **overrides: Any) -> LTXVAEConfig:
    if preset not in LTX_VAE_PRESETS:
        raise UserError(f"unknown LTX VAE preset '{preset}': {did_you_mean(preset, LTX_VAE_PRESETS)}")
    return replace(LTX_VAE_PRESETS[preset], **overrides)


def match_vae_config(state_dict: Mapping[str, torch.Tensor],
                     candidates: Mapping[str, LTXVAEConfig] | None = None) -> tuple[str, LTXVAEConfig]:
    """(name, config) of the candidate (default: every preset) whose tensors, names and shapes, are exactly
    those of `state_dict` (official with or without `vae.`, a whole single file, or diffusers names): a file
    without a config (the official single files) tells its VAE version (0.9, 0.9.1, 0.9.5) this way."""
    from utils.encoders.ltx_vae_convert import to_native
    from utils.errors import ConversionError

    tried = []
    for name, cfg in (candidates or LTX_VAE_PRESETS).items():
        try:
            native = to_native(state_dict, cfg)
        except ConversionError:
            tried.append(name)
            continue
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in LTXVideoVAE(cfg).state_dict().items()}
        if want == {k: tuple(v.shape) for k, v in native.items()}:
            return name, cfg
        tried.append(name)
    raise ConversionError(f"these VAE tensors match no LTX VAE version ({', '.join(tried)}): check the file")


def _pixel_norm(x: torch.Tensor) -> torch.Tensor:
    return rms_norm(x.movedim(1, -1), None, 1e-8).movedim(-1, 1)


class DownBlock(nn.Module):
    """Residual blocks, then an optional downsampler, then (0.9 layout) a widening residual block."""

    def __init__(self, in_ch: int, out_ch: int, layers: int, scale: bool, eps: float, causal: bool,
                 kind: str, downsample_type: str):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock3d(in_ch, in_ch, eps, causal) for _ in range(layers))
        if scale:
            if kind == "LTXVideoDownBlock3D" or downsample_type == "conv":
                down = LTXConv3d(in_ch, in_ch, 3, stride=(2, 2, 2), causal=causal)
            else:
                stride = {"spatial": (1, 2, 2), "temporal": (2, 1, 1), "spatiotemporal": (2, 2, 2)}[downsample_type]
                down = Downsampler3d(in_ch, out_ch, stride, causal)
            self.downsamplers = nn.ModuleList([down])
        if kind == "LTXVideoDownBlock3D" and in_ch != out_ch:
            self.conv_out = ResnetBlock3d(in_ch, out_ch, eps, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
        if hasattr(self, "conv_out"):
            x = self.conv_out(x)
        return x


class MidBlock(nn.Module):
    """Residual blocks at one width; with timestep conditioning, its own time embedder."""

    def __init__(self, ch: int, layers: int, eps: float, causal: bool, noise: bool = False, temb: bool = False):
        super().__init__()
        if temb:
            self.time_embedder = LTXTimestepEmbedder(4 * ch)
        self.resnets = nn.ModuleList(ResnetBlock3d(ch, ch, eps, causal, noise, temb) for _ in range(layers))

    def _temb(self, x: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor | None:
        if not hasattr(self, "time_embedder"):
            return None
        return self.time_embedder(t.flatten(), x.dtype).view(x.shape[0], -1, 1, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        temb = self._temb(x, t)
        for r in self.resnets:
            x = r(x, temb, generator)
        return x


class UpBlock(MidBlock):
    """An optional narrowing residual block, an optional upsampler, then residual blocks."""

    def __init__(self, in_ch: int, out_ch: int, layers: int, scale: bool, eps: float, causal: bool, noise: bool,
                 temb: bool, residual: bool, factor: int):
        super().__init__(out_ch, layers, eps, causal, noise, temb)
        if temb:  # the embedder is sized by the block's input width, as in the release
            self.time_embedder = LTXTimestepEmbedder(4 * in_ch)
        if in_ch != out_ch:
            self.conv_in = ResnetBlock3d(in_ch, out_ch, eps, causal, noise, temb)
        if scale:
            self.upsamplers = nn.ModuleList([Upsampler3d(out_ch * factor, (2, 2, 2), causal, residual, factor)])

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if hasattr(self, "conv_in"):
            x = self.conv_in(x, t, generator)
        temb = self._temb(x, t)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        for r in self.resnets:
            x = r(x, temb, generator)
        return x


class LTXEncoder(nn.Module):
    def __init__(self, cfg: LTXVAEConfig):
        super().__init__()
        self.cfg = cfg
        causal, ch = cfg.encoder_causal, cfg.block_out_channels
        v095 = cfg.down_block_types[-1] == "LTXVideo095DownBlock3D"
        self.conv_in = LTXConv3d(cfg.in_channels * cfg.patch_size ** 2 * cfg.patch_size_t, ch[0], 3, causal=causal)
        levels = len(ch) - (1 if v095 else 0)
        blocks, out = [], ch[0]
        for i in range(levels):
            inp = out
            out = ch[i + 1] if v095 else (ch[i + 1] if i + 1 < levels else ch[i])
            blocks.append(DownBlock(inp, out, cfg.layers_per_block[i], cfg.spatio_temporal_scaling[i],
                                    cfg.resnet_norm_eps, causal, cfg.down_block_types[i], cfg.downsample_type[i]))
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(out, cfg.layers_per_block[-1], cfg.resnet_norm_eps, causal)
        self.conv_out = LTXConv3d(out, cfg.latent_channels + 1, 3, causal=causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Frames (B, 3, T, H, W) -> moments (B, 2 x latent, T', H', W'): means, then the one predicted
        log-variance channel repeated for every latent channel."""
        p, pt = self.cfg.patch_size, self.cfg.patch_size_t
        b, c, t, h, w = x.shape
        x = x.reshape(b, c, t // pt, pt, h // p, p, w // p, p).permute(0, 1, 3, 7, 5, 2, 4, 6).flatten(1, 4)
        x = self.conv_in(x)
        for blk in self.down_blocks:
            x = blk(x)
        x = self.conv_out(F.silu(_pixel_norm(self.mid_block(x))))
        return torch.cat([x, x[:, -1:].expand(-1, x.shape[1] - 2, -1, -1, -1)], dim=1)


class LTXDecoder(nn.Module):
    def __init__(self, cfg: LTXVAEConfig):
        super().__init__()
        self.cfg = cfg
        causal = cfg.decoder_causal
        ch = tuple(reversed(cfg.decoder_block_out_channels))
        scaling = tuple(reversed(cfg.decoder_spatio_temporal_scaling))
        layers = tuple(reversed(cfg.decoder_layers_per_block))
        noise = tuple(reversed(cfg.decoder_inject_noise))
        residual = tuple(reversed(cfg.upsample_residual))
        factor = tuple(reversed(cfg.upsample_factor))
        temb = cfg.timestep_conditioning
        out = ch[0]
        self.conv_in = LTXConv3d(cfg.latent_channels, out, 3, causal=causal)
        self.mid_block = MidBlock(out, layers[0], cfg.resnet_norm_eps, causal, noise[0], temb)
        blocks = []
        for i in range(len(ch)):
            inp, out = out // factor[i], ch[i] // factor[i]
            blocks.append(UpBlock(inp, out, layers[i + 1], scaling[i], cfg.resnet_norm_eps, causal, noise[i + 1],
                                  temb, residual[i], factor[i]))
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_out = LTXConv3d(out, cfg.out_channels * cfg.patch_size ** 2 * cfg.patch_size_t, 3, causal=causal)
        if temb:
            self.timestep_scale_multiplier = nn.Parameter(torch.tensor(1000.0))
            self.time_embedder = LTXTimestepEmbedder(2 * out)
            self.scale_shift_table = nn.Parameter(torch.randn(2, out) / out ** 0.5)

    def forward(self, z: torch.Tensor, t: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        x = self.conv_in(z)
        if hasattr(self, "timestep_scale_multiplier"):
            if t is None:
                raise UserError("this LTX VAE decoder is timestep-conditioned (0.9.1+): pass the decode timestep")
            t = torch.as_tensor(t, device=z.device, dtype=torch.float32).expand(z.shape[0]) * self.timestep_scale_multiplier
        x = self.mid_block(x, t, generator)
        for blk in self.up_blocks:
            x = blk(x, t, generator)
        x = _pixel_norm(x)
        if hasattr(self, "time_embedder"):
            e = self.time_embedder(t.flatten(), x.dtype).view(x.shape[0], 2, -1, 1, 1, 1)
            shift, scale = (e + self.scale_shift_table[None, ..., None, None, None]).unbind(1)
            x = x * (1 + scale) + shift
        x = self.conv_out(F.silu(x))
        p, pt = self.cfg.patch_size, self.cfg.patch_size_t
        b, _, f, h, w = x.shape
        x = x.reshape(b, -1, pt, p, p, f, h, w)
        return x.permute(0, 1, 5, 2, 6, 4, 7, 3).flatten(6, 7).flatten(4, 5).flatten(2, 3)


class LTXVideoVAE(nn.Module):
    """`encode` (clip -> posterior over raw latents), `decode` (raw latents -> clip), `normalize` /
    `denormalize` (raw <-> the standardised latents the transformer sees)."""

    def __init__(self, cfg: LTXVAEConfig | None = None):
        super().__init__()
        self.config = cfg = cfg or LTXVAEConfig()
        self.encoder = LTXEncoder(cfg)
        self.decoder = LTXDecoder(cfg)
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels))

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv_in.conv.weight.dtype

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.config.temporal_ratio

    def check_frames(self, frames: int) -> None:
        r = self.config.temporal_ratio
        if frames < 1 or (frames - 1) % r:
            below = max(1, 1 + r * ((frames - 1) // r))
            raise UserError(f"the LTX VAE takes 1 + {r}k frames (1, {1 + r}, {1 + 2 * r}, ...), got {frames}: "
                            f"use {below} or {below + r}")

    def check_size(self, height: int, width: int) -> None:
        s = self.config.spatial_ratio
        if height % s or width % s or height < s or width < s:
            raise UserError(f"the LTX VAE needs height and width that are multiples of {s}, got {height}x{width}: "
                            f"use {max(s, height // s * s)}x{max(s, width // s * s)}")

    def _stats(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1, 1)
        return self.latents_mean.view(shape).to(z), self.latents_std.view(shape).to(z)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return (z - mean) * self.config.scaling_factor / std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        return z * std / self.config.scaling_factor + mean

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Frames (B, 3, 1 + 8k, H, W) in [-1, 1] -> the posterior (B, 128, 1 + k, H/32, W/32)."""
        if x.ndim != 5:
            raise UserError(f"the LTX VAE encodes (batch, channels, frames, height, width), got shape {tuple(x.shape)}")
        self.check_frames(x.shape[2])
        self.check_size(x.shape[3], x.shape[4])
        return DiagonalGaussian(self.encoder(x.to(self.dtype)))

    def decode(self, z: torch.Tensor, timestep: torch.Tensor | float | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw latents (B, 128, T', h, w) -> frames (B, 3, 1 + 8 (T'-1), 32h, 32w) (not clamped).
        `timestep`: the decode timestep of 0.9.1+ decoders (the release uses 0.05); `generator`: their
        injected noise."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise UserError(f"the LTX VAE decodes (batch, {self.config.latent_channels}, frames, height, width) "
                            f"latents, got shape {tuple(z.shape)}")
        tile = getattr(self, "_tile", None)
        if tile is not None and max(z.shape[-2:]) > tile[0]:
            return self._decode_tiled(z.to(self.dtype), timestep, generator, *tile)
        return self.decoder(z.to(self.dtype), timestep, generator)

    # -- spatial tiling -------------------------------------------------------------------------

    def enable_tiling(self, tile_latent: int = 16, overlap_latent: int = 4) -> "LTXVideoVAE":
        """Decode latents larger than `tile_latent` (latent pixels; 16 = 512 frame pixels) in overlapping
        spatial tiles, blended linearly over `overlap_latent`: the peak memory of one tile's decode instead of
        the whole frame's (all frames of a tile are decoded together)."""
        if not 0 <= overlap_latent < tile_latent:
            raise UserError(f"LTX VAE tiling needs 0 <= overlap < tile, got tile {tile_latent}, overlap {overlap_latent}")
        self._tile = (int(tile_latent), int(overlap_latent))
        return self

    def disable_tiling(self) -> "LTXVideoVAE":
        self._tile = None
        return self

    @staticmethod
    def _starts(n: int, tile: int, stride: int) -> list[int]:
        starts = list(range(0, max(n - tile, 0) + 1, stride))
        if starts[-1] + tile < n:
            starts.append(n - tile)
        return starts

    @staticmethod
    def _ramp(length: int, fade: int, head: bool, tail: bool, device: torch.device) -> torch.Tensor:
        w = torch.ones(length, device=device)
        if fade > 0:
            up = (torch.arange(fade, device=device, dtype=torch.float32) + 0.5) / fade
            if head:
                w[:fade] = up
            if tail:
                w[-fade:] = torch.minimum(w[-fade:], up.flip(0))
        return w

    def _decode_tiled(self, z: torch.Tensor, t: Any, generator: torch.Generator | None, tile: int,
                      overlap: int) -> torch.Tensor:
        s = self.config.spatial_ratio
        h, w = z.shape[-2:]
        rows, cols = self._starts(h, tile, tile - overlap), self._starts(w, tile, tile - overlap)
        out = weight = None
        for y in rows:
            for x in cols:
                part = self.decoder(z[..., y:y + tile, x:x + tile], t, generator).float()
                ph, pw = part.shape[-2:]
                wy = self._ramp(ph, overlap * s, y > 0, y + tile < h, part.device)
                wx = self._ramp(pw, overlap * s, x > 0, x + tile < w, part.device)
                m = wy[:, None] * wx[None, :]
                if out is None:
                    out = part.new_zeros(*part.shape[:-2], h * s, w * s)
                    weight = part.new_zeros(h * s, w * s)
                out[..., y * s:y * s + ph, x * s:x * s + pw] += part * m
                weight[y * s:y * s + ph, x * s:x * s + pw] += m
        return (out / weight).to(z.dtype)

    def forward(self, x: torch.Tensor, timestep: torch.Tensor | float | None = None) -> torch.Tensor:
        return self.decode(self.encode(x).mode(), timestep)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None) -> "LTXVideoVAE":
        """Load an official single file (`vae.` tensors), a diffusers `vae/` folder (config.json +
        weights) or its safetensors, or a hub id; no source = random weights of `preset`."""
        from pathlib import Path

        from utils.encoders.ltx_vae_convert import to_native
        from utils.encoders.text import read_config
        from utils.torch_utils import local_seed, resolve_device, resolve_dtype
        from utils.weights import load_folder_state_dict, load_into, load_state_dict, resolve

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        cfg = ltx_vae_config(preset) if preset is not None else None
        if source is None:
            if cfg is None:
                raise UserError(f"LTXVideoVAE.from_pretrained needs a source or a preset ({', '.join(LTX_VAE_PRESETS)})")
            with local_seed(0):
                return cls(cfg).to(device=dev, dtype=dt).eval()
        local = Path(os.path.expanduser(str(source)))
        if not local.exists():
            local = resolve(str(source), allow_patterns=[f"{subfolder or 'vae'}/*"])
        path = local / subfolder if subfolder else local
        if path.is_dir() and (path / "vae").is_dir() and not (path / "config.json").exists():
            path = path / "vae"
        if path.is_dir():
            if (path / "config.json").exists():
                cfg = LTXVAEConfig.from_diffusers(read_config(path))
            sd = load_folder_state_dict(path, name="diffusion_pytorch_model", dtype=torch.float32)
        else:
            sd = load_state_dict(path, dtype=torch.float32)
            if cfg is None:  # an official single file carries no config: its tensors tell the version
                cfg = match_vae_config(sd)[1]
        with torch.device("meta"):
            model = cls(cfg or LTXVAEConfig())
        load_into(model, to_native(sd, model.config), what="LTX VAE checkpoint")
        return model.to(device=dev, dtype=dt).eval()


__all__ = ["LTXVAEConfig", "LTX_VAE_PRESETS", "LTXVideoVAE", "ltx_vae_config", "match_vae_config"]
