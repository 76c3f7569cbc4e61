"""`NeRFModel`: a field, its sampler and the volume renderer, one of four methods.

    vanilla      stratified coarse samples -> coarse MLP -> inverse-CDF fine samples (with the
                 coarse ones) -> fine MLP                                   (Mildenhall et al. 2020)
    mipnerf      conical frustums -> one IPE MLP, twice: coarse, then resampled from the blurred
                 coarse weights                                                (Barron et al. 2021)
    instant-ngp  occupancy-grid marching with empty-space skipping -> hash-grid field, packed
                 samples                                                       (Mueller et al. 2022)
    nerfacto     pose-corrected rays -> two proposal density networks -> hash-grid field with scene
                 contraction and per-image appearance                          (Tancik et al. 2023)

`forward(rays)` returns a dict with "rgb" (R, 3), "depth" (R, 1), "opacity" (R, 1) and what the
method's losses need; `losses(outputs, target)` the weighted terms and their "total".
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.rendering.cameras import Cameras
from utils.rendering.occupancy_grid import OccupancyGrid
from utils.rendering.pose_refinement import PoseRefinement
from utils.rendering.ray_losses import distortion_loss, interlevel_loss
from utils.rendering.ray_samplers import (ProposalSampler, bin_midpoints, inverse_cdf_bins, sorted_union,
                                          stratified_bins)
from utils.rendering.rays import RayBundle, conical_frustum_gaussian, generate_rays, ray_aabb_intersect
from utils.rendering.volume_rendering import volume_render

from .config import NeRFConfig
from .layers import HashDensityField, HashField, NeRFField

__all__ = ["NeRFModel", "anneal_weight"]


def anneal_weight(step: int, anneal_steps: int, slope: float = 10.0) -> float:
    """nerfstudio's proposal-weight annealing exponent: from 0 to 1 over `anneal_steps`, fast at first."""
    x = min(max(step / max(anneal_steps, 1), 0.0), 1.0)
    return (slope * x) / ((slope - 1) * x + 1)


def _blur_weights(w: Tensor) -> Tensor:
    """mip-NeRF's 'blurpool': a max over each pair of neighbours, then their average."""
    padded = torch.cat([w[..., :1], w, w[..., -1:]], -1)
    peak = torch.maximum(padded[..., :-1], padded[..., 1:])
    return 0.5 * (peak[..., :-1] + peak[..., 1:])


