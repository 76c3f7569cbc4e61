"""A small built-in 3D scene, so 3D trainers run offline with no download.

Coloured primitives (a sphere, a box, a torus on a round floor) are built from a ground-truth
set of flat Gaussians lying on their surfaces, rendered with this repo's own rasterizer from
cameras on the upper hemisphere, and written in the NeRF-synthetic layout (RGBA PNGs plus
`transforms_{train,test}.json`, OpenGL cameras, z up) so the regular reader loads it.
Everything is a pure function of the seed.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.io import atomic_path
from utils.rendering.cameras import Cameras, intrinsics_from_fov, look_at, opengl_to_opencv
from utils.rendering.sh import rgb_to_sh
from utils.rendering.splatting import RasterConfig, rasterization

__all__ = ["ground_truth_gaussians", "write_synthetic_scene", "ensure_synthetic_scene", "DEFAULT_SCENE_DIR"]

DEFAULT_SCENE_DIR = Path("outputs") / "datasets" / "synthetic_scene"
SCENE_VERSION = 1
"""Bumped whenever the scene changes, so a stale cached copy is rewritten."""


def _frame_from_normals(n: torch.Tensor) -> torch.Tensor:
    """Quaternions (wxyz) of rotations whose third axis is the unit normal `n` (P, 3)."""
    helper = torch.where((n[:, 2:3].abs() < 0.9), torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))
    t1 = torch.nn.functional.normalize(torch.linalg.cross(helper, n), dim=-1)
    t2 = torch.linalg.cross(n, t1)
    R = torch.stack([t1, t2, n], dim=-1)  # columns are the local axes
    # rotation matrix -> quaternion (Shepperd's method through the largest diagonal term)
    m = R
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    q = torch.stack([1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1).clamp(min=1e-12)
    k = q.argmax(-1)
    w = torch.empty(len(n), 4)
    s = torch.sqrt(q.gather(1, k[:, None]).squeeze(1)) * 2  # 4 * |component|
    r21, r12, r02, r20, r10, r01 = m[:, 2, 1], m[:, 1, 2], m[:, 0, 2], m[:, 2, 0], m[:, 1, 0], m[:, 0, 1]
    cand = [torch.stack([s / 4, (r21 - r12) / s, (r02 - r20) / s, (r10 - r01) / s], -1),
            torch.stack([(r21 - r12) / s, s / 4, (r01 + r10) / s, (r02 + r20) / s], -1),
            torch.stack([(r02 - r20) / s, (r01 + r10) / s, s / 4, (r12 + r21) / s], -1),
            torch.stack([(r10 - r01) / s, (r02 + r20) / s, (r12 + r21) / s, s / 4], -1)]
    for i in range(4):
        w[k == i] = cand[i][k == i]
    return torch.nn.functional.normalize(w, dim=-1)


def ground_truth_gaussians(seed: int = 0, density: float = 1.0) -> dict[str, torch.Tensor]:
    """The scene as Gaussians: means, quats (wxyz), scales, opacities, sh0 (P, 1, 3)."""
    g = torch.Generator().manual_seed(seed)
    parts = []  # (points, normals, colours, tangent scale)

    def fib_sphere(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32) + 0.5
        phi = torch.acos(1 - 2 * i / n)
        theta = math.pi * (1 + 5 ** 0.5) * i
        return torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)

    # floor disk, radius 1.0 at z = 0, soft radial colour gradient
    n = int(900 * density)
    r = torch.sqrt(torch.rand(n, generator=g)) * 1.0
    a = torch.rand(n, generator=g) * 2 * math.pi
    p = torch.stack([r * torch.cos(a), r * torch.sin(a), torch.zeros(n)], -1)
    col = torch.stack([0.80 - 0.25 * r, 0.78 - 0.1 * r, 0.70 + 0.15 * r], -1)
    parts.append((p, torch.tensor([0.0, 0.0, 1.0]).expand(n, 3), col, 0.05))
    # sphere: radius 0.3, colour following its normal
    n = int(700 * density)
    d = fib_sphere(n)
    parts.append((d * 0.3 + torch.tensor([-0.4, -0.25, 0.3]), d,
                  torch.stack([0.85 + 0.1 * d[:, 2], 0.25 + 0.2 * d[:, 0], 0.2 + 0.15 * d[:, 1]], -1), 0.035))
    # box: half size 0.22, one colour per face
    n_face = int(160 * density)
    centre = torch.tensor([0.38, 0.3, 0.22])
    face_cols = torch.tensor([[0.15, 0.35, 0.85], [0.2, 0.55, 0.9], [0.1, 0.25, 0.6],
                              [0.3, 0.45, 0.95], [0.25, 0.3, 0.75], [0.1, 0.4, 0.7]])
    for axis in range(3):
        for sign_i, sign in enumerate((-1.0, 1.0)):
            uv = (torch.rand(n_face, 2, generator=g) * 2 - 1) * 0.22
            q = torch.zeros(n_face, 3)
            others = [i for i in range(3) if i != axis]
            q[:, others[0]], q[:, others[1]], q[:, axis] = uv[:, 0], uv[:, 1], sign * 0.22
            nrm = torch.zeros(n_face, 3)
            nrm[:, axis] = sign
            parts.append((q + centre, nrm, face_cols[2 * axis + sign_i].expand(n_face, 3), 0.035))
    # torus around the origin: major radius 0.55, minor 0.07, green hue varying along the ring
    n = int(700 * density)
    u = torch.rand(n, generator=g) * 2 * math.pi
    v = torch.rand(n, generator=g) * 2 * math.pi
    ring = torch.stack([torch.cos(u), torch.sin(u), torch.zeros(n)], -1)
    nrm = torch.cos(v)[:, None] * ring + torch.sin(v)[:, None] * torch.tensor([0.0, 0.0, 1.0])
    p = ring * 0.55 + 0.07 * nrm + torch.tensor([0.0, 0.0, 0.08])
    col = torch.stack([0.2 + 0.15 * torch.sin(u), 0.65 + 0.15 * torch.cos(u), 0.3 + 0.0 * u], -1)
    parts.append((p, nrm, col, 0.03))

    means = torch.cat([p for p, _, _, _ in parts])
    normals = torch.cat([nr for _, nr, _, _ in parts])
    colors = torch.cat([c for _, _, c, _ in parts]).clamp(0, 1)
    tangent = torch.cat([torch.full((len(p),), s) for p, _, _, s in parts]) / math.sqrt(density)
    scales = torch.stack([tangent, tangent, torch.full_like(tangent, 0.004)], -1)
    return {
        "means": means,
        "quats": _frame_from_normals(normals),
        "scales": scales,
        "opacities": torch.full((len(means),), 0.95),
        "sh0": rgb_to_sh(colors)[:, None, :],
    }


def _hemisphere_cameras(n: int, radius: float, size: int, fov_x: float, seed: int, offset: float) -> Cameras:
    g = torch.Generator().manual_seed(seed)
    az = (torch.arange(n, dtype=torch.float64) + offset) * (2 * math.pi / n) + 0.1 * torch.rand(n, generator=g)
    el = torch.deg2rad(15 + 50 * torch.rand(n, generator=g, dtype=torch.float64))
    eye = radius * torch.stack([torch.cos(el) * torch.cos(az), torch.cos(el) * torch.sin(az), torch.sin(el)], -1)
    target = torch.tensor([0.0, 0.0, 0.15], dtype=torch.float64).expand_as(eye)
    c2w = look_at(eye, target, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    Ks = intrinsics_from_fov(fov_x, size, size).expand(n, 3, 3).clone()
    return Cameras(torch.linalg.inv(c2w).float(), Ks, size, size)


def write_synthetic_scene(root: str | Path, n_train: int = 48, n_test: int = 8, size: int = 64,
                          seed: int = 0, gaussians: dict[str, torch.Tensor] | None = None,
                          backend: str = "torch") -> Path:
    """Render the scene (or other `gaussians`, in the layout of `ground_truth_gaussians`) with the
    rasterizer `backend` and write it in the NeRF-synthetic layout under `root`."""
    root = Path(root)
    splats = ground_truth_gaussians(seed) if gaussians is None else gaussians
    fov_x = math.radians(40.0)
    for split, n, offset in (("train", n_train, 0.0), ("test", n_test, 0.5)):
        cams = _hemisphere_cameras(n, 4.0, size, fov_x, seed + (split == "test") * 1000, offset)
        with torch.no_grad():
            rgb, alpha, _ = rasterization(
                splats["means"], splats["quats"], splats["scales"], splats["opacities"], splats["sh0"],
                cams.viewmats, cams.Ks, size, size, sh_degree=0, config=RasterConfig(tile_size=16, backend=backend))
        # transparent background: straight (not premultiplied) colour in the PNG, as Blender writes
        straight = rgb / alpha.clamp(min=1e-6)
        rgba = torch.cat([straight.clamp(0, 1), alpha.clamp(0, 1)], -1)
        frames = []
        for i in range(n):
            rel = f"./{split}/r_{i}"
            with atomic_path(root / split / f"r_{i}.png") as tmp:
                Image.fromarray((rgba[i].numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(tmp)
            c2w_gl = opengl_to_opencv(torch.linalg.inv(cams.viewmats[i].double()))
            frames.append({"file_path": rel, "transform_matrix": c2w_gl.tolist()})
        with atomic_path(root / f"transforms_{split}.json") as tmp:
            tmp.write_text(json.dumps({"camera_angle_x": fov_x, "frames": frames}, indent=1))
    with atomic_path(root / "scene_version.json") as tmp:
        tmp.write_text(json.dumps({"version": SCENE_VERSION, "seed": seed, "size": size,
                                   "n_train": n_train, "n_test": n_test}))
    return root


def ensure_synthetic_scene(root: str | Path = DEFAULT_SCENE_DIR, **kwargs) -> Path:
    """The built-in scene under `root`, written on first use (or when the scene code changed)."""
    root = Path(root)
    stamp = root / "scene_version.json"
    want = {"version": SCENE_VERSION, "seed": kwargs.get("seed", 0), "size": kwargs.get("size", 64),
            "n_train": kwargs.get("n_train", 48), "n_test": kwargs.get("n_test", 8)}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return root
    return write_synthetic_scene(root, **kwargs)
