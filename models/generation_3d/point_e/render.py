"""Turntable views of a coloured point cloud: each point a small square, nearest in front (z-buffer by
drawing far to near), on white; orbit cameras from `utils.rendering.cameras`."""
from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from utils.rendering.cameras import Cameras, orbit_cameras


def turntable_cameras(points: np.ndarray, n_views: int = 20, size: int = 128) -> Cameras:
    """`n_views` cameras around the cloud's centre, far enough for its bounding sphere to fit a 40 degree view."""
    centre = (points.min(0) + points.max(0)) / 2
    radius = float(np.linalg.norm(points - centre, axis=1).max()) or 1.0
    return orbit_cameras(n_views, radius / math.sin(math.radians(20)) * 1.1, size, size, math.radians(40),
                         math.radians(25), tuple(float(c) for c in centre))


def render_points(points: np.ndarray, colors: np.ndarray, cameras: Cameras, point_px: int = 2) -> list[Image.Image]:
    """One image per camera of the (N, 3) points with (N, 3) colours in [0, 1]."""
    pts = torch.from_numpy(np.asarray(points, np.float32))
    rgb = (np.clip(np.asarray(colors, np.float32), 0, 1) * 255).astype(np.uint8)
    images = []
    for i in range(len(cameras)):
        cam = (cameras.viewmats[i, :3, :3] @ pts.T + cameras.viewmats[i, :3, 3:]).T
        z = cam[:, 2]
        uv = (cameras.Ks[i] @ cam.T).T
        u = (uv[:, 0] / z.clamp_min(1e-6)).numpy().astype(np.int64)
        v = (uv[:, 1] / z.clamp_min(1e-6)).numpy().astype(np.int64)
        img = np.full((cameras.height, cameras.width, 3), 255, np.uint8)
        order = np.argsort(-z.numpy())  # far first: nearer points overwrite
        for dy in range(point_px):
            for dx in range(point_px):
                uu, vv = u[order] + dx, v[order] + dy
                ok = (z.numpy()[order] > 0) & (uu >= 0) & (uu < cameras.width) & (vv >= 0) & (vv < cameras.height)
                img[vv[ok], uu[ok]] = rgb[order][ok]
        images.append(Image.fromarray(img))
    return images
