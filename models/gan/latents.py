"""Latent tools for the GANs of the zoo: interpolation, truncation, saving and loading.

Work the same for unconditional and class-conditional generators: latents are plain tensors
(B, *latent_shape); class labels travel beside them (`save_latents(..., labels=...)`).

    import models
    from models.gan.latents import slerp, truncate
    pipe = models.load("gan", "dcgan")
    z = pipe(num_images=2, seed=0).latents                  # or pipe.sample_latents(2, make_generator(0))
    path = slerp(z[0], z[1], torch.linspace(0, 1, 8))       # (8, latent_dim)
    models.generate("gan", "dcgan", latents=truncate(path, 0.7), prompt="3")
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from utils.errors import UserError

Tensor = torch.Tensor


def _weights(t: float | Tensor | list[float], like: Tensor) -> Tensor:
    """Interpolation weights as a column (N, 1, ...) broadcasting against one latent."""
    t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
    return t.reshape(-1, *([1] * like.ndim)) if t.ndim else t


def lerp(a: Tensor, b: Tensor, t: float | Tensor | list[float]) -> Tensor:
    """(1 - t) a + t b. A scalar t gives one latent; a vector of N weights gives (N, *a.shape)."""
    w = _weights(t, a)
    return a + w * (b - a)


def slerp(a: Tensor, b: Tensor, t: float | Tensor | list[float], eps: float = 1e-7) -> Tensor:
    """Spherical interpolation along the great circle through a and b (Shoemake 1985; White 2016 for GANs).

    Gaussian latents concentrate near a sphere of radius sqrt(d); a straight line between two of them
    passes through lower-norm points the generator rarely saw, the arc does not. The norm is
    interpolated linearly, so two latents of equal norm stay on their sphere for every t.
    Works over the last dimension: a and b of shape (B, d) interpolate row by row.
    """
    w = _weights(t, a)
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    so = torch.sin(omega)
    # nearly parallel directions: the arc is a line, and sin(omega) ~ 0 would divide by zero
    parallel = so.abs() < 1e-6
    safe = torch.where(parallel, torch.ones_like(so), so)
    ca = torch.where(parallel, 1 - w, torch.sin((1 - w) * omega) / safe)
    cb = torch.where(parallel, w, torch.sin(w * omega) / safe)
    direction = ca * ua + cb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    return direction * ((1 - w) * na + w * nb)


def interpolate(a: Tensor, b: Tensor, steps: int, mode: str = "slerp") -> Tensor:
    """`steps` latents from a to b inclusive, by 'slerp' or 'lerp'."""
    if steps < 2:
        raise UserError("an interpolation needs at least 2 steps")
    if mode not in ("slerp", "lerp"):
        raise UserError(f"unknown interpolation '{mode}': use slerp or lerp")
    t = torch.linspace(0, 1, steps)
    return (slerp if mode == "slerp" else lerp)(a, b, t)


def truncate(z: Tensor, psi: float, mean: Tensor | float = 0.0) -> Tensor:
    """The truncation trick towards the mean: mean + psi (z - mean) (psi 1 = unchanged, 0 = the mean).

    For a z ~ N(0, I) generator the mean is 0; for a mapped latent space (StyleGAN's w) pass its
    running average.
    """
    if not 0.0 <= psi <= 1.0 + 1e-6:
        raise UserError(f"truncation psi must lie in [0, 1], got {psi}")
    return mean + psi * (z - mean)


def truncated_normal(shape: tuple[int, ...] | torch.Size, threshold: float,
                     generator: torch.Generator | None = None, max_rounds: int = 1000) -> Tensor:
    """N(0, 1) samples with every entry |x| <= threshold, by redrawing the ones outside (BigGAN's trick).

    Redrawing keeps the shape of the normal inside the threshold (the result is a truncated normal),
    unlike clipping, which piles mass on the bounds. Only the entries outside are redrawn, in order,
    so a generator's stream gives the same latents as BigGAN's sampler (`biggan.truncated_noise`).
    """
    if threshold <= 0:
        raise UserError(f"the truncation threshold must be positive, got {threshold}")
    z = torch.randn(shape, generator=generator)
    for _ in range(max_rounds):
        outside = z.abs() > threshold
        count = int(outside.sum())
        if count == 0:
            return z
        z[outside] = torch.randn(count, generator=generator)
    return z.clamp(-threshold, threshold)  # only for thresholds so small that redrawing does not end


def resample_outside(z: Tensor, threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """Redraw the entries of existing latents z whose magnitude exceeds `threshold`."""
    fresh = truncated_normal(z.shape, threshold, generator).to(z)
    return torch.where(z.abs() > threshold, fresh, z)


def save_latents(path: str | os.PathLike, latents: Tensor, labels: Tensor | None = None,
                 metadata: dict[str, str] | None = None) -> Path:
    """Write latents (and class labels) to a safetensors file, atomically."""
    from safetensors.torch import save_file

    from utils.io import atomic_path

    tensors = {"latents": latents.detach().contiguous().cpu()}
    if labels is not None:
        tensors["labels"] = torch.as_tensor(labels).detach().long().contiguous().cpu()
    meta = {"format": "cv-generative-latents", **{k: str(v) for k, v in (metadata or {}).items()}}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return Path(path)


def load_latents(path: str | os.PathLike) -> tuple[Tensor, Tensor | None, dict[str, str]]:
    """(latents, labels or None, metadata) from a file written by `save_latents`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"latents file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = set(f.keys())
            meta = dict(f.metadata() or {})
            if "latents" not in keys:
                raise UserError(f"{path} holds no 'latents' tensor: it was not written by save_latents")
            latents = f.get_tensor("latents")
            labels = f.get_tensor("labels") if "labels" in keys else None
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any read failure is the same user-facing problem
        raise UserError(f"cannot read latents from {path} ({' '.join(str(err).split())[:80]}): "
                        "pass a .safetensors file written by save_latents") from None
    meta.pop("format", None)
    return latents, labels, meta


__all__ = ["lerp", "slerp", "interpolate", "truncate", "truncated_normal", "resample_outside", "save_latents",
           "load_latents"]
