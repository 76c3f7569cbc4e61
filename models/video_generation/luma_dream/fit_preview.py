"""Live previews of LTX-Video sampling: a linear latent-to-RGB map fitted on the VAE's own pairs.

Decoding a 2B-model clip with the full VAE at every step costs about as much as the step itself; a
preview only needs the rough colours and layout. So each latent voxel (128 standardised channels)
becomes one RGB value, `rgb = W z + b` (W: 3 x 128, b: 3), i.e. a preview of F' x H/32 x W/32 pixels.

How the map is fitted (`LatentPreview.fit`), with nothing but the loaded VAE:
1. synthetic clips: smooth random colour fields (a coarse random grid upsampled bilinearly) that drift
   across the frame, so colours vary in space and time; values in [-1, 1];
2. each clip is encoded (posterior mode) and standardised: the latents z the transformer works in;
3. z is decoded again (0.9.1+ decoders at timestep 0.05, injected noise from a fixed seed) and the
   decoded frames are averaged over each latent voxel's pixels: 32 x 32 pixels, and the frames the
   voxel stands for (frame 0 alone, then groups of eight): the target RGB of that voxel in [0, 1];
4. W and b solve the least-squares problem over all voxels, ridge-damped by 1e-4 (`torch.linalg.lstsq`
   on [z, 1] against the targets).

The release VAE's coefficients cannot be fitted without its weights, so nothing is shipped: the
pipeline fits the map on the VAE it has loaded at the first call that asks for a preview (a few small
clips through the VAE; seconds on a GPU) and keeps it. To fit once and reuse:

    python -m models.video_generation.luma_dream.fit_preview --weights ltx-video-2b-v0.9.5.safetensors \\
        --out preview_map.json
    pipe.preview_map = LatentPreview.load("preview_map.json")

(`--preset tiny` fits the random tiny VAE offline.) The script prints the held-out mean squared error of
the map and of the mean-colour baseline.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

RIDGE = 1e-4
DECODE_TIMESTEP = 0.05


def synthetic_clips(count: int, frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, frames, height, width) smooth colour fields in [-1, 1] that drift by a random velocity:
    a 4 x 4 random grid upsampled bilinearly to twice the frame, a window of it sliding over the frames."""
    g = torch.Generator().manual_seed(seed)
    field = F.interpolate(torch.rand(count, 3, 4, 4, generator=g) * 2 - 1, size=(2 * height, 2 * width),
                          mode="bilinear", align_corners=False)
    step = torch.randint(-2, 3, (count, 2), generator=g) * max(1, min(height, width) // 16)
    out = torch.empty(count, 3, frames, height, width)
    for i in range(count):
        for t in range(frames):
            y0 = int(height // 2 + step[i, 0] * t) % height
            x0 = int(width // 2 + step[i, 1] * t) % width
            out[i, :, t] = field[i, :, y0:y0 + height, x0:x0 + width]
    return out


def pooled_targets(pixels: torch.Tensor, spatial: int, temporal: int) -> torch.Tensor:
    """Decoded frames (B, 3, 1 + r k, H, W) -> their mean per latent voxel (B, 3, 1 + k, H/s, W/s)."""
    first = pixels[:, :, :1]
    rest = pixels[:, :, 1:]
    parts = [F.avg_pool3d(first, (1, spatial, spatial))]
    if rest.shape[2]:
        parts.append(F.avg_pool3d(rest, (temporal, spatial, spatial)))
    return torch.cat(parts, dim=2)


@dataclass
class LatentPreview:
    """rgb = weight @ z + bias per latent voxel; `__call__` maps (B, C, F, h, w) to frames (B, F, 3, h, w) in [0, 1]."""

    weight: torch.Tensor
    """(3, C)."""
    bias: torch.Tensor
    """(3,)."""

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.to(latents.device, torch.float32), self.bias.to(latents.device, torch.float32)
        rgb = torch.einsum("oc,bcfhw->bfohw", w, latents.float()) + b[None, None, :, None, None]
        return rgb.clamp(0, 1)

    # -- fitting --------------------------------------------------------------------------------

    @staticmethod
    @torch.no_grad()
    def pairs(vae, clips: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents (N, C), targets (N, 3) in [0, 1]) over every voxel of `clips` synthetic clips (steps 1-3
        of the module docstring); the clip size follows the VAE's compression (1 + 2 r frames, 8 s pixels)."""
        cfg = vae.config
        s, r = cfg.spatial_ratio, cfg.temporal_ratio
        device = next(vae.parameters()).device
        zs, ys = [], []
        for i in range(clips):
            x = synthetic_clips(1, 1 + 2 * r, 8 * s, 8 * s, seed=seed * 1000 + i).to(device, vae.dtype)
            z = vae.normalize(vae.encode(x).mode().float())
            t = torch.full((1,), DECODE_TIMESTEP, device=device) if cfg.timestep_conditioning else None
            noise = torch.Generator(device=device).manual_seed(seed)
            pixels = vae.decode(vae.denormalize(z).to(vae.dtype), t, noise).float()
            target = pooled_targets(pixels / 2 + 0.5, s, r)
            zs.append(z.movedim(1, -1).reshape(-1, z.shape[1]).cpu())
            ys.append(target.movedim(1, -1).reshape(-1, 3).cpu())
        return torch.cat(zs), torch.cat(ys)

    @classmethod
    def from_pairs(cls, latents: torch.Tensor, targets: torch.Tensor, ridge: float = RIDGE) -> "LatentPreview":
        """Least squares (ridge-damped) of targets (N, 3) on [latents, 1] (N, C + 1)."""
        a = torch.cat([latents.double(), torch.ones(latents.shape[0], 1, dtype=torch.float64)], dim=1)
        damp = torch.eye(a.shape[1], dtype=torch.float64)[:-1] * ridge ** 0.5  # the weights, not the bias
        lhs = torch.cat([a, damp])
        rhs = torch.cat([targets.double(), torch.zeros(damp.shape[0], 3, dtype=torch.float64)])
        sol = torch.linalg.lstsq(lhs, rhs).solution  # (C + 1, 3); the bias row is not damped
        return cls(weight=sol[:-1].T.float().contiguous(), bias=sol[-1].float().contiguous())

    @classmethod
    def fit(cls, vae, clips: int = 6, seed: int = 0) -> "LatentPreview":
        """The map of `vae`, fitted on its own (latent, decoded pixel) pairs (module docstring)."""
        return cls.from_pairs(*cls.pairs(vae, clips, seed))

    def error(self, latents: torch.Tensor, targets: torch.Tensor) -> float:
        """Mean squared error of the (unclamped) map on (N, C) latents against (N, 3) targets."""
        pred = latents.float() @ self.weight.T + self.bias
        return float(((pred - targets.float()) ** 2).mean())

    # -- storage --------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"weight": self.weight.tolist(), "bias": self.bias.tolist()}))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatentPreview":
        from utils.errors import UserError

        try:
            data = json.loads(Path(path).read_text())
            weight, bias = torch.tensor(data["weight"]), torch.tensor(data["bias"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path} is no preview map (a JSON file with 'weight' 3 x C and 'bias' 3): {err}") from None
        if weight.ndim != 2 or weight.shape[0] != 3 or tuple(bias.shape) != (3,):
            raise UserError(f"{path}: the preview map needs weight 3 x C and bias 3, got {tuple(weight.shape)} and "
                            f"{tuple(bias.shape)}")
        return cls(weight, bias)


def mean_colour_error(train_targets: torch.Tensor, targets: torch.Tensor) -> float:
    """The baseline: every voxel previewed as the training pairs' mean colour."""
    return float(((targets.float() - train_targets.float().mean(0)) ** 2).mean())


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m models.video_generation.luma_dream.fit_preview",
                       description="Fit the linear latent-to-RGB preview map of an LTX-Video VAE.")
    p.add_argument("--weights", default=None, help="an official single file or a diffusers folder (its vae/)")
    p.add_argument("--preset", default=None, help="a VAE preset without weights: tiny (random, offline)")
    p.add_argument("--clips", type=int, default=6, help="synthetic clips to fit on")
    p.add_argument("--device", default=None, help="cpu, cuda (default: cuda when available)")
    p.add_argument("--out", required=True, help="the JSON file to write")
    args = p.parse_args(argv)
    from utils.encoders.ltx_vae import LTXVideoVAE
    from utils.errors import UserError

    if args.weights is None and args.preset is None:
        raise UserError("give --weights (an LTX-Video file or folder) or --preset tiny")
    if args.clips < 1:
        raise UserError(f"--clips must be at least 1, got {args.clips}")
    vae = LTXVideoVAE.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype="float32")
    train = LatentPreview.pairs(vae, args.clips, seed=0)
    held = LatentPreview.pairs(vae, 2, seed=1)
    preview = LatentPreview.from_pairs(*train)
    written = preview.save(args.out)
    print(f"wrote {written}: held-out MSE {preview.error(*held):.5f} (mean colour {mean_colour_error(train[1], held[1]):.5f}) "
          f"over {train[0].shape[0]} voxels")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("fit_preview"):
        sys.exit(main())
