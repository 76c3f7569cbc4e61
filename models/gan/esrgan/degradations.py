"""Low-resolution training inputs made on the fly from high-resolution crops.

`degrade(hr, scale, generator, order=2)` follows Real-ESRGAN's second-order pipeline (Wang et al. 2021,
sec. 3.1): twice in a row, a Gaussian blur of random width, a resize by a random factor with a random
kernel (area, bilinear, bicubic), additive Gaussian noise (colour or grey) and a JPEG round trip of
random quality; then the final resize to 1 / scale. `order=1` is the classical pipeline (one round),
`order=0` plain bicubic downsampling (SRGAN's). Every random draw comes from `generator`.
"""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F

BLUR_SIGMA = ((0.2, 3.0), (0.2, 1.5))
"""Range of the blur's standard deviation in each of the two rounds."""
RESIZE_RANGE = ((0.15, 1.5), (0.3, 1.2))
"""Range of the intermediate resize factor in each round."""
NOISE_SIGMA = ((1 / 255, 30 / 255), (1 / 255, 25 / 255))
"""Range of the Gaussian noise's standard deviation (images in [0, 1]) in each round."""
JPEG_QUALITY = ((30, 95), (30, 95))
"""Range of the JPEG quality in each round."""
MODES = ("area", "bilinear", "bicubic")


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with a kernel of radius ceil(3 sigma), reflect padding."""
    radius = max(1, int(3 * sigma + 0.999))
    radius = min(radius, (min(x.shape[-2:]) - 1) or 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "area":
        return F.interpolate(x, size=size, mode="area")
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=True)


def jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """A JPEG encode / decode round trip of each image (PIL, on the CPU), in [0, 1]."""
    from PIL import Image

    out = []
    for img in x.clamp(0, 1):
        arr = (img.permute(1, 2, 0).cpu() * 255).round().to(torch.uint8).numpy()
        pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        back = torch.from_numpy(__import__("numpy").array(Image.open(buf))).float() / 255
        out.append((back[..., None] if back.ndim == 2 else back).permute(2, 0, 1))
    return torch.stack(out).to(x.device, x.dtype)


def degrade(hr: torch.Tensor, scale: int, generator: torch.Generator, order: int = 2) -> torch.Tensor:
    """(B, C, H, W) in [0, 1] -> (B, C, H / scale, W / scale) in [0, 1]."""
    h, w = hr.shape[-2:]
    target = (h // scale, w // scale)
    x = hr
    for r in range(order):
        x = gaussian_blur(x, _uniform(*BLUR_SIGMA[r], generator))
        f = _uniform(*RESIZE_RANGE[r], generator)
        side = (max(4, round(x.shape[-2] * f)), max(4, round(x.shape[-1] * f)))
        x = resize(x, side, MODES[int(torch.randint(len(MODES), (), generator=generator))])
        sigma = _uniform(*NOISE_SIGMA[r], generator)
        grey = bool(torch.rand((), generator=generator) < 0.4)
        noise = torch.randn((x.shape[0], 1 if grey else x.shape[1], *x.shape[-2:]), generator=generator)
        x = (x + sigma * noise.to(x.device, x.dtype)).clamp(0, 1)
        x = jpeg(x, int(torch.randint(JPEG_QUALITY[r][0], JPEG_QUALITY[r][1] + 1, (), generator=generator)))
    mode = "bicubic" if order == 0 else MODES[int(torch.randint(len(MODES), (), generator=generator))]
    return resize(x, target, mode).clamp(0, 1)
