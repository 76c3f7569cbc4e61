"""The equivariance metrics of StyleGAN3 (Karras et al. 2021, appendix E): EQ-T, EQ-T_frac and EQ-R.

For a generator whose input can be transformed (StyleGAN3's Fourier features; StyleGAN2's constant
input translated by a Fourier shift), compare the image made from a transformed input with the image
made normally and then transformed in image space, over the pixels both define; report the PSNR
(peak 2, images in [-1, 1]) of the mean squared difference over all samples:

- EQ-T: integer translations, t uniform in [-1/8, 1/8] of the image, rounded to whole pixels; the
  reference is the shifted image (new pixels excluded);
- EQ-T_frac: fractional translations; the reference is a Lanczos-3 (windowed sinc) resampling;
- EQ-R: rotations, angle uniform in [-180, 180] degrees; both images are band-limited by the same
  rotated sinc filter (so the comparison is between ideal continuous signals), the reference rotated
  with a bandlimited affine resampling.

`integer_translate`, `fractional_translate`, `rotate_bandlimited`, `pseudo_rotate` are the image-space
operators (image, mask of valid pixels); `equivariance_psnr` runs the metric over a generator.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from utils.errors import UserError

Tensor = torch.Tensor

__all__ = ["sinc", "integer_translate", "fractional_translate", "affine_bandlimit_filter", "rotate_bandlimited",
           "pseudo_rotate", "rotation_transform", "translation_transform", "psnr_from_sums", "equivariance_psnr"]


def sinc(x: Tensor) -> Tensor:
    y = (x * math.pi).abs()
    return torch.where(y < 1e-30, torch.ones_like(x), torch.sin(y) / y.clamp_min(1e-30))


def _lanczos_window(x: Tensor, a: int) -> Tensor:
    x = x.abs() / a
    return torch.where(x < 1, sinc(x), torch.zeros_like(x))


def integer_translate(x: Tensor, tx: float, ty: float) -> tuple[Tensor, Tensor]:
    """x shifted by (tx, ty) image sizes, rounded to whole pixels, zeros coming in; and the mask of kept pixels."""
    _, _, h, w = x.shape
    ix, iy = int(round(float(tx) * w)), int(round(float(ty) * h))
    out, mask = torch.zeros_like(x), torch.zeros_like(x)
    if abs(ix) < w and abs(iy) < h:
        src = x[:, :, max(-iy, 0): h + min(-iy, 0), max(-ix, 0): w + min(-ix, 0)]
        out[:, :, max(iy, 0): h + min(iy, 0), max(ix, 0): w + min(ix, 0)] = src
        mask[:, :, max(iy, 0): h + min(iy, 0), max(ix, 0): w + min(ix, 0)] = 1
    return out, mask


def fractional_translate(x: Tensor, tx: float, ty: float, a: int = 3) -> tuple[Tensor, Tensor]:
    """x shifted by (tx, ty) image sizes with a separable Lanczos-a kernel; the mask keeps the pixels whose
    whole kernel footprint lies inside the image."""
    from utils.nn.stylegan.upfirdn2d import filter2d

    _, _, h, w = x.shape
    sx, sy = float(tx) * w, float(ty) * h
    ix, iy = math.floor(sx), math.floor(sy)
    fx, fy = sx - ix, sy - iy
    b = a - 1
    out = torch.zeros_like(x)
    zx0, zy0, zx1, zy1 = max(ix - b, 0), max(iy - b, 0), min(ix + a, 0) + w, min(iy + a, 0) + h
    if zx0 < zx1 and zy0 < zy1:
        taps = torch.arange(a * 2, device=x.device, dtype=torch.float32) - b
        kx = (sinc(taps - fx) * sinc((taps - fx) / a))[None]
        ky = (sinc(taps - fy) * sinc((taps - fy) / a))[:, None]
        y = filter2d(x, kx / kx.sum(), padding=[b, a, 0, 0])
        y = filter2d(y, ky / ky.sum(), padding=[0, 0, b, a])
        y = y[:, :, max(b - iy, 0): h + b + a + min(-iy - a, 0), max(b - ix, 0): w + b + a + min(-ix - a, 0)]
        out[:, :, zy0:zy1, zx0:zx1] = y
    mask = torch.zeros_like(x)
    mx0, my0, mx1, my1 = max(ix + a, 0), max(iy + a, 0), min(ix - b, 0) + w, min(iy - b, 0) + h
    if mx0 < mx1 and my0 < my1:
        mask[:, :, my0:my1, mx0:mx1] = 1
    return out, mask


def affine_bandlimit_filter(mat: Tensor, a: int = 3, amax: int = 16, aflt: int = 64, up: int = 4,
                            cutoff_in: float = 1, cutoff_out: float = 1) -> Tensor:
    """The 2D filter that band-limits to both the input grid and the grid transformed by `mat` (2x2 part):
    the convolution of two sinc low-passes (input axes and transformed axes), windowed by the convolution
    of two Lanczos windows, sampled `up` times per pixel over +-amax pixels (odd size)."""
    mat = torch.as_tensor(mat, dtype=torch.float32)
    n = aflt * up * 2 - 1
    taps = ((torch.arange(n, device=mat.device) + 1) / up - aflt).roll(1 - aflt * up)
    yi, xi = torch.meshgrid(taps, taps, indexing="ij")
    xo, yo = (torch.stack([xi, yi], dim=2) @ mat[:2, :2].t()).unbind(2)
    conv = lambda p, q: torch.fft.ifftn(torch.fft.fftn(p) * torch.fft.fftn(q)).real  # noqa: E731 (cyclic)
    f = conv(sinc(xi * cutoff_in) * sinc(yi * cutoff_in), sinc(xo * cutoff_out) * sinc(yo * cutoff_out))
    f = f * conv(_lanczos_window(xi, a) * _lanczos_window(yi, a), _lanczos_window(xo, a) * _lanczos_window(yo, a))
    c = (aflt - amax) * up
    f = f.roll([aflt * up - 1] * 2, dims=[0, 1])[c:-c, c:-c]
    f = F.pad(f, [0, 1, 0, 1]).reshape(amax * 2, up, amax * 2, up)
    f = f / f.sum([0, 2], keepdim=True) / up ** 2  # every phase of the polyphase filter has unit DC gain
    return f.reshape(amax * 2 * up, amax * 2 * up)[:-1, :-1]


def rotate_bandlimited(x: Tensor, angle: float, a: int = 3, up: int = 4) -> tuple[Tensor, Tensor]:
    """x rotated by `angle` radians about its centre, resampled through the affine band-limit filter at `up`x;
    the mask keeps the pixels that come from inside the image (with a filter-sized margin)."""
    from utils.nn.stylegan.upfirdn2d import upsample2d

    _, _, h, w = x.shape
    mat = rotation_transform(float(angle)).to(x.device)
    f = affine_bandlimit_filter(mat, a=a, amax=a * 2, up=up)
    p = f.shape[0] // 2
    theta = torch.linalg.inv(mat)
    theta[:2, 2] *= 2
    theta[0, 2] += 1 / up / w
    theta[1, 2] += 1 / up / h
    theta[0, :] *= w / (w + p / up * 2)
    theta[1, :] *= h / (h + p / up * 2)
    grid = F.affine_grid(theta[:2, :3][None].repeat(x.shape[0], 1, 1), list(x.shape), align_corners=False)
    y = upsample2d(x, f, up=up, padding=p)
    out = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = torch.zeros_like(y)
    c = p * 2 + 1
    mask[:, :, c:-c, c:-c] = 1
    mask = F.grid_sample(mask, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out, mask


def pseudo_rotate(x: Tensor, angle: float, a: int = 3) -> tuple[Tensor, Tensor]:
    """x low-passed by the filter that `rotate_bandlimited` applies, unrotated: the band limit of a rotated
    image, so that a generator's rotated output compares with the rotated reference fairly."""
    from utils.nn.stylegan.upfirdn2d import filter2d

    f = affine_bandlimit_filter(rotation_transform(-float(angle)).to(x.device), a=a, amax=a * 2, up=1)
    y = filter2d(x, f)
    mask = torch.zeros_like(y)
    c = f.shape[0] // 2
    mask[:, :, c:-c, c:-c] = 1
    return y, mask


