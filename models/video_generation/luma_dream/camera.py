"""Camera paths for camera-controlled generation: named presets and JSON files of poses.

A camera path is one pinhole camera per frame, as `utils.rendering.cameras.Cameras`: OpenCV axes (x right,
y down, z forward), world-to-camera `viewmats`, intrinsics in pixels for the clip's width x height.

**Presets** move the camera relative to its first pose (`start`, a camera-to-world matrix; default the
identity), at an even pace from frame 0 to the last frame, in the first camera's own axes:

| preset | motion | the picture |
|---|---|---|
| `pan-left` / `pan-right` | turn about the camera's vertical axis by `amount` degrees (default 20) | content slides right / left |
| `tilt-up` / `tilt-down` (`tilt` = `tilt-up`) | turn about the camera's horizontal axis (default 15 degrees) | content slides down / up |
| `dolly-in` / `dolly-out` | move forward / back by `amount` times `target_distance` (default 0.3) | content grows / shrinks |
| `zoom-in` / `zoom-out` (`zoom` = `zoom-in`) | focal length times / divided by `amount` (default 1.5), no motion | content grows / shrinks |
| `orbit` (= `orbit-right`) / `orbit-left` | circle the point `target_distance` ahead by `amount` degrees (default 30), always facing it; the camera moves to its right / left | the target stays centred |
| `static` | no motion | |

**A JSON camera path** (`camera="path/to/camera.json"`) lists the poses:

    {"convention": "opencv",            optional: "opencv" (default) or "opengl" (Blender / NeRF: y up, -z forward)
     "fov_x": 45,                       optional: horizontal field of view in degrees (default 45), or instead
     "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], "width": 1024, "height": 576,
                                        pixels of an image of width x height (rescaled to the clip's size)
     "frames": [{"camera_to_world": [[r, r, r, x], [r, r, r, y], [r, r, r, z], [0, 0, 0, 1]]},
                {"world_to_camera": [[...]], "fov_x": 40}, ...]}
                                        one 4x4 pose per frame; a frame may set its own fov_x (a zoom)

A NeRF-synthetic `transforms.json` (top-level `camera_angle_x` in radians, `frames[].transform_matrix`,
OpenGL axes) is read as it is. A path with another number of poses than the clip's frames is resampled
at even spacing (rotations by spherical interpolation, positions and focal lengths linearly). A bad file
is a one-line `UserError` naming the file and the field.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.errors import UserError, close_matches
from utils.rendering.cameras import Cameras, intrinsics_from_fov, opengl_to_opencv

DEFAULT_FOV_X = 45.0
"""Horizontal field of view (degrees) of presets and of JSON paths that give none."""
DEFAULT_TARGET_DISTANCE = 4.0
"""Distance (world units) to the point an orbit circles; dolly distances are fractions of it."""

# name -> (kind, sign, default amount)
_PRESETS: dict[str, tuple[str, float, float]] = {
    "orbit-right": ("orbit", -1.0, 30.0),
    "orbit-left": ("orbit", 1.0, 30.0),
    "pan-left": ("pan", -1.0, 20.0),
    "pan-right": ("pan", 1.0, 20.0),
    "tilt-up": ("tilt", 1.0, 15.0),
    "tilt-down": ("tilt", -1.0, 15.0),
    "dolly-in": ("dolly", 1.0, 0.3),
    "dolly-out": ("dolly", -1.0, 0.3),
    "zoom-in": ("zoom", 1.0, 1.5),
    "zoom-out": ("zoom", -1.0, 1.5),
    "static": ("static", 0.0, 0.0),
}
_ALIASES = {"orbit": "orbit-right", "tilt": "tilt-up", "zoom": "zoom-in"}
CAMERA_PRESETS: tuple[str, ...] = ("orbit", "orbit-left", "orbit-right", "dolly-in", "dolly-out", "pan-left",
                                   "pan-right", "tilt", "tilt-up", "tilt-down", "zoom", "zoom-in", "zoom-out", "static")
"""Every preset name (aliases included)."""


def _rot(axis: int, angle: float) -> Tensor:
    """A 3x3 rotation by `angle` radians about camera axis 0 (x) or 1 (y), float64."""
    c, s = math.cos(angle), math.sin(angle)
    if axis == 1:  # about y: z turns toward +x for angle > 0
        return torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=torch.float64)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)  # z turns toward -y (up)


def preset_name(name: str) -> str:
    """The canonical name of a preset (aliases resolved); an unknown name is a one-line error listing them."""
    key = name.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _PRESETS:
        near = close_matches(name, CAMERA_PRESETS)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise UserError(f"unknown camera preset '{name}': {hint}valid presets: {', '.join(CAMERA_PRESETS)}, "
                        "or a .json file of poses")
    return key


def preset_cameras(name: str, num_frames: int, width: int, height: int, *, amount: float | None = None,
                   fov_x: float = DEFAULT_FOV_X, start: Tensor | None = None,
                   target_distance: float = DEFAULT_TARGET_DISTANCE) -> Cameras:
    """The preset `name` as `num_frames` cameras of width x height (see the module docstring). `amount`:
    degrees (pan, tilt, orbit), a fraction of `target_distance` (dolly) or a focal factor (zoom). `start`:
    the first camera-to-world (4, 4), OpenCV axes."""
    kind, sign, default = _PRESETS[preset_name(name)]
    amount = default if amount is None else float(amount)
    if num_frames < 1:
        raise UserError(f"a camera path needs at least one frame, got {num_frames}")
    if kind == "zoom" and amount <= 0:
        raise UserError(f"a zoom's amount is a focal-length factor > 0, got {amount}")
    start = torch.eye(4, dtype=torch.float64) if start is None else start.to(torch.float64)
    K0 = intrinsics_from_fov(math.radians(fov_x), width, height).to(torch.float64)
    c2ws, Ks = [], []
    for i in range(num_frames):
        u = i / (num_frames - 1) if num_frames > 1 else 0.0
        rel = torch.eye(4, dtype=torch.float64)
        K = K0.clone()
        if kind == "pan":
            rel[:3, :3] = _rot(1, sign * math.radians(amount) * u)
        elif kind == "tilt":
            rel[:3, :3] = _rot(0, sign * math.radians(amount) * u)
        elif kind == "dolly":
            rel[2, 3] = sign * amount * target_distance * u
        elif kind == "zoom":
            f = 1.0 + (amount - 1.0) * u
            K[:2, :2] *= f if sign > 0 else 1.0 / f
        elif kind == "orbit":
            R = _rot(1, sign * math.radians(amount) * u)
            target = torch.tensor([0.0, 0.0, target_distance], dtype=torch.float64)
            rel[:3, :3], rel[:3, 3] = R, target - R @ target
        c2ws.append(start @ rel)
        Ks.append(K)
    c2w = torch.stack(c2ws)
    return Cameras(torch.linalg.inv(c2w).float(), torch.stack(Ks).float(), width, height)


# -- JSON camera paths ---------------------------------------------------------------------------------------

def _matrix(value: Any, where: str, shape: tuple[int, int]) -> Tensor:
    ok = (isinstance(value, list) and len(value) == shape[0]
          and all(isinstance(r, list) and len(r) == shape[1] for r in value)
          and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for r in value for x in r))
    if not ok:
        raise UserError(f"{where} must be a {shape[0]}x{shape[1]} matrix of finite numbers (a list of "
                        f"{shape[0]} rows)")
    return torch.tensor(value, dtype=torch.float64)


def _fov(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 180:
        raise UserError(f"{where} must be a horizontal field of view in degrees, between 0 and 180, got {value!r}")
    return float(value)


def _quat(R: Tensor) -> Tensor:
    """Rotation matrices (N, 3, 3) -> unit quaternions (N, 4) (w, x, y, z), w >= 0 where possible."""
    m = R
    q = torch.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    k = q.clamp_min(0).argmax(-1)
    s = 2 * torch.sqrt(q.clamp_min(1e-12).gather(1, k[:, None]).squeeze(1))
    a, b, c = m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]
    d, e, f = m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1]
    cand = torch.stack([torch.stack([s / 4, a / s, b / s, c / s], -1), torch.stack([a / s, s / 4, d / s, e / s], -1),
                        torch.stack([b / s, d / s, s / 4, f / s], -1), torch.stack([c / s, e / s, f / s, s / 4], -1)], 1)
    out = cand[torch.arange(len(m)), k]
    return torch.nn.functional.normalize(out, dim=-1)


def _rotmat(q: Tensor) -> Tensor:
    w, x, y, z = q.unbind(-1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1).view(-1, 3, 3)


def _slerp(q0: Tensor, q1: Tensor, t: float) -> Tensor:
    dot = float((q0 * q1).sum())
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        return torch.nn.functional.normalize(q0 + t * (q1 - q0), dim=-1)
    theta = math.acos(dot)
    return (math.sin((1 - t) * theta) * q0 + math.sin(t * theta) * q1) / math.sin(theta)


def resample_poses(c2w: Tensor, focal_scale: Tensor, num_frames: int) -> tuple[Tensor, Tensor]:
    """(N, 4, 4) camera-to-world and (N,) focal factors -> `num_frames` of each at even spacing."""
    n = len(c2w)
    if n == num_frames:
        return c2w, focal_scale
    if n == 1:
        return c2w.expand(num_frames, 4, 4).clone(), focal_scale.expand(num_frames).clone()
    q = _quat(c2w[:, :3, :3])
    out, fs = [], []
    for i in range(num_frames):
        x = i * (n - 1) / max(1, num_frames - 1)
        a = min(int(math.floor(x)), n - 2)
        t = x - a
        m = torch.eye(4, dtype=torch.float64)
        m[:3, :3] = _rotmat(_slerp(q[a], q[a + 1], t))[0]
        m[:3, 3] = (1 - t) * c2w[a, :3, 3] + t * c2w[a + 1, :3, 3]
        out.append(m)
        fs.append((1 - t) * focal_scale[a] + t * focal_scale[a + 1])
    return torch.stack(out), torch.stack(fs)


def load_camera_path(path: str | os.PathLike, num_frames: int, width: int, height: int) -> Cameras:
    """A JSON camera path (see the module docstring) as `num_frames` cameras of width x height."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise UserError(f"camera path {name} not found: give a camera preset ({', '.join(CAMERA_PRESETS)}) or a .json "
                        "file of poses")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise UserError(f"camera path {name} is not a text JSON file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"camera path {name} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list) or not data["frames"]:
        raise UserError(f"camera path {name}: needs a non-empty 'frames' list of poses (each "
                        "{\"camera_to_world\": 4x4})")
    nerf = "camera_angle_x" in data
    convention = data.get("convention", "opengl" if nerf else "opencv")
    if convention not in ("opencv", "opengl"):
        raise UserError(f"camera path {name}: 'convention' must be 'opencv' or 'opengl', got {convention!r}")
    if nerf:
        ang = data["camera_angle_x"]
        if not isinstance(ang, (int, float)) or isinstance(ang, bool) or not 0 < ang < math.pi:
            raise UserError(f"camera path {name}: 'camera_angle_x' must be a field of view in radians in (0, pi)")
        fov = math.degrees(ang)
    else:
        fov = _fov(data.get("fov_x", DEFAULT_FOV_X), f"camera path {name}: 'fov_x'")
    K = intrinsics_from_fov(math.radians(fov), width, height).to(torch.float64)
    if "intrinsics" in data:
        Ki = _matrix(data["intrinsics"], f"camera path {name}: 'intrinsics'", (3, 3))
        w0, h0 = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w0, h0)):
            raise UserError(f"camera path {name}: 'intrinsics' need the 'width' and 'height' (pixels) they are given in")
        if Ki[0, 0] <= 0 or Ki[1, 1] <= 0:
            raise UserError(f"camera path {name}: 'intrinsics' need positive focal lengths fx, fy")
        K = Ki.clone()
        K[0] *= width / w0
        K[1] *= height / h0
        K[2] = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    c2ws, scales = [], []
    for i, frame in enumerate(data["frames"]):
        where = f"camera path {name}: frames[{i}]"
        if not isinstance(frame, dict):
            raise UserError(f"{where} must be an object like {{\"camera_to_world\": 4x4}}")
        if "camera_to_world" in frame:
            m = _matrix(frame["camera_to_world"], f"{where}.camera_to_world", (4, 4))
            key = "camera_to_world"
        elif "transform_matrix" in frame:
            m = _matrix(frame["transform_matrix"], f"{where}.transform_matrix", (4, 4))
            key = "transform_matrix"
        elif "world_to_camera" in frame:
            key = "world_to_camera"
            w2c = _matrix(frame["world_to_camera"], f"{where}.world_to_camera", (4, 4))
            if abs(float(torch.linalg.det(w2c[:3, :3])) - 1) > 1e-3:
                raise UserError(f"{where}.world_to_camera: its 3x3 rotation is not orthonormal (det != 1)")
            m = torch.linalg.inv(w2c)
        else:
            raise UserError(f"{where} has no pose: give camera_to_world (or world_to_camera), a 4x4 matrix")
        if not torch.allclose(m[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6):
            raise UserError(f"{where}.{key}: the last row must be [0, 0, 0, 1]")
        R = m[:3, :3]
        if (R.T @ R - torch.eye(3, dtype=torch.float64)).abs().max() > 1e-3 or float(torch.linalg.det(R)) < 0:
            raise UserError(f"{where}.{key}: its 3x3 rotation is not orthonormal with det +1 (no scale or mirror)")
        if convention == "opengl":
            m = opengl_to_opencv(m)
        c2ws.append(m)
        f = frame.get("fov_x")
        if f is None:
            scales.append(1.0)
        else:
            f = _fov(f, f"{where}.fov_x")
            scales.append(math.tan(math.radians(fov) / 2) / math.tan(math.radians(f) / 2))
    c2w, fs = resample_poses(torch.stack(c2ws), torch.tensor(scales, dtype=torch.float64), num_frames)
    Ks = K.expand(num_frames, 3, 3).clone()
    Ks[:, 0, 0] *= fs
    Ks[:, 1, 1] *= fs
    return Cameras(torch.linalg.inv(c2w).float(), Ks.float(), width, height)


def save_camera_path(path: str | os.PathLike, cameras: Cameras) -> Path:
    """Write `cameras` as a JSON camera path (OpenCV camera_to_world, the intrinsics of frame 0)."""
    from utils.io import atomic_path

    path = Path(path)
    c2w = cameras.camtoworlds.double()
    fx0 = float(cameras.Ks[0, 0, 0])
    frames = []
    for i in range(len(cameras)):
        entry: dict[str, Any] = {"camera_to_world": c2w[i].tolist()}
        fx = float(cameras.Ks[i, 0, 0])
        if abs(fx - fx0) > 1e-6 * fx0:
            entry["fov_x"] = math.degrees(2 * math.atan(0.5 * cameras.width / fx))
        frames.append(entry)
    data = {"convention": "opencv", "intrinsics": cameras.Ks[0].double().tolist(), "width": cameras.width,
            "height": cameras.height, "frames": frames}
    if any("fov_x" in f for f in frames):
        # per-frame fov_x is relative to the file's base fov: store it so the focal lengths come back
        data.pop("intrinsics")
        data["fov_x"] = math.degrees(2 * math.atan(0.5 * cameras.width / fx0))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1))
    return path


