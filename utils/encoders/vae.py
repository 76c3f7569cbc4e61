"""AutoencoderKL: the KL-regularised image autoencoder of latent diffusion (SD, SDXL, SD3, FLUX).

The image goes through a convolutional encoder (ResNet blocks, downsampling by 2 per level, one
self-attention block at the lowest resolution) to the mean and log-variance of a diagonal Gaussian
over latents; the decoder mirrors it. SD/SDXL use 4 latent channels and 1x1 `quant_conv` /
`post_quant_conv` layers around the latent; SD3 and FLUX use 16 channels and no quant convs.

Diffusion models work on normalised latents: `(z - shift_factor) * scaling_factor`
(`scale_latents`), and decoding undoes it (`unscale_latents`).

The encoder and decoder are the conv autoencoder trunk of `utils.nn.conv_autoencoder` (shared with
VQGAN); this module holds the KL head around it. Parameter names are those of the original (ldm /
official single-file) release: `encoder.down.0.block.0.norm1.weight`, `encoder.mid.attn_1.q.weight`
(a 1x1 conv), `decoder.up.3...`, `quant_conv`, `post_quant_conv`. `utils.encoders.vae_convert` finds
the VAE in a file and maps the diffusers layout onto it.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Iterator

import torch
from torch import nn

from utils.errors import UserError, did_you_mean
from utils.nn.conv_autoencoder import Decoder, Encoder, TrunkConfig
from utils.nn.memory_format import to_channels_last


# -- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Sizes of an AutoencoderKL and how its latents are normalised."""

    in_channels: int = 3
    """Image channels."""
    out_channels: int = 3
    """Channels of the decoded image."""
    base_channels: int = 128
    """Width of the full-resolution level."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Level widths as multiples of base_channels; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level (the decoder has one more)."""
    latent_channels: int = 4
    """Channels of the latent: 4 for SD/SDXL, 16 for SD3/FLUX."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights: 32 in every release)."""
    use_quant_conv: bool = True
    """A 1x1 conv on the moments after the encoder (SD/SDXL; not SD3/FLUX)."""
    use_post_quant_conv: bool = True
    """A 1x1 conv on the latent before the decoder."""
    scaling_factor: float = 0.18215
    """Normalised latents are (z - shift_factor) * scaling_factor (not stored in the weights)."""
    shift_factor: float = 0.0
    """See scaling_factor."""
    force_upcast: bool = False
    """Decode in float32 even when the weights are float16 (SDXL's VAE overflows in fp16)."""

    @property
    def block_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def trunk(self) -> TrunkConfig:
        """The encoder/decoder sizes: the moments (mean, log-variance) are the doubled latent."""
        return TrunkConfig(in_channels=self.in_channels, out_channels=self.out_channels,
                           base_channels=self.base_channels, channel_mult=self.channel_mult,
                           num_res_blocks=self.num_res_blocks, z_channels=self.latent_channels, double_z=True,
                           norm_groups=self.norm_groups)

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


@contextmanager
def upcast_fp16(module: nn.Module, upcast: bool) -> Iterator[torch.dtype]:
    """Run a call of an fp16 `module` in float32 when `upcast` (then go back); yields the dtype to use.

    fp16 VAE decoders overflow on some weights (SDXL's, SVD's): decoding in float32 avoids NaNs.
    """
    dtype = getattr(module, "dtype", None) or next(module.parameters()).dtype
    if not (upcast and dtype == torch.float16):
        yield dtype
        return
    module.to(torch.float32)
    try:
        yield torch.float32
    finally:
        module.to(dtype)


class AutoencoderKL(nn.Module):
    """Encoder + decoder of latent diffusion with optional quant convs; see the module docstring."""

    def __init__(self, config: VAEConfig | str = "sd"):
        super().__init__()
        cfg = VAEConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        self.encoder = Encoder(cfg.trunk)
        self.decoder = Decoder(cfg.trunk)
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

    def _maybe_upcast(self, upcast: bool):
        return upcast_fp16(self, upcast)

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
                        subfolder: str | None = None, config: VAEConfig | None = None) -> "AutoencoderKL":
        """Load a VAE from a single file, a diffusers folder (vae/ or its parent), or a hub id.

        Single files may be a bare VAE (ldm or diffusers keys) or a whole SD/SDXL checkpoint
        (`first_stage_model.` prefix). `preset` names the latent scaling when the file cannot tell
        (SD vs SDXL, SD3 vs FLUX); with no source, `preset` builds random weights. `config`: the
        explicit VAEConfig, for files of sizes no preset has (their norm groups are not in the
        weights); it is checked against the tensor shapes.
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
        cfg, native = conv.load_vae_checkpoint(source, preset=preset, subfolder=subfolder, dtype=dt, config=config)
        with torch.device("meta"):
            model = cls(cfg)
        load_into(model, native, what="VAE checkpoint")
        return model.to(device=dev, dtype=dt).eval()


def config_field_names() -> list[str]:
    return [f.name for f in fields(VAEConfig)]


__all__ = ["AutoencoderKL", "DiagonalGaussian", "VAEConfig", "VAE_PRESETS"]
