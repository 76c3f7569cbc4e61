"""Adaptive discriminator augmentation (Karras et al. 2020, "Training Generative Adversarial Networks with
Limited Data"): the augmentation pipeline and the controller of its probability p.

Every augmentation is applied to each image independently with probability p x its strength, to
reals and fakes alike before D, and is differentiable, so G is trained through it without learning
to produce augmented images ("non-leaking" as long as p stays below ~0.8).

- pixel blitting: x-flip, rotations by multiples of 90 degrees, integer translation (up to 1/8);
- general geometry: isotropic scaling (log2-normal, std 0.2), rotation (uniform, applied before and
  after the anisotropic scaling with a probability that makes "either" equal p), anisotropic scaling,
  fractional translation (normal, std 1/8). All geometric steps compose into one 3x3 matrix per image
  and are executed together: reflect-pad, 2x upsampling with the Symlet-6 orthogonal low-pass,
  bilinear resampling (differentiable to any order), low-pass and 2x downsampling;
- colour: brightness (additive, std 0.2), contrast (log2-normal, std 0.5), luma flip (Householder
  reflection of the luma axis), hue rotation around the luma axis, saturation (log2-normal, std 1),
  composed into one 4x4 matrix per image.

`debug_percentile` q replaces every random parameter by its q-quantile and applies every enabled
augmentation: the same deterministic mode as the release's, used to test against it.

The controller (`adjust`): r_t = E[sign(D(x_real))] over the last `interval` steps; p moves by
sign(r_t - target) * (images in those steps) / (ada_kimg * 1000), kept >= 0. A target of 0.6 and
ada_kimg 500 are the paper's: p can go from 0 to 1 in 500k images.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from utils.nn.stylegan.upfirdn2d import downsample2d, setup_filter, upsample2d

Tensor = torch.Tensor

__all__ = ["AugmentPipe", "SYM6", "BGC"]

SYM6 = [0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148]
"""The Symlet-6 wavelet's low-pass (decomposition) filter: an orthogonal 12-tap low-pass."""

BGC = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1, lumaflip=1,
           hue=1, saturation=1)
"""ADA's default set ('bgc': blit, geometric, colour), each at strength 1."""


# -- batched homogeneous matrices ---------------------------------------------------------------------------


def _eye(n: int, batch: int, device: torch.device) -> Tensor:
    return torch.eye(n, device=device)[None].repeat(batch, 1, 1)


def _translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    m = _eye(3, tx.shape[0], tx.device)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    m = _eye(3, sx.shape[0], sx.device)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _rotate2d(theta: Tensor) -> Tensor:
    m = _eye(3, theta.shape[0], theta.device)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _translate3d(t: Tensor) -> Tensor:
    m = _eye(4, t.shape[0], t.device)
    m[:, 0, 3] = m[:, 1, 3] = m[:, 2, 3] = t
    return m


def _scale3d(s: Tensor) -> Tensor:
    m = _eye(4, s.shape[0], s.device)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = s
    return m


