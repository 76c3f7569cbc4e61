"""Blur kernels of Real-ESRGAN's degradation model (Wang et al. 2021, sec. 3.1) and their filtering.

A kernel is a (K, K) float64 tensor summing to 1 over a grid of integer offsets -K//2+1 .. K//2, x the
column and y the row offset, centred on the middle pixel. With Sigma = R(theta) diag(sx^2, sy^2) R(theta)^T
and q(p) = p^T Sigma^-1 p:
- Gaussian:              k(p) ~ exp(-q / 2)                 (isotropic: sx = sy, theta = 0)
- generalized Gaussian:  k(p) ~ exp(-q^beta / 2)            (beta < 1 heavier tails, > 1 flatter top)
- plateau:               k(p) ~ 1 / (1 + q^beta)
- sinc (circular low-pass, ringing and overshoot): k(r) ~ omega_c J1(omega_c r) / (2 pi r), with
  omega_c^2 / (4 pi) at r = 0.
`random_kernel` draws one as the official RealESRGANDataset does (kernel types and their probabilities,
sigma / beta ranges, sinc with its own probability and cutoff range), every draw from a torch.Generator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
KERNEL_SIZES = tuple(2 * v + 1 for v in range(3, 11))
"""7, 9, ..., 21: the odd sizes the official dataset draws from."""
MAX_KERNEL = 21
"""Every drawn kernel is zero-padded to 21 x 21 (the official blur_kernel_size)."""


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    if size % 2 != 1:
        raise ValueError(f"kernel sizes are odd, got {size}")
    ax = torch.arange(-(size // 2), size // 2 + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    return xx, yy


def covariance(sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    """R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T, (x, y) = (column, row)."""
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return rot @ torch.diag(torch.tensor([sigma_x ** 2, sigma_y ** 2], dtype=torch.float64)) @ rot.T


def _quadratic(size: int, sigma_x: float, sigma_y: float, theta: float) -> torch.Tensor:
    xx, yy = _grid(size)
    inv = torch.linalg.inv(covariance(sigma_x, sigma_y, theta))
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None, theta: float = 0.0) -> torch.Tensor:
    """The (an)isotropic Gaussian kernel; `sigma_y=None` is isotropic."""
    q = _quadratic(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    k = torch.exp(-0.5 * q)
    return k / k.sum()


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None, theta: float,
                                beta: float) -> torch.Tensor:
    """exp(-q^beta / 2), normalised; beta = 1 is the Gaussian."""
    q = _quadratic(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    k = torch.exp(-0.5 * q.pow(beta))
    return k / k.sum()


def plateau_kernel(size: int, sigma_x: float, sigma_y: float | None, theta: float, beta: float) -> torch.Tensor:
    """1 / (1 + q^beta), normalised: a flat top with polynomial tails."""
    q = _quadratic(size, sigma_x, sigma_x if sigma_y is None else sigma_y, theta)
    k = 1.0 / (q.pow(beta) + 1.0)
    return k / k.sum()


def sinc_kernel(size: int, cutoff: float, pad_to: int = 0) -> torch.Tensor:
    """The circularly symmetric ideal low-pass filter of cutoff `cutoff` (radians per pixel), truncated to
    size x size and normalised; zero-padded to `pad_to` when larger."""
    xx, yy = _grid(size)
    r = torch.sqrt(xx * xx + yy * yy)
    safe = torch.where(r == 0, torch.ones_like(r), r)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(r == 0, torch.full_like(r, cutoff ** 2 / (4 * math.pi)), k)
    return pad_kernel(k / k.sum(), pad_to)


def pad_kernel(kernel: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pads a (K, K) kernel to (size, size), size >= K, both odd."""
    p = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (p, p, p, p)) if p > 0 else kernel


