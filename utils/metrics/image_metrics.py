"""Full-reference image metrics: PSNR and SSIM over batches of (B, C, H, W) float tensors.

Both return one value per image (shape (B,)); take `.mean()` for the usual dataset figure.

SSIM follows Wang et al. (2004): a Gaussian window of 11 taps with sigma 1.5, K1 = 0.01,
K2 = 0.03, computed per channel and averaged over channels and pixels. Implementations differ
only in how they treat the border, so the choice is explicit:

- ``padding="reflect"`` (default): reflect-pad by 5 pixels and average over the whole image,
  exactly what ``torchmetrics.functional.structural_similarity_index_measure`` does;
- ``padding="valid"``: no padding, average over the (H-10) x (W-10) interior, as the original
  MATLAB code and ``tf.image.ssim`` (used by the NeRF / mip-NeRF evaluations);
- ``padding="zeros"``: zero-pad by 5 pixels and average over the whole image, as the
  3D Gaussian splatting reference code reports it.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from utils.errors import UserError

__all__ = ["psnr", "ssim", "gaussian_window", "mse"]


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.shape != b.shape:
        raise UserError(f"{name}: the two image batches differ in shape ({tuple(a.shape)} vs {tuple(b.shape)}): "
                        "compare images of the same size")
    if a.ndim != 4:
        raise UserError(f"{name}: expected (B, C, H, W) tensors, got shape {tuple(a.shape)}: add a batch "
                        "dimension with x[None]")


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image, shape (B,)."""
    _check_pair(a, b, "mse")
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, shape (B,): 10 log10(range^2 / MSE).

    Identical images give +inf. `data_range` is max - min of the pixel scale (1 for [0, 1], 2 for
    [-1, 1], 255 for uint8 values).
    """
    _check_pair(a, b, "psnr")
    err = mse(a, b)
    return 10.0 * torch.log10(data_range ** 2 / err)


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """The normalised 1D Gaussian of `size` taps centred on the middle one."""
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03, padding: str = "reflect") -> torch.Tensor:
    """Structural similarity per image, shape (B,) (see the module docstring for `padding`)."""
    _check_pair(a, b, "ssim")
    if padding not in ("reflect", "valid", "zeros"):
        raise UserError(f"ssim: unknown padding '{padding}': use reflect, valid or zeros")
    if window_size % 2 == 0 or window_size < 1:
        raise UserError(f"ssim: window_size must be odd and positive, got {window_size}")
    dtype = a.dtype if a.is_floating_point() else torch.float32
    a, b = a.to(dtype), b.to(dtype)
    channels = a.shape[1]
    g = gaussian_window(window_size, sigma, dtype, a.device)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window_size, window_size).contiguous()
    pad = window_size // 2
    if padding == "reflect":
        a = F.pad(a, (pad, pad, pad, pad), mode="reflect")
        b = F.pad(b, (pad, pad, pad, pad), mode="reflect")
    conv_pad = pad if padding == "zeros" else 0
    # One grouped convolution filters the five local statistics of every channel at once.
    stats = F.conv2d(torch.cat([a, b, a * a, b * b, a * b]), kernel, padding=conv_pad, groups=channels)
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.split(a.shape[0])
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    # E[x^2] - E[x]^2 can dip below zero by rounding on flat regions.
    var_a = (e_aa - mu_aa).clamp_min(0)
    var_b = (e_bb - mu_bb).clamp_min(0)
    cov = e_ab - mu_ab
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_ab + c1) * (2 * cov + c2)) / ((mu_aa + mu_bb + c1) * (var_a + var_b + c2))
    return ssim_map.flatten(1).mean(1)
