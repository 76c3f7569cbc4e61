"""The scene: a set of 3D Gaussians with view-dependent colour, and how it renders."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from utils.rendering.cameras import Cameras
from utils.rendering.sh import num_sh_bases, rgb_to_sh
from utils.rendering.splatting import rasterization

from .config import GaussianSplattingConfig

__all__ = ["GaussianSplatting", "SPLAT_KEYS"]

SPLAT_KEYS = ("means", "scales", "quats", "opacities", "sh0", "shN")
"""The native parameter names (gsplat's): means (N, 3), log scales (N, 3), quats wxyz (N, 4),
opacity logits (N,), sh0 (N, 1, 3) DC coefficients, shN (N, K - 1, 3) the rest."""


def knn_mean_distance(points: Tensor, k: int = 3, chunk: int = 4096) -> Tensor:
    """Mean distance of each point to its `k` nearest neighbours (brute force in chunks)."""
    out = torch.empty(len(points), dtype=points.dtype, device=points.device)
    for i in range(0, len(points), chunk):
        d = torch.cdist(points[i:i + chunk], points)
        nearest = d.topk(min(k + 1, len(points)), largest=False).values[:, 1:]
        out[i:i + chunk] = nearest.mean(-1)
    return out


class GaussianSplatting(nn.Module):
    """3D Gaussian splatting (Kerbl et al. 2023): parameters in `self.splats` under SPLAT_KEYS.

    Training changes the number of Gaussians, so the parameters are replaced (not resized) by the
    densification strategies; `load_splats` rebuilds them at any size.
    """

    def __init__(self, config: GaussianSplattingConfig = GaussianSplattingConfig(), n: int = 0):
        super().__init__()
        self.config = config
        k = num_sh_bases(config.sh_degree)
        self.splats = nn.ParameterDict({
            "means": nn.Parameter(torch.zeros(n, 3)),
            "scales": nn.Parameter(torch.full((n, 3), -5.0)),
            "quats": nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]).repeat(n, 1)),
            "opacities": nn.Parameter(torch.zeros(n)),
            "sh0": nn.Parameter(torch.zeros(n, 1, 3)),
            "shN": nn.Parameter(torch.zeros(n, k - 1, 3)),
        })

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_points(cls, config: GaussianSplattingConfig, points: Tensor, colors: Tensor | None = None,
                    generator: torch.Generator | None = None) -> "GaussianSplatting":
        """Gaussians at `points` (P, 3), isotropic with the kNN scale, coloured `colors` in [0, 1]."""
        model = cls(config, 0)
        n = len(points)
        if colors is None:
            colors = torch.rand(n, 3, generator=generator)
        dist = knn_mean_distance(points.float()).clamp(min=1e-7) * config.init_scale
        quats = torch.randn(n, 4, generator=generator)
        model.load_splats({
            "means": points.float(),
            "scales": torch.log(dist)[:, None].repeat(1, 3),
            "quats": quats / quats.norm(dim=-1, keepdim=True),
            "opacities": torch.logit(torch.full((n,), config.init_opacity)),
            "sh0": rgb_to_sh(colors.float())[:, None, :],
            "shN": torch.zeros(n, num_sh_bases(config.sh_degree) - 1, 3),
        })
        return model

    @classmethod
    def random(cls, config: GaussianSplattingConfig, center: Tensor | None = None,
               generator: torch.Generator | None = None, n: int | None = None) -> "GaussianSplatting":
        """`n` (default config.init_num_points) Gaussians uniform in a cube of half side init_extent."""
        n = config.init_num_points if n is None else n
        center = torch.zeros(3) if center is None else center.float()
        pts = (torch.rand(n, 3, generator=generator) * 2 - 1) * config.init_extent + center
        return cls.from_points(config, pts, generator=generator)

    def load_splats(self, splats: dict[str, Tensor]) -> None:
        """Replace every parameter by the given tensors (native layout, any N)."""
        k = num_sh_bases(self.config.sh_degree)
        shN = splats["shN"]
        if shN.shape[1] != k - 1:
            # fewer coefficients in the file: pad with zeros; more: drop the degrees above ours
            fixed = torch.zeros(shN.shape[0], k - 1, 3, dtype=shN.dtype, device=shN.device)
            m = min(k - 1, shN.shape[1])
            fixed[:, :m] = shN[:, :m]
            shN = fixed
        device = next(iter(self.splats.values())).device if len(self.splats) else "cpu"
        for key in SPLAT_KEYS:
            value = shN if key == "shN" else splats[key]
            self.splats[key] = nn.Parameter(value.detach().to(device=device, dtype=torch.float32).contiguous())

    # -- accessors -------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.splats["means"].shape[0]

    @property
    def device(self) -> torch.device:
        return self.splats["means"].device

    def activated(self) -> dict[str, Tensor]:
        """Render-ready values: scales exp'd, opacities sigmoid'd, colours as (N, K, 3) SH."""
        p = self.splats
        return {"means": p["means"], "quats": p["quats"], "scales": torch.exp(p["scales"]),
                "opacities": torch.sigmoid(p["opacities"]), "colors": torch.cat([p["sh0"], p["shN"]], 1)}

    def render(self, cameras: Cameras, sh_degree: int | None = None, background: Tensor | None = None,
               render_mode: str = "RGB") -> tuple[Tensor, Tensor, dict]:
        """Images (C, H, W, D), alphas (C, H, W, 1) and rasterizer info for `cameras`."""
        a = self.activated()
        sh_degree = self.config.sh_degree if sh_degree is None else min(sh_degree, self.config.sh_degree)
        bg = None
        if background is not None:
            bg = background.to(self.device, torch.float32).reshape(-1, background.shape[-1]).expand(len(cameras), -1)
        cams = cameras.to(self.device)
        return rasterization(a["means"], a["quats"], a["scales"], a["opacities"], a["colors"], cams.viewmats,
                             cams.Ks, cams.width, cams.height, sh_degree=sh_degree, backgrounds=bg,
                             render_mode=render_mode, config=self.config.raster)

    def scene_center_radius(self) -> tuple[Tensor, float]:
        """A robust centre (median) and radius (90th percentile distance) of the Gaussians."""
        m = self.splats["means"].detach()
        center = m.median(dim=0).values
        radius = float(torch.quantile((m - center).norm(dim=-1).float()[:100_000], 0.9)) if len(m) else 1.0
        return center, max(radius, 1e-3) if math.isfinite(radius) else 1.0