def camera_path(camera: Any, num_frames: int, width: int, height: int, **preset_kw: Any) -> Cameras:
    """Any camera argument -> `num_frames` cameras of width x height: a preset name, the path of a .json
    camera path, a `Cameras` of the clip's size, or (N, 4, 4) camera-to-world poses (OpenCV axes, the
    default field of view), resampled to the clip's frames when N differs."""
    if isinstance(camera, Cameras):
        if (camera.width, camera.height) != (width, height):
            camera = camera.scaled(width / camera.width) if camera.width * height == camera.height * width else \
                Cameras(camera.viewmats, camera.Ks, width, height)
        if len(camera) != num_frames:
            fs = camera.Ks[:, 0, 0].double() / camera.Ks[0, 0, 0].double()
            c2w, fs = resample_poses(camera.camtoworlds.double(), fs, num_frames)
            Ks = camera.Ks[:1].expand(num_frames, 3, 3).clone()
            Ks[:, 0, 0] *= fs.float()
            Ks[:, 1, 1] *= fs.float()
            camera = Cameras(torch.linalg.inv(c2w).float(), Ks, width, height)
        return camera
    if isinstance(camera, Tensor):
        if camera.ndim != 3 or tuple(camera.shape[1:]) != (4, 4):
            raise UserError(f"camera poses must be (frames, 4, 4) camera-to-world matrices, got {tuple(camera.shape)}")
        c2w, _ = resample_poses(camera.double(), torch.ones(len(camera), dtype=torch.float64), num_frames)
        K = intrinsics_from_fov(math.radians(preset_kw.get("fov_x", DEFAULT_FOV_X)), width, height)
        return Cameras(torch.linalg.inv(c2w).float(), K.expand(num_frames, 3, 3).clone(), width, height)
    if isinstance(camera, (str, os.PathLike)):
        text = str(camera)
        if isinstance(camera, os.PathLike) or text.lower().endswith(".json") or os.sep in text or Path(text).is_file():
            return load_camera_path(text, num_frames, width, height)
        return preset_cameras(text, num_frames, width, height, **preset_kw)
    raise UserError(f"camera must be a preset name ({', '.join(CAMERA_PRESETS)}), a .json camera path, Cameras or "
                    f"(frames, 4, 4) poses, got {type(camera).__name__}")


