"""OpenAI's consistency decoder: a pixel-space diffusion UNet that decodes SD-family 4-channel latents.

DALL-E 3 (Betker et al. 2023, "Improving Image Generation with Better Captions", appendix) decodes its
latents with a diffusion decoder distilled into a consistency model; OpenAI released that decoder for
the Stable Diffusion 1.x/2.x VAE latent space (https://github.com/openai/consistencydecoder). It takes
the place of the KL VAE's decoder: the latent, normalised per channel and upsampled (nearest) to the
image size, is concatenated to a noisy image, and the UNet predicts the clean image in one or two
consistency steps (timesteps 1008, then 512, of a 1024-step cosine schedule; sigma_data 0.5).

The network holds no attention: a ResNet UNet with scale-shift timestep conditioning, resampling
inside ResNet blocks (average pooling down, nearest up) and a learned timestep embedding. Parameter
names are those of OpenAI's release (as diffusers' conversion script names them):

    embed_image.f                    conv_in on (noisy image, upsampled latent)
    embed_time.emb / .f_1 / .f_2     nn.Embedding(1024, C) then a two-layer MLP
    down.L.i                         ResBlock: f_t (time), gn_1, f_1, gn_2, f_2, f_s (channel change)
    down.L.<last>                    the resampling ResBlock closing a level (no f_s)
    mid.0 / mid.1                    ResBlocks
    up.L.i, up.L.<last>              ResBlocks on (x, skip) and the upsampling ResBlock (level > 0)
    output.gn / output.f             GroupNorm, SiLU, conv_out (6 channels: the first 3 are the image)

`utils.encoders.consistency_decoder_convert` maps diffusers' `ConsistencyDecoderVAE` (decoder_unet.*)
onto these names. `decode_latents(latents, generator, steps)` takes the normalised latents the
diffusion pipelines hold (z * 0.18215) and returns pixels in [-1, 1].
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import UserError, did_you_mean
from utils.torch_utils import Generators, randn


@dataclass(frozen=True)
class ConsistencyDecoderConfig:
    """Sizes of the consistency decoder and the latent normalisation it was trained with."""

    latent_channels: int = 4
    """Channels of the latent it decodes (the SD VAE's 4)."""
    image_channels: int = 3
    """Channels of the image it predicts."""
    out_channels: int = 6
    """Channels the UNet outputs (the release predicts 6; the first 3 are the image)."""
    block_channels: tuple[int, ...] = (320, 640, 1024, 1024)
    """Width of each level; each level but the last halves the resolution."""
    num_res_blocks: int = 3
    """ResBlocks per down level (the up levels have one more)."""
    norm_groups: int = 32
    """GroupNorm groups (not stored in the weights)."""
    num_train_timesteps: int = 1024
    """Rows of the learned timestep embedding, and steps of the cosine schedule."""
    distilled_steps: int = 64
    """The consistency distillation grid: timesteps are rounded up to multiples of 1024 / 64."""
    sigma_data: float = 0.5
    """Data standard deviation of the consistency parameterisation (c_skip, c_out, c_in)."""
    latent_upscale: int = 8
    """Pixels per latent along each side (the VAE's downscale)."""
    scaling_factor: float = 0.18215
    """The VAE latent scaling the normalised latents carry (SD 1.x/2.x)."""
    latent_means: tuple[float, ...] = (0.38862467, 0.02253063, 0.07381133, -0.0171294)
    """Per-channel means of the scaled latents, removed before decoding (the release's constants)."""
    latent_stds: tuple[float, ...] = (0.9654121, 1.0440036, 0.76147926, 0.77022034)
    """Per-channel standard deviations of the scaled latents."""

    @property
    def in_channels(self) -> int:
        return self.image_channels + self.latent_channels

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_channels[0]

    @classmethod
    def preset(cls, name: str) -> "ConsistencyDecoderConfig":
        if name not in CONSISTENCY_DECODER_PRESETS:
            raise UserError(f"unknown consistency decoder preset '{name}': "
                            f"{did_you_mean(name, CONSISTENCY_DECODER_PRESETS)}")
        return CONSISTENCY_DECODER_PRESETS[name]

    def with_(self, **changes) -> "ConsistencyDecoderConfig":
        return replace(self, **changes)


CONSISTENCY_DECODER_PRESETS: dict[str, ConsistencyDecoderConfig] = {
    # openai/consistency-decoder (decoder.pt of openai/consistencydecoder): 320-1024 wide, 3 blocks a level.
    "openai": ConsistencyDecoderConfig(),
    # Tests: two levels of 32/64 channels over the tiny VAE (downscale 2).
    "tiny": ConsistencyDecoderConfig(block_channels=(32, 64), num_res_blocks=1, norm_groups=8, latent_upscale=2),
}


# -- layers ---------------------------------------------------------------------------------------


class ImageEmbedding(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.f = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(x)


class TimeEmbedding(nn.Module):
    """Learned per-timestep vectors, then Linear-SiLU-Linear."""

    def __init__(self, num_timesteps: int, dim: int, out_dim: int):
        super().__init__()
        self.emb = nn.Embedding(num_timesteps, dim)
        self.f_1 = nn.Linear(dim, out_dim)
        self.f_2 = nn.Linear(out_dim, out_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.f_2(F.silu(self.f_1(self.emb(t))))


class ImageUnembedding(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.gn = nn.GroupNorm(groups, in_channels)
        self.f = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.f(F.silu(self.gn(x)))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-(resample)-conv, scale-shift by the time embedding, SiLU-conv, residual.

    `resample` 'down' (2x2 average pooling) or 'up' (nearest, x2) applies to both branches, as the
    release's Downsample / Upsample blocks do; those keep the width and have no skip conv.
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, groups: int, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.f_t = nn.Linear(emb_dim, 2 * out_channels)
        self.gn_1 = nn.GroupNorm(groups, in_channels)
        self.f_1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.gn_2 = nn.GroupNorm(groups, out_channels)
        self.f_2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.f_s = nn.Conv2d(in_channels, out_channels, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.f_t(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self._resample(F.silu(self.gn_1(x)))
        x = self._resample(x)
        h = self.gn_2(self.f_1(h)) * (1 + scale) + shift
        h = self.f_2(F.silu(h))
        skip = self.f_s(x) if hasattr(self, "f_s") else x
        return skip + h


class ConsistencyDecoderUNet(nn.Module):
    """The decoder network: (noisy image scaled by c_in, upsampled latent) and a timestep -> 6 channels."""

    def __init__(self, config: ConsistencyDecoderConfig | str = "openai"):
        super().__init__()
        cfg = ConsistencyDecoderConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        widths, n, groups, ted = cfg.block_channels, cfg.num_res_blocks, cfg.norm_groups, cfg.time_embed_dim
        self.embed_image = ImageEmbedding(cfg.in_channels, widths[0])
        self.embed_time = TimeEmbedding(cfg.num_train_timesteps, widths[0], ted)
        skips, ch = [widths[0]], widths[0]
        self.down = nn.ModuleList()
        for level, width in enumerate(widths):
            blocks = nn.ModuleList()
            for _ in range(n):
                blocks.append(ResBlock(ch, width, ted, groups))
                ch = width
                skips.append(ch)
            if level != len(widths) - 1:
                blocks.append(ResBlock(ch, ch, ted, groups, resample="down"))
                skips.append(ch)
            self.down.append(blocks)
        self.mid = nn.ModuleList([ResBlock(ch, ch, ted, groups), ResBlock(ch, ch, ted, groups)])
        ups: list[nn.ModuleList] = []
        for level in reversed(range(len(widths))):
            blocks = nn.ModuleList()
            for _ in range(n + 1):
                blocks.append(ResBlock(ch + skips.pop(), widths[level], ted, groups))
                ch = widths[level]
            if level:
                blocks.append(ResBlock(ch, ch, ted, groups, resample="up"))
            ups.append(blocks)
        self.up = nn.ModuleList(reversed(ups))  # up[L] is level L, as in the release
        self.output = ImageUnembedding(ch, cfg.out_channels, groups)

    @property
    def dtype(self) -> torch.dtype:
        return self.output.f.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.output.f.weight.device

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x: (B, image + latent channels, H, W); t: (B,) integer timesteps."""
        emb = self.embed_time(t.long().to(x.device))
        h = self.embed_image(x)
        skips = [h]
        for blocks in self.down:
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
        for block in self.mid:
            h = block(h, emb)
        for blocks in reversed(self.up):
            for block in blocks:
                if block.resample is None:
                    h = torch.cat([h, skips.pop()], dim=1)
                h = block(h, emb)
        return self.output(h)


# -- the consistency schedule -------------------------------------------------------------------------


def _cosine_alphas_cumprod(n: int) -> torch.Tensor:
    """Nichol & Dhariwal's cosine schedule over n steps (betas capped at 0.999), float32."""
    def bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = torch.tensor([min(1 - bar((i + 1) / n) / bar(i / n), 0.999) for i in range(n)], dtype=torch.float32)
    return torch.cumprod(1.0 - betas, dim=0)


def consistency_timesteps(steps: int, num_train_timesteps: int = 1024, distilled_steps: int = 64) -> list[int]:
    """The release's schedule fractions (1.0 for one step; 1.0, 0.5 for two) on the distilled grid:
    t rounded up to the next multiple of T / distilled_steps, the top one stepping back (1008, 512)."""
    fractions = {1: (1.0,), 2: (1.0, 0.5)}
    if steps not in fractions:
        raise UserError(f"the consistency decoder takes 1 or 2 steps (its distilled schedule), got {steps}")
    space = num_train_timesteps // distilled_steps
    out = []
    for s in fractions[steps]:
        t = int((num_train_timesteps - 1) * s)
        rounded = (t // space + 1) * space
        out.append(rounded - space if rounded >= num_train_timesteps else rounded)
    return out


class ConsistencyDecoder(nn.Module):
    """The consistency decoder and its sampler: normalised 4-channel latents -> pixels in [-1, 1]."""

    def __init__(self, config: ConsistencyDecoderConfig | str = "openai", unet: ConsistencyDecoderUNet | None = None):
        super().__init__()
        cfg = ConsistencyDecoderConfig.preset(config) if isinstance(config, str) else config
        self.config = cfg
        self.unet = unet if unet is not None else ConsistencyDecoderUNet(cfg)
        acp = _cosine_alphas_cumprod(cfg.num_train_timesteps)
        sigmas = torch.sqrt(1.0 / acp - 1)
        sd = cfg.sigma_data
        recip = torch.sqrt(1.0 / acp)
        # the consistency parameterisation (Song et al. 2023) in DDPM time, per training step
        self.register_buffer("sqrt_acp", acp.sqrt(), persistent=False)
        self.register_buffer("sqrt_one_minus_acp", (1.0 - acp).sqrt(), persistent=False)
        self.register_buffer("c_skip", recip * sd ** 2 / (sigmas ** 2 + sd ** 2), persistent=False)
        self.register_buffer("c_out", sigmas * sd / (sigmas ** 2 + sd ** 2) ** 0.5, persistent=False)
        self.register_buffer("c_in", recip / (sigmas ** 2 + sd ** 2) ** 0.5, persistent=False)
        self.register_buffer("means", torch.tensor(cfg.latent_means)[None, :, None, None], persistent=False)
        self.register_buffer("stds", torch.tensor(cfg.latent_stds)[None, :, None, None], persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def downscale(self) -> int:
        return self.config.latent_upscale

    def features(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (z * scaling_factor) -> the per-channel standardised, upsampled condition."""
        if latents.ndim != 4 or latents.shape[1] != self.config.latent_channels:
            raise UserError(f"the consistency decoder decodes {self.config.latent_channels}-channel latents "
                            f"(SD 1.x/2.x, SDXL), got a tensor of shape {tuple(latents.shape)}: use --decoder vae "
                            "for 16-channel models (SD3, FLUX)")
        z = (latents.to(self.means.dtype) - self.means) / self.stds
        return F.interpolate(z, scale_factor=self.config.latent_upscale, mode="nearest")

    @torch.inference_mode()
    def decode_latents(self, latents: torch.Tensor, generator: Generators = None, steps: int = 2,
                       clip_denoised: bool = True) -> torch.Tensor:
        """Decode normalised latents (B, 4, h, w) to pixels (B, 3, 8h, 8w) in about [-1, 1].

        `generator`: one for the batch or one per image (the initial and the re-noising draws of image i
        come from generator i). `clip_denoised`: clip each step's x0 estimate to [-1, 1] as OpenAI's
        sampler does (diffusers' port does not; the parity tests turn it off).
        """
        dt, dev = self.dtype, self.device
        feats = self.features(latents.to(dev)).to(dt)
        b, _, h, w = feats.shape
        shape = (b, self.config.image_channels, h, w)
        ts = consistency_timesteps(steps, self.config.num_train_timesteps, self.config.distilled_steps)
        x = self.sqrt_one_minus_acp[ts[0]].to(dt) * randn(shape, generator, dev, dt)
        for i, t in enumerate(ts):
            tt = torch.full((b,), t, device=dev, dtype=torch.long)
            out = self.unet(torch.cat([x * self.c_in[t].to(dt), feats], dim=1), tt)[:, :self.config.image_channels]
            x0 = self.c_out[t].to(dt) * out + self.c_skip[t].to(dt) * x
            if clip_denoised:
                x0 = x0.clamp(-1, 1)
            if i == len(ts) - 1:
                x = x0
            else:
                nxt = ts[i + 1]
                x = self.sqrt_acp[nxt].to(dt) * x0 + self.sqrt_one_minus_acp[nxt].to(dt) * randn(shape, generator, dev, dt)
        return x

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                        config: ConsistencyDecoderConfig | None = None) -> "ConsistencyDecoder":
        """Load from a diffusers `ConsistencyDecoderVAE` folder or file (openai/consistency-decoder), or a
        native file (OpenAI's names); no source and `preset='tiny'` builds random weights."""
        from utils.encoders import consistency_decoder_convert as cdc
        from utils.torch_utils import local_seed, resolve_device, resolve_dtype

        dev = resolve_device(device)
        dt = resolve_dtype(dtype, dev)
        if source is None:
            if preset is None:
                raise UserError("ConsistencyDecoder.from_pretrained needs a source (openai/consistency-decoder) or "
                                "preset='tiny'")
            with local_seed(0):
                return cls(config or ConsistencyDecoderConfig.preset(preset)).eval().to(dev, dt)
        return cdc.load_consistency_decoder(source, config=config, preset=preset).eval().to(dev, dt)


__all__ = ["CONSISTENCY_DECODER_PRESETS", "ConsistencyDecoder", "ConsistencyDecoderConfig",
           "ConsistencyDecoderUNet", "consistency_timesteps"]
