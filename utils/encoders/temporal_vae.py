"""The KL autoencoder with a temporal decoder: SVD's VAE (diffusers' `AutoencoderKLTemporalDecoder`).

Encoding is the image KL VAE's (the shared conv trunk of `utils.nn.conv_autoencoder` and a 1x1
`quant_conv` to the moments): every frame is encoded on its own. Decoding adds time: each decoder
ResNet block is followed by a temporal ResNet block over the frames (3-D convs, kernel (3, 1, 1)) and
a learned mix (`mix_factor`, alpha = sigmoid(mix_factor) on the temporal branch), and `conv_out` is
followed by a 3-D conv over time (`conv_out.time_mix_conv`). So decoded frames depend on their
neighbours; `decode_chunk_size` frames are decoded together (the rest of the video is not seen by
a chunk: fewer frames per chunk need less memory and give less temporal smoothing).

Parameter names are those of the official release (generative-models' `VideoDecoder`):

    encoder.*, quant_conv.*                                   as the image VAE (ldm names)
    decoder.{mid.block_1,mid.block_2,up.I.block.J}.{norm1,conv1,norm2,conv2,nin_shortcut}
    decoder.<same blocks>.time_stack.{in_layers.0,in_layers.2,out_layers.0,out_layers.3}
    decoder.<same blocks>.mix_factor
    decoder.mid.attn_1.*, decoder.up.I.upsample.conv, decoder.norm_out, decoder.conv_in
    decoder.conv_out (2-D), decoder.conv_out.time_mix_conv (3-D)

`utils.encoders.temporal_vae_convert` maps the diffusers layout onto these names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import nn

from utils.encoders.vae import DiagonalGaussian, upcast_fp16
from utils.errors import UserError, did_you_mean
from utils.nn.conv_autoencoder import AttnBlock, Encoder, ResnetBlock, TrunkConfig, Upsample, group_norm
from utils.nn.temporal import TemporalResBlock, blend_branches, mix_alpha, temporal_conv3d, to_frames, to_volume


@dataclass(frozen=True)
class TemporalVAEConfig:
    """Sizes of an AutoencoderKLTemporalDecoder and how its latents are normalised."""

    in_channels: int = 3
    """Image channels."""
    out_channels: int = 3
    """Channels of the decoded frames."""
    base_channels: int = 128
    """Width of the full-resolution level."""
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    """Level widths as multiples of base_channels; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """ResNet blocks per encoder level (the decoder has one more)."""
    latent_channels: int = 4
    """Channels of the latent."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights: 32 in the release)."""
    video_kernel_t: int = 3
    """Temporal kernel of the decoder's 3-D convs (`video_kernel_size: [3, 1, 1]`)."""
    scaling_factor: float = 0.18215
    """Normalised latents are z * scaling_factor (not stored in the weights; SVD: SD 2.1's 0.18215)."""
    force_upcast: bool = True
    """Decode in float32 even when the weights are float16 (as diffusers' SVD VAE config asks)."""

    @property
    def trunk(self) -> TrunkConfig:
        return TrunkConfig(in_channels=self.in_channels, out_channels=self.out_channels,
                           base_channels=self.base_channels, channel_mult=self.channel_mult,
                           num_res_blocks=self.num_res_blocks, z_channels=self.latent_channels, double_z=True,
                           norm_groups=self.norm_groups)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)

    @classmethod
    def preset(cls, name: str) -> "TemporalVAEConfig":
        if name not in TEMPORAL_VAE_PRESETS:
            raise UserError(f"unknown temporal VAE preset '{name}': {did_you_mean(name, TEMPORAL_VAE_PRESETS)}")
        return TEMPORAL_VAE_PRESETS[name]

    def with_(self, **changes) -> "TemporalVAEConfig":
        return replace(self, **changes)


TEMPORAL_VAE_PRESETS: dict[str, TemporalVAEConfig] = {
    "svd": TemporalVAEConfig(),
    # Tests: two levels (downscale 2) of 32 and 64 channels; two blocks per level keep the release's mid block.
    "tiny": TemporalVAEConfig(base_channels=32, channel_mult=(1, 2)),
}


# -- the temporal decoder -------------------------------------------------------------------------


