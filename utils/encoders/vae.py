"""AutoencoderKL: the KL-regularised image autoencoder of latent diffusion (SD, SDXL, SD3, FLUX).

The image goes through a convolutional encoder (ResNet blocks, downsampling by 2 per level, one
self-attention block at the lowest resolution) to the mean and log-variance of a diagonal Gaussian
over latents; the decoder mirrors it. SD/SDXL use 4 latent channels and 1x1 `quant_conv` /
`post_quant_conv` layers around the latent; SD3 and FLUX use 16 channels and no quant convs.

Diffusion models work on normalised latents: `(z - shift_factor) * scaling_factor`
(`scale_latents`), and decoding undoes it (`unscale_latents`).

The native parameter names are those of the original (ldm / official single-file) release:
`encoder.down.0.block.0.norm1.weight`, `encoder.mid.attn_1.q.weight` (a 1x1 conv), `decoder.up.3...`,
`quant_conv`, `post_quant_conv`. `utils.encoders.vae_convert` maps the diffusers layout onto it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, did_you_mean
from utils.nn.memory_format import to_channels_last

try:  # the zoo's attention dispatch (SDPA / xformers / flash); plain SDPA when it is not there
    from utils.nn.attention import attention as _attention
except ImportError:  # pragma: no cover - only while utils.nn is being written
    def _attention(q, k, v, mask=None, scale=None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of an AutoencoderKL and how its latents are normalised."""

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    latent_channels: int = 4
    norm_groups: int = 32
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float = 0.18215
    shift_factor: float = 0.0
    force_upcast: bool = False
    """Decode in float32 even when the weights are float16 (SDXL's VAE overflows in fp16)."""

    @property
    def block_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def downscale(self) -> int:
        """Pixels per latent along each side (8 for every official VAE)."""
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str) -> "VAEConfig":
        if name not in VAE_PRESETS:
            raise UserError(f"unknown VAE preset '{name}': {did_you_mean(name, VAE_PRESETS)}")
        return VAE_PRESETS[name]

    def with_(self, **changes) -> "VAEConfig":
        return replace(self, **changes)


VAE_PRESETS: dict[str, VAEConfig] = {
    "sd": VAEConfig(scaling_factor=0.18215),
    "sdxl": VAEConfig(scaling_factor=0.13025, force_upcast=True),
    "sd3": VAEConfig(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                     scaling_factor=1.5305, shift_factor=0.0609),
    "flux": VAEConfig(latent_channels=16, use_quant_conv=False, use_post_quant_conv=False,
                      scaling_factor=0.3611, shift_factor=0.1159),
    # Tests: two levels (downscale 2), narrow channels, 8 groups.
    "tiny": VAEConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, latent_channels=4, norm_groups=8),
    "tiny-16": VAEConfig(base_channels=16, channel_mult=(1, 2), num_res_blocks=1, latent_channels=16, norm_groups=8,
                         use_quant_conv=False, use_post_quant_conv=False, scaling_factor=0.3611, shift_factor=0.1159),
}


# -- building blocks -----------------------------------------------------------------------------


