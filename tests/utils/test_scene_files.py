"""Malformed scene files (NeRF-synthetic transforms, COLMAP text models) are one-line UserErrors that
name the file and the field, raised while the scene loads (before any training step)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from utils.data.colmap import read_colmap_model
from utils.data.nerf_synthetic import load_nerf_synthetic
from utils.errors import UserError


def _one_line(call, *fragments: str) -> str:
    with pytest.raises(UserError) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and all(f in msg for f in fragments), msg
    return msg


def _scene(root: Path, meta) -> Path:
    (root / "train").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4)).save(root / "train" / "r_0.png")
    (root / "transforms_train.json").write_text(meta if isinstance(meta, str) else json.dumps(meta))
    return root


EYE = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]


@pytest.mark.parametrize("meta, fragments", [
    ('{"camera_angle_x": 0.7, "frames": [', ("transforms_train.json", "not a valid", "line 1")),
    ({"frames": [{"file_path": "./train/r_0", "transform_matrix": EYE}]}, ("transforms_train.json", "camera_angle_x")),
    ({"camera_angle_x": 0.7, "frames": [{"transform_matrix": EYE}]}, ("frame 0", "file_path")),
    ({"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": [[1, 0], [0, 1]]}]},
     ("frame 0", "4x4")),
    ({"camera_angle_x": "wide", "frames": [{"file_path": "./train/r_0", "transform_matrix": EYE}]},
     ("transforms_train.json", "wide")),
    ([1, 2], ("transforms_train.json", "not a JSON object")),
])
def test_malformed_transforms(tmp_path, meta, fragments):
    root = _scene(tmp_path / "scene", meta)
    _one_line(lambda: load_nerf_synthetic(root), *fragments)


def test_a_corrupt_image_of_a_scene_names_it(tmp_path):
    root = _scene(tmp_path / "scene", {"camera_angle_x": 0.7,
                                       "frames": [{"file_path": "./train/r_0", "transform_matrix": EYE}]})
    (root / "train" / "r_0.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    _one_line(lambda: load_nerf_synthetic(root), "r_0.png", "cannot read image")


@pytest.mark.parametrize("cameras, fragments", [
    ("1 PINHOLE 4 4 2.0 2.0 2.0\n", ("cameras.txt", "4 parameters")),
    ("1 FISHEYE_X 4 4 2.0 2.0 2.0 2.0\n", ("cameras.txt", "unknown camera model 'FISHEYE_X'")),
    ("1 PINHOLE four 4 2.0 2.0 2.0 2.0\n", ("cameras.txt", "four", "CAMERA_ID MODEL WIDTH HEIGHT")),
    ("1 PINHOLE\n", ("cameras.txt", "not a valid COLMAP cameras file")),
])
def test_malformed_colmap_cameras(tmp_path, cameras, fragments):
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text("# camera list\n" + cameras)
    (sparse / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    _one_line(lambda: read_colmap_model(sparse), *fragments)


def test_malformed_colmap_images(tmp_path):
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.txt").write_text("1 PINHOLE 4 4 2.0 2.0 2.0 2.0\n")
    (sparse / "images.txt").write_text("1 1 0 0 zero 0 0 0 1 a.png\n\n")
    _one_line(lambda: read_colmap_model(sparse), "images.txt", "not a valid COLMAP images file")
