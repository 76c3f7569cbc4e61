"""The alias-free nonlinearity of StyleGAN3 (Karras et al. 2021, section 3.2) and its low-pass filters.

A pointwise nonlinearity creates frequencies above what the grid can hold; applied at a higher
sampling rate between an ideal-ish upsampling and downsampling, the new frequencies are removed
before they alias. `filtered_lrelu` is: bias, upsample by `up` with the filter `fu` (gain up^2),
leaky ReLU times `gain`, clamp, low-pass with `fd` and keep every `down`-th sample.

`design_lowpass_filter` makes the filters: a Kaiser-windowed sinc (scipy.signal.firwin) for the
separable case, or a radially symmetric jinc with a separable Kaiser window for the rotation-
equivariant config R.

`filtered_lrelu_fast` computes the same result with the upsampling done polyphase (a transposed
convolution per axis instead of a convolution over inserted zeros), about `up` times less work per
axis; `filtered_lrelu` picks it for separable filters.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.nn.stylegan.bias_act import bias_act
from utils.nn.stylegan.upfirdn2d import filter_size, padding4, upfirdn2d

Tensor = torch.Tensor

__all__ = ["design_lowpass_filter", "filtered_lrelu", "filtered_lrelu_reference", "filtered_lrelu_fast"]


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Tensor | None:
    """A low-pass FIR filter of `numtaps` taps with cutoff `cutoff` and transition band `width` at
    sampling rate `fs`; None for one tap (identity). Separable (1D taps) unless `radial`."""
    if numtaps < 1:
        raise ValueError("a filter has at least one tap")
    if numtaps == 1:
        return None
    import scipy.signal

    if not radial:
        taps = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(taps, dtype=torch.float32)
    # The 2D ideal low-pass of a disc of radius `cutoff` is a jinc: J1(2 pi f r) / (pi r).
    pos = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(pos, pos)), dtype=torch.float64)
    jinc = torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = torch.as_tensor(np.kaiser(numtaps, beta), dtype=torch.float64)
    taps = jinc * torch.outer(window, window)
    return (taps / taps.sum()).to(torch.float32)


def _check(x: Tensor, fu: Tensor | None, fd: Tensor | None, up: int, down: int,
           padding: Sequence[int]) -> tuple[int, int]:
    x0, x1, y0, y1 = padding
    fuw, fuh = filter_size(fu)
    fdw, fdh = filter_size(fd)
    h, w = x.shape[2], x.shape[3]
    out_w = (w * up + x0 + x1 - (fuw - 1) - (fdw - 1) + (down - 1)) // down
    out_h = (h * up + y0 + y1 - (fuh - 1) - (fdh - 1) + (down - 1)) // down
    return out_h, out_w


def filtered_lrelu_reference(x: Tensor, fu: Tensor | None = None, fd: Tensor | None = None, b: Tensor | None = None,
                             up: int = 1, down: int = 1, padding: int | Sequence[int] = 0, gain: float = math.sqrt(2),
                             slope: float = 0.2, clamp: float | None = None, flip_filter: bool = False) -> Tensor:
    """The definition, op by op (see the module docstring); `padding` is counted on the upsampled image."""
    p = padding4(padding)
    x = bias_act(x, b)
    x = upfirdn2d(x, fu, up=up, padding=p, gain=up ** 2, flip_filter=flip_filter)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    return upfirdn2d(x, fd, down=down, flip_filter=flip_filter)


def _upsample_axis(x: Tensor, taps: Tensor, up: int, pad0: int, pad1: int, dim: int) -> Tensor:
    """Zero-insert by `up`, pad (pad0, pad1) and convolve with 1D `taps` along `dim` (3: x, 2: y), in one
    transposed convolution (polyphase: each output phase uses every up-th tap)."""
    n = x.shape[dim]
    k = taps.numel()
    c = x.shape[1]
    # The full upsampled-and-padded signal has length n*up + pad0 + pad1; the valid convolution leaves
    # L = n*up + pad0 + pad1 - k + 1 samples. conv_transpose computes y[m] = sum_i x[i] t[m - up*i] for
    # m in [0, (n-1)*up + k), which is the full convolution of the zero-inserted signal (without its
    # trailing zeros); output index j of the valid result is m = j + k - 1 - pad0.
    one = (1, 1, 1, k) if dim == 3 else (1, 1, k, 1)
    stride = (1, up) if dim == 3 else (up, 1)
    kernel = taps.to(x.dtype).reshape(one).expand(c, *one[1:])
    full = F.conv_transpose2d(x, kernel, stride=stride, groups=c)
    length = n * up + pad0 + pad1 - k + 1
    start = k - 1 - pad0
    m_len = full.shape[dim]
    # indices outside [0, m_len) are zeros (padding or trailing inserted zeros)
    lo, hi = max(start, 0), min(start + length, m_len)
    body = full.narrow(dim, lo, max(hi - lo, 0))
    before, after = lo - start, (start + length) - hi
    if before > 0 or after > 0:
        pads = [0, 0, 0, 0]
        if dim == 3:
            pads[0], pads[1] = max(before, 0), max(after, 0)
        else:
            pads[2], pads[3] = max(before, 0), max(after, 0)
        body = F.pad(body, pads)
    return body


def filtered_lrelu_fast(x: Tensor, fu: Tensor | None = None, fd: Tensor | None = None, b: Tensor | None = None,
                        up: int = 1, down: int = 1, padding: int | Sequence[int] = 0, gain: float = math.sqrt(2),
                        slope: float = 0.2, clamp: float | None = None, flip_filter: bool = False) -> Tensor:
    """`filtered_lrelu_reference` with polyphase upsampling and strided downsampling (separable filters)."""
    x0, x1, y0, y1 = padding4(padding)
    if (fu is not None and fu.ndim != 1) or (fd is not None and fd.ndim != 1) or up == 1:
        return filtered_lrelu_reference(x, fu, fd, b, up, down, (x0, x1, y0, y1), gain, slope, clamp, flip_filter)
    x = bias_act(x, b)
    if fu is None:
        fu = torch.ones(1, device=x.device)
    # conv_transpose2d convolves, as upfirdn2d does unless flip_filter; gain up per axis (up**2 overall)
    taps = (fu.flip(0) if flip_filter else fu) * up
    x = _upsample_axis(x, taps, up, x0, x1, dim=3)
    x = _upsample_axis(x, taps, up, y0, y1, dim=2)
    x = bias_act(x, act="lrelu", alpha=slope, gain=gain, clamp=clamp)
    if fd is None:
        return x[:, :, ::down, ::down] if down > 1 else x
    c = x.shape[1]
    k = fd.to(x.dtype) if flip_filter else fd.flip(0).to(x.dtype)
    x = F.conv2d(x, k.reshape(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, down), groups=c)
    return F.conv2d(x, k.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(down, 1), groups=c)


def filtered_lrelu(x: Tensor, fu: Tensor | None = None, fd: Tensor | None = None, b: Tensor | None = None,
                   up: int = 1, down: int = 1, padding: int | Sequence[int] = 0, gain: float = math.sqrt(2),
                   slope: float = 0.2, clamp: float | None = None, flip_filter: bool = False,
                   impl: str = "auto") -> Tensor:
    """Bias, upsample, leaky ReLU, clamp, low-pass, downsample (module docstring). `impl`: 'reference',
    'fast' or 'auto' (fast for separable filters)."""
    if impl not in ("auto", "fast", "reference"):
        raise ValueError(f"impl must be 'auto', 'fast' or 'reference', got {impl!r}")
    fn = filtered_lrelu_reference if impl == "reference" else filtered_lrelu_fast
    return fn(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip_filter)
