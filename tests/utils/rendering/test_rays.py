"""Rays: pixel centres agree with the 3DGS rasterizer's projection, OpenCV distortion round trips,
ray-box intersection matches nerfacc's PyTorch reference, mip-NeRF frustum Gaussians match Monte Carlo."""
from __future__ import annotations

import math

import torch

from utils.rendering.cameras import Cameras, camera_rays, intrinsics_from_fov, orbit_cameras
from utils.rendering.rays import (PIXEL_RADIUS_SCALE, conical_frustum_gaussian, distort, generate_rays,
                                  ray_aabb_intersect, undistort)


def _cams(n=3, w=24, h=18):
    cams = orbit_cameras(n, 3.0, w, h, fov_x=math.radians(50), elevation=math.radians(20), target=(0.1, -0.2, 0.05))
    Ks = cams.Ks.clone()
    Ks[:, 0, 2] += 0.7  # an off-centre principal point, fx != fy
    Ks[:, 1, 1] *= 1.1
    return Cameras(cams.viewmats, Ks, w, h)


def test_ray_through_pixel_centre_hits_what_the_rasterizer_projects_there():
    from utils.rendering.splat_projection import fully_fused_projection
    from utils.rendering.splatting import RasterConfig, rasterization

    cams = _cams()
    g = torch.Generator().manual_seed(0)
    ci = torch.randint(3, (40,), generator=g)
    pix = torch.stack([torch.randint(24, (40,), generator=g), torch.randint(18, (40,), generator=g)], -1).float() + 0.5
    rays = generate_rays(cams, ci, pix)
    points = rays.origins + rays.directions * (2.0 + torch.rand(40, 1, generator=g))
    covars = torch.eye(3).expand(40, 3, 3) * 1e-6
    _, means2d, _, _, _ = fully_fused_projection(points, covars, cams.viewmats, cams.Ks, 24, 18)
    assert (means2d[ci, torch.arange(40)] - pix).abs().max() < 1e-3
    # and a tiny splat rendered at that point lights that very pixel
    i = 5
    rgb, alpha, _ = rasterization(points[i:i + 1], torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.01),
                                  torch.ones(1), torch.ones(1, 1, 3), cams.viewmats[ci[i]:ci[i] + 1],
                                  cams.Ks[ci[i]:ci[i] + 1], 24, 18, sh_degree=0, config=RasterConfig(backend="torch"))
    v, u = divmod(int(alpha[0, ..., 0].argmax()), 24)
    assert (u + 0.5, v + 0.5) == tuple(pix[i].tolist())


def test_full_image_rays_match_camera_rays_and_carry_pixel_radii():
    cams = _cams(2)
    rays = generate_rays(cams)
    o, d = camera_rays(cams)
    assert len(rays) == 2 * 18 * 24
    assert torch.allclose(rays.directions, d.reshape(-1, 3), atol=1e-6)
    assert torch.allclose(rays.origins, o.reshape(-1, 3), atol=1e-5)
    assert torch.equal(rays.camera_indices, torch.arange(2).repeat_interleave(18 * 24))
    # at the principal point the footprint is one pixel (1/fx at unit distance), as a disc of equal variance
    k = Cameras(cams.viewmats[:1], intrinsics_from_fov(1.0, 9, 9)[None], 9, 9)
    centre = generate_rays(k, torch.zeros(1, dtype=torch.long), torch.tensor([[4.5, 4.5]]))
    assert abs(float(centre.radii) - PIXEL_RADIUS_SCALE / float(k.Ks[0, 0, 0])) < 1e-7


def test_opencv_distortion_round_trips_and_bends_rays():
    dist = torch.tensor([-0.25, 0.08, 0.001, -0.002, 0.01])
    xy = (torch.rand(200, 2, generator=torch.Generator().manual_seed(1)) - 0.5) * 0.8
    assert (undistort(distort(xy, dist), dist) - xy).abs().max() < 1e-5
    cams = _cams(1)
    pix = torch.tensor([[2.5, 3.5], [20.5, 15.5]])
    rays = generate_rays(cams, torch.zeros(2, dtype=torch.long), pix, distortion=dist)
    # project a point of each ray back through the lens: it lands on its pixel
    p = rays.origins + rays.directions * 2.5
    pc = (cams.viewmats[0, :3, :3] @ p.T).T + cams.viewmats[0, :3, 3]
    K = cams.Ks[0]
    seen = distort(pc[:, :2] / pc[:, 2:], dist)
    uv = torch.stack([seen[:, 0] * K[0, 0] + K[0, 2], seen[:, 1] * K[1, 1] + K[1, 2]], -1)
    assert (uv - pix).abs().max() < 1e-3
    plain = generate_rays(cams, torch.zeros(2, dtype=torch.long), pix)
    assert (plain.directions - rays.directions).abs().max() > 1e-3  # the lens moved the corner rays


def test_ray_aabb_intersection_matches_nerfacc_reference():
    from nerfacc.grid import _ray_aabb_intersect

    g = torch.Generator().manual_seed(2)
    o = torch.randn(300, 3, generator=g) * 2
    d = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1)
    aabb = torch.tensor([-1.0, -0.5, -0.8, 1.2, 0.7, 0.9])
    t0, t1, hit = ray_aabb_intersect(o, d, aabb)
    r0, r1, rhit = _ray_aabb_intersect(o, d, aabb[None])
    assert torch.equal(hit, rhit[:, 0]) and 20 < int(hit.sum()) < 300
    assert torch.allclose(t0[hit], r0[hit, 0], atol=1e-5) and torch.allclose(t1[hit], r1[hit, 0], atol=1e-5)
    assert torch.isinf(t0[~hit]).all()


def test_conical_frustum_gaussian_matches_monte_carlo():
    o = torch.tensor([[0.2, -0.1, 0.3]])
    d = torch.nn.functional.normalize(torch.tensor([[0.3, 0.5, 0.8]]), dim=-1)
    radius = torch.tensor([[0.05]])
    t0, t1 = torch.tensor([[1.0, 2.5]]), torch.tensor([[1.6, 2.7]])
    mean, var = conical_frustum_gaussian(o, d, t0, t1, radius)
    g = torch.Generator().manual_seed(3)
    # points uniform in the frustum's volume: t with density ~ t^2, uniform over the disc of radius t r
    basis = torch.linalg.qr(torch.cat([d.T, torch.randn(3, 2, generator=g)], 1))[0]
    u, v = basis[:, 1], basis[:, 2]
    for k in range(2):
        n = 400_000
        a, b = float(t0[0, k]), float(t1[0, k])
        t = (a ** 3 + torch.rand(n, generator=g, dtype=torch.float64) * (b ** 3 - a ** 3)) ** (1 / 3)
        rad = float(radius) * t * torch.sqrt(torch.rand(n, generator=g, dtype=torch.float64))
        phi = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
        pts = (o.double() + t[:, None] * d.double() + rad[:, None] * (torch.cos(phi)[:, None] * u.double()
                                                                     + torch.sin(phi)[:, None] * v.double()))
        assert (pts.mean(0) - mean[0, k].double()).abs().max() < 2e-3
        assert (pts.var(0) - var[0, k].double()).abs().max() < 2e-3 * float(var[0, k].max()) + 1e-5