def identity_kernel(size: int = MAX_KERNEL) -> torch.Tensor:
    """A centred unit impulse: filtering with it changes nothing (the official 'pulse' final kernel)."""
    k = torch.zeros(size, size, dtype=torch.float64)
    k[size // 2, size // 2] = 1.0
    return k


@dataclass(frozen=True)
class KernelSettings:
    """One blur stage's kernel draw (RealESRGANDataset's options)."""

    kernel_prob: tuple[float, ...]
    """Probabilities of KERNEL_TYPES, in that order."""
    sigma: tuple[float, float]
    """Range of sigma_x and sigma_y."""
    betag: tuple[float, float]
    """Range of the generalized Gaussian's beta (drawn below 1 or above 1 with even odds)."""
    betap: tuple[float, float]
    """Range of the plateau kernel's beta."""
    sinc_prob: float
    """Probability of a sinc kernel instead of a blur kernel."""


FIRST_KERNEL = KernelSettings((0.45, 0.25, 0.12, 0.03, 0.12, 0.03), (0.2, 3.0), (0.5, 4.0), (1.0, 2.0), 0.1)
"""train_realesrgan_x4plus.yml's first-stage kernel: blur_sigma [0.2, 3], betag [0.5, 4], betap [1, 2]."""
SECOND_KERNEL = KernelSettings((0.45, 0.25, 0.12, 0.03, 0.12, 0.03), (0.2, 1.5), (0.5, 4.0), (1.0, 2.0), 0.1)
"""The second stage's: blur_sigma2 [0.2, 1.5], the rest as the first."""
FINAL_SINC_PROB = 0.8
"""Probability of a sinc filter after the final resize (else the identity)."""


def _beta(lo: float, hi: float, gen: torch.Generator) -> float:
    """Below 1 or above 1 with even odds (the official draw, which assumes lo <= 1 <= hi)."""
    return _uniform(lo, 1.0, gen) if _uniform(0, 1, gen) < 0.5 else _uniform(1.0, hi, gen)


def random_blur_kernel(kind: str, size: int, s: KernelSettings, gen: torch.Generator) -> torch.Tensor:
    """One kernel of type `kind` with sigma_x (and sigma_y, theta in [-pi, pi] when anisotropic) and beta drawn."""
    sigma_x = _uniform(*s.sigma, gen)
    sigma_y, theta = sigma_x, 0.0
    if kind.endswith("aniso"):
        sigma_y, theta = _uniform(*s.sigma, gen), _uniform(-math.pi, math.pi, gen)
    if kind in ("iso", "aniso"):
        return gaussian_kernel(size, sigma_x, sigma_y, theta)
    if kind.startswith("generalized"):
        return generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, _beta(*s.betag, gen))
    if kind.startswith("plateau"):
        return plateau_kernel(size, sigma_x, sigma_y, theta, _beta(*s.betap, gen))
    raise ValueError(f"unknown kernel type {kind!r}: one of {', '.join(KERNEL_TYPES)}")


def _choice(n: int, gen: torch.Generator) -> int:
    return int(torch.randint(n, (), generator=gen))


def random_kernel(s: KernelSettings, gen: torch.Generator) -> torch.Tensor:
    """A stage's kernel, 21 x 21: a size from KERNEL_SIZES; with probability sinc_prob a sinc of cutoff in
    [pi/3, pi] (size < 13) or [pi/5, pi], else a blur kernel of a type drawn with kernel_prob."""
    size = KERNEL_SIZES[_choice(len(KERNEL_SIZES), gen)]
    if _uniform(0, 1, gen) < s.sinc_prob:
        low = math.pi / 3 if size < 13 else math.pi / 5
        kernel = sinc_kernel(size, _uniform(low, math.pi, gen))
    else:
        kind = KERNEL_TYPES[int(torch.multinomial(torch.tensor(s.kernel_prob, dtype=torch.float64), 1, generator=gen))]
        kernel = random_blur_kernel(kind, size, s, gen)
    return pad_kernel(kernel, MAX_KERNEL)


def random_final_sinc(gen: torch.Generator, prob: float = FINAL_SINC_PROB) -> torch.Tensor:
    """The final filter: with probability `prob` a sinc of a drawn size and cutoff in [pi/3, pi], else the identity."""
    if _uniform(0, 1, gen) < prob:
        size = KERNEL_SIZES[_choice(len(KERNEL_SIZES), gen)]
        return sinc_kernel(size, _uniform(math.pi / 3, math.pi, gen), pad_to=MAX_KERNEL)
    return identity_kernel()


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlates each channel of (B, C, H, W) with a (K, K) kernel (or one (B, K, K) kernel per image),
    reflect padding (replicate where the image is smaller than the kernel's radius); output the input's size."""
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    kernel = kernel.to(x.device, x.dtype).reshape(-1, 1, k, k)
    pad = k // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < min(h, w) else "replicate")
    if kernel.shape[0] == 1:
        return F.conv2d(x.reshape(b * c, 1, h + 2 * pad, w + 2 * pad), kernel).reshape(b, c, h, w)
    kernel = kernel.repeat_interleave(c, dim=0)
    return F.conv2d(x.reshape(1, b * c, h + 2 * pad, w + 2 * pad), kernel, groups=b * c).reshape(b, c, h, w)
