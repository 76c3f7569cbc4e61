"""The 3DGS photometric loss (1 - lambda) L1 + lambda (1 - SSIM) as one compiled CPU function.

`training.gs_loss` computes it with PyTorch (the reference: `utils.metrics.image_metrics.ssim`
with zero padding, a grouped 11 x 11 convolution, and autograd); on a CPU that convolution's
backward was the largest piece of a training step outside the rasterizer. Here one numba pass
computes the loss and its gradient with respect to the render together: the Gaussian window is
separable (and zero padding keeps it so), so the five local statistics take two 11-tap passes
instead of one 121-tap pass, and the adjoint of a symmetric zero-padded filter is the same
filter. Arithmetic is float64; the tests compare loss and gradient with the reference.

`fused_gs_loss(render, target, lambda_dssim)` has `gs_loss`'s arguments and returns.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

try:
    from numba import njit
except ImportError:  # pragma: no cover - only on an install without numba
    njit = None

__all__ = ["fused_gs_loss", "is_available"]

WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03
"""The SSIM window (taps, sigma) and constants of `utils.metrics.image_metrics.ssim`."""


def is_available() -> bool:
    """Whether numba imports, so that the fused loss can run."""
    return njit is not None


def _window() -> np.ndarray:
    x = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2
    g = np.exp(-0.5 * (x / SIGMA) ** 2)
    return g / g.sum()


if njit is not None:
    @njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
    def _blur(src, g, tmp, dst):  # pragma: no cover
        """dst = the zero-padded separable filter g x g of src (H, W), through tmp (H, W)."""
        H, W = src.shape
        r = g.shape[0] // 2
        for y in range(H):
            for x in range(W):
                tmp[y, x] = 0.0
            for t in range(g.shape[0]):
                off = t - r
                gt = g[t]
                x0, x1 = max(0, -off), min(W, W - off)
                for x in range(x0, x1):
                    tmp[y, x] += gt * src[y, x + off]
        for y in range(H):
            for x in range(W):
                dst[y, x] = 0.0
            for t in range(g.shape[0]):
                yy = y + t - r
                if yy < 0 or yy >= H:
                    continue
                gt = g[t]
                for x in range(W):
                    dst[y, x] += gt * tmp[yy, x]

    @njit(cache=True, nogil=True, error_model="numpy")
    def _loss_kernel(a_img, b_img, g, c1, c2, grad_ssim, grad_l1):  # pragma: no cover
        """Sums of SSIM and |a - b| over (B, H, W, D) images; fills d(sum SSIM)/da and sign(a - b)."""
        B, H, W, D = a_img.shape
        a = np.empty((H, W))
        b = np.empty((H, W))
        tmp = np.empty((H, W))
        sq = np.empty((H, W))
        mu_a = np.empty((H, W))
        mu_b = np.empty((H, W))
        e_aa = np.empty((H, W))
        e_bb = np.empty((H, W))
        e_ab = np.empty((H, W))
        d_mu = np.empty((H, W))
        d_aa = np.empty((H, W))
        d_ab = np.empty((H, W))
        ssim_sum = 0.0
        l1_sum = 0.0
        for i in range(B):
            for d in range(D):
                for y in range(H):
                    for x in range(W):
                        av = np.float64(a_img[i, y, x, d])
                        bv = np.float64(b_img[i, y, x, d])
                        a[y, x] = av
                        b[y, x] = bv
                        diff = av - bv
                        l1_sum += abs(diff)
                        grad_l1[i, y, x, d] = 1.0 if diff > 0 else (-1.0 if diff < 0 else 0.0)
                _blur(a, g, tmp, mu_a)
                _blur(b, g, tmp, mu_b)
                for y in range(H):
                    for x in range(W):
                        sq[y, x] = a[y, x] * a[y, x]
                _blur(sq, g, tmp, e_aa)
                for y in range(H):
                    for x in range(W):
                        sq[y, x] = b[y, x] * b[y, x]
                _blur(sq, g, tmp, e_bb)
                for y in range(H):
                    for x in range(W):
                        sq[y, x] = a[y, x] * b[y, x]
                _blur(sq, g, tmp, e_ab)
                for y in range(H):
                    for x in range(W):
                        ma, mb = mu_a[y, x], mu_b[y, x]
                        va_raw = e_aa[y, x] - ma * ma
                        vb_raw = e_bb[y, x] - mb * mb
                        va = max(va_raw, 0.0)
                        vb = max(vb_raw, 0.0)
                        cov = e_ab[y, x] - ma * mb
                        n1 = 2 * ma * mb + c1
                        n2 = 2 * cov + c2
                        d1 = ma * ma + mb * mb + c1
                        d2 = va + vb + c2
                        s = n1 * n2 / (d1 * d2)
                        ssim_sum += s
                        # partials of s in the statistics of a (the clamp passes gradient at >= 0)
                        ds_n2 = n1 / (d1 * d2)
                        ds_d2 = -s / d2
                        mask = 1.0 if va_raw >= 0 else 0.0
                        d_ab[y, x] = 2 * ds_n2
                        d_aa[y, x] = ds_d2 * mask
                        d_mu[y, x] = (2 * mb * n2 / (d1 * d2) - 2 * mb * ds_n2 - 2 * ma * s / d1
                                      - 2 * ma * ds_d2 * mask)
                # back through the filters (their own adjoints): da = G d_mu + 2 a G d_aa + b G d_ab
                _blur(d_mu, g, tmp, mu_a)
                _blur(d_aa, g, tmp, e_aa)
                _blur(d_ab, g, tmp, e_ab)
                for y in range(H):
                    for x in range(W):
                        grad_ssim[i, y, x, d] = mu_a[y, x] + 2 * a[y, x] * e_aa[y, x] + b[y, x] * e_ab[y, x]
        return ssim_sum, l1_sum


class _FusedLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, render, target, lambda_dssim):
        x = render.detach().contiguous()
        y = target.detach().to(x.dtype).contiguous()
        grad_ssim = np.empty(x.shape)
        grad_l1 = np.empty(x.shape)
        ssim_sum, l1_sum = _loss_kernel(x.numpy(), y.numpy(), _WINDOW, K1 ** 2, K2 ** 2, grad_ssim, grad_l1)
        n = x.numel()
        l1 = l1_sum / n
        loss = (1 - lambda_dssim) * l1 + lambda_dssim * (1 - ssim_sum / n)
        ctx.grads = (grad_ssim, grad_l1, n, lambda_dssim)
        return render.new_tensor(loss), render.new_tensor(l1)

    @staticmethod
    def backward(ctx, g_loss, g_l1):
        grad_ssim, grad_l1, n, lam = ctx.grads
        sign = torch.from_numpy(grad_l1)
        grad = sign * (((1 - lam) * g_loss + g_l1) / n) - torch.from_numpy(grad_ssim) * (lam * g_loss / n)
        return grad.to(g_loss.dtype), None, None


_WINDOW = _window()


def fused_gs_loss(render: Tensor, target: Tensor, lambda_dssim: float) -> tuple[Tensor, Tensor]:
    """(1 - lambda) L1 + lambda (1 - SSIM) and L1 of (B, H, W, D) CPU images, as `gs_loss`
    (SSIM zero-padded, window 11, sigma 1.5), with the gradient reaching `render` only."""
    if njit is None:
        raise RuntimeError("the fused loss needs numba (pip install numba); gs_loss(..., fused=False) runs without")
    if render.shape != target.shape or render.dim() != 4:
        raise ValueError(f"expected two (B, H, W, D) images of one shape, got {tuple(render.shape)} and "
                         f"{tuple(target.shape)}")
    if math.isnan(lambda_dssim):
        raise ValueError("lambda_dssim is NaN")
    return _FusedLoss.apply(render, target, float(lambda_dssim))
