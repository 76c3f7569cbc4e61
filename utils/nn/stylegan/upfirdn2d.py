"""FIR resampling of image batches: upsample, pad, filter, downsample ("upfirdn"), in plain PyTorch.

`upfirdn2d(x, f, up, down, padding)` does, for every channel:

1. upsampling by `up`: up - 1 zeros after every sample, along x and y;
2. padding by `padding` = (x0, x1, y0, y1) zeros (negative values crop);
3. convolution with the FIR filter `f` over the valid region only (the output shrinks by the
   filter size minus one), with `gain` on the result;
4. downsampling by `down`: every down-th sample is kept.

The same four steps are scipy.signal.upfirdn's. A filter is a 2D tensor (fh, fw), a 1D tensor of taps
used separably along x then y, or None (a one-tap identity). `flip_filter=False` convolves (the
filter is mirrored before torch's correlation), True correlates; the StyleGAN filters are symmetric.

`upsample2d` / `downsample2d` / `filter2d` pick the paddings that keep the output a multiple (or the
same size) of the input and centre the filter, as the StyleGAN family needs.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

__all__ = ["setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d", "filter_size", "pair",
           "padding4"]


def pair(v: int | Sequence[int]) -> tuple[int, int]:
    """An (x, y) pair from one int or a pair of ints."""
    if isinstance(v, int):
        return v, v
    x, y = v
    return int(x), int(y)


def padding4(p: int | Sequence[int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from one int, an (x, y) pair, or four ints."""
    if isinstance(p, int):
        return p, p, p, p
    p = [int(v) for v in p]
    if len(p) == 2:
        return p[0], p[0], p[1], p[1]
    x0, x1, y0, y1 = p
    return x0, x1, y0, y1


def filter_size(f: Tensor | None) -> tuple[int, int]:
    """(width, height) of a filter; a separable 1D filter is as tall as it is wide."""
    if f is None:
        return 1, 1
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f: Sequence[float] | Tensor | float | None, normalize: bool = True, flip: bool = False,
                 gain: float = 1.0, separable: bool | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """A float32 FIR filter ready for `upfirdn2d`.

    A list of taps becomes their outer product (2D) unless it has 8 or more taps (or `separable` says
    so), when it stays 1D and is applied along x then y. `normalize` scales it to unit DC gain, `gain`
    multiplies the overall signal gain (a 2D filter by gain, each pass of a 1D one by sqrt(gain)).
    """
    t = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if t.ndim == 0:
        t = t[None]
    if t.ndim not in (1, 2) or t.numel() == 0:
        raise ValueError(f"a FIR filter is a 1D or 2D tensor of taps, got shape {tuple(t.shape)}")
    if separable is None:
        separable = t.ndim == 1 and t.numel() >= 8
    if t.ndim == 1 and not separable:
        t = torch.outer(t, t)
    if normalize:
        t = t / t.sum()
    if flip:
        t = t.flip(list(range(t.ndim)))
    t = t * gain ** (t.ndim / 2)
    return t.to(device) if device is not None else t


def _depthwise(x: Tensor, kernel: Tensor) -> Tensor:
    """Correlate every channel of x with the same 2D kernel (valid region)."""
    c = x.shape[1]
    return F.conv2d(x, kernel[None, None].expand(c, 1, *kernel.shape), groups=c)


def upfirdn2d(x: Tensor, f: Tensor | None, up: int | Sequence[int] = 1, down: int | Sequence[int] = 1,
              padding: int | Sequence[int] = 0, flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample, pad, FIR-filter and downsample a (B, C, H, W) batch (see the module docstring)."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d takes (B, C, H, W) images, got shape {tuple(x.shape)}")
    ux, uy = pair(up)
    dx, dy = pair(down)
    x0, x1, y0, y1 = padding4(padding)
    b, c, h, w = x.shape
    if ux > 1 or uy > 1:
        # zeros after every sample: view each sample as a 1x1 block, pad the block to up x up
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, ux - 1, 0, 0, 0, uy - 1]).reshape(b, c, h * uy, w * ux)
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    if f is not None:
        taps = (f * gain ** (f.ndim / 2)).to(x.dtype)
        if not flip_filter:
            taps = taps.flip(list(range(taps.ndim)))  # torch correlates; mirroring the taps convolves
        if taps.ndim == 2:
            x = _depthwise(x, taps)
        else:
            x = _depthwise(x, taps[None, :])
            x = _depthwise(x, taps[:, None])
    elif gain != 1:
        x = x * gain
    if dx > 1 or dy > 1:
        x = x[:, :, ::dy, ::dx]
    return x


def filter2d(x: Tensor, f: Tensor | None, padding: int | Sequence[int] = 0, flip_filter: bool = False,
             gain: float = 1.0) -> Tensor:
    """Filter with `f`, padded so the output keeps the input's size (`padding` adds to that)."""
    x0, x1, y0, y1 = padding4(padding)
    fw, fh = filter_size(f)
    pads = [x0 + fw // 2, x1 + (fw - 1) // 2, y0 + fh // 2, y1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pads, flip_filter=flip_filter, gain=gain)


def upsample2d(x: Tensor, f: Tensor | None, up: int | Sequence[int] = 2, padding: int | Sequence[int] = 0,
               flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Upsample by `up` with the interpolation filter `f`: the output is `up` times the input's size."""
    ux, uy = pair(up)
    x0, x1, y0, y1 = padding4(padding)
    fw, fh = filter_size(f)
    pads = [x0 + (fw + ux - 1) // 2, x1 + (fw - ux) // 2, y0 + (fh + uy - 1) // 2, y1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=up, padding=pads, flip_filter=flip_filter, gain=gain * ux * uy)


def downsample2d(x: Tensor, f: Tensor | None, down: int | Sequence[int] = 2, padding: int | Sequence[int] = 0,
                 flip_filter: bool = False, gain: float = 1.0) -> Tensor:
    """Low-pass with `f`, then keep every `down`-th sample: the output is the input's size over `down`."""
    dx, dy = pair(down)
    x0, x1, y0, y1 = padding4(padding)
    fw, fh = filter_size(f)
    pads = [x0 + (fw - dx + 1) // 2, x1 + (fw - dx) // 2, y0 + (fh - dy + 1) // 2, y1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=down, padding=pads, flip_filter=flip_filter, gain=gain)