def _silu(x: torch.Tensor) -> torch.Tensor:
    # In place when no graph is recorded: saves a full-resolution allocation per call.
    return F.silu(x, inplace=not torch.is_grad_enabled())


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_silu(self.norm1(x)))
        h = self.conv2(_silu(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(skip) if not torch.is_grad_enabled() else h + skip


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels; q, k, v and proj_out are 1x1 convs (ldm layout)."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        # (B, HW, C); free of copies when x is channels-last.
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, height * width, c)
        # One matmul for q, k and v: the 1x1 convs are linear maps over channels.
        weight = torch.cat([self.q.weight, self.k.weight, self.v.weight]).flatten(1)
        bias = torch.cat([self.q.bias, self.k.bias, self.v.bias])
        q, k, v = F.linear(tokens, weight, bias).unsqueeze(1).chunk(3, dim=-1)  # each (B, 1, HW, C)
        out = _attention(q, k, v).squeeze(1)
        out = F.linear(out, self.proj_out.weight.flatten(1), self.proj_out.bias)
        out = out.reshape(b, height, width, c).permute(0, 3, 1, 2)  # channels-last memory
        return out.add_(x) if not torch.is_grad_enabled() else out + x


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one pixel on the right and bottom only (as ldm does)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour 2x, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.bfloat16:  # nearest upsampling has no bf16 kernel on some builds
            return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype))
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class MidBlock(nn.Module):
    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class _Level(nn.Module):
    """One resolution level: a list of ResNet blocks and an optional resampler."""

    def __init__(self, blocks: list[ResnetBlock], resample: nn.Module | None, name: str):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        if resample is not None:
            setattr(self, name, resample)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans, groups = cfg.block_channels, cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = chans[0]
        for i, ch in enumerate(chans):
            blocks = [ResnetBlock(prev if j == 0 else ch, ch, groups) for j in range(cfg.num_res_blocks)]
            last = i == len(chans) - 1
            self.down.append(_Level(blocks, None if last else Downsample(ch), "downsample"))
            prev = ch
        self.mid = MidBlock(prev, groups)
        self.norm_out = _norm(prev, groups)
        self.conv_out = nn.Conv2d(prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(_silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chans, groups = cfg.block_channels, cfg.norm_groups
        top = chans[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, top, 3, padding=1)
        self.mid = MidBlock(top, groups)
        # `up[i]` is level i (up[0] is full resolution), built from the lowest level upwards, as in ldm.
        levels: list[_Level] = []
        prev = top
        for i in reversed(range(len(chans))):
            ch = chans[i]
            blocks = [ResnetBlock(prev if j == 0 else ch, ch, groups) for j in range(cfg.num_res_blocks + 1)]
            levels.insert(0, _Level(blocks, Upsample(ch) if i != 0 else None, "upsample"))
            prev = ch
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(prev, groups)
        self.conv_out = nn.Conv2d(prev, cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(_silu(self.norm_out(h)))


# -- the latent distribution ----------------------------------------------------------------------


class DiagonalGaussian:
    """The encoder's posterior: a Gaussian with per-element mean and log-variance."""

    def __init__(self, moments: torch.Tensor):
        self.moments = moments
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    @property
    def var(self) -> torch.Tensor:
        return torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """mean + std * noise; the noise is drawn on the CPU, so a seed gives the same latents anywhere."""
        from utils.torch_utils import randn

        noise = randn(tuple(self.mean.shape), generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL divergence to the standard normal, summed over channels and pixels (one value per sample)."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.var - 1.0 - self.logvar, dim=(1, 2, 3))


# -- tiling helpers -------------------------------------------------------------------------------


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile start offsets covering [0, size): stride tile - overlap, the last tile flush with the end."""
    if size <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def _ramp(length: int, ramp_before: int, ramp_after: int, device, dtype) -> torch.Tensor:
    """1-D blending weights: rising over the first `ramp_before`, falling over the last `ramp_after`."""
    w = torch.ones(length, device=device, dtype=dtype)
    if ramp_before > 0:
        w[:ramp_before] = (torch.arange(ramp_before, device=device, dtype=dtype) + 0.5) / ramp_before
    if ramp_after > 0:
        w[length - ramp_after:] = torch.minimum(
            w[length - ramp_after:], (torch.arange(ramp_after, 0, -1, device=device, dtype=dtype) - 0.5) / ramp_after)
    return w


def _tiled(fn, x: torch.Tensor, tile: int, overlap: int, factor: float, out_channels: int) -> torch.Tensor:
    """Apply `fn` to overlapping `tile`-sized windows of x and blend the results with linear ramps.

    `factor` is the output/input size ratio (8 for decoding, 1/8 for encoding). Each output pixel is
    the weighted mean of the tiles that cover it, so seams fade over the overlap.
    """
    b, _, height, width = x.shape
    out_h, out_w = round(height * factor), round(width * factor)
    out = None
    weight = torch.zeros(1, 1, out_h, out_w, device=x.device, dtype=torch.float32)
    ramp = max(int(round(overlap * factor)), 0)
    rows, cols = _starts(height, tile, overlap), _starts(width, tile, overlap)
    for top in rows:
        for left in cols:
            piece = fn(x[:, :, top:top + tile, left:left + tile]).float()
            if out is None:
                out = torch.zeros(b, out_channels, out_h, out_w, device=x.device, dtype=torch.float32)
            ph, pw = piece.shape[-2:]
            oy, ox = round(top * factor), round(left * factor)
            wy = _ramp(ph, ramp if top > 0 else 0, ramp if top + tile < height else 0, x.device, torch.float32)
            wx = _ramp(pw, ramp if left > 0 else 0, ramp if left + tile < width else 0, x.device, torch.float32)
            w2 = wy[:, None] * wx[None, :]
            out[:, :, oy:oy + ph, ox:ox + pw] += piece * w2
            weight[:, :, oy:oy + ph, ox:ox + pw] += w2
    return (out / weight).to(x.dtype)


# -- the model ------------------------------------------------------------------------------------


class AutoencoderKL(nn.Module):
    """Encoder + decoder of latent diffusion with optional quant convs; see the module docstring."""

    def __init__(self, config: VAEConfig | str = "sd"):
        super().__init__()
        cfg = VAEConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        two = 2 * cfg.latent_channels
        self.quant_conv = nn.Conv2d(two, two, 1) if cfg.use_quant_conv else None
        self.post_quant_conv = (nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1)
                                if cfg.use_post_quant_conv else None)
        # Defaults for decode/encode; see enable_tiling / enable_slicing.
        self.tile_latent = 0  # 0: no tiling
        self.tile_overlap = 0
        self.sliced = False
        self.channels_last: bool | None = None
        """Run convs in channels-last memory (None: on CPU only, where oneDNN is ~25% faster with it)."""

    # -- properties ------------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def scaling_factor(self) -> float:
        return self.config.scaling_factor

    @property
    def shift_factor(self) -> float:
        return self.config.shift_factor

    def enable_tiling(self, tile_latent: int = 64, overlap_latent: int = 16) -> "AutoencoderKL":
        """Encode and decode large inputs in overlapping tiles (tile sizes in latent pixels)."""
        if overlap_latent >= tile_latent:
            raise UserError(f"tile overlap {overlap_latent} must be smaller than the tile {tile_latent}")
        self.tile_latent, self.tile_overlap = int(tile_latent), int(overlap_latent)
        return self

    def disable_tiling(self) -> "AutoencoderKL":
        self.tile_latent = self.tile_overlap = 0
        return self

    def enable_slicing(self, on: bool = True) -> "AutoencoderKL":
        """Decode a batch one sample at a time (less peak memory)."""
        self.sliced = bool(on)
        return self

    def _memory_format(self, x: torch.Tensor) -> torch.Tensor:
        return to_channels_last(self, x, self.channels_last, self.decoder.conv_in.weight)

    # -- latents --------------------------------------------------------------------------------

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Raw VAE latents -> the normalised latents a diffusion model works on."""
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> raw VAE latents (the inverse of `scale_latents`)."""
        return z / self.config.scaling_factor + self.config.shift_factor

    # -- encode ---------------------------------------------------------------------------------

    def _moments(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self._memory_format(x))
        return self.quant_conv(h) if self.quant_conv is not None else h

    def encode(self, x: torch.Tensor, tiled: bool | None = None) -> DiagonalGaussian:
        """Images in [-1, 1], (B, 3, H, W) -> the latent posterior (H and W divisible by the downscale)."""
        self._check_image(x)
        tile = self.tile_latent * self.config.downscale
        use_tiles = (self.tile_latent > 0) if tiled is None else tiled
        if use_tiles and (tile <= 0):
            tile = 64 * self.config.downscale
        if use_tiles and max(x.shape[-2:]) > tile:
            overlap = (self.tile_overlap or tile // (4 * self.config.downscale)) * self.config.downscale
            moments = _tiled(self._moments, x, tile, overlap, 1.0 / self.config.downscale,
                             2 * self.config.latent_channels)
        else:
            moments = self._moments(x)
        return DiagonalGaussian(moments.contiguous())

    def _check_image(self, x: torch.Tensor) -> None:
        d = self.config.downscale
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise UserError(f"the VAE encodes (batch, {self.config.in_channels}, H, W) images, got shape "
                            f"{tuple(x.shape)}")
        if x.shape[-1] % d or x.shape[-2] % d:
            raise UserError(f"image size {x.shape[-2]}x{x.shape[-1]} is not a multiple of {d}: resize or crop it")

    # -- decode ---------------------------------------------------------------------------------

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        z = self._memory_format(z)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).contiguous()

    def decode(self, z: torch.Tensor, tiled: bool | None = None, sliced: bool | None = None,
               upcast: bool | None = None) -> torch.Tensor:
        """Raw latents (B, C, h, w) -> images (B, 3, 8h, 8w) in about [-1, 1].

        `tiled`: overlapping tiles blended together (default: on when `enable_tiling` was called);
        `sliced`: one sample at a time; `upcast`: run in float32 when the weights are float16
        (default: the config's `force_upcast`).
        """
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise UserError(f"the VAE decodes (batch, {self.config.latent_channels}, h, w) latents, got shape "
                            f"{tuple(z.shape)}")
        upcast = self.config.force_upcast if upcast is None else upcast
        with self._maybe_upcast(upcast) as dtype:
            zz = z.to(dtype)
            use_slices = self.sliced if sliced is None else sliced
            use_tiles = (self.tile_latent > 0) if tiled is None else tiled
            tile = self.tile_latent or 64
            overlap = self.tile_overlap or tile // 4

            def run(latent: torch.Tensor) -> torch.Tensor:
                if use_tiles and max(latent.shape[-2:]) > tile:
                    return _tiled(self._decode, latent, tile, overlap, self.config.downscale,
                                  self.config.out_channels)
                return self._decode(latent)

            if use_slices and zz.shape[0] > 1:
                out = torch.cat([run(zz[i:i + 1]) for i in range(zz.shape[0])])
            else:
                out = run(zz)
        return out.to(z.dtype) if z.is_floating_point() else out

    @contextmanager
    def _maybe_upcast(self, upcast: bool) -> Iterator[torch.dtype]:
        dtype = self.dtype
        if not (upcast and dtype == torch.float16):
            yield dtype
            return
        # The fp16 decoder overflows on some weights (SDXL): run this call in float32, then go back.
        self.to(torch.float32)
        try:
            yield torch.float32
        finally:
            self.to(dtype)

    # -- convenience for pipelines -----------------------------------------------------------------

    def encode_latents(self, images: torch.Tensor, generator: torch.Generator | None = None,
                       sample: bool = True) -> torch.Tensor:
        """Images in [-1, 1] -> normalised latents (sampled with `generator`, or the mean)."""
        dist = self.encode(images)
        return self.scale_latents(dist.sample(generator) if sample else dist.mode())

    def decode_latents(self, latents: torch.Tensor, **kw) -> torch.Tensor:
        """Normalised latents -> images in [-1, 1] (clamped)."""
        return self.decode(self.unscale_latents(latents), **kw).clamp(-1.0, 1.0)

    def forward(self, x: torch.Tensor, sample_posterior: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
        dist = self.encode(x)
        return self.decode(dist.sample(generator) if sample_posterior else dist.mode())

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None) -> "AutoencoderKL":
        """Load a VAE from a single file, a diffusers folder (vae/ or its parent), or a hub id.

        Single files may be a bare VAE (ldm or diffusers keys) or a whole SD/SDXL checkpoint
        (`first_stage_model.` prefix). `preset` names the latent scaling when the file cannot tell
        (SD vs SDXL, SD3 vs FLUX); with no source, `preset` builds random weights.
        """
        from utils.encoders import vae_convert as conv
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_into

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if source is None:
            if preset is None:
                raise UserError("AutoencoderKL.from_pretrained needs a source or a preset: pass a file, folder or "
                                f"hub id, or preset={sorted(VAE_PRESETS)}")
            return cls(VAEConfig.preset(preset)).to(device=dev, dtype=dt).eval()
        cfg, native = conv.load_vae_checkpoint(source, preset=preset, subfolder=subfolder, dtype=dt)
        with torch.device("meta"):
            model = cls(cfg)
        load_into(model, native, what="VAE checkpoint")
        return model.to(device=dev, dtype=dt).eval()


def config_field_names() -> list[str]:
    return [f.name for f in fields(VAEConfig)]


__all__ = ["AutoencoderKL", "DiagonalGaussian", "VAEConfig", "VAE_PRESETS"]
