"""inference/view_3d.py: the viewer starts on a .ply, listens on 127.0.0.1 only, and answers a
browser's camera with a frame rendered by our rasterizer (the test speaks viser's websocket
protocol as the browser does)."""
from __future__ import annotations

import asyncio
import io
import socket
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from inference import view_3d
from models.generation_3d.gaussian_splatting.pipeline import GaussianSplattingPipeline
from utils.visualization.ply import write_splat_ply


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the TCP sockets listening on `port` (Linux /proc/net/tcp, tcp6)."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:  # 0A = LISTEN
                if len(addr) == 8:
                    found.add(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
                else:
                    found.add(addr)
    return found


def _pose() -> tuple[tuple, tuple]:
    """A camera 3 units from the origin looking at it (viser's camera-to-world wxyz, centre)."""
    import math

    from viser import transforms

    from utils.rendering.cameras import orbit_cameras

    c2w = torch.linalg.inv(orbit_cameras(1, 3.0, 64, 48, elevation=math.radians(30)).viewmats[0].double())
    return tuple(transforms.SO3.from_matrix(c2w[:3, :3].numpy()).wxyz.tolist()), tuple(c2w[:3, 3].tolist())


async def _ask_for_a_frame(port: int, size: tuple[int, int]) -> bytes:
    """Connect as the browser does, send a camera pose, return the JPEG of the first frame sent back."""
    import msgspec
    import viser
    import websockets
    import zstandard
    from viser import _messages

    wxyz, position = _pose()
    cam = _messages.ViewerCameraMessage(
        wxyz=wxyz, position=position, fov=0.8, near=0.01, far=100.0,
        image_height=size[1], image_width=size[0], look_at=(0.0, 0.0, 0.0), up_direction=(0.0, 0.0, 1.0))
    async with websockets.connect(f"ws://127.0.0.1:{port}", subprotocols=[f"viser-v{viser.__version__}"],
                                  max_size=None) as ws:
        await ws.send(msgspec.msgpack.encode(cam.as_serializable_dict([])))
        for _ in range(200):
            raw = await asyncio.wait_for(ws.recv(), timeout=60)
            n_inner = int.from_bytes(raw[:8], "little")
            n_comp = int.from_bytes(raw[8:16], "little")
            inner = zstandard.ZstdDecompressor().decompress(raw[16:16 + n_comp], max_output_size=n_inner)
            payload = msgspec.msgpack.decode(inner)
            for msg in payload["messages"]:
                if msg.get("type") == "BackgroundImageMessage" and msg.get("rgb_data") is not None:
                    data = msg["rgb_data"]
                    if isinstance(data, dict):  # a binary buffer appended after the payload
                        lengths = payload["binaryBufferLengths"]
                        offset = 16 + n_comp
                        offset += (-offset) % 8
                        for i in range(data["__binary_index"]):
                            offset += lengths[i] + (-lengths[i]) % 8
                        data = raw[offset:offset + lengths[data["__binary_index"]]]
                    return bytes(data)
    raise AssertionError("the viewer sent no frame")


def test_viewer_serves_on_loopback_and_renders_a_ply(tmp_path):
    import urllib.request

    pipe = GaussianSplattingPipeline.from_pretrained(preset="tiny")
    ply = tmp_path / "scene.ply"
    write_splat_ply(ply, {k: v.detach() for k, v in pipe.model.splats.items()})
    port = _free_port()
    started = threading.Event()
    holder = {}

    def ready(viewer):
        holder["viewer"] = viewer
        started.set()

    thread = threading.Thread(target=view_3d.main, args=([str(ply), "--port", str(port), "--max-side", "64",
                                                          "--seconds", "120"], ready), daemon=True)
    thread.start()
    assert started.wait(60), "the viewer did not start"
    viewer = holder["viewer"]
    try:
        port = viewer.server.get_port()
        assert viewer.url == f"http://127.0.0.1:{port}"
        page = urllib.request.urlopen(viewer.url, timeout=30).read()
        assert b"<html" in page.lower()
        assert _listening_addresses(port) == {"127.0.0.1"}

        jpeg = asyncio.run(_ask_for_a_frame(port, (80, 60)))
        frame = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        assert frame.shape == (48, 64, 3)  # max side 64, the browser's 4:3 aspect
        assert viewer.frames >= 1
        # the frame is the splats seen from that camera, as our rasterizer renders them
        from models.generation_3d.gaussian_splatting.viewer import camera_from_viser

        cam = camera_from_viser(*_pose(), 0.8, 64, 48)
        expected = viewer.render(cam).astype(np.float32)
        assert expected.std() > 5  # not a blank view
        assert np.abs(frame.astype(np.float32) - expected).mean() < 6  # JPEG noise only
    finally:
        viewer.stop()


def test_missing_file_is_a_user_error(tmp_path, capsys):
    from utils.errors import UserError

    with pytest.raises(UserError, match="not found"):
        view_3d.main([str(tmp_path / "none.ply")])