class NeRFModel(nn.Module):
    """A radiance field with its sampling, for `config.method`; `num_images` training views (for
    per-image appearance and pose corrections)."""

    def __init__(self, config: NeRFConfig, num_images: int = 0):
        super().__init__()
        self.config, self.num_images = config, num_images
        c = config
        aabb = torch.tensor(c.aabb, dtype=torch.float32)
        self.register_buffer("aabb", aabb)
        self.register_buffer("background", torch.tensor(c.background, dtype=torch.float32))
        self.coarse = self.fine = self.field = self.grid = self.pose = None
        self.proposals = None
        if c.method in ("vanilla", "mipnerf"):
            kw = dict(pos_max_deg=c.pos_max_deg, dir_max_deg=c.dir_max_deg, width=c.mlp_width, depth=c.mlp_depth,
                      skip_layer=c.skip_layer, color_width=c.color_width, integrated=c.method == "mipnerf")
            self.coarse = NeRFField(**kw)
            if c.method == "vanilla":
                self.fine = NeRFField(**kw)
        else:
            self.field = HashField(aabb, c.unbounded, c.hash_levels, c.hash_features, c.hash_log2_size,
                                   c.hash_base_res, c.hash_max_res, c.hidden_dim, c.geo_feat_dim, c.color_hidden,
                                   c.color_layers, c.sh_degree, c.appearance_dim, num_images, c.hash_backend)
        if c.method == "instant-ngp":
            self.grid = OccupancyGrid(aabb, c.grid_resolution, c.grid_levels if c.unbounded else 1)
        if c.method == "nerfacto":
            self.proposals = nn.ModuleList([
                HashDensityField(aabb, c.unbounded, c.proposal_levels, res, c.proposal_log2_size, c.proposal_hidden,
                                 c.hash_backend) for res in c.proposal_max_res])
            self.sampler = ProposalSampler(c.num_proposal_samples, c.num_nerf_samples,
                                           c.spacing if c.unbounded else "linear")
        if c.pose_refinement and num_images:
            self.pose = PoseRefinement(num_images)
        self.register_buffer("train_camtoworlds", torch.eye(4).expand(max(num_images, 1), 4, 4).clone())

    # -- parameters by role, for the optimiser -------------------------------------------------------
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """'tables' (hash grids and embeddings: no weight decay), 'mlp', 'pose'."""
        groups: dict[str, list[nn.Parameter]] = {"tables": [], "mlp": [], "pose": []}
        for name, p in self.named_parameters():
            if name.startswith("pose."):
                groups["pose"].append(p)
            elif "encoding" in name or "appearance" in name:
                groups["tables"].append(p)
            else:
                groups["mlp"].append(p)
        return groups

    # -- rays ---------------------------------------------------------------------------------------
    def ray_bounds(self, rays: RayBundle) -> tuple[Tensor, Tensor]:
        """near, far (R, 1) of each ray: the box entry and exit, within config near/far (the whole
        config range for unbounded scenes). Rays that miss the box get an empty range."""
        c = self.config
        n = len(rays)
        if c.unbounded:
            near = torch.full((n, 1), c.near, device=rays.origins.device, dtype=rays.origins.dtype)
            return near, torch.full_like(near, c.far)
        t_in, t_out, hit = ray_aabb_intersect(rays.origins, rays.directions, self.aabb)
        near = torch.where(hit, t_in.clamp_min(c.near), torch.full_like(t_in, c.near))
        far = torch.where(hit, t_out.clamp(max=c.far), torch.full_like(t_in, c.near))
        far = torch.maximum(far, near)
        return near[:, None], far[:, None]

    # -- densities and colours at points (exports, grid updates) ---------------------------------------
    def density(self, x: Tensor, var: Tensor | None = None) -> Tensor:
        """Density (N,) at world points x (N, 3); `var` is the Gaussian variance mip-NeRF integrates over."""
        c = self.config
        if c.method == "vanilla":
            return F.relu(self.fine.raw_density(x)).squeeze(-1)
        if c.method == "mipnerf":
            v = var if var is not None else torch.zeros_like(x)
            return F.softplus(self.coarse.raw_density(x, v) - 1.0).squeeze(-1)
        return self.field.density(x).squeeze(-1)

    def color(self, x: Tensor, directions: Tensor, var: Tensor | None = None) -> Tensor:
        """Colour (N, 3) at world points x (N, 3) seen along unit `directions` (N, 3)."""
        c = self.config
        if c.method in ("vanilla", "mipnerf"):
            net = self.fine if c.method == "vanilla" else self.coarse
            v = var if var is not None else (torch.zeros_like(x) if c.method == "mipnerf" else None)
            return self._rgb(net(x, directions, v)[1])
        return self.field(x, directions)[1]

    def _rgb(self, raw: Tensor) -> Tensor:
        if self.config.method == "mipnerf":  # a little headroom so 0 and 1 are reachable
            return torch.sigmoid(raw) * (1 + 2 * 0.001) - 0.001
        return torch.sigmoid(raw)

    # -- rendering ------------------------------------------------------------------------------------
    def forward(self, rays: RayBundle, stratified: bool = False, generator: torch.Generator | None = None,
                step: int | None = None, training_views: bool = False,
                background: Tensor | None = None) -> dict[str, Any]:
        """Render rays. `training_views`: the rays' camera indices are training images (pose
        corrections and their appearance embeddings apply); `step` drives the proposal annealing."""
        bg = self.background if background is None else background
        if self.pose is not None and training_views:
            rays = self.pose(rays, self.train_camtoworlds)
        method = self.config.method
        if method == "vanilla":
            return self._render_hierarchical(rays, stratified, generator, bg)
        if method == "mipnerf":
            return self._render_mip(rays, stratified, generator, bg)
        if method == "instant-ngp":
            return self._render_occupancy(rays, stratified, generator, bg, training_views)
        return self._render_proposal(rays, stratified, generator, bg, step, training_views)

    def _padded(self, bins: Tensor, sigma: Tensor, rgb: Tensor, bg: Tensor) -> dict[str, Any]:
        r = volume_render(bins[:, :-1], bins[:, 1:], sigma, rgb, background=bg)
        return {"rgb": r.rgb, "depth": r.depth, "opacity": r.opacity, "weights": r.weights, "bins": bins}

    def _render_hierarchical(self, rays: RayBundle, stratified: bool, gen, bg: Tensor) -> dict[str, Any]:
        c = self.config
        near, far = self.ray_bounds(rays)
        o, d = rays.origins[:, None, :], rays.directions[:, None, :]

        def run(net: NeRFField, bins: Tensor) -> dict[str, Any]:
            x = o + d * bin_midpoints(bins)[..., None]
            raw_sigma, raw_rgb = net(x, d)
            return self._padded(bins, F.relu(raw_sigma.squeeze(-1)), self._rgb(raw_rgb), bg)

        coarse_bins = stratified_bins(near, far, c.num_coarse, stratified, gen)
        coarse = run(self.coarse, coarse_bins)
        fine_bins = inverse_cdf_bins(coarse_bins, coarse["weights"], c.num_fine, stratified, gen, padding=0.0)
        fine = run(self.fine, sorted_union(coarse_bins, fine_bins))
        fine["rgb_coarse"] = coarse["rgb"]
        fine["num_samples"] = fine["weights"].numel() + coarse["weights"].numel()
        return fine

    def _render_mip(self, rays: RayBundle, stratified: bool, gen, bg: Tensor) -> dict[str, Any]:
        c = self.config
        near, far = self.ray_bounds(rays)

        def run(bins: Tensor) -> dict[str, Any]:
            mean, var = conical_frustum_gaussian(rays.origins, rays.directions, bins[:, :-1], bins[:, 1:], rays.radii)
            raw_sigma, raw_rgb = self.coarse(mean, rays.directions[:, None, :], var)
            return self._padded(bins, F.softplus(raw_sigma.squeeze(-1) - 1.0), self._rgb(raw_rgb), bg)

        coarse_bins = stratified_bins(near, far, c.num_coarse, stratified, gen)
        coarse = run(coarse_bins)
        fine_bins = inverse_cdf_bins(coarse_bins, _blur_weights(coarse["weights"].detach()), c.num_fine,
                                     stratified, gen, padding=c.resample_padding)
        fine = run(fine_bins)
        fine["rgb_coarse"] = coarse["rgb"]
        fine["num_samples"] = fine["weights"].numel() + coarse["weights"].numel()
        return fine

    def _render_occupancy(self, rays: RayBundle, stratified: bool, gen, bg: Tensor,
                          training_views: bool) -> dict[str, Any]:
        c = self.config
        o, d = rays.origins, rays.directions
        field = self.field

        def sigma_fn(ts: Tensor, te: Tensor, ri: Tensor) -> Tensor:
            return field.density(o[ri] + d[ri] * (0.5 * (ts + te))[:, None]).squeeze(-1)

        ri, ts, te = self.grid.sample(o, d, near=c.near, far=c.far, step_size=c.step_size, cone_angle=c.cone_angle,
                                      sigma_fn=sigma_fn, early_stop_eps=c.early_stop_eps, alpha_thre=c.alpha_thre,
                                      stratified=stratified, generator=gen)
        x = o[ri] + d[ri] * (0.5 * (ts + te))[:, None]
        cams = rays.camera_indices[ri] if (training_views and c.appearance_dim) else None
        sigma, rgb = field(x, d[ri], cams)
        r = volume_render(ts, te, sigma.squeeze(-1), rgb, ri, len(rays), bg)
        return {"rgb": r.rgb, "depth": r.depth, "opacity": r.opacity, "num_samples": int(len(ts))}

    def _render_proposal(self, rays: RayBundle, stratified: bool, gen, bg: Tensor, step: int | None,
                         training_views: bool) -> dict[str, Any]:
        c = self.config
        near, far = self.ray_bounds(rays)
        anneal = 1.0 if step is None else anneal_weight(step, c.anneal_steps)
        fns = [lambda x, p=p: p(x) for p in self.proposals]
        bins, prop_bins, prop_weights = self.sampler(rays.origins, rays.directions, near, far, fns, anneal,
                                                     stratified, gen)
        x = rays.origins[:, None, :] + rays.directions[:, None, :] * bin_midpoints(bins)[..., None]
        dirs = rays.directions[:, None, :].expand_as(x)
        cams = rays.camera_indices[:, None].expand(x.shape[:-1]) if (training_views and c.appearance_dim) else None
        sigma, rgb = self.field(x, dirs, cams)
        out = self._padded(bins, sigma.squeeze(-1), rgb, bg)
        out.update(near=near, far=far, proposal_bins=prop_bins[:-1], proposal_weights=prop_weights,
                   num_samples=out["weights"].numel() + sum(w.numel() for w in prop_weights))
        return out

    # -- losses -----------------------------------------------------------------------------------------
    def losses(self, outputs: dict[str, Any], target: Tensor, coarse_mult: float = 1.0) -> dict[str, Tensor]:
        """Weighted loss terms and their sum ("total"); "mse" is the final colour's MSE."""
        c = self.config
        terms = {"mse": F.mse_loss(outputs["rgb"], target)}
        total = terms["mse"]
        if "rgb_coarse" in outputs:
            terms["mse_coarse"] = F.mse_loss(outputs["rgb_coarse"], target)
            total = total + coarse_mult * terms["mse_coarse"]
        if c.method == "nerfacto":
            terms["interlevel"] = interlevel_loss(outputs["bins"], outputs["weights"], outputs["proposal_bins"],
                                                  outputs["proposal_weights"])
            terms["distortion"] = distortion_loss(outputs["bins"], outputs["weights"], outputs["near"], outputs["far"])
            total = total + c.interlevel_mult * terms["interlevel"] + c.distortion_mult * terms["distortion"]
        terms["total"] = total
        return terms

    # -- whole images -----------------------------------------------------------------------------------
    @torch.no_grad()
    def render_views(self, cameras: Cameras, chunk: int = 4096, training_views: bool = False,
                     background: Tensor | None = None) -> dict[str, Tensor]:
        """rgb (C, H, W, 3) in [0, 1], depth and opacity (C, H, W) of every pixel of `cameras`."""
        device = self.aabb.device
        cams = cameras.to(device)
        h, w = cams.height, cams.width
        rgbs, depths, accs = [], [], []
        for i in range(len(cams)):
            rays = generate_rays(cams[i])
            if training_views:
                rays.camera_indices = torch.full_like(rays.camera_indices, i)
            parts = [self(r, training_views=training_views, background=background) for r in rays.split(chunk)]
            rgbs.append(torch.cat([p["rgb"] for p in parts]).reshape(h, w, 3).clamp(0, 1).cpu())
            depths.append(torch.cat([p["depth"] for p in parts]).reshape(h, w).cpu())
            accs.append(torch.cat([p["opacity"] for p in parts]).reshape(h, w).cpu())
        return {"rgb": torch.stack(rgbs), "depth": torch.stack(depths), "opacity": torch.stack(accs)}

    @torch.no_grad()
    def update_grid(self, step: int, generator: torch.Generator | None = None) -> bool:
        """Instant-NGP: refresh the occupancy grid on its schedule (no-op for other methods)."""
        if self.grid is None:
            return False
        c = self.config
        return self.grid.update(step, lambda x: self.field.density(x).squeeze(-1) * c.step_size, c.occ_thre,
                                warmup_steps=c.grid_warmup, update_every=c.grid_update_every, generator=generator)

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
