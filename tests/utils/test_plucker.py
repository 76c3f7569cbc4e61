"""Plücker ray embeddings (utils/rendering/plucker.py): analytic rays of a known camera, the line
properties of the moment, invariance of relative poses to the world frame, and the token packing."""
from __future__ import annotations

import math

import pytest
import torch

from utils.errors import UserError
from utils.rendering.cameras import Cameras, intrinsics_from_fov, look_at, orbit_cameras
from utils.rendering.plucker import plucker, plucker_embedding, plucker_tokens, relative_to_first, token_grid


def _cams(c2w: torch.Tensor, w: int = 8, h: int = 6, fov: float = math.radians(60)) -> Cameras:
    Ks = intrinsics_from_fov(fov, w, h).to(c2w.dtype).expand(len(c2w), 3, 3).clone()
    return Cameras(torch.linalg.inv(c2w), Ks, w, h)


def test_identity_camera_gives_the_analytic_rays():
    w, h = 8, 6
    cams = _cams(torch.eye(4)[None].double(), w, h)
    emb = plucker_embedding(cams.to(dtype=torch.float64))
    assert emb.shape == (1, h, w, 6)
    assert emb[..., :3].abs().max() < 1e-12  # origin at 0: no moment
    K = cams.Ks[0].double()
    j, i = 2, 5  # row 2, column 5: pixel centre (5.5, 2.5)
    d = torch.tensor([(i + 0.5 - K[0, 2]) / K[0, 0], (j + 0.5 - K[1, 2]) / K[1, 1], 1.0], dtype=torch.float64)
    assert torch.allclose(emb[0, j, i, 3:], d / d.norm(), atol=1e-12)


def test_translated_camera_moment_is_origin_cross_direction():
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 3] = torch.tensor([1.0, -2.0, 0.5])
    emb = plucker_embedding(_cams(c2w[None]))
    d = emb[..., 3:]
    want = torch.linalg.cross(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64).expand_as(d), d, dim=-1)
    assert torch.allclose(emb[..., :3], want, atol=1e-12)
    assert torch.allclose((emb[..., :3] * d).sum(-1), torch.zeros((), dtype=d.dtype), atol=1e-12)  # m . d = 0 on every line


def test_moment_names_the_line_not_the_point():
    g = torch.Generator().manual_seed(0)
    o, d = torch.randn(10, 3, generator=g, dtype=torch.float64), torch.randn(10, 3, generator=g, dtype=torch.float64)
    d = torch.nn.functional.normalize(d, dim=-1)
    s = torch.randn(10, 1, generator=g, dtype=torch.float64)
    assert torch.allclose(plucker(o, d), plucker(o + s * d, d), atol=1e-12)


def test_world_translation_shifts_the_moment_by_t_cross_d():
    cams = orbit_cameras(4, 3.0, 8, 6).to(dtype=torch.float64)
    t = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64)
    shift = torch.eye(4, dtype=torch.float64)  # world shifted by t: c2w' = T(t) c2w
    shift[:3, 3] = t
    moved = Cameras(torch.linalg.inv(shift @ cams.camtoworlds), cams.Ks, cams.width, cams.height)
    a, b = plucker_embedding(cams), plucker_embedding(moved)
    assert torch.allclose(a[..., 3:], b[..., 3:], atol=1e-10)
    assert torch.allclose(b[..., :3] - a[..., :3], torch.linalg.cross(t.expand_as(a[..., 3:]), a[..., 3:], dim=-1),
                          atol=1e-10)


def test_relative_poses_ignore_a_rigid_change_of_world():
    cams = orbit_cameras(5, 3.0, 8, 8, start=0.4).to(dtype=torch.float64)
    # a rigid world transform: rotation about (1, 1, 0) by 0.7 rad and a translation
    axis = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), dim=0)
    k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]], dtype=torch.float64)
    R = torch.eye(3, dtype=torch.float64) + math.sin(0.7) * k + (1 - math.cos(0.7)) * k @ k
    G = torch.eye(4, dtype=torch.float64)
    G[:3, :3], G[:3, 3] = R, torch.tensor([5.0, -1.0, 2.0], dtype=torch.float64)
    moved = Cameras(torch.linalg.inv(G @ cams.camtoworlds), cams.Ks, cams.width, cams.height)
    a = plucker_embedding(relative_to_first(cams))
    b = plucker_embedding(relative_to_first(moved))
    assert torch.allclose(a, b, atol=1e-9)
    assert not torch.allclose(plucker_embedding(cams), plucker_embedding(moved), atol=1e-3)
    rel = relative_to_first(cams)
    assert torch.allclose(rel.camtoworlds[0], torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_tokens_follow_the_causal_grid_and_pixel_means():
    n, w, h, rt, rs = 5, 8, 4, 2, 4
    eye = torch.stack([torch.tensor([0.1 * i, 0.0, -3.0]) for i in range(n)]).double()
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64))
    cams = _cams(c2w, w, h)
    assert token_grid(n, h, w, rt, rs) == (3, 1, 2)
    tok = plucker_tokens(cams, rt, rs, relative=False)
    assert tok.shape == (3 * 1 * 2, 6)
    emb = plucker_embedding(cams)
    # latent frame 0 is frame 0 alone; latent frame 1 is frames 1-2; token (f=1, row 0, col 1)
    assert torch.allclose(tok[0], emb[0, :, :4].reshape(-1, 6).mean(0), atol=1e-12)
    assert torch.allclose(tok[3], emb[1:3, :, 4:8].reshape(-1, 6).mean(0), atol=1e-12)
    full = plucker_tokens(cams, rt, rs, mode="unshuffle", relative=False)
    assert full.shape == (6, 6 * rt * rs * rs)
    assert torch.allclose(full.view(6, rt, rs, rs, 6).mean(dim=(1, 2, 3)), tok, atol=1e-12)
    assert torch.allclose(full[2].view(rt, rs, rs, 6)[1, 0, 0], emb[2, 0, 0], atol=1e-12)


def test_bad_grids_are_one_line():
    cams = orbit_cameras(4, 3.0, 8, 8)
    with pytest.raises(UserError, match="1 \\+ 8k frames"):
        plucker_tokens(cams, 8, 4)
    with pytest.raises(UserError, match="multiples of 32"):
        token_grid(9, 48, 64, 8, 32)
    with pytest.raises(UserError, match="mode"):
        plucker_tokens(orbit_cameras(9, 3.0, 32, 32), 8, 32, mode="max")
