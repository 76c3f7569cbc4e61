"""The StyleGAN3 synthesis network (Karras et al. 2021, "Alias-Free Generative Adversarial Networks").

The signal is treated as continuous: every layer has a sampling rate s, a cutoff f_c and a
transition band (half-width f_h), and only frequencies below the cutoff may pass.

- `SynthesisInput`: Fourier features sin(2 pi (f . x + phi)) of random frequencies inside a disc of
  radius f_c,0, at positions x transformed by a per-sample rotation and translation predicted from w
  (and a user transform, the `transform` buffer or argument: translate or rotate the output), then a
  learned linear mix of the channels. Frequencies pushed past the band by the transform fade out.
- `AliasFreeLayer` (NVlabs' SynthesisLayer): a modulated convolution (3x3, or 1x1 in config R) of
  inputs scaled by the inverse of their tracked RMS (`magnitude_ema`), then the filtered leaky ReLU:
  upsample to 2x the higher of the in/out rates, nonlinearity, low-pass at the output cutoff,
  downsample. The last layers are critically sampled (cutoff = s/2); the last one is the 1x1 ToRGB.
- `layer_plan`: the geometric progression of cutoffs and stopbands from f_c,0 = 2 to R/2, the
  sampling rates (powers of two), sizes (with a margin of 10 pixels), channels and layer names
  `L{i}_{size}_{channels}` of the release, so its state dicts load as they are.

Config T uses separable Kaiser filters; config R 1x1 convolutions, twice the channels and radially
symmetric jinc downsampling filters (rotation equivariance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.stylegan.conv import modulated_conv2d_normalized
from utils.nn.stylegan.filtered_lrelu import design_lowpass_filter, filtered_lrelu
from utils.nn.stylegan.layers import FullyConnectedLayer

Tensor = torch.Tensor

__all__ = ["SynthesisInput", "AliasFreeLayer", "StyleGAN3Synthesis", "LayerPlan", "layer_plan"]


class SynthesisInput(nn.Module):
    """w (B, w_dim) -> Fourier features (B, channels, size, size); `transform` is the user's inverse
    transform of the output (3x3, homogeneous; identity by default)."""

    def __init__(self, w_dim: int, channels: int, size: int | tuple[int, int], sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels = w_dim, channels
        self.size = tuple(int(s) for s in np.broadcast_to(np.asarray(size), [2]))  # ints: torch.compile guards them
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        # frequencies spread inside the disc of radius `bandwidth` (a Gaussian pushed outwards)
        freqs = torch.randn(channels, 2)
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        phases = torch.rand(channels) - 0.5
        self.weight = nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", phases)

    def forward(self, w: Tensor, transform: Tensor | None = None) -> Tensor:
        b = w.shape[0]
        user = (self.transform if transform is None else transform.to(self.transform))[None]
        # the learned similarity: (cos, sin) of a rotation and a translation, per sample
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        eye = torch.eye(3, device=w.device)[None].repeat(b, 1, 1)
        rot = eye.clone()
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = eye.clone()
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ shift @ user  # rotate the output, then translate it, then the user's transform
        phases = self.phases[None] + (self.freqs[None] @ m[:, :2, 2:]).squeeze(2)
        freqs = self.freqs[None] @ m[:, :2, :2]
        # fade out what the transform pushed beyond the band, up to the Nyquist rate of the grid
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        sx, sy = int(self.size[0]), int(self.size[1])
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * sx / self.sampling_rate
        theta[1, 1] = 0.5 * sy / self.sampling_rate
        grid = F.affine_grid(theta[None], [1, 1, sy, sx], align_corners=False)  # (1, H, W, 2) positions
        x = (grid[:, :, :, None, :] @ freqs.permute(0, 2, 1)[:, None, None]).squeeze(3)  # (B, H, W, C)
        x = torch.sin((x + phases[:, None, None]) * (2 * math.pi)) * amplitudes[:, None, None]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={list(self.size)}, "
                f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}")


class AliasFreeLayer(nn.Module):
    """Modulated convolution and filtered leaky ReLU between two sampling rates (NVlabs' SynthesisLayer)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int, out_size: int,
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.use_fp16, self.in_channels, self.out_channels = use_fp16, in_channels, out_channels
        self.in_size = np.broadcast_to(np.asarray(in_size), [2])
        self.out_size = np.broadcast_to(np.asarray(out_size), [2])
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp, self.magnitude_ema_beta = conv_clamp, magnitude_ema_beta

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, self.conv_kernel, self.conv_kernel))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(np.rint(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(np.rint(self.tmp_sampling_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate or \
                out_sampling_rate * self.down_factor != self.tmp_sampling_rate:
            raise ValueError("the sampling rates of an alias-free layer must divide its intermediate rate")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, radial=self.down_radial))

        # Padding so that the output lands on the output grid: the wanted length before downsampling,
        # less the upsampled input, plus what the two filters eat; split with the samples at pixel centres.
        total = (self.out_size - 1) * self.down_factor + 1
        total = total - (self.in_size + self.conv_kernel - 1) * self.up_factor
        total = total + self.up_taps + self.down_taps - 2
        lo = (total + self.up_factor) // 2
        hi = total - lo
        self.padding = [int(lo[0]), int(hi[0]), int(lo[1]), int(hi[1])]

    def forward(self, x: Tensor, w: Tensor, force_fp32: bool = False, update_emas: bool = False,
                filter_impl: str = "auto") -> Tensor:
        if update_emas:
            current = x.detach().to(torch.float32).square().mean()
            self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        fp16 = self.use_fp16 and not force_fp32 and x.device.type == "cuda"
        dtype = torch.float16 if fp16 else torch.float32
        x = modulated_conv2d_normalized(x.to(dtype), self.weight, styles, demodulate=not self.is_torgb,
                                        padding=self.conv_kernel - 1, input_gain=input_gain)
        gain = 1 if self.is_torgb else math.sqrt(2)
        slope = 1 if self.is_torgb else 0.2
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), self.up_factor,
                              self.down_factor, self.padding, gain=gain, slope=slope, clamp=self.conv_clamp,
                              impl=filter_impl)

    def extra_repr(self) -> str:
        return (f"is_torgb={self.is_torgb}, critical={self.is_critically_sampled}, in={self.in_channels}x"
                f"{list(self.in_size)}@{self.in_sampling_rate:g}, out={self.out_channels}x{list(self.out_size)}@"
                f"{self.out_sampling_rate:g}, cutoff={self.in_cutoff:g}->{self.out_cutoff:g}")


