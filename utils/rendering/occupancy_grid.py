"""Occupancy grid for empty-space skipping (Instant-NGP, Mueller et al. 2022; nerfacc's estimator).

A binary grid of `resolution`^3 cells over an axis-aligned box says where the field has density.
With `levels` > 1 the grid is a cascade: level k covers the box scaled 2^k times about its
centre at the same resolution (for unbounded scenes). Rays march with a fixed step (or a step
growing with distance, `cone_angle`); a sample is kept when its midpoint lies in an occupied cell
of the finest level that contains it, then, when a density function is given, only while the
ray's transmittance stays above `early_stop_eps` and the sample's opacity above `alpha_thre`.

The grid learns what is occupied: every `update_every` steps it evaluates the density at a
random point of each cell (every cell during warm-up, then a quarter of them at random plus as
many occupied ones), keeps an exponential moving maximum `occs` of density x step size, and
marks cells above min(`occ_thre`, mean) as occupied.

Sampling runs in pure PyTorch on any device; on CUDA with nerfacc installed the marching uses
its `traverse_grids` kernel (`backend="auto"`). Both return packed samples (ray_indices, t_starts,
t_ends) for `utils.rendering.volume_rendering`.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from utils.errors import UserError
from utils.rendering.rays import ray_aabb_intersect

__all__ = ["OccupancyGrid"]


class OccupancyGrid(nn.Module):
    """Multi-level binary occupancy grid over `aabb` (xmin ymin zmin xmax ymax zmax)."""

    def __init__(self, aabb: Tensor | list[float], resolution: int = 128, levels: int = 1):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (6,) or not bool((aabb[3:] > aabb[:3]).all()):
            raise UserError(f"occupancy grid box must be xmin ymin zmin xmax ymax zmax with max > min, got {aabb.tolist()}")
        self.resolution, self.levels = int(resolution), int(levels)
        center, half = (aabb[:3] + aabb[3:]) / 2, (aabb[3:] - aabb[:3]) / 2
        aabbs = torch.stack([torch.cat([center - half * 2 ** k, center + half * 2 ** k]) for k in range(levels)])
        self.register_buffer("aabbs", aabbs)
        cells = self.resolution ** 3
        self.cells_per_level = cells
        self.register_buffer("occs", torch.zeros(levels * cells))
        self.register_buffer("binaries", torch.ones(levels, resolution, resolution, resolution, dtype=torch.bool))
        r = torch.arange(resolution)
        coords = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("grid_coords", coords, persistent=False)

    # -- lookups ----------------------------------------------------------------------------------
    def _cell_of(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(level, flat cell index, inside-the-cascade mask) of the finest level containing each point."""
        base = self.aabbs[0]
        if self.levels == 1:
            unit = (x - base[:3]) / (base[3:] - base[:3])
            ijk = (unit * self.resolution).long().clamp(0, self.resolution - 1)
            flat = (ijk[:, 0] * self.resolution + ijk[:, 1]) * self.resolution + ijk[:, 2]
            return torch.zeros_like(flat), flat, ((unit >= 0) & (unit <= 1)).all(-1)
        center, half = (base[:3] + base[3:]) / 2, (base[3:] - base[:3]) / 2
        # distance from the centre in units of the base half-size (L-inf), decides the level
        rel = ((x - center) / half).abs().amax(-1)
        level = torch.ceil(torch.log2(rel.clamp_min(1e-12))).clamp_min(0).long()
        inside = level < self.levels
        level = level.clamp(max=self.levels - 1)
        box = self.aabbs[level]
        unit = (x - box[:, :3]) / (box[:, 3:] - box[:, :3])
        ijk = (unit * self.resolution).long().clamp(0, self.resolution - 1)
        flat = (ijk[:, 0] * self.resolution + ijk[:, 1]) * self.resolution + ijk[:, 2]
        inside &= ((unit >= 0) & (unit <= 1)).all(-1)
        return level, flat, inside

    def occupied(self, x: Tensor) -> Tensor:
        """Whether points (N, 3) fall in occupied cells (False outside the cascade)."""
        level, flat, inside = self._cell_of(x)
        return self.binaries.reshape(self.levels, -1)[level, flat] & inside

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, origins: Tensor, directions: Tensor, near: float | Tensor = 0.0, far: float | Tensor = 1e10,
               step_size: float = 1e-3, cone_angle: float = 0.0, sigma_fn: Callable | None = None,
               early_stop_eps: float = 1e-4, alpha_thre: float = 0.0, stratified: bool = False,
               generator: torch.Generator | None = None, max_samples_per_chunk: int = 1 << 22,
               backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
        """Packed samples (ray_indices, t_starts, t_ends) of rays (R, 3) with unit directions.

        `sigma_fn(t_starts, t_ends, ray_indices) -> sigmas` prunes samples behind opaque ones and
        transparent ones (`early_stop_eps`, `alpha_thre`); `stratified` shifts each ray's start by
        a uniform fraction of a step.
        """
        from utils.rendering.volume_rendering import nerfacc_available, visibility_from_density

        n_rays = origins.shape[0]
        device, dtype = origins.device, origins.dtype
        near_t = torch.as_tensor(near, dtype=dtype, device=device).expand(n_rays).clone()
        far_t = torch.as_tensor(far, dtype=dtype, device=device).expand(n_rays).clone()
        t_in, t_out, hit = ray_aabb_intersect(origins, directions, self.aabbs[-1])
        t0 = torch.maximum(near_t, torch.where(hit, t_in, far_t))
        t1 = torch.minimum(far_t, torch.where(hit, t_out, near_t))
        if stratified:
            t0 = t0 + torch.rand(n_rays, generator=generator, dtype=dtype).to(device) * step_size
        if backend not in ("auto", "torch", "nerfacc"):
            raise UserError(f"unknown occupancy-grid backend '{backend}': use auto, torch or nerfacc")
        use_nerfacc = backend == "nerfacc" or (backend == "auto" and origins.is_cuda and nerfacc_available())
        if use_nerfacc:
            ray_indices, t_starts, t_ends = self._march_nerfacc(origins, directions, t0, t1, step_size, cone_angle)
        else:
            ray_indices, t_starts, t_ends = self._march_torch(origins, directions, t0, t1, step_size, cone_angle,
                                                              max_samples_per_chunk)
        if sigma_fn is not None and (early_stop_eps > 0 or alpha_thre > 0) and len(t_starts):
            alpha_thre = min(alpha_thre, float(self.occs.clamp_min(0).mean()))
            sigmas = sigma_fn(t_starts, t_ends, ray_indices)
            keep = visibility_from_density(t_starts, t_ends, sigmas.reshape(t_starts.shape), ray_indices, n_rays,
                                           early_stop_eps, alpha_thre)
            ray_indices, t_starts, t_ends = ray_indices[keep], t_starts[keep], t_ends[keep]
        return ray_indices, t_starts, t_ends

    def _steps(self, t0: Tensor, t1: Tensor, step_size: float, cone_angle: float) -> tuple[Tensor, Tensor]:
        """Per ray: how many steps fit in [t0, t1], and the common step index where the step starts
        growing (cone_angle > 0: dt = max(step_size, t * cone_angle))."""
        span = (t1 - t0).clamp_min(0)
        if cone_angle <= 0:
            return torch.ceil(span / step_size).long(), None
        # linear until t reaches step_size / cone_angle, then geometric with ratio (1 + cone_angle)
        t_switch = step_size / cone_angle
        lin = torch.ceil(((torch.minimum(t1, torch.full_like(t1, t_switch)) - t0).clamp_min(0)) / step_size)
        start_geo = torch.maximum(t0 + lin * step_size, t0)
        geo = torch.ceil(torch.log(torch.maximum(t1, start_geo) / start_geo.clamp_min(1e-12)) / math.log1p(cone_angle))
        geo = torch.where(t1 > start_geo, geo, torch.zeros_like(geo))
        return (lin + geo).long(), lin.long()

    def _march_torch(self, origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, step_size: float,
                     cone_angle: float, max_samples: int) -> tuple[Tensor, Tensor, Tensor]:
        counts, lin = self._steps(t0, t1, step_size, cone_angle)
        n_rays = origins.shape[0]
        out_i, out_s, out_e = [], [], []
        start = 0
        cum = torch.cumsum(counts, 0)
        while start < n_rays:
            # as many rays as fit in the sample budget (at least one)
            base = int(cum[start - 1]) if start > 0 else 0
            stop = int(torch.searchsorted(cum, torch.tensor(base + max_samples, device=cum.device), right=True))
            stop = max(stop, start + 1)
            c = counts[start:stop]
            total = int(c.sum())
            if total == 0:
                start = stop
                continue
            ray = torch.arange(start, stop, device=origins.device).repeat_interleave(c)
            first = torch.cumsum(c, 0) - c
            k = torch.arange(total, device=origins.device) - first.repeat_interleave(c)
            ts, te = self._step_edges(t0[ray], k, step_size, cone_angle, None if lin is None else lin[ray])
            te = torch.minimum(te, t1[ray])
            mids = 0.5 * (ts + te)
            points = origins[ray] + directions[ray] * mids[:, None]
            keep = self.occupied(points) & (te > ts)
            out_i.append(ray[keep])
            out_s.append(ts[keep])
            out_e.append(te[keep])
            start = stop
        if not out_i:
            empty = origins.new_zeros(0)
            return empty.long(), empty, empty
        return torch.cat(out_i), torch.cat(out_s), torch.cat(out_e)

    @staticmethod
    def _step_edges(t0: Tensor, k: Tensor, step_size: float, cone_angle: float, lin: Tensor | None
                    ) -> tuple[Tensor, Tensor]:
        kf = k.to(t0.dtype)
        if lin is None:
            return t0 + kf * step_size, t0 + (kf + 1) * step_size
        linf = lin.to(t0.dtype)
        start_geo = t0 + linf * step_size
        ratio = 1 + cone_angle
        ts = torch.where(kf < linf, t0 + kf * step_size, start_geo * ratio ** (kf - linf))
        te = torch.where(kf + 1 <= linf, t0 + (kf + 1) * step_size, start_geo * ratio ** (kf + 1 - linf))
        return ts, te

    def _march_nerfacc(self, origins: Tensor, directions: Tensor, t0: Tensor, t1: Tensor, step_size: float,
                       cone_angle: float) -> tuple[Tensor, Tensor, Tensor]:
        from nerfacc import traverse_grids

        intervals, samples, _ = traverse_grids(origins.contiguous(), directions.contiguous(), self.binaries,
                                               self.aabbs, near_planes=t0, far_planes=t1, step_size=step_size,
                                               cone_angle=cone_angle)
        return (samples.ray_indices.long(), intervals.vals[intervals.is_left],
                intervals.vals[intervals.is_right])

    # -- learning the grid ------------------------------------------------------------------------
    def cell_centers(self, level: int = 0) -> Tensor:
        """World positions of the cell centres of `level` (R^3, 3), in flat-index order."""
        box = self.aabbs[level]
        return box[:3] + (self.grid_coords.to(box) + 0.5) / self.resolution * (box[3:] - box[:3])

    @torch.no_grad()
    def update(self, step: int, occ_eval_fn: Callable[[Tensor], Tensor], occ_thre: float = 0.01,
               ema_decay: float = 0.95, warmup_steps: int = 256, update_every: int = 16,
               generator: torch.Generator | None = None) -> bool:
        """Refresh the grid every `update_every` steps; `occ_eval_fn(points (N, 3))` returns the
        occupancy (density x step size) (N,) or (N, 1). Returns whether it updated."""
        if step % update_every != 0:
            return False
        n_cells = self.cells_per_level
        for level in range(self.levels):
            offset = level * n_cells
            if step < warmup_steps:
                cells = torch.arange(n_cells, device=self.occs.device)
            else:
                uniform = torch.randint(n_cells, (n_cells // 4,), generator=generator).to(self.occs.device)
                occupied = torch.nonzero(self.binaries[level].reshape(-1))[:, 0]
                if len(occupied) > n_cells // 4:
                    pick = torch.randint(len(occupied), (n_cells // 4,), generator=generator).to(occupied.device)
                    occupied = occupied[pick]
                cells = torch.cat([uniform, occupied])
            cells = cells[self.occs[offset + cells] >= 0]  # cells marked invisible stay skipped
            jitter = torch.rand(len(cells), 3, generator=generator).to(self.aabbs)
            box = self.aabbs[level]
            x = box[:3] + (self.grid_coords[cells].to(box) + jitter) / self.resolution * (box[3:] - box[:3])
            occ = occ_eval_fn(x).reshape(-1).to(self.occs)
            self.occs[offset + cells] = torch.maximum(self.occs[offset + cells] * ema_decay, occ)
        valid = self.occs[self.occs >= 0]
        thre = min(occ_thre, float(valid.mean())) if len(valid) else occ_thre
        self.binaries = (self.occs > thre).reshape(self.binaries.shape)
        return True

    @torch.no_grad()
    def mark_invisible_cells(self, camtoworlds: Tensor, Ks: Tensor, width: int, height: int,
                             near: float = 0.0) -> None:
        """Cells that no camera sees (or that sit closer than `near` to one) are set to -1: never
        occupied, never evaluated."""
        w2c = torch.linalg.inv(camtoworlds.to(self.aabbs))
        for level in range(self.levels):
            x = self.cell_centers(level)
            seen = torch.zeros(len(x), dtype=torch.bool, device=x.device)
            too_near = torch.zeros_like(seen)
            for c in range(len(w2c)):
                p = x @ w2c[c, :3, :3].T + w2c[c, :3, 3]
                z = p[:, 2]
                uv = (p[:, :2] / z.clamp_min(1e-9)[:, None]) * Ks[c, [0, 1], [0, 1]].to(x) + Ks[c, :2, 2].to(x)
                in_image = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
                seen |= in_image & (z >= near)
                too_near |= in_image & (z < near)
            offset = level * self.cells_per_level
            valid = seen & ~too_near
            self.occs[offset:offset + self.cells_per_level] = torch.where(valid, self.occs[offset:offset + self.cells_per_level].clamp_min(0),
                                                                          torch.full_like(x[:, 0], -1.0))
        self.binaries &= (self.occs >= 0).reshape(self.binaries.shape)
