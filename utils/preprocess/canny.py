"""The Canny edge detector in torch (no OpenCV), as control images are made from photos.

Grey level (ITU-R BT.601 weights, rounded as an 8-bit image), 3x3 Sobel gradients (L1 or L2 magnitude),
non-maximum suppression along the quantised gradient direction, then hysteresis (strong edges above
`high`, weak edges above `low` kept where they connect to a strong one). Thresholds are on the 0-255
scale of cv2.Canny; the FLUX.1 Canny release uses (50, 200), lllyasviel's ControlNet annotator (100, 200).
Used by FLUX.1 Canny and the Stable Diffusion ControlNets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.errors import UserError


def _grey_255(image: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [-1, 1] -> (B, 1, H, W) luminance on 0..255, rounded as an 8-bit image would be."""
    rgb = ((image.float().clamp(-1, 1) + 1) * 127.5).round()
    weights = torch.tensor([0.299, 0.587, 0.114], device=image.device).view(1, 3, 1, 1)  # ITU-R BT.601, as cv2
    return (rgb * weights).sum(1, keepdim=True).round()


def sobel(grey: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """3x3 Sobel derivatives (gx, gy) of (B, 1, H, W), borders reflected."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device)
    kernels = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3): d/dx, d/dy
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="reflect"), kernels)
    return g[:, :1], g[:, 1:]


def non_max_suppression(mag: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Keep pixels whose magnitude is a maximum along the gradient (4 direction bins); others -> 0."""
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    padded = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def shifted(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    # Neighbour pairs across the edge for gradients near 0, 45, 90 and 135 degrees (image y points down).
    pairs = {0: ((0, -1), (0, 1)), 45: ((1, 1), (-1, -1)), 90: ((-1, 0), (1, 0)), 135: ((1, -1), (-1, 1))}
    bins = torch.round(angle / 45.0).long() % 4 * 45
    keep = torch.zeros_like(mag, dtype=torch.bool)
    for direction, (a, b) in pairs.items():
        # '>' on one side and '>=' on the other keeps exactly one pixel of a plateau
        local = (mag > shifted(*a)) & (mag >= shifted(*b))
        keep |= (bins == direction) & local
    return torch.where(keep, mag, torch.zeros_like(mag))


def hysteresis(candidates: torch.Tensor, low: float, high: float, max_iters: int | None = None) -> torch.Tensor:
    """Boolean edges: strong (> high) pixels, grown through 8-connected weak (> low) pixels until stable."""
    weak = candidates > low
    edges = candidates > high
    limit = max_iters or (candidates.shape[-1] * candidates.shape[-2])
    for _ in range(limit):
        grown = (F.max_pool2d(edges.float(), 3, stride=1, padding=1) > 0) & weak
        if torch.equal(grown, edges):
            break
        edges = grown
    return edges


def canny_edges(image: torch.Tensor, low: float = 50.0, high: float = 200.0, l2_gradient: bool = False,
                blur_sigma: float = 0.0) -> torch.Tensor:
    """Canny edge map of (B, 3, H, W) images in [-1, 1] -> (B, 1, H, W) in {0, 1}.

    `low`/`high`: hysteresis thresholds on the gradient magnitude of the 0-255 grey image (cv2.Canny
    units; the official FLUX Canny pipeline uses 50 and 200). `l2_gradient`: sqrt(gx² + gy²) instead of
    |gx| + |gy| (cv2's default is L1). `blur_sigma` > 0 smooths first (cv2.Canny does not).
    """
    if image.ndim != 4 or image.shape[1] not in (1, 3):
        raise UserError(f"canny_edges expects (B, 3, H, W) images, got shape {tuple(image.shape)}")
    if not 0 <= low <= high:
        raise UserError(f"Canny thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")
    grey = _grey_255(image) if image.shape[1] == 3 else ((image.float().clamp(-1, 1) + 1) * 127.5).round()
    if blur_sigma > 0:
        radius = max(1, int(3 * blur_sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=grey.device)
        k = torch.exp(-0.5 * (x / blur_sigma) ** 2)
        k = k / k.sum()
        grey = F.pad(grey, (radius, radius, radius, radius), mode="reflect")
        grey = F.conv2d(F.conv2d(grey, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    gx, gy = sobel(grey)
    mag = torch.sqrt(gx ** 2 + gy ** 2) if l2_gradient else gx.abs() + gy.abs()
    return hysteresis(non_max_suppression(mag, gx, gy), low, high).float()


def canny_control(image: torch.Tensor, low: float = 50.0, high: float = 200.0) -> torch.Tensor:
    """A Canny control image (FLUX.1 Canny, the SD ControlNets): white edges on black, 3 channels, in [-1, 1]."""
    edges = canny_edges(image, low, high)
    return (edges * 2 - 1).expand(-1, 3, -1, -1).to(image.dtype).contiguous()


__all__ = ["canny_control", "canny_edges", "hysteresis", "non_max_suppression", "sobel"]
