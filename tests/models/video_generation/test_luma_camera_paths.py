"""Camera paths of the Dream Machine stand-in (luma_dream/camera.py): each preset moves the picture the way
its name says (checked by projecting points), JSON paths in both axis conventions and NeRF's layout,
resampling, and one-line errors naming the file and the field."""
from __future__ import annotations

import json
import math

import pytest
import torch

from models.video_generation.luma_dream.camera import (CAMERA_PRESETS, camera_path, load_camera_path, preset_cameras,
                                                        save_camera_path)
from utils.errors import UserError
from utils.rendering.cameras import Cameras, opengl_to_opencv


def _project(cams: Cameras, point) -> torch.Tensor:
    """(C, 2) pixel coordinates of a world point in every camera."""
    p = torch.tensor([*point, 1.0])
    cam = (cams.viewmats @ p)[:, :3]
    uv = (cams.Ks @ cam[..., None]).squeeze(-1)
    return uv[:, :2] / uv[:, 2:]


W, H, N = 64, 48, 9
AHEAD = (0.0, 0.0, 10.0)


def test_pans_and_tilts_slide_the_picture():
    c = _project(preset_cameras("pan-left", N, W, H), AHEAD)
    assert c[0].tolist() == pytest.approx([W / 2, H / 2], abs=1e-4)
    assert (c[1:, 0] - c[:-1, 0] > 0).all() and abs(c[-1, 1] - H / 2) < 1e-3  # content slides right
    assert (_project(preset_cameras("pan-right", N, W, H), AHEAD)[-1, 0] < W / 2 - 5)
    assert _project(preset_cameras("tilt-up", N, W, H), AHEAD)[-1, 1] > H / 2 + 5  # content slides down
    assert _project(preset_cameras("tilt-down", N, W, H), AHEAD)[-1, 1] < H / 2 - 5
    # 20 degrees of pan: the point straight ahead ends fx * tan(20 deg) right of the centre
    cams = preset_cameras("pan-left", N, W, H)
    assert float(c[-1, 0] - W / 2) == pytest.approx(float(cams.Ks[0, 0, 0]) * math.tan(math.radians(20)), rel=1e-4)


def test_dolly_zoom_and_orbit():
    off = (1.0, 0.0, 4.0)
    for name, grows in (("dolly-in", True), ("dolly-out", False), ("zoom", True), ("zoom-out", False)):
        c = _project(preset_cameras(name, N, W, H), off)
        assert (c[-1, 0] - W / 2 > c[0, 0] - W / 2) == grows, name
    assert torch.allclose(preset_cameras("dolly-in", N, W, H).centers[-1], torch.tensor([0.0, 0.0, 1.2]), atol=1e-5)
    zoom = preset_cameras("zoom", N, W, H)
    assert torch.allclose(zoom.viewmats, torch.eye(4).expand(N, 4, 4)) and zoom.Ks[-1, 0, 0] == pytest.approx(
        1.5 * float(zoom.Ks[0, 0, 0]), rel=1e-5)
    for name, side in (("orbit", 1.0), ("orbit-left", -1.0)):
        cams = preset_cameras(name, N, W, H)
        target = _project(cams, (0.0, 0.0, 4.0))
        assert torch.allclose(target, torch.tensor([W / 2, H / 2]).expand(N, 2), atol=1e-3)  # always faced
        assert side * float(cams.centers[-1, 0]) > 1.0  # the camera moved to its right / left
        assert torch.allclose((cams.centers - torch.tensor([0.0, 0.0, 4.0])).norm(dim=-1), torch.full((N,), 4.0),
                              atol=1e-5)
    assert torch.allclose(preset_cameras("static", N, W, H).viewmats, torch.eye(4).expand(N, 4, 4))


