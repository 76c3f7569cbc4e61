"""Projection of an image into StyleGAN's W (or W+) space, as NVlabs' projector (StyleGAN2, section 5).

Starting from the mean w (estimated from 10k samples), Adam optimises w to minimise the LPIPS-VGG
distance between the synthesised image and the target (both at most 256 px), with:

- noise on w (std 0.05 x the spread of w, decaying to 0 over the first 75% of the steps), to explore;
- a learning rate ramped up over the first 5% of the steps and cosine-decayed over the last 25%;
- for StyleGAN2, the noise inputs optimised too, regularised (weight 1e5) to stay unit Gaussian noise
  without spatial autocorrelation at every scale, and renormalised after every step.

W projects one w for all styles (the release's); `w_plus=True` optimises one w per style (W+), which
fits better but edits less faithfully.

    from models.gan.stylegan3.projection import project
    result = project(pipe, target_image, num_steps=1000)
    pipe(ws=result.ws).save("projected.png")
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from utils.errors import UserError

Tensor = torch.Tensor

__all__ = ["ProjectionResult", "project", "load_target", "noise_regularization"]


@dataclass
class ProjectionResult:
    """What a projection gives: `ws` (1, num_ws, w_dim) on the CPU, the final `image` (1, C, H, W) in [-1, 1],
    the final distance, and every `save_every`-th ws on the way (for a progress video)."""

    ws: Tensor
    image: Tensor
    distance: float
    history: list[Tensor] = field(default_factory=list)
    noise: dict[str, Tensor] = field(default_factory=dict)


def load_target(path_or_image, resolution: int, channels: int = 3) -> Tensor:
    """An image file (or PIL image) centre-cropped to a square and resized (Lanczos) to the network's
    resolution: (1, C, R, R) in [-1, 1]."""
    if isinstance(path_or_image, Image.Image):
        img = path_or_image
    else:
        from pathlib import Path

        path = Path(path_or_image)
        if not path.is_file():
            raise UserError(f"target image not found: {path}")
        try:
            img = Image.open(path)
            img.load()
        except OSError:
            raise UserError(f"{path.name} is not an image PIL can read: pass a .png or .jpg") from None
    img = img.convert("RGB" if channels == 3 else "L")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((resolution, resolution), Image.LANCZOS)
    a = torch.from_numpy(np.asarray(img, dtype=np.float32).copy())
    a = a[None] if a.ndim == 2 else a.permute(2, 0, 1)
    return (a / 127.5 - 1)[None]


def noise_regularization(noises: list[Tensor]) -> Tensor:
    """Sum over scales of the squared autocorrelation of each noise map at a one-pixel shift in x and y,
    down to 8x8 (the map is halved by 2x2 averaging between scales)."""
    total: Tensor | float = 0.0
    for v in noises:
        v = v[None, None] if v.ndim == 2 else v
        while True:
            total = total + (v * torch.roll(v, 1, dims=3)).mean() ** 2 + (v * torch.roll(v, 1, dims=2)).mean() ** 2
            if v.shape[2] <= 8:
                break
            v = F.avg_pool2d(v, 2)
    return torch.as_tensor(total)


def _at_most_256(x: Tensor) -> Tensor:
    return F.interpolate(x, size=(256, 256), mode="area") if x.shape[2] > 256 else x


def project(pipe, target: Tensor | Image.Image | str, num_steps: int = 1000, w_plus: bool = False,
            initial_learning_rate: float = 0.1, initial_noise_factor: float = 0.05, lr_rampdown_length: float = 0.25,
            lr_rampup_length: float = 0.05, noise_ramp_length: float = 0.75, regularize_noise_weight: float = 1e5,
            w_avg_samples: int = 10_000, distance: torch.nn.Module | None = None, seed: int = 0,
            save_every: int = 0, label: int | None = None, progress: bool = True) -> ProjectionResult:
    """Find ws whose image is closest to `target` ((1, C, R, R) in [-1, 1], a PIL image or a path). `distance`
    (x, y in [-1, 1] -> (B,)) defaults to the pretrained LPIPS-VGG (utils.metrics.lpips)."""
    from tqdm.auto import tqdm

    if num_steps < 1:
        raise UserError("projection needs at least one step")
    G = copy.deepcopy(pipe.generator).eval()  # the pipeline's network (and its noise inputs) stay as they are
    cfg = pipe.config
    dev = pipe.device
    if not isinstance(target, Tensor):
        target = load_target(target, cfg.image_size, cfg.channels)
    if target.ndim == 3:
        target = target[None]
    if target.shape[1:] != (cfg.channels, cfg.image_size, cfg.image_size):
        raise UserError(f"the target must be ({cfg.channels}, {cfg.image_size}, {cfg.image_size}) for this network, got "
                        f"{tuple(target.shape[1:])}: pass an image file to have it cropped and resized")
    if distance is None:
        from utils.metrics.lpips import LPIPS

        distance = LPIPS.from_pretrained("vgg", device=dev)
    distance = distance.to(dev).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(int(seed))
    G.requires_grad_(False)
    # the start and the spread of w
    z = torch.randn(w_avg_samples, cfg.z_dim, generator=gen)
    y = None if not cfg.num_classes else torch.full((w_avg_samples,), int(label or 0))
    w_samples = pipe.map(z, y)[:, :1].double()  # (N, 1, w_dim)
    w_avg = w_samples.mean(0, keepdim=True)
    w_std = ((w_samples - w_avg).square().sum() / w_avg_samples) ** 0.5
    start = w_avg.float().repeat(1, G.num_ws if w_plus else 1, 1)
    w_opt = start.to(dev).clone().requires_grad_(True)
    noise_bufs = {n: b for n, b in G.synthesis.named_buffers() if n.endswith("noise_const")}
    for b in noise_bufs.values():
        b.copy_(torch.randn(b.shape, generator=gen).to(b))
        b.requires_grad_(True)
    optimizer = torch.optim.Adam([w_opt, *noise_bufs.values()], betas=(0.9, 0.999), lr=initial_learning_rate)
    tgt = _at_most_256(target.to(dev, torch.float32))
    history: list[Tensor] = []
    bar = tqdm(range(num_steps), desc="projection", disable=not progress, leave=False)
    for step in bar:
        t = step / num_steps
        noise_scale = float(w_std) * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        lr_ramp = lr_ramp * min(1.0, t / lr_rampup_length)
        for group in optimizer.param_groups:
            group["lr"] = initial_learning_rate * lr_ramp
        w_noise = torch.randn(w_opt.shape, generator=gen).to(dev) * noise_scale
        ws = (w_opt + w_noise)
        ws = ws if w_plus else ws.repeat(1, G.num_ws, 1)
        synth = G.synthesize(ws, noise_mode="const")
        dist = distance(_at_most_256(synth.float()), tgt).sum()
        reg = noise_regularization(list(noise_bufs.values())).to(dist) if noise_bufs else torch.zeros((), device=dev)
        loss = dist + reg * regularize_noise_weight
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for b in noise_bufs.values():  # back to zero mean, unit variance
                b -= b.mean()
                b *= b.square().mean().rsqrt()
        bar.set_postfix(dist=f"{dist.item():.4f}")
        if save_every and (step % save_every == 0 or step == num_steps - 1):
            history.append(w_opt.detach().cpu().repeat(1, 1 if w_plus else G.num_ws, 1))
    with torch.no_grad():
        final_ws = w_opt.detach()
        final_ws = final_ws if w_plus else final_ws.repeat(1, G.num_ws, 1)
        image = G.synthesize(final_ws, noise_mode="const").float()
        final = float(distance(_at_most_256(image), tgt).sum())
        noise = {n: b.detach().cpu().clone() for n, b in noise_bufs.items()}
    return ProjectionResult(final_ws.cpu(), image.cpu(), final, history, noise)
