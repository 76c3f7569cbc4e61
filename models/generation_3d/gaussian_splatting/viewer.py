"""An interactive browser viewer of a splat scene on viser (nerfstudio's viewer library).

The browser sends its camera; the scene is rendered for it here, through the same rasterizer as
training (`GaussianSplatting.render`: the compiled CPU kernels or gsplat), and sent back as the
viewer's background image. The server listens on 127.0.0.1 only: open the printed address on
this machine, or forward the port (`ssh -L 8080:127.0.0.1:8080 host`) to view it from another.

- `python inference/view_3d.py scene.ply` views a file;
- `python train/train_3d.py ... --viewer` views the model while it trains (`live=True`: camera
  moves only mark the view stale, and the training loop renders it between steps, so a render
  never sees the Gaussians half way through a densification).
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import torch

from utils.rendering.cameras import Cameras

from .model import GaussianSplatting

__all__ = ["SplatViewer", "HOST", "camera_from_viser"]

HOST = "127.0.0.1"
"""The only address the viewer listens on."""


def camera_from_viser(wxyz, position, fov_y: float, width: int, height: int) -> Cameras:
    """Our camera (world-to-camera, OpenCV axes) for viser's pose (camera-to-world rotation `wxyz`,
    centre `position`, OpenCV axes too) and vertical field of view."""
    w, x, y, z = (float(v) for v in wxyz)
    R = torch.tensor([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3], c2w[:3, 3] = R, torch.tensor([float(v) for v in position], dtype=torch.float64)
    f = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float32)
    return Cameras(torch.linalg.inv(c2w).float()[None], K[None], width, height)


class SplatViewer:
    """Serves a viewer of `model` on http://127.0.0.1:`port`.

    `max_side` bounds the rendered image (the browser scales it to its canvas); `live` is for a
    model that is training (see the module docstring); `background` is the RGB behind the splats.
    """

    def __init__(self, model: GaussianSplatting, port: int = 8080, max_side: int = 512, live: bool = False,
                 background: tuple[float, float, float] = (1.0, 1.0, 1.0), refresh_s: float = 0.5):
        import viser

        self.model, self.max_side, self.live, self.refresh_s = model, max_side, live, refresh_s
        self.background = torch.tensor(background, dtype=torch.float32)
        self.frames = 0
        """Frames rendered so far (all clients)."""
        self._stale: set[int] = set()
        self._lock = threading.Lock()
        self._last_refresh = 0.0
        self.server = viser.ViserServer(host=HOST, port=port, verbose=False)
        if len(model):
            # a new browser starts outside the scene, looking at its centre, z up
            centre, radius = model.scene_center_radius()
            c = centre.cpu().numpy().astype(np.float64)
            self.server.initial_camera.position = tuple(c + np.array([0.0, -2.5, 1.5]) * radius)
            self.server.initial_camera.look_at = tuple(c)
            self.server.initial_camera.up_direction = (0.0, 0.0, 1.0)
        self.server.on_client_connect(self._on_connect)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.get_port()}"

    # -- rendering ------------------------------------------------------------------------------
    def _size(self, aspect: float) -> tuple[int, int]:
        if aspect >= 1:
            return self.max_side, max(1, round(self.max_side / aspect))
        return max(1, round(self.max_side * aspect)), self.max_side

    def render(self, camera: Cameras) -> np.ndarray:
        """The image (H, W, 3) uint8 that the viewer shows for `camera`."""
        with torch.no_grad():
            rgb, _, _ = self.model.render(camera, background=self.background)
        return (rgb[0].clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)

    def _render_client(self, client) -> None:
        cam = client.camera
        width, height = self._size(cam.aspect)
        image = self.render(camera_from_viser(cam.wxyz, cam.position, cam.fov, width, height))
        client.scene.set_background_image(image, format="jpeg", jpeg_quality=90)
        with self._lock:
            self.frames += 1

    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda _cam: self._camera_moved(client))
        self._camera_moved(client)

    def _camera_moved(self, client) -> None:
        if self.live:
            with self._lock:
                self._stale.add(client.client_id)
        else:
            self._render_client(client)

    def refresh(self, step: int | None = None) -> None:
        """Live mode: render for clients whose view is stale, or every `refresh_s` (the model moved).
        Called by the training loop between steps."""
        now = time.perf_counter()
        periodic = now - self._last_refresh >= self.refresh_s
        clients = self.server.get_clients()
        with self._lock:
            ids = set(clients) if periodic else set(self._stale) & set(clients)
            self._stale.clear()
        if not ids:
            return
        self._last_refresh = now
        for cid in ids:
            self._render_client(clients[cid])

    def stop(self) -> None:
        self.server.stop()