def rotation_transform(angle: float) -> Tensor:
    """The 3x3 matrix [[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]] of the metrics (and of StyleGAN3's input)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def translation_transform(tx: float, ty: float) -> Tensor:
    """The input transform that moves the output by (tx, ty) image sizes."""
    m = torch.eye(3)
    m[0, 2], m[1, 2] = -tx, -ty
    return m


def psnr_from_sums(sq_error: float, count: float) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2) from a summed squared error over `count` values."""
    return 20 * math.log10(2) - 10 * math.log10(max(sq_error / max(count, 1e-30), 1e-30))


@torch.no_grad()
def equivariance_psnr(mapping: Callable[[Tensor], Tensor], synthesis: Callable[[Tensor, Tensor], Tensor],
                      z_dim: int, resolution: int, num_samples: int = 50_000, batch_size: int = 4,
                      metrics: tuple[str, ...] = ("eqt", "eqt_frac", "eqr"), translate_max: float = 0.125,
                      rotate_max: float = 1.0, seed: int = 0, device: str | torch.device = "cpu",
                      before_batch: Callable[[torch.Generator], None] | None = None,
                      progress: bool = True) -> dict[str, float]:
    """{'eqt': dB, 'eqt_frac': dB, 'eqr': dB} of a generator: `mapping(z)` -> ws and `synthesis(ws, transform)`
    -> images in [-1, 1]. One random transform per batch (as the release); `before_batch(generator)` can
    redraw per-batch state (StyleGAN2's stored noise)."""
    from tqdm.auto import tqdm

    bad = [m for m in metrics if m not in ("eqt", "eqt_frac", "eqr")]
    if bad or not metrics:
        raise UserError(f"equivariance metrics are eqt, eqt_frac and eqr, got {', '.join(bad) or 'none'}")
    gen = torch.Generator().manual_seed(int(seed))
    eye = torch.eye(3, device=device)
    sums = {m: [0.0, 0.0] for m in metrics}
    with tqdm(total=num_samples, desc="equivariance", disable=not progress, leave=False) as bar:
        done = 0
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            if before_batch is not None:
                before_batch(gen)
            z = torch.randn(n, z_dim, generator=gen).to(device)
            ws = mapping(z)
            orig = synthesis(ws, eye).float()
            pairs = []
            if "eqt" in metrics:
                t = (torch.rand(2, generator=gen) * 2 - 1) * translate_max
                t = (t * resolution).round() / resolution
                img = synthesis(ws, translation_transform(float(t[0]), float(t[1])).to(device)).float()
                ref, mask = integer_translate(orig, float(t[0]), float(t[1]))
                pairs.append(("eqt", ref, img, mask))
            if "eqt_frac" in metrics:
                t = (torch.rand(2, generator=gen) * 2 - 1) * translate_max
                img = synthesis(ws, translation_transform(float(t[0]), float(t[1])).to(device)).float()
                ref, mask = fractional_translate(orig, float(t[0]), float(t[1]))
                pairs.append(("eqt_frac", ref, img, mask))
            if "eqr" in metrics:
                angle = float(torch.rand((), generator=gen) * 2 - 1) * rotate_max * math.pi
                img = synthesis(ws, rotation_transform(-angle).to(device)).float()
                ref, ref_mask = rotate_bandlimited(orig, angle)
                pseudo, pseudo_mask = pseudo_rotate(img, angle)
                pairs.append(("eqr", ref, pseudo, ref_mask * pseudo_mask))
            for name, ref, img, mask in pairs:
                sums[name][0] += float(((ref - img).square() * mask).double().sum())
                sums[name][1] += float(mask.double().sum())
            done += n
            bar.update(n)
    return {name: psnr_from_sums(se, count) for name, (se, count) in sums.items()}