class VideoResnetBlock(ResnetBlock):
    """The image decoder's ResNet block on every frame, a temporal ResNet block over the frames, and a
    learned mix: sigmoid(mix_factor) * temporal + (1 - sigmoid(mix_factor)) * spatial."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, kernel_t: int = 3, dropout: float = 0.0,
                 alpha: float = 0.0):
        super().__init__(in_channels, out_channels, groups, dropout)
        self.time_stack = TemporalResBlock(out_channels, None, out_channels, kernel_t, groups, eps=1e-5)
        self.mix_factor = nn.Parameter(torch.tensor([float(alpha)]))

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        spatial = super().forward(x)
        temporal = to_frames(self.time_stack(to_volume(spatial, num_frames)))
        return blend_branches(spatial, temporal, mix_alpha(self.mix_factor, "learned"), alpha_weighs="temporal")


class FrameConv2d(nn.Conv2d):
    """A 3x3 conv on every frame followed by a 3-D conv over time (`time_mix_conv`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_t: int = 3):
        super().__init__(in_channels, out_channels, 3, padding=1)
        self.time_mix_conv = temporal_conv3d(out_channels, out_channels, kernel_t)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        return to_frames(self.time_mix_conv(to_volume(super().forward(x), num_frames)))


class VideoMidBlock(nn.Module):
    """Video ResNet block, spatial self-attention, video ResNet block at the lowest resolution."""

    def __init__(self, channels: int, groups: int, kernel_t: int):
        super().__init__()
        self.block_1 = VideoResnetBlock(channels, channels, groups, kernel_t)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = VideoResnetBlock(channels, channels, groups, kernel_t)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x, num_frames)), num_frames)


class VideoLevel(nn.Module):
    """One decoder level: video ResNet blocks (`block`) and the upsampler to the next level (when there is one)."""

    def __init__(self, blocks: list[VideoResnetBlock]):
        super().__init__()
        self.block = nn.ModuleList(blocks)


