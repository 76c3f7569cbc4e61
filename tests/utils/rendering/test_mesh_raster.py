"""Mesh rasterizer: coverage of a triangle and depth of a plane against closed forms, barycentrics exact at
vertices, the depth test, attribute interpolation (perspective-correct), finite-difference gradient checks,
and the soft silhouette's limit and gradients."""
from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from utils.errors import UserError
from utils.rendering import mesh_raster
from utils.rendering.cameras import camera_rays
from utils.rendering.mesh_raster import (
    clip_from_cameras,
    interpolate,
    rasterize,
    soft_silhouette,
)


def _clip(px, py, h, w, z=0.0, wcoord=1.0):
    """Clip coordinates of a point at pixel position (px, py) (pixel centres at integer + 1/2)."""
    return [(2 * px / w - 1) * wcoord, (2 * py / h - 1) * wcoord, z * wcoord, wcoord]


def test_single_triangle_coverage_matches_exact_lattice_count():
    h, w = 23, 31
    tri_px = [(1.3, 2.1), (29.7, 5.4), (9.2, 21.6)]
    pos = torch.tensor([_clip(x, y, h, w) for x, y in tri_px], dtype=torch.float64)
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (h, w))
    covered = rast[0, ..., 3] == 1

    def inside(cx, cy):  # exact rational half-plane test, independent of the rasterizer
        v = [(Fraction(str(x)), Fraction(str(y))) for x, y in tri_px]
        s = [(b[0] - a[0]) * (cy - a[1]) - (b[1] - a[1]) * (cx - a[0]) for a, b in zip(v, v[1:] + v[:1])]
        return all(x > 0 for x in s) or all(x < 0 for x in s)

    expect = torch.tensor([[inside(Fraction(2 * i + 1, 2), Fraction(2 * j + 1, 2)) for i in range(w)] for j in range(h)])
    assert torch.equal(covered, expect)
    (ax, ay), (bx, by), (cx, cy) = tri_px
    area = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) / 2
    perimeter = sum(math.dist(p, q) for p, q in zip(tri_px, tri_px[1:] + tri_px[:1]))
    assert abs(covered.sum().item() - area) < perimeter / 2
    assert (rast[0, ~covered] == 0).all()


def _perspective(fov_y, aspect, near, far):
    f = 1 / math.tan(fov_y / 2)
    return torch.tensor([[f / aspect, 0, 0, 0], [0, f, 0, 0],
                         [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]],
                        dtype=torch.float64)


def test_depth_and_interpolated_position_of_a_tilted_plane_match_ray_casting():
    h, w = 20, 24
    proj = _perspective(math.radians(60), w / h, 0.5, 100.0)
    # a big quad on the plane n . p = c in eye space (the camera looks down -z)
    n, c = torch.tensor([0.3, -0.2, 1.0], dtype=torch.float64), -20.0
    corners = []
    for x, y in [(-30, -30), (30, -30), (30, 30), (-30, 30)]:
        z = (c - n[0] * x - n[1] * y) / n[2]
        corners.append([x, y, z])
    eye = torch.tensor(corners, dtype=torch.float64)
    pos = torch.cat([eye, torch.ones(4, 1, dtype=torch.float64)], 1) @ proj.T
    tris = torch.tensor([[0, 1, 2], [0, 2, 3]])
    rast = rasterize(pos, tris, (h, w))
    assert (rast[0, ..., 3] > 0).all()
    jj, ii = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    xn, yn = (2 * (ii + 0.5) / w - 1).double(), (2 * (jj + 0.5) / h - 1).double()
    d = torch.stack([xn / proj[0, 0], yn / proj[1, 1], -torch.ones_like(xn)], -1)
    hit = d * (c / (d @ n)).unsqueeze(-1)  # ray-plane intersection
    z_eye = hit[..., 2]
    z_ndc = (proj[2, 2] * z_eye + proj[2, 3]) / -z_eye
    assert torch.allclose(rast[0, ..., 2], z_ndc, atol=1e-9)
    where = interpolate(eye, rast, tris)[0]  # perspective-correct: the eye-space point on the ray
    assert torch.allclose(where, hit, atol=1e-9)


