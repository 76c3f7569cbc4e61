"""Convolutions of the StyleGAN family: convolution with FIR up/downsampling, and modulated convolution.

`conv2d_resample(x, w, f, up, down, padding)` is, by definition,

    upfirdn2d(x, f, up=up, padding=p, gain=up**2)  ->  conv2d(., w)  ->  upfirdn2d(., f, down=down)

with the paddings grown so that the filter is centred (`padding` is the convolution's own padding,
counted on the upsampled image). The faster forms below (a transposed convolution for up = 2, the
filter then a strided convolution for down = 2, the 1x1 cases) compute the same thing: convolution
and FIR filtering commute. `flip_weight=True` correlates with `w` (torch's conv2d), False convolves.

`modulated_conv2d` is StyleGAN2's weight (de)modulation (Karras et al. 2020, section 2.2): each
sample's weights are scaled by its style per input channel and, with demodulation, renormalised
to unit L2 norm per output channel. Fused, the whole batch is one grouped convolution; unfused,
the styles scale the activations instead (same result, a plain convolution).

`modulated_conv2d_normalized` is StyleGAN3's variant: weights and styles are first brought to
unit RMS (over the whole style batch, as the release does), and an input gain scales the input
channels.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from utils.nn.stylegan.upfirdn2d import filter_size, padding4, upfirdn2d

Tensor = torch.Tensor

__all__ = ["conv2d_resample", "conv2d_resample_reference", "modulated_conv2d", "modulated_conv2d_normalized"]


def _conv(x: Tensor, w: Tensor, stride: int = 1, padding: int | tuple[int, int] = 0, groups: int = 1,
          transpose: bool = False, flip_weight: bool = True) -> Tensor:
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _grown_padding(f: Tensor | None, up: int, down: int, padding: int | Sequence[int]) -> list[int]:
    """The convolution's padding plus what centres the up- and downsampling filters."""
    fw, fh = filter_size(f)
    x0, x1, y0, y1 = padding4(padding)
    if up > 1:
        x0, x1, y0, y1 = x0 + (fw + up - 1) // 2, x1 + (fw - up) // 2, y0 + (fh + up - 1) // 2, y1 + (fh - up) // 2
    if down > 1:
        x0, x1 = x0 + (fw - down + 1) // 2, x1 + (fw - down) // 2
        y0, y1 = y0 + (fh - down + 1) // 2, y1 + (fh - down) // 2
    return [x0, x1, y0, y1]


def conv2d_resample_reference(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1,
                              padding: int | Sequence[int] = 0, groups: int = 1, flip_weight: bool = True,
                              flip_filter: bool = False) -> Tensor:
    """The definition of `conv2d_resample`, step by step (slow for up > 1: the convolution runs on zeros)."""
    p = _grown_padding(f, up, down, padding)
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=p, gain=up ** 2, flip_filter=flip_filter)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None = None, up: int = 1, down: int = 1,
                    padding: int | Sequence[int] = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> Tensor:
    """2D convolution with optional FIR upsampling before it and downsampling after it (module docstring)."""
    out_c, in_per_group, kh, kw = w.shape
    x0, x1, y0, y1 = _grown_padding(f, up, down, padding)
    one_by_one = kh == 1 and kw == 1

    if one_by_one and down > 1 and up == 1:  # a 1x1 convolution commutes with the low-pass: filter first
        x = upfirdn2d(x, f, down=down, padding=[x0, x1, y0, y1], flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if one_by_one and up > 1 and down == 1:  # ... and with the interpolation: convolve at the low resolution
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[x0, x1, y0, y1], gain=up ** 2, flip_filter=flip_filter)
    if down > 1 and up == 1:  # low-pass at full resolution, then a strided convolution
        x = upfirdn2d(x, f, padding=[x0, x1, y0, y1], flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        # A transposed convolution inserts the zeros and convolves in one op (it convolves where conv2d
        # correlates, hence the flipped flag); what is left of the padding goes to the filter.
        if groups == 1:
            wt = w.transpose(0, 1)
        else:
            wt = w.reshape(groups, out_c // groups, in_per_group, kh, kw).transpose(1, 2)
            wt = wt.reshape(groups * in_per_group, out_c // groups, kh, kw)
        x0, x1, y0, y1 = x0 - (kw - 1), x1 - (kw - up), y0 - (kh - 1), y1 - (kh - up)
        crop_x, crop_y = max(min(-x0, -x1), 0), max(min(-y0, -y1), 0)
        x = _conv(x, wt, stride=up, padding=(crop_y, crop_x), groups=groups, transpose=True,
                  flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[x0 + crop_x, x1 + crop_x, y0 + crop_y, y1 + crop_y], gain=up ** 2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if x0 == x1 and y0 == y1 and x0 >= 0 and y0 >= 0:  # a plain padded convolution
        return _conv(x, w, padding=(y0, x0), groups=groups, flip_weight=flip_weight)
    return conv2d_resample_reference(x, w, f, up, down, padding, groups, flip_weight, flip_filter)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, noise: Tensor | None = None, up: int = 1,
                     down: int = 1, padding: int = 0, resample_filter: Tensor | None = None,
                     demodulate: bool = True, flip_weight: bool = True, fused_modconv: bool = True) -> Tensor:
    """StyleGAN2's modulated convolution of x (B, I, H, W) with weight (O, I, k, k) and styles (B, I);
    `noise` (broadcast to the output) is added after demodulation."""
    b = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Keep fp16 from overflowing: scale weights and styles to max-abs 1 first (demodulation undoes it).
        weight = weight * (1 / (in_c * kh * kw) ** 0.5 / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight[None] * styles.reshape(b, 1, in_c, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(b, in_c, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), resample_filter, up, down, padding, flip_weight=flip_weight)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(b, out_c, 1, 1)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x
    if demodulate:
        w = w * dcoefs.reshape(b, out_c, 1, 1, 1)
    x = x.reshape(1, b * in_c, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(b * out_c, in_c, kh, kw).to(x.dtype), resample_filter, up, down, padding,
                        groups=b, flip_weight=flip_weight)
    x = x.reshape(b, out_c, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def modulated_conv2d_normalized(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True,
                                padding: int = 0, input_gain: Tensor | None = None) -> Tensor:
    """StyleGAN3's modulated convolution (no resampling: the filtered nonlinearity resamples)."""
    b = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    if demodulate:
        weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight[None] * styles.reshape(b, 1, in_c, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(b, out_c, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(b, in_c).reshape(b, 1, in_c, 1, 1)
    x = x.reshape(1, b * in_c, *x.shape[2:])
    x = F.conv2d(x, w.reshape(b * out_c, in_c, kh, kw).to(x.dtype), padding=padding, groups=b)
    return x.reshape(b, out_c, *x.shape[2:])