@dataclass(frozen=True)
class LayerPlan:
    """The per-layer numbers of a StyleGAN3 synthesis network (index 0: the Fourier input)."""

    cutoffs: np.ndarray
    stopbands: np.ndarray
    sampling_rates: np.ndarray
    half_widths: np.ndarray
    sizes: np.ndarray
    channels: np.ndarray


def layer_plan(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
               num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2, first_stopband: float = 2 ** 2.1,
               last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10) -> LayerPlan:
    """Cutoffs and stopbands rise geometrically from the first layer's to R/2 (reached num_critical layers
    before the end); sampling rates are the powers of two above twice the stopband (at most R)."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return LayerPlan(cutoffs, stopbands, rates, half_widths, sizes, channels)


class StyleGAN3Synthesis(nn.Module):
    """ws (B, num_layers + 2, w_dim) -> images (B, img_channels, R, R): `input`, then `L0_...` to the ToRGB."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.num_layers, self.num_critical, self.margin_size = num_layers, num_critical, margin_size
        self.output_scale, self.num_fp16_res = output_scale, num_fp16_res
        plan = layer_plan(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                          first_cutoff, first_stopband, last_stopband_rel, margin_size)
        self.plan = plan
        self.input = SynthesisInput(w_dim, int(plan.channels[0]), int(plan.sizes[0]), plan.sampling_rates[0],
                                    plan.cutoffs[0])
        self.layer_names: list[str] = []
        for i in range(num_layers + 1):
            prev = max(i - 1, 0)
            layer = AliasFreeLayer(
                w_dim=w_dim, is_torgb=i == num_layers, is_critically_sampled=i >= num_layers - num_critical,
                use_fp16=bool(plan.sampling_rates[i] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(plan.channels[prev]), out_channels=int(plan.channels[i]),
                in_size=int(plan.sizes[prev]), out_size=int(plan.sizes[i]),
                in_sampling_rate=int(plan.sampling_rates[prev]), out_sampling_rate=int(plan.sampling_rates[i]),
                in_cutoff=plan.cutoffs[prev], out_cutoff=plan.cutoffs[i],
                in_half_width=plan.half_widths[prev], out_half_width=plan.half_widths[i], **layer_kwargs)
            name = f"L{i}_{layer.out_size[0]}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list[AliasFreeLayer]:
        return [getattr(self, n) for n in self.layer_names]

    def forward(self, ws: Tensor, transform: Tensor | None = None, force_fp32: bool = False,
                update_emas: bool = False, filter_impl: str = "auto", noise_mode: str = "const",
                noise_generator: torch.Generator | None = None) -> Tensor:
        """`noise_mode` and `noise_generator` are accepted for a common call with StyleGAN2 (StyleGAN3 has no
        noise inputs)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"the synthesis network takes ws of shape (batch, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(ws.shape)}")
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0], transform=transform)
        for layer, w in zip(self.layers(), ws[1:]):
            x = layer(x, w, force_fp32=force_fp32, update_emas=update_emas, filter_impl=filter_impl)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)