def global_flow(frames: torch.Tensor, blur: float = 1.0) -> torch.Tensor:
    """frames (T, C, H, W) -> the mean optical flow (dx, dy) per frame step, in pixels (x right, y down): a
    global Lucas-Kanade estimate (least squares of Ix dx + Iy dy + It = 0 over the whole frame, every
    channel, frames blurred by a Gaussian of `blur` px first). How far a clip's picture moves: the camera
    proof measures rendered and generated clips with it."""
    x = frames.double()
    k = torch.exp(-torch.arange(-2, 3, dtype=torch.float64) ** 2 / (2 * blur ** 2))
    k = k / k.sum()
    c = x.shape[1]
    conv, pad = torch.nn.functional.conv2d, torch.nn.functional.pad
    x = conv(pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    x = conv(pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)
    steps = []
    for a, b in zip(x[:-1], x[1:]):
        m = (a + b) / 2
        ix = (m[:, 1:-1, 2:] - m[:, 1:-1, :-2]) / 2
        iy = (m[:, 2:, 1:-1] - m[:, :-2, 1:-1]) / 2
        it = (b - a)[:, 1:-1, 1:-1]
        A = torch.stack([torch.stack([(ix * ix).sum(), (ix * iy).sum()]),
                         torch.stack([(ix * iy).sum(), (iy * iy).sum()])])
        r = -torch.stack([(ix * it).sum(), (iy * it).sum()])
        steps.append(torch.linalg.solve(A + 1e-9 * torch.eye(2, dtype=A.dtype), r))
    return torch.stack(steps).mean(0)


__all__ = ["CAMERA_PRESETS", "DEFAULT_FOV_X", "DEFAULT_TARGET_DISTANCE", "camera_path", "global_flow",
           "load_camera_path", "preset_cameras", "preset_name", "resample_poses", "save_camera_path"]