def test_start_pose_and_every_preset_builds():
    start = torch.eye(4, dtype=torch.float64)
    start[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    cams = preset_cameras("dolly-in", 5, W, H, start=start)
    assert torch.allclose(cams.centers[0], torch.tensor([1.0, 2.0, 3.0]))
    for name in CAMERA_PRESETS:
        assert len(camera_path(name, 5, W, H)) == 5


def test_json_round_trip_and_resampling(tmp_path):
    cams = preset_cameras("orbit", N, W, H)
    path = save_camera_path(tmp_path / "orbit.json", cams)
    back = load_camera_path(path, N, W, H)
    assert torch.allclose(back.viewmats, cams.viewmats, atol=1e-5) and torch.allclose(back.Ks, cams.Ks, atol=1e-4)
    zoom = preset_cameras("zoom", N, W, H)
    assert torch.allclose(load_camera_path(save_camera_path(tmp_path / "z.json", zoom), N, W, H).Ks, zoom.Ks,
                          atol=1e-3)
    # 3 poses of a pan resampled to 9 frames follow the 9-frame pan (slerp is exact for one axis)
    few = camera_path(preset_cameras("pan-left", 3, W, H), N, W, H)
    assert torch.allclose(few.viewmats, preset_cameras("pan-left", N, W, H).viewmats, atol=1e-5)
    # the same path at another size: intrinsics rescaled
    half = load_camera_path(path, N, W // 2, H // 2)
    assert half.Ks[0, 0, 0] == pytest.approx(float(cams.Ks[0, 0, 0]) / 2, rel=1e-5)


def test_opengl_and_nerf_synthetic_files(tmp_path):
    cams = preset_cameras("pan-right", 5, W, H)
    gl = [opengl_to_opencv(m).tolist() for m in cams.camtoworlds.double()]
    (tmp_path / "gl.json").write_text(json.dumps({"convention": "opengl", "fov_x": 45,
                                                  "frames": [{"camera_to_world": m} for m in gl]}))
    assert torch.allclose(load_camera_path(tmp_path / "gl.json", 5, W, H).viewmats, cams.viewmats, atol=1e-5)
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": math.radians(45),
                                                          "frames": [{"transform_matrix": m} for m in gl]}))
    nerf = load_camera_path(tmp_path / "transforms.json", 5, W, H)
    assert torch.allclose(nerf.viewmats, cams.viewmats, atol=1e-5) and torch.allclose(nerf.Ks, cams.Ks, atol=1e-4)
    w2c = {"frames": [{"world_to_camera": m.tolist()} for m in cams.viewmats.double()]}
    (tmp_path / "w2c.json").write_text(json.dumps(w2c))
    assert torch.allclose(load_camera_path(tmp_path / "w2c.json", 5, W, H).viewmats, cams.viewmats, atol=1e-5)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(UserError) as err:
        camera_path("orbitt", 5, W, H)
    msg = str(err.value)
    assert "\n" not in msg and "orbitt" in msg and "did you mean orbit" in msg
    assert all(p in msg for p in ("pan-left", "dolly-in", "zoom", "tilt"))


@pytest.mark.parametrize("content, field", [
    ("{not json", "line 1"),
    ("[1, 2]", "'frames'"),
    ('{"frames": []}', "'frames'"),
    ('{"frames": [{"camera_to_world": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}]}', "frames[0].camera_to_world"),
    ('{"frames": [{"pose": 1}]}', "frames[0] has no pose"),
    ('{"frames": [{"camera_to_world": [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}',
     "frames[0].camera_to_world: its 3x3 rotation"),
    ('{"frames": [{"camera_to_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]]}]}', "last row"),
    ('{"fov_x": 200, "frames": [{"camera_to_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}',
     "'fov_x'"),
    ('{"convention": "blender", "frames": [1]}', "'convention'"),
    ('{"frames": [{"camera_to_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, '
     '{"camera_to_world": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, "x"], [0, 0, 0, 1]]}]}', "frames[1].camera_to_world"),
    ('{"intrinsics": [[50, 0, 32], [0, 50, 24], [0, 0, 1]], "frames": [{"camera_to_world": '
     '[[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}]}', "'width' and 'height'"),
])
def test_malformed_json_names_the_file_and_field(tmp_path, content, field):
    path = tmp_path / "bad_camera.json"
    path.write_text(content)
    with pytest.raises(UserError) as err:
        camera_path(str(path), 5, W, H)
    msg = str(err.value)
    assert "\n" not in msg and "bad_camera.json" in msg and field in msg, msg


def test_missing_file_and_bad_types():
    with pytest.raises(UserError, match="not found"):
        camera_path("nowhere/cam.json", 5, W, H)
    with pytest.raises(UserError, match="camera must be"):
        camera_path(3, 5, W, H)
    with pytest.raises(UserError, match="4, 4"):
        camera_path(torch.eye(3)[None], 5, W, H)