def _rotate3d(axis: Tensor, theta: Tensor) -> Tensor:
    """Rotation by theta around the unit `axis` (Rodrigues), homogeneous 4x4."""
    x, y, z = axis[0], axis[1], axis[2]
    c, s = torch.cos(theta), torch.sin(theta)
    k = 1 - c
    m = _eye(4, theta.shape[0], theta.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = x * x * k + c, x * y * k - z * s, x * z * k + y * s
    m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = y * x * k + z * s, y * y * k + c, y * z * k - x * s
    m[:, 2, 0], m[:, 2, 1], m[:, 2, 2] = z * x * k - y * s, z * y * k + x * s, z * z * k + c
    return m


class AugmentPipe(nn.Module):
    """ADA's differentiable augmentations; `p` (a buffer) is the overall probability multiplier.

    The sign statistics of D on reals accumulate in buffers (`accumulate`) until `adjust` moves p, so a
    checkpoint of the module carries the controller's whole state."""

    def __init__(self, xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0, scale_std: float = 0.2,
                 rotate_max: float = 1, aniso_std: float = 0.2, xfrac_std: float = 0.125, brightness: float = 0,
                 contrast: float = 0, lumaflip: float = 0, hue: float = 0, saturation: float = 0,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1,
                 saturation_std: float = 1, p: float = 0.0):
        super().__init__()
        self.xflip, self.rotate90, self.xint, self.xint_max = float(xflip), float(rotate90), float(xint), xint_max
        self.scale, self.rotate, self.aniso, self.xfrac = float(scale), float(rotate), float(aniso), float(xfrac)
        self.scale_std, self.rotate_max, self.aniso_std, self.xfrac_std = scale_std, rotate_max, aniso_std, xfrac_std
        self.brightness, self.contrast, self.lumaflip = float(brightness), float(contrast), float(lumaflip)
        self.hue, self.saturation = float(hue), float(saturation)
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("sign_sum", torch.zeros([], dtype=torch.float64))
        self.register_buffer("sign_count", torch.zeros([], dtype=torch.float64))
        self.register_buffer("Hz_geom", setup_filter(SYM6))

    @classmethod
    def bgc(cls, p: float = 0.0) -> "AugmentPipe":
        return cls(**BGC, p=p)

    @property
    def geometric(self) -> bool:
        return any(v > 0 for v in (self.xflip, self.rotate90, self.xint, self.scale, self.rotate, self.aniso,
                                   self.xfrac))

    @property
    def colour(self) -> bool:
        return any(v > 0 for v in (self.brightness, self.contrast, self.lumaflip, self.hue, self.saturation))

    # -- random parameters ----------------------------------------------------------------------------------

    def _draws(self, batch: int, device: torch.device, generator: torch.Generator | None, q: Tensor | None):
        """Helpers drawing on the generator's device (the CPU by default) and moving to `device`."""
        gdev = generator.device if generator is not None else "cpu"

        def rand(*shape: int) -> Tensor:
            return torch.rand((batch, *shape), generator=generator, device=gdev).to(device)

        def randn(*shape: int) -> Tensor:
            return torch.randn((batch, *shape), generator=generator, device=gdev).to(device)

        def chosen(value: Tensor, neutral: float, prob: Tensor | float, debug: Tensor | None) -> Tensor:
            """value where a uniform draw falls below prob, else neutral; in debug mode the debug value."""
            keep = rand(*([1] * (value.ndim - 1))) < prob
            value = torch.where(keep, value, torch.full_like(value, neutral))
            return torch.full_like(value, 0).add(debug) if debug is not None else value

        return rand, randn, chosen

    # -- the pipeline -----------------------------------------------------------------------------------------

    def forward(self, images: Tensor, generator: torch.Generator | None = None,
                debug_percentile: float | None = None) -> Tensor:
        if images.ndim != 4:
            raise ValueError(f"ADA takes (B, C, H, W) images, got shape {tuple(images.shape)}")
        b, c, h, w = images.shape
        dev = images.device
        q = None if debug_percentile is None else torch.as_tensor(float(debug_percentile), device=dev)
        rand, randn, chosen = self._draws(b, dev, generator, q)
        p = self.p.to(dev)
        erfinv = lambda v: torch.erfinv(q * 2 - 1) * v  # noqa: E731  (the q-quantile of N(0, v^2))

        if self.geometric:
            g = _eye(3, b, dev)  # inverse transform: output pixel -> input pixel
            if self.xflip > 0:
                i = chosen(torch.floor(rand() * 2), 0, self.xflip * p, None if q is None else torch.floor(q * 2))
                g = g @ _scale2d(1 / (1 - 2 * i), torch.ones_like(i))
            if self.rotate90 > 0:
                i = chosen(torch.floor(rand() * 4), 0, self.rotate90 * p, None if q is None else torch.floor(q * 4))
                g = g @ _rotate2d(math.pi / 2 * i)
            if self.xint > 0:
                t = chosen((rand(2) * 2 - 1) * self.xint_max, 0, self.xint * p,
                           None if q is None else (q * 2 - 1) * self.xint_max)
                g = g @ _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))
            if self.scale > 0:
                s = chosen(torch.exp2(randn() * self.scale_std), 1, self.scale * p,
                           None if q is None else torch.exp2(erfinv(self.scale_std)))
                g = g @ _scale2d(1 / s, 1 / s)
            # rotating before or after the anisotropic scaling, each with p_rot: P(either) = rotate * p
            p_rot = 1 - torch.sqrt((1 - self.rotate * p).clamp(0, 1))
            if self.rotate > 0:
                theta = chosen((rand() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot,
                               None if q is None else (q * 2 - 1) * math.pi * self.rotate_max)
                g = g @ _rotate2d(theta)
            if self.aniso > 0:
                s = chosen(torch.exp2(randn() * self.aniso_std), 1, self.aniso * p,
                           None if q is None else torch.exp2(erfinv(self.aniso_std)))
                g = g @ _scale2d(1 / s, s)
            if self.rotate > 0:
                theta = chosen((rand() * 2 - 1) * math.pi * self.rotate_max, 0, p_rot,
                               None if q is None else torch.zeros([], device=dev))
                g = g @ _rotate2d(theta)
            if self.xfrac > 0:
                t = chosen(randn(2) * self.xfrac_std, 0, self.xfrac * p, None if q is None else erfinv(self.xfrac_std))
                g = g @ _translate2d(-t[:, 0] * w, -t[:, 1] * h)
            images = self._resample(images, g)

        if self.colour:
            m = _eye(4, b, dev)  # colour transform: colour_in -> colour_out
            if self.brightness > 0:
                v = chosen(randn() * self.brightness_std, 0, self.brightness * p,
                           None if q is None else erfinv(self.brightness_std))
                m = _translate3d(v) @ m
            if self.contrast > 0:
                v = chosen(torch.exp2(randn() * self.contrast_std), 1, self.contrast * p,
                           None if q is None else torch.exp2(erfinv(self.contrast_std)))
                m = _scale3d(v) @ m
            luma = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev) / math.sqrt(3)
            outer = torch.outer(luma, luma)
            if self.lumaflip > 0:
                i = chosen(torch.floor(rand(1, 1) * 2), 0, self.lumaflip * p, None if q is None else torch.floor(q * 2))
                m = (torch.eye(4, device=dev) - 2 * outer * i) @ m  # Householder reflection of the luma axis
            if self.hue > 0 and c > 1:
                theta = chosen((rand() * 2 - 1) * math.pi * self.hue_max, 0, self.hue * p,
                               None if q is None else (q * 2 - 1) * math.pi * self.hue_max)
                m = _rotate3d(luma, theta) @ m
            if self.saturation > 0 and c > 1:
                s = chosen(torch.exp2(randn(1, 1) * self.saturation_std), 1, self.saturation * p,
                           None if q is None else torch.exp2(erfinv(self.saturation_std)))
                m = (outer + (torch.eye(4, device=dev) - outer) * s) @ m
            flat = images.reshape(b, c, h * w)
            if c == 3:
                flat = m[:, :3, :3] @ flat + m[:, :3, 3:]
            elif c == 1:
                grey = m[:, :3, :].mean(dim=1, keepdim=True)
                flat = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
            else:
                raise ValueError(f"ADA's colour augmentations take RGB or grey images, got {c} channels")
            images = flat.reshape(b, c, h, w)
        return images

    def _resample(self, images: Tensor, g: Tensor) -> Tensor:
        """Apply the inverse transforms `g` (B, 3, 3, pixel units, origin at the centre) with band-limited
        resampling: reflect-pad what the transform brings in, 2x up, bilinear warp, 2x down."""
        b, c, h, w = images.shape
        dev = images.device
        f = self.Hz_geom.to(dev)
        pad = f.shape[0] // 4
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)
        where = (g @ corners.t())[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, batch * corner]
        margin = torch.cat([-where, where]).max(dim=1).values  # how far the corners land outside: x0 y0 x1 y1
        margin = margin + torch.tensor([pad * 2 - cx, pad * 2 - cy] * 2, device=dev)
        margin = margin.clamp_min(0).minimum(torch.tensor([w - 1, h - 1] * 2, device=dev, dtype=margin.dtype))
        mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())
        images = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g = _translate2d(torch.full((b,), (mx0 - mx1) / 2, device=dev), torch.full((b,), (my0 - my1) / 2, device=dev)) @ g
        images = upsample2d(images, f, up=2)
        two = torch.full((b,), 2.0, device=dev)
        half = torch.full((b,), -0.5, device=dev)
        g = _scale2d(two, two) @ g @ _scale2d(1 / two, 1 / two)
        g = _translate2d(half, half) @ g @ _translate2d(-half, -half)
        out_shape = [b, c, (h + pad * 2) * 2, (w + pad * 2) * 2]
        to_unit = _scale2d(torch.full((b,), 2 / images.shape[3], device=dev), torch.full((b,), 2 / images.shape[2], device=dev))
        from_unit = _scale2d(torch.full((b,), out_shape[3] / 2, device=dev), torch.full((b,), out_shape[2] / 2, device=dev))
        g = to_unit @ g @ from_unit
        grid = F.affine_grid(g[:, :2, :], out_shape, align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return downsample2d(images, f, down=2, padding=-pad * 2, flip_filter=True)

    # -- the controller -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def accumulate(self, real_logits: Tensor) -> None:
        """Add the signs of D's outputs on (augmented) reals to the statistics of the next adjustment."""
        signs = torch.sign(real_logits.detach().to(torch.float64))
        self.sign_sum += signs.sum().to(self.sign_sum.device)
        self.sign_count += signs.numel()

    @torch.no_grad()
    def adjust(self, target: float, images: int, ada_kimg: float = 500.0) -> float | None:
        """Move p by sign(r_t - target) * images / (ada_kimg * 1000) (>= 0) and reset the statistics; returns r_t
        (None when nothing was accumulated). `images`: how many images the accumulation period saw."""
        if self.sign_count.item() == 0:
            return None
        r_t = (self.sign_sum / self.sign_count).item()
        step = math.copysign(1.0, r_t - target) if r_t != target else 0.0
        self.p.copy_((self.p + step * images / (ada_kimg * 1000)).clamp_min(0))
        self.sign_sum.zero_()
        self.sign_count.zero_()
        return r_t
