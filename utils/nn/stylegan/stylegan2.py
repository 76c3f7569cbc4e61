"""The StyleGAN2 synthesis network (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

From a learned 4x4 constant, one block per resolution (4, 8, ..., R): a modulated 3x3 convolution that
upsamples by 2 (FIR filter [1, 3, 3, 1]), a second one at the block's resolution, each followed by
per-pixel noise scaled by a learned strength, bias and leaky ReLU; a modulated 1x1 ToRGB (no
demodulation) whose output is added to the upsampled image of the block below ("skip"
architecture; "resnet" and "orig" are the paper's alternatives). Each convolution takes its own
w, so the network takes num_ws = 2 log2(R) - 2 styles.

Module and buffer names are NVlabs' (`b{res}.conv0`, `.conv1`, `.torgb`, `.const`, `noise_const`,
`noise_strength`, `resample_filter`), so the stylegan2-ada-pytorch / stylegan3 state dicts load as
they are.

Noise: `noise_mode` 'const' uses the stored `noise_const` images, 'random' draws fresh noise (from
`noise_generator` when given, on the CPU, for reproducible runs), 'none' adds none. `transform`
(3x3, the inverse transform of the output, as StyleGAN3's input takes it) translates the constant
input periodically by a Fourier shift, so the equivariance metrics can be measured on StyleGAN2
too (only translations: the 4x4 constant has no rotation).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from utils.nn.stylegan.bias_act import ACTIVATIONS, bias_act
from utils.nn.stylegan.conv import modulated_conv2d
from utils.nn.stylegan.layers import Conv2dLayer, FullyConnectedLayer
from utils.nn.stylegan.upfirdn2d import setup_filter, upsample2d

Tensor = torch.Tensor

__all__ = ["StyleGAN2Layer", "ToRGBLayer", "StyleGAN2Block", "StyleGAN2Synthesis", "fourier_shift"]


def fourier_shift(x: Tensor, shift_x: Tensor | float, shift_y: Tensor | float) -> Tensor:
    """x (..., H, W) seen as one period of a band-limited periodic signal, moved by (shift_x, shift_y)
    periods (fractions of its width and height)."""
    h, w = x.shape[-2:]
    spec = torch.fft.fft2(x.to(torch.float32))
    fy = torch.fft.fftfreq(h, device=x.device)[:, None] * h
    fx = torch.fft.fftfreq(w, device=x.device)[None, :] * w
    phase = torch.exp(-2j * math.pi * (fx * torch.as_tensor(shift_x) + fy * torch.as_tensor(shift_y)))
    return torch.fft.ifft2(spec * phase).real.to(x.dtype)


class StyleGAN2Layer(nn.Module):
    """Modulated convolution (optionally upsampling by 2), noise, bias, activation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: tuple[float, ...] = (1, 3, 3, 1), conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.w_dim = in_channels, out_channels, w_dim
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        if use_noise:
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def noise(self, x: Tensor, noise_mode: str, generator: torch.Generator | None) -> Tensor | None:
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        if noise_mode != "random":
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        shape = (x.shape[0], 1, self.resolution, self.resolution)
        if generator is not None:
            fresh = torch.randn(shape, generator=generator, device=generator.device).to(x.device)
        else:
            fresh = torch.randn(shape, device=x.device)
        return fresh * self.noise_strength

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused_modconv: bool = True, gain: float = 1.0,
                noise_generator: torch.Generator | None = None) -> Tensor:
        styles = self.affine(w)
        noise = self.noise(x, noise_mode, noise_generator)
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=self.up == 1,
                             fused_modconv=fused_modconv)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}, "
                f"up={self.up}")


class ToRGBLayer(nn.Module):
    """A modulated 1x1 convolution to image channels, without demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, w: Tensor, fused_modconv: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class StyleGAN2Block(nn.Module):
    """One resolution of the synthesis network: (const | conv0 up), conv1, ToRGB, image skip."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: tuple[float, ...] = (1, 3, 3, 1),
                 conv_clamp: float | None = 256, use_fp16: bool = False,
                 fused_modconv_default: bool | str = True, use_noise: bool = True):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        self.in_channels, self.w_dim, self.resolution = in_channels, w_dim, resolution
        self.img_channels, self.is_last, self.architecture = img_channels, is_last, architecture
        self.use_fp16, self.fused_modconv_default = use_fp16, fused_modconv_default
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.num_conv = self.num_torgb = 0
        layer = dict(w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp, use_noise=use_noise)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = StyleGAN2Layer(in_channels, out_channels, up=2, resample_filter=resample_filter, **layer)
            self.num_conv += 1
        self.conv1 = StyleGAN2Layer(out_channels, out_channels, **layer)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_mode: str = "random",
                noise_generator: torch.Generator | None = None, transform: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ws_iter = iter(ws.unbind(dim=1))
        fp16 = self.use_fp16 and not force_fp32 and ws.device.type == "cuda"
        dtype = torch.float16 if fp16 else torch.float32
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == "inference_only":
            fused_modconv = not self.training
        layer = dict(fused_modconv=fused_modconv, noise_mode=noise_mode, noise_generator=noise_generator)
        if self.in_channels == 0:
            const = self.const
            if transform is not None:
                const = fourier_shift(const, -transform[0, 2], -transform[1, 2])
            x = const.to(dtype)[None].repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, next(ws_iter), **layer)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(ws_iter), **layer)
            x = self.conv1(x, next(ws_iter), gain=math.sqrt(0.5), **layer)
            x = y + x
        else:
            x = x.to(dtype)
            x = self.conv0(x, next(ws_iter), **layer)
            x = self.conv1(x, next(ws_iter), **layer)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(ws_iter), fused_modconv=fused_modconv).to(torch.float32)
            img = y if img is None else img + y
        return x, img


class StyleGAN2Synthesis(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, img_channels, R, R), blocks `b4 ... b{R}`."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"the StyleGAN2 resolution is a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = StyleGAN2Block(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=res == img_resolution,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[StyleGAN2Block]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, ws: Tensor, noise_mode: str = "random", force_fp32: bool = False,
                fused_modconv: bool | None = None, noise_generator: torch.Generator | None = None,
                transform: Tensor | None = None, update_emas: bool = False) -> Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"the synthesis network takes ws of shape (batch, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(ws.shape)}")
        if transform is not None and not torch.allclose(transform[:2, :2].float().cpu(), torch.eye(2)):
            raise ValueError("StyleGAN2's constant input can be translated, not rotated or scaled")
        ws = ws.to(torch.float32)
        x = img = None
        start = 0
        for block in self.blocks():
            # a block reads its convolutions' styles and the next one's first (its ToRGB)
            block_ws = ws.narrow(1, start, block.num_conv + block.num_torgb)
            start += block.num_conv
            x, img = block(x, img, block_ws, force_fp32=force_fp32, fused_modconv=fused_modconv, noise_mode=noise_mode,
                           noise_generator=noise_generator, transform=transform)
        return img
