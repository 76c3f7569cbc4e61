"""Scene readers: NeRF-synthetic, COLMAP (binary and text), and the built-in synthetic scene."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.colmap import ColmapCamera, ColmapImage, load_colmap, read_colmap_model, write_colmap_model
from utils.data.nerf_synthetic import load_nerf_synthetic
from utils.errors import UserError
from utils.rendering.cameras import look_at, opengl_to_opencv


def _c2w(eye) -> torch.Tensor:
    return look_at(torch.tensor(eye, dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
                   torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))


def test_nerf_synthetic_reader(tmp_path):
    # one RGBA frame, half transparent, with a camera at (0, -4, 0) looking at the origin
    c2w_cv = _c2w([0.0, -4.0, 0.0])
    rgba = np.zeros((8, 10, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0
    rgba[:, :5, 3] = 255
    (tmp_path / "train").mkdir()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "train" / "r_0.png")
    meta = {"camera_angle_x": 0.8, "frames": [{"file_path": "./train/r_0",
                                               "transform_matrix": opengl_to_opencv(c2w_cv).tolist()}]}
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    data = load_nerf_synthetic(tmp_path, "train")
    assert data.images.shape == (1, 8, 10, 3)
    assert torch.allclose(data.images[0, :, :5], torch.tensor([1.0, 0.0, 0.0]).expand(8, 5, 3))
    assert torch.allclose(data.images[0, :, 5:], torch.ones(8, 5, 3))  # composited on white
    assert torch.allclose(data.cameras.camtoworlds[0].double(), c2w_cv, atol=1e-5)
    assert math.isclose(float(data.cameras.Ks[0, 0, 0]), 5 / math.tan(0.4), rel_tol=1e-5)
    half = load_nerf_synthetic(tmp_path, "train", downscale=2)
    assert half.images.shape == (1, 4, 5, 3)
    assert math.isclose(float(half.cameras.Ks[0, 0, 0]), 2.5 / math.tan(0.4), rel_tol=1e-5)
    with pytest.raises(UserError, match="transforms_test.json"):
        load_nerf_synthetic(tmp_path, "test")


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("model", ["PINHOLE", "SIMPLE_PINHOLE", "OPENCV"])
def test_colmap_reader(tmp_path, binary, model):
    params = {"PINHOLE": [20.0, 22.0, 8.0, 6.0], "SIMPLE_PINHOLE": [20.0, 8.0, 6.0],
              "OPENCV": [20.0, 22.0, 8.0, 6.0, 0.0, 0.0, 0.0, 0.0]}[model]
    cams = {1: ColmapCamera(1, model, 16, 12, np.array(params))}
    images, w2cs = {}, []
    for i, eye in enumerate([[0, -4, 1], [4, 0, 1], [0, 4, 1]]):
        w2c = torch.linalg.inv(_c2w(eye)).numpy()
        w2cs.append(w2c)
        images[i + 1] = ColmapImage(i + 1, _rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1, f"img_{i}.png")
        (tmp_path / "images").mkdir(exist_ok=True)
        Image.fromarray(np.full((12, 16, 3), 40 * i, np.uint8)).save(tmp_path / "images" / f"img_{i}.png")
    xyz = np.random.default_rng(0).normal(size=(5, 3))
    rgb = np.arange(15, dtype=np.uint8).reshape(5, 3)
    write_colmap_model(tmp_path / "sparse" / "0", cams, images, xyz, rgb, binary=binary)
    c, ims, pts, cols = read_colmap_model(tmp_path / "sparse" / "0")
    assert c[1].model == model and np.allclose(c[1].params, params)
    assert np.allclose(pts, xyz) and np.array_equal(cols, rgb) and ims[2].name == "img_1.png"
    data = load_colmap(tmp_path, "all")
    assert data.images.shape == (3, 12, 16, 3) and data.points.shape == (5, 3)
    assert np.allclose(data.cameras.viewmats.numpy(), np.stack(w2cs), atol=1e-5)
    fx = params[0]
    fy = params[0] if model == "SIMPLE_PINHOLE" else params[1]
    assert torch.allclose(data.cameras.Ks[0], torch.tensor([[fx, 0, 8.0], [0, fy, 6.0], [0, 0, 1]]))
    half = load_colmap(tmp_path, "all", downscale=2)
    assert half.images.shape == (3, 6, 8, 3) and math.isclose(float(half.cameras.Ks[0, 0, 0]), fx / 2)
    train, test = load_colmap(tmp_path, "train", test_every=2), load_colmap(tmp_path, "test", test_every=2)
    assert test.names == ["img_0.png", "img_2.png"] and train.names == ["img_1.png"]


def test_synthetic_scene_is_a_nerf_synthetic_folder(tmp_path):
    from utils.data.synthetic_scene import ensure_synthetic_scene

    root = ensure_synthetic_scene(tmp_path / "scene", n_train=3, n_test=2, size=24)
    train, test = load_nerf_synthetic(root, "train"), load_nerf_synthetic(root, "test")
    assert train.images.shape == (3, 24, 24, 3) and len(test) == 2
    # objects in front of a white background: some pixels coloured, the corners white-ish
    assert (train.images < 0.9).any() and train.images.std() > 0.05
    stamp = (root / "scene_version.json").stat().st_mtime_ns
    ensure_synthetic_scene(tmp_path / "scene", n_train=3, n_test=2, size=24)
    assert (root / "scene_version.json").stat().st_mtime_ns == stamp  # cached, not rewritten