class TemporalDecoder(nn.Module):
    """(B*T, z_channels, h, w) latents of T-frame videos -> (B*T, out_channels, h*f, w*f) frames."""

    def __init__(self, cfg: TemporalVAEConfig):
        super().__init__()
        trunk = cfg.trunk
        trunk.check()
        chans, groups, kt = cfg.level_channels, cfg.norm_groups, cfg.video_kernel_t
        prev = chans[-1]
        self.conv_in = nn.Conv2d(cfg.latent_channels, prev, 3, padding=1)
        self.mid = VideoMidBlock(prev, groups, kt)
        levels: list[VideoLevel] = []
        for i in reversed(range(len(chans))):
            level = VideoLevel([VideoResnetBlock(prev if j == 0 else chans[i], chans[i], groups, kt)
                                for j in range(cfg.num_res_blocks + 1)])
            if i != 0:
                level.upsample = Upsample(chans[i])
            levels.insert(0, level)
            prev = chans[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(prev, groups)
        self.conv_out = FrameConv2d(prev, cfg.out_channels, kt)

    def forward(self, z: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.mid(self.conv_in(z), num_frames)
        for level in reversed(self.up):
            for block in level.block:
                h = block(h, num_frames)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        h = torch.nn.functional.silu(self.norm_out(h), inplace=not torch.is_grad_enabled())
        return self.conv_out(h, num_frames)


# -- the autoencoder ------------------------------------------------------------------------------


class AutoencoderKLTemporalDecoder(nn.Module):
    """Per-frame KL encoder + temporal decoder; see the module docstring."""

    def __init__(self, config: TemporalVAEConfig | str = "svd"):
        super().__init__()
        cfg = TemporalVAEConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        self.encoder = Encoder(cfg.trunk)
        two = 2 * cfg.latent_channels
        self.quant_conv = nn.Conv2d(two, two, 1)
        self.decoder = TemporalDecoder(cfg)

    @property
    def dtype(self) -> torch.dtype:
        return self.quant_conv.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.quant_conv.weight.device

    # -- latents --------------------------------------------------------------------------------

    def scale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.config.scaling_factor

    def unscale_latents(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.config.scaling_factor

    # -- encode ---------------------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        """Frames in [-1, 1], (N, 3, H, W) -> the posterior of each frame's latent."""
        d = self.config.downscale
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise UserError(f"the VAE encodes (frames, {self.config.in_channels}, H, W) images, got shape "
                            f"{tuple(x.shape)}")
        if x.shape[-1] % d or x.shape[-2] % d:
            raise UserError(f"image size {x.shape[-2]}x{x.shape[-1]} is not a multiple of {d}: resize or crop it")
        return DiagonalGaussian(self.quant_conv(self.encoder(x.to(self.dtype))).contiguous())

    # -- decode ---------------------------------------------------------------------------------

    def decode(self, z: torch.Tensor, num_frames: int, decode_chunk_size: int | None = None,
               upcast: bool | None = None, on_chunk: Callable[[int], None] | None = None) -> torch.Tensor:
        """Raw latents of B videos of `num_frames` frames, (B*T, C, h, w) -> frames (B*T, 3, H, W).

        Each video is decoded `decode_chunk_size` frames at a time (default: all at once); a chunk's
        temporal layers see only its own frames. `upcast`: decode fp16 weights in float32 (default:
        the config's `force_upcast`). `on_chunk(n)` is called after each chunk of n frames.
        """
        if z.ndim != 4 or z.shape[1] != self.config.latent_channels:
            raise UserError(f"the VAE decodes (frames, {self.config.latent_channels}, h, w) latents, got shape "
                            f"{tuple(z.shape)}")
        if num_frames < 1 or z.shape[0] % num_frames:
            raise UserError(f"{z.shape[0]} latent frames do not split into videos of {num_frames} frames")
        chunk = num_frames if decode_chunk_size is None else int(decode_chunk_size)
        if chunk < 1:
            raise UserError(f"decode_chunk_size must be at least 1, got {decode_chunk_size}")
        upcast = self.config.force_upcast if upcast is None else upcast
        out = []
        with self._maybe_upcast(upcast) as dtype:
            for video in z.split(num_frames):
                for part in video.split(chunk):
                    out.append(self.decoder(part.to(dtype), part.shape[0]).to(z.dtype))
                    if on_chunk is not None:
                        on_chunk(part.shape[0])
        return torch.cat(out)

    def _maybe_upcast(self, upcast: bool):
        return upcast_fp16(self, upcast)

    # -- convenience for pipelines -----------------------------------------------------------------

    def encode_latents(self, frames: torch.Tensor, generator: torch.Generator | None = None,
                       sample: bool = True) -> torch.Tensor:
        """Frames in [-1, 1] -> normalised latents (sampled with `generator`, or the mean)."""
        dist = self.encode(frames)
        return self.scale_latents(dist.sample(generator) if sample else dist.mode())

    def decode_latents(self, latents: torch.Tensor, decode_chunk_size: int | None = None,
                       on_chunk: Callable[[int], None] | None = None) -> torch.Tensor:
        """Normalised latents of videos (B, T, C, h, w) -> frames (B, T, 3, H, W) in [-1, 1] (clamped)."""
        if latents.ndim != 5:
            raise UserError(f"decode_latents takes videos (batch, frames, channels, h, w), got {tuple(latents.shape)}")
        b, t = latents.shape[:2]
        frames = self.decode(self.unscale_latents(latents.flatten(0, 1)), t, decode_chunk_size, on_chunk=on_chunk)
        return frames.reshape(b, t, *frames.shape[1:]).clamp(-1.0, 1.0)

    # -- loading --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        subfolder: str | None = None, config: TemporalVAEConfig | None = None
                        ) -> "AutoencoderKLTemporalDecoder":
        """Load from a diffusers folder (vae/ or its parent), an official SVD single file, or a bare file
        in the native or diffusers layout; no source: random weights at `preset`. `config`: the explicit
        config of a single file of sizes no preset has (checked against its shapes)."""
        from utils.encoders import temporal_vae_convert as conv
        from utils.torch_utils import resolve_device, resolve_dtype
        from utils.weights import load_into

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if source is None:
            return cls(TemporalVAEConfig.preset(preset or "svd")).to(device=dev, dtype=dt).eval()
        cfg, native = conv.load_temporal_vae(source, preset=preset, subfolder=subfolder, dtype=dt, config=config)
        with torch.device("meta"):
            model = cls(cfg)
        load_into(model, native, what="temporal VAE checkpoint")
        return model.to(device=dev, dtype=dt).eval()


__all__ = ["AutoencoderKLTemporalDecoder", "TEMPORAL_VAE_PRESETS", "TemporalDecoder", "TemporalVAEConfig",
           "VideoResnetBlock"]
