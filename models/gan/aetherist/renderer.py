"""The triplane neural renderer shared by EG3D and Aetherist (Chan et al. 2022, sections 3.2-3.3).

- `sample_from_planes`: a point (x, y, z) in the box of side `box_warp` is projected on the three
  axis-aligned planes (xy, xz and zy, in EG3D's plane order and axis order) and each plane's C features
  are read bilinearly (zeros outside); the decoder averages the three.
- `OSGDecoder`: the small MLP (64 hidden, softplus) from the averaged features to one density and
  `decoder_output_dim` colour features (sigmoid, widened by 0.001 as mip-NeRF; the first three are RGB).
- `TriplaneRenderer`: rays from the camera label through pixel centres (`utils.rendering.cameras`),
  `depth_resolution` jittered samples between `ray_start` and `ray_end` (or the box's entry and exit
  with 'auto'), a coarse pass, `depth_resolution_importance` samples drawn from the coarse weights,
  and the composite of both sample sets sorted along each ray.

Compositing is EG3D's "mip" ray marcher: each interval between two consecutive samples takes the mean
colour and density of its ends, density goes through softplus(x - 1), and the interval weights are
alpha_i prod_{j<i} (1 - alpha_j) from `utils.rendering.volume_rendering.weights_from_alpha`. Colours are
returned in [-1, 1]; depth is the weight-normalised mean depth, clamped to the sampled range.

The importance samples are EG3D's (the classic NeRF sampler): weights are smoothed by a max-pool and an
average pool over neighbouring intervals, padded by 0.01, and u is drawn i.i.d. uniform (not stratified
as `utils.rendering.ray_samplers.inverse_cdf_bins` does); keeping EG3D's draw keeps its pretrained
networks' renders. Randomness comes from an explicit generator: the stratified jitter first, then u.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.nn.stylegan import FullyConnectedLayer
from utils.rendering.camera_labels import label_cameras
from utils.rendering.cameras import camera_rays
from utils.rendering.volume_rendering import weights_from_alpha

__all__ = ["PLANE_AXES", "sample_from_planes", "OSGDecoder", "TriplaneRenderer", "ray_box_limits"]

PLANE_AXES = torch.tensor([[[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                           [[1, 0, 0], [0, 0, 1], [0, 1, 0]],
                           [[0, 0, 1], [1, 0, 0], [0, 1, 0]]], dtype=torch.float32)
"""The three planes as 3x3 bases (rows: the plane's two in-plane axes and its normal)."""


def sample_from_planes(planes: Tensor, points: Tensor, box_warp: float) -> Tensor:
    """Features (B, 3, N, C) of points (B, N, 3) on triplanes (B, 3, C, H, W)."""
    B, n_planes, C, H, W = planes.shape
    coords = points * (2 / box_warp)
    # coordinates in each plane's basis: x @ inverse(axes); the first two are the plane's (u, v)
    inv = torch.linalg.inv(PLANE_AXES.to(points.device, points.dtype))
    projected = torch.einsum("bnk,pkj->bpnj", coords, inv)[..., :2].reshape(B * n_planes, 1, -1, 2)
    feats = F.grid_sample(planes.reshape(B * n_planes, C, H, W), projected.float(), mode="bilinear",
                          padding_mode="zeros", align_corners=False)
    return feats.permute(0, 3, 2, 1).reshape(B, n_planes, -1, C)


class OSGDecoder(nn.Module):
    """Averaged triplane features (B, 3, N, C) -> {'sigma': (B, N, 1), 'rgb': (B, N, out)} (`net.0`, `net.2`)."""

    def __init__(self, n_features: int, hidden_dim: int = 64, output_dim: int = 32, lr_multiplier: float = 1.0):
        super().__init__()
        self.hidden_dim, self.output_dim = hidden_dim, output_dim
        self.net = nn.Sequential(FullyConnectedLayer(n_features, hidden_dim, lr_multiplier=lr_multiplier),
                                 nn.Softplus(),
                                 FullyConnectedLayer(hidden_dim, 1 + output_dim, lr_multiplier=lr_multiplier))

    def forward(self, sampled_features: Tensor, ray_directions: Tensor | None = None) -> dict[str, Tensor]:
        x = sampled_features.mean(1)
        B, N, C = x.shape
        x = self.net(x.reshape(B * N, C)).reshape(B, N, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        return {"rgb": rgb, "sigma": x[..., :1]}


def ray_box_limits(origins: Tensor, directions: Tensor, box_side: float) -> tuple[Tensor, Tensor]:
    """Entry and exit distances (..., 1) of rays through the centred cube of side `box_side` (slab test);
    rays that miss it get the range of the rays that hit."""
    half = box_side / 2
    inv = 1.0 / directions
    t0, t1 = (-half - origins) * inv, (half - origins) * inv
    near = torch.minimum(t0, t1).amax(-1, keepdim=True)
    far = torch.maximum(t0, t1).amin(-1, keepdim=True)
    hit = far > near
    if hit.any():
        near = torch.where(hit, near, near[hit].min())
        far = torch.where(hit, far, near[hit].max())
    return near, far


class TriplaneRenderer(nn.Module):
    """Triplanes (B, 3, C, H, W), a decoder and camera labels (B, 25) -> features, depth and opacity images."""

    def __init__(self, depth_resolution: int, depth_resolution_importance: int, ray_start: float | str,
                 ray_end: float | str, box_warp: float, white_back: bool = False, density_noise: float = 0.0,
                 disparity_space_sampling: bool = False):
        super().__init__()
        self.depth_resolution, self.depth_resolution_importance = depth_resolution, depth_resolution_importance
        self.ray_start, self.ray_end, self.box_warp = ray_start, ray_end, box_warp
        self.white_back, self.density_noise = white_back, density_noise
        self.disparity_space_sampling = disparity_space_sampling

    # -- rays and samples ------------------------------------------------------------------------------

    @staticmethod
    def rays(camera_labels: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
        """Origins and unit directions (B, R*R, 3) through the pixel centres, row-major."""
        origins, dirs = camera_rays(label_cameras(camera_labels.float(), resolution))
        B = camera_labels.shape[0]
        return origins.reshape(B, -1, 3), dirs.reshape(B, -1, 3)

    @staticmethod
    def _rand(shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
        if generator is None:
            return torch.rand(shape, device=like.device, dtype=like.dtype)
        return torch.rand(shape, generator=generator, device=generator.device).to(like.device, like.dtype)

    def stratified_depths(self, origins: Tensor, directions: Tensor, generator: torch.Generator | None) -> Tensor:
        """(B, R, D, 1) depths: D evenly spaced points from start to end, each moved forward by U(0, step)."""
        B, R, _ = origins.shape
        D = self.depth_resolution
        if self.ray_start == "auto" and self.ray_end == "auto":
            start, end = ray_box_limits(origins, directions, self.box_warp)
        else:
            start = torch.full((B, R, 1), float(self.ray_start), device=origins.device, dtype=origins.dtype)
            end = torch.full_like(start, float(self.ray_end))
        steps = torch.linspace(0, 1, D, device=origins.device, dtype=origins.dtype).reshape(1, 1, D, 1)
        if self.disparity_space_sampling:
            t = steps + self._rand((B, R, D, 1), generator, origins) / (D - 1)
            return 1.0 / (1.0 / start[..., None] * (1.0 - t) + 1.0 / end[..., None] * t)
        depths = start[..., None] + (end - start)[..., None] * steps
        return depths + self._rand((B, R, D, 1), generator, origins) * ((end - start) / (D - 1))[..., None]

    def importance_depths(self, depths: Tensor, weights: Tensor, n: int,
                          generator: torch.Generator | None) -> Tensor:
        """(B, R, n, 1) depths drawn from the coarse pass's interval weights (B, R, D - 1, 1)."""
        B, R, D, _ = depths.shape
        z = depths.reshape(B * R, D)
        w = weights.reshape(B * R, 1, -1).float()
        w = F.avg_pool1d(F.max_pool1d(w, 2, 1, padding=1), 2, 1).reshape(B * R, -1) + 0.01
        bins = 0.5 * (z[:, :-1] + z[:, 1:])
        w = w[:, 1:-1] + 1e-5
        pdf = w / w.sum(-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1)
        u = self._rand((B * R, n), generator, z).contiguous()
        idx = torch.searchsorted(cdf, u, right=True)
        below, above = (idx - 1).clamp_min(0), idx.clamp_max(w.shape[-1])
        pair = torch.stack([below, above], -1).reshape(B * R, 2 * n)
        cdf_g = cdf.gather(1, pair).reshape(B * R, n, 2)
        bins_g = bins.gather(1, pair).reshape(B * R, n, 2)
        denom = cdf_g[..., 1] - cdf_g[..., 0]
        denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
        t = bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])
        return t.detach().reshape(B, R, n, 1)

    # -- fields and compositing ------------------------------------------------------------------------

    def run_model(self, planes: Tensor, decoder: nn.Module, points: Tensor, directions: Tensor,
                  generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Density and colour features of points (B, N, 3) (EG3D's `run_model`)."""
        out = decoder(sample_from_planes(planes, points, self.box_warp), directions)
        if self.density_noise > 0:
            noise = torch.randn(out["sigma"].shape, generator=generator,
                                device=generator.device if generator is not None else out["sigma"].device)
            out["sigma"] = out["sigma"] + noise.to(out["sigma"].device) * self.density_noise
        return out

    def march(self, colors: Tensor, densities: Tensor, depths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(rgb in [-1, 1] (B, R, C), depth (B, R, 1), interval weights (B, R, S - 1, 1))."""
        deltas = depths[:, :, 1:] - depths[:, :, :-1]
        colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
        densities_mid = F.softplus((densities[:, :, :-1] + densities[:, :, 1:]) / 2 - 1)
        depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
        alpha = 1 - torch.exp(-densities_mid * deltas)
        weights, _ = weights_from_alpha(alpha.squeeze(-1))
        weights = weights[..., None]
        rgb = (weights * colors_mid).sum(-2)
        total = weights.sum(2)
        depth = torch.nan_to_num((weights * depths_mid).sum(-2) / total, float("inf"))
        depth = depth.clamp(depths.min(), depths.max())
        if self.white_back:
            rgb = rgb + 1 - total
        return rgb * 2 - 1, depth, weights

    def forward(self, planes: Tensor, decoder: nn.Module, origins: Tensor, directions: Tensor,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(features (B, R, C) in [-1, 1], depth (B, R, 1), opacity (B, R, 1)) of rays (B, R, 3)."""
        B, R, _ = origins.shape
        depths = self.stratified_depths(origins, directions, generator)
        D = depths.shape[2]

        def field(d: Tensor) -> tuple[Tensor, Tensor]:
            n = d.shape[2]
            pts = (origins[:, :, None] + d * directions[:, :, None]).reshape(B, -1, 3)
            dirs = directions[:, :, None].expand(-1, -1, n, -1).reshape(B, -1, 3)
            out = self.run_model(planes, decoder, pts, dirs, generator)
            return out["rgb"].reshape(B, R, n, -1), out["sigma"].reshape(B, R, n, 1)

        colors, densities = field(depths)
        if self.depth_resolution_importance > 0:
            _, _, weights = self.march(colors, densities, depths)
            fine = self.importance_depths(depths, weights, self.depth_resolution_importance, generator)
            colors_f, densities_f = field(fine)
            all_depths = torch.cat([depths, fine], -2)
            order = torch.sort(all_depths, dim=-2).indices
            depths = all_depths.gather(-2, order)
            colors = torch.cat([colors, colors_f], -2).gather(-2, order.expand(-1, -1, -1, colors.shape[-1]))
            densities = torch.cat([densities, densities_f], -2).gather(-2, order)
        rgb, depth, weights = self.march(colors, densities, depths)
        del D
        return rgb, depth, weights.sum(2)
