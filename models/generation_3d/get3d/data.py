"""Multi-view training data for GET3D: RGB images, silhouettes and the two camera angles of each view.

Three sources, all giving a `MultiViewSet` (images in [0, 1] on black, masks in {0, 1}, angles
(rotation, polar elevation) in radians in GET3D's convention, `primitives.camera_from_angles`):

- the built-in renders of random primitives (`primitives.py`): offline, for the tiny preset;
- GET3D's ShapeNet render layout (nv-tlabs' render_shapenet_data): `--data` is a category folder
  `img/<synset>` of object folders with RGBA views `000.png, 001.png, ...`, and the cameras sit in
  `camera/<synset>/<object>/rotation.npy` and `elevation.npy` (degrees; rotation about the vertical
  axis, elevation above the horizon; GET3D conditions on rotation and 90 - elevation);
- the NeRF-synthetic layout (`transforms_train.json`, RGBA images, Blender's z-up world): each camera
  is reduced to its two angles around the origin. GET3D renders every view at its own radius (1.2) and
  35 mm lens, so the generator learns the object at the size it appears in the images.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from models.generation_3d.get3d.primitives import render_primitives
from utils.errors import UserError, parsing

__all__ = ["MultiViewSet", "builtin_primitives", "detect_layout", "load_multiview", "load_nerf_synthetic_views",
           "load_shapenet_renders"]

IMAGE_SUFFIXES = (".png",)
"""Views must carry an alpha channel (the silhouette), so only PNG is read."""


@dataclass
class MultiViewSet:
    """Views of the objects of one category."""

    images: Tensor
    """(N, 3, R, R) float32 RGB in [0, 1], black outside the silhouette."""
    masks: Tensor
    """(N, 1, R, R) float32 silhouettes in {0, 1}."""
    angles: Tensor
    """(N, 2) float32 (rotation, polar elevation from +y) in radians."""
    objects: Tensor
    """(N,) long index of the object each view shows."""

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, keep: Tensor) -> MultiViewSet:
        return MultiViewSet(self.images[keep], self.masks[keep], self.angles[keep], self.objects[keep])

    def split_objects(self, held_out: int) -> tuple[MultiViewSet, MultiViewSet]:
        """(train, held-out): the views of the last `held_out` objects are held out."""
        n = int(self.objects.max()) + 1
        if held_out <= 0 or n <= held_out:
            return self, self.subset(self.objects < 0)
        test = self.objects >= n - held_out
        return self.subset(~test), self.subset(test)


def builtin_primitives(n_shapes: int, n_views: int, resolution: int, seed: int = 0) -> MultiViewSet:
    """Renders of random spheres, boxes and tori (primitives.py)."""
    d = render_primitives(n_shapes, n_views, resolution, seed=seed)
    s, v = d["images"].shape[:2]
    return MultiViewSet(d["images"].reshape(s * v, 3, resolution, resolution),
                        d["masks"].reshape(s * v, 1, resolution, resolution), d["angles"].reshape(s * v, 2).float(),
                        torch.arange(s).repeat_interleave(v))


def _rgba(path: Path, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """(rgb (3, R, R) in [0, 1] on black, mask (1, R, R)) of an RGBA view."""
    try:
        img = Image.open(path)
        img.load()
    except (OSError, SyntaxError, ValueError) as err:
        from utils.errors import short_reason

        raise UserError(f"cannot read image {path} ({short_reason(err, 80)}): the file is corrupt or not an image; "
                        "replace it") from None
    if "A" not in img.getbands():
        raise UserError(f"{path} has no alpha channel: GET3D trains on RGBA renders (the alpha is the silhouette)")
    img = img.convert("RGBA")
    rgb = np.asarray(img.convert("RGB").resize((resolution, resolution), Image.Resampling.BILINEAR), np.float32) / 255
    alpha = np.asarray(img.getchannel("A").resize((resolution, resolution), Image.Resampling.NEAREST)) > 0
    return (rgb * alpha[..., None]).transpose(2, 0, 1), alpha[None].astype(np.float32)


def _stack(rgbs, masks, angles, objects) -> MultiViewSet:
    return MultiViewSet(torch.from_numpy(np.stack(rgbs)), torch.from_numpy(np.stack(masks)),
                        torch.tensor(np.asarray(angles), dtype=torch.float32), torch.tensor(objects))


def load_shapenet_renders(data: str | Path, resolution: int, camera: str | Path | None = None,
                          max_objects: int | None = None) -> MultiViewSet:
    """GET3D's ShapeNet renders: `data` = img/<synset>, cameras in `camera` (default: ../../camera/<synset>)."""
    data = Path(data)
    cam_root = Path(camera) if camera is not None else data.parent.parent / "camera" / data.name
    objects = sorted(p for p in data.iterdir() if p.is_dir())[:max_objects]
    if not objects:
        raise UserError(f"{data} holds no object folders: pass a category folder of GET3D's renders (img/<synset>)")
    rgbs, masks, angles, owner = [], [], [], []
    for i, obj in enumerate(objects):
        rot_f, elev_f = cam_root / obj.name / "rotation.npy", cam_root / obj.name / "elevation.npy"
        if not rot_f.is_file() or not elev_f.is_file():
            raise UserError(f"no cameras for {obj.name}: {rot_f} and elevation.npy are missing; pass --camera "
                            "<renders>/camera/<synset> (GET3D's render layout)")
        with parsing(rot_f, "GET3D camera file", "rotation.npy and elevation.npy: one angle in degrees per view"):
            rot, elev = np.load(rot_f).reshape(-1), np.load(elev_f).reshape(-1)
        for view in sorted(p for p in obj.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            k = int(view.stem) if view.stem.isdigit() else -1
            if not 0 <= k < min(len(rot), len(elev)):
                raise UserError(f"{view}: no camera angle for view '{view.stem}' in {rot_f.parent} (views are "
                                "numbered 000.png, 001.png, ... like the angles)")
            rgb, mask = _rgba(view, resolution)
            rgbs.append(rgb), masks.append(mask), owner.append(i)
            angles.append((math.radians(float(rot[k])), math.radians(90.0 - float(elev[k]))))
    if not rgbs:
        raise UserError(f"{data}: the object folders hold no .png views")
    return _stack(rgbs, masks, angles, owner)


def angles_from_position(eye: np.ndarray) -> tuple[float, float]:
    """GET3D's (rotation, polar) of a camera at `eye` (y up) looking at the origin (camera_from_angles inverted)."""
    r = float(np.linalg.norm(eye))
    polar = math.acos(max(-1.0, min(1.0, eye[1] / r)))
    theta = math.atan2(eye[2], eye[0])
    return (-theta - math.pi / 2) % (2 * math.pi), polar


def load_nerf_synthetic_views(root: str | Path, resolution: int, split: str = "train") -> MultiViewSet:
    """The RGBA views of a NeRF-synthetic scene (one object) with their cameras reduced to angles."""
    root = Path(root)
    meta_path = root / f"transforms_{split}.json"
    with parsing(meta_path, "NeRF-synthetic transforms file", "frames: [{file_path, transform_matrix: 4x4}]"):
        frames = json.loads(meta_path.read_text(encoding="utf-8"))["frames"]
        poses = [(str(f["file_path"]), np.asarray(f["transform_matrix"], np.float64)) for f in frames]
        if not poses or any(m.shape != (4, 4) for _, m in poses):
            raise ValueError("no frames, or a transform_matrix that is not 4x4")
    rgbs, masks, angles = [], [], []
    for file_path, c2w in poses:
        path = root / file_path
        path = path if path.suffix else path.with_suffix(".png")
        if not path.is_file():
            raise UserError(f"image '{file_path}' listed in {meta_path} is missing: check the scene folder")
        rgb, mask = _rgba(path, resolution)
        x, y, z = c2w[:3, 3]
        rgbs.append(rgb), masks.append(mask), angles.append(angles_from_position(np.array([x, z, -y])))
    return _stack(rgbs, masks, angles, [0] * len(rgbs))


def detect_layout(data: str | Path) -> str:
    """'nerf_synthetic' or 'shapenet' for a --data folder, or a one-line refusal."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"--data {data} is not a folder: pass a category of GET3D's ShapeNet renders (img/<synset>) "
                        "or a NeRF-synthetic scene, or leave it out for the built-in primitives")
    if (data / "transforms_train.json").is_file():
        return "nerf_synthetic"
    if any(p.is_dir() for p in data.iterdir()):
        return "shapenet"
    raise UserError(f"--data {data} is neither GET3D's render layout (object folders of RGBA views) nor a "
                    "NeRF-synthetic scene (transforms_train.json)")


def load_multiview(data: str | Path, resolution: int, camera: str | Path | None = None,
                   max_objects: int | None = None) -> MultiViewSet:
    layout = detect_layout(data)
    if layout == "nerf_synthetic":
        return load_nerf_synthetic_views(data, resolution)
    return load_shapenet_renders(data, resolution, camera, max_objects)