def test_barycentrics_are_one_hot_at_vertices_under_perspective():
    h, w = 16, 16
    pix = [(2.5, 3.5), (13.5, 4.5), (6.5, 12.5)]
    pos = torch.tensor([_clip(x, y, h, w, z=0.1 * k, wcoord=2.0 ** k) for k, (x, y) in enumerate(pix)])
    rast = rasterize(pos, torch.tensor([[0, 1, 2]]), (h, w))
    attr = torch.eye(3)
    out = interpolate(attr, rast, torch.tensor([[0, 1, 2]]))[0]
    for k, (x, y) in enumerate(pix):
        assert rast[0, int(y), int(x), 3] == 1
        assert torch.equal(out[int(y), int(x)], attr[k])
        assert rast[0, int(y), int(x), 2] == pytest.approx(0.1 * k, abs=1e-7)


def test_depth_test_keeps_the_nearest_triangle_whatever_the_order():
    h, w = 12, 12
    near_tri = [_clip(1, 1, h, w, -0.2), _clip(11, 1, h, w, -0.2), _clip(1, 11, h, w, -0.2)]
    far_tri = [_clip(1, 1, h, w, 0.5), _clip(11, 1, h, w, 0.5), _clip(11, 11, h, w, 0.5)]
    beyond = [_clip(0, 0, h, w, 1.5), _clip(12, 0, h, w, 1.5), _clip(0, 12, h, w, 1.5)]  # past the far plane
    for order in ([0, 1, 2], [2, 1, 0]):
        tris_pos = [[near_tri, far_tri, beyond][k] for k in order]
        pos = torch.tensor(sum(tris_pos, []), dtype=torch.float64)
        rast = rasterize(pos, torch.arange(9).reshape(3, 3), (h, w))
        ids = rast[0, ..., 3].long() - 1
        got = {order[k] for k in ids[ids >= 0].unique().tolist()}
        assert got == {0, 1}  # never the one beyond the far plane
        depth = rast[0, ..., 2][ids >= 0]
        assert set(depth.round(decimals=5).tolist()) == {-0.2, 0.5}
        both = (ids >= 0) & torch.tensor([[i + j < 10 and i > j for i in range(w)] for j in range(h)])
        assert both.any() and (rast[0, ..., 2][both] == pytest.approx(-0.2))


def test_chunked_candidates_give_the_same_image(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pos = torch.cat([torch.rand(30, 2, generator=g) * 2 - 1, torch.rand(30, 1, generator=g) * 1.8 - 0.9,
                     torch.ones(30, 1)], 1)
    tris = torch.randint(30, (25, 3), generator=g)
    full = rasterize(pos, tris, (17, 19))
    monkeypatch.setattr(mesh_raster, "MAX_PAIRS", 37)
    assert torch.equal(rasterize(pos, tris, (17, 19)), full)
    assert (full[..., 3] > 0).sum() > 50


def _small_mesh():
    g = torch.Generator().manual_seed(1)
    pos = torch.tensor([[-0.7, -0.6, 0.1, 1.0], [0.65, -0.5, 0.3, 1.2], [0.1, 0.75, -0.2, 0.9],
                        [-0.5, 0.55, 0.4, 1.1]], dtype=torch.float64)
    pos = pos + 0.01 * torch.randn(pos.shape, generator=g, dtype=torch.float64)
    return pos, torch.tensor([[0, 1, 2], [0, 2, 3]])


def test_interpolation_gradients_match_finite_differences():
    pos, tris = _small_mesh()
    attr = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))

    def f(p, a):
        rast = rasterize(p, tris, (9, 11))
        return interpolate(a, rast, tris), rast[..., :3]

    assert torch.autograd.gradcheck(f, (pos.requires_grad_(True), attr.requires_grad_(True)), eps=1e-6, atol=1e-6,
                                    fast_mode=True)


def test_soft_silhouette_tends_to_hard_coverage_and_has_exact_gradients():
    pos, tris = _small_mesh()
    h, w = 10, 12
    one = tris[:1]  # a single triangle: the limit holds away from its edges (SoftRas halves coverage on a
    hard = (rasterize(pos, one, (h, w))[0, ..., 3] > 0).double()  # shared interior edge, by design)
    sharp = soft_silhouette(pos, one, (h, w), sigma=1e-6)[0]  # the nearest pixel centre is 0.0023 px off an edge
    assert hard.sum() > 10 and (sharp - hard).abs().max() < 0.05
    soft = soft_silhouette(pos, tris, (h, w), sigma=0.5)[0]
    assert ((soft > 0) & (soft < 1)).any() and (soft <= 1).all() and (soft >= 0).all()
    weights = torch.randn(h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    assert torch.autograd.gradcheck(lambda p: soft_silhouette(p, tris, (h, w), sigma=0.5) * weights,
                                    (pos.clone().requires_grad_(True),), eps=1e-6, atol=1e-6, fast_mode=True)
    # pulling a vertex outwards grows the silhouette
    p = pos.clone().requires_grad_(True)
    soft_silhouette(p, tris, (h, w), sigma=0.5).sum().backward()
    assert p.grad[1, 0] > 0 and p.grad[0, 0] < 0


def test_backend_and_shape_mistakes_are_user_errors():
    pos, tris = _small_mesh()
    if not (mesh_raster.nvdiffrast_available() and torch.cuda.is_available()):
        with pytest.raises(UserError, match="nvdiffrast"):
            rasterize(pos, tris, 8, backend="nvdiffrast")
    with pytest.raises(UserError, match=r"\(B, V, 4\)"):
        rasterize(pos[:, :3], tris, 8)
    with pytest.raises(UserError, match="sigma"):
        soft_silhouette(pos, tris, 8, sigma=0)


def test_clip_from_cameras_puts_vertices_on_the_camera_pixels_and_sphere_silhouettes_are_disks():
    from utils.rendering.cameras import orbit_cameras
    from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid

    cams = orbit_cameras(2, 3.0, 40, 32, fov_x=math.radians(45), elevation=math.radians(25))
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(20, 3, generator=g) - 0.5
    clip = clip_from_cameras(pts, cams, near=0.5, far=10.0)
    cam = torch.einsum("cij,vj->cvi", cams.viewmats, torch.cat([pts, torch.ones(20, 1)], 1))[..., :3]
    uv = torch.einsum("cij,cvj->cvi", cams.Ks, cam)
    uv = uv[..., :2] / uv[..., 2:]
    ndc = clip[..., :2] / clip[..., 3:]
    assert torch.allclose((ndc + 1) / 2 * torch.tensor([40.0, 32.0]), uv, atol=1e-4)
    zn = clip[..., 2] / clip[..., 3]
    assert torch.allclose(zn, (10.5 / 9.5) - 10.0 / (9.5 * cam[..., 2]), atol=1e-5)
    # a DMTet sphere of radius 0.6 at the origin, 3 away: its silhouette is a disk of angular radius asin(0.2)
    grid = regular_tet_grid(16, scale=1.6)
    verts, faces = marching_tetrahedra(grid.verts, 0.6 - grid.verts.norm(dim=-1), grid.tets)
    rast = rasterize(clip_from_cameras(verts, cams, 0.5, 10.0), faces, (32, 40))
    _, dirs = camera_rays(cams)
    centre_dir = -torch.nn.functional.normalize(cams.centers, dim=-1)  # the cameras look at the origin
    angle = torch.acos((dirs * centre_dir[:, None, None]).sum(-1).clamp(-1, 1))
    disk = angle < math.asin(0.6 / 3.0)
    sure = (angle - math.asin(0.6 / 3.0)).abs() > math.radians(2.5)  # away from the rim (grid + pixels)
    assert torch.equal((rast[..., 3] > 0)[sure], disk[sure]) and disk.sum() > 100


def test_silhouette_loss_gradients_reach_only_sdf_values_next_to_the_surface():
    from utils.rendering.cameras import orbit_cameras
    from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid, tet_edges

    cams = orbit_cameras(1, 3.0, 24, 24, fov_x=math.radians(40))
    grid = regular_tet_grid(8, scale=1.6)
    sdf = (0.5 - grid.verts.norm(dim=-1)).requires_grad_(True)
    verts, faces = marching_tetrahedra(grid.verts, sdf, grid.tets)
    sil = soft_silhouette(clip_from_cameras(verts, cams, 0.5, 10.0), faces, (24, 24), sigma=1.0)
    target = torch.zeros_like(sil)
    ((sil - target) ** 2).sum().backward()
    e = tet_edges(grid.tets)
    crossing = e[(sdf[e[:, 0]] > 0) != (sdf[e[:, 1]] > 0)].reshape(-1)
    near = torch.zeros(len(sdf), dtype=torch.bool)
    near[crossing] = True
    assert (sdf.grad[~near] == 0).all() and (sdf.grad[near] != 0).sum() > 0.5 * near.sum()
    # shrinking the shape is what an empty target asks for: the SDF's gradient is positive (descent lowers it)
    assert sdf.grad[near].sum() > 0
