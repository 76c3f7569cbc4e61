"""utils.data.co3d: camera conventions, the layout reader and its errors, preprocessing, splits, the built-in set."""
from __future__ import annotations

import gzip
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from utils.data.binvox import read_binvox
from utils.data.co3d.builtin import encode_depth, split_dir, write_builtin
from utils.data.co3d.cameras import (camera_centers, cameras_to_viewpoint, look_at_view, pose_vector,
                                     viewpoint_to_cameras)
from utils.data.co3d.dataset import Co3dVoxelDataset, resample_grid
from utils.data.co3d.layout import list_sequences, read_pose, resolve_category
from utils.errors import UserError


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return write_builtin(tmp_path_factory.mktemp("co3d") / "d", cube_len=8, splits={"train": 3, "val": 1, "test": 1},
                         views=3, image_size=16)


def test_pytorch3d_viewpoint_projects_like_our_opencv_cameras():
    g = torch.Generator().manual_seed(0)
    eye = torch.randn(4, 3, generator=g) * 3
    R, T = look_at_view(eye, torch.zeros(4, 3), torch.tensor([0.0, 0.0, 1.0]))
    assert torch.allclose(camera_centers(R, T), eye, atol=1e-5)
    focal, pp = torch.tensor([[2.0, 2.0]]).expand(4, 2), torch.tensor([[0.1, -0.05]]).expand(4, 2)
    W, H = 80, 60
    cams = viewpoint_to_cameras(R, T, focal, pp, W, H, "ndc_isotropic")
    X = torch.randn(4, 3, generator=g) * 0.3
    # PyTorch3D: camera point X R + T; NDC x = f X/Z + p with +x left, +y up, scaled by half the shorter side
    Xc = torch.einsum("ni,nij->nj", X, R) + T
    ndc = focal * Xc[:, :2] / Xc[:, 2:] + pp
    s = min(W, H) / 2
    pix_p3d = torch.stack([W / 2 - ndc[:, 0] * s, H / 2 - ndc[:, 1] * s], -1)
    cv = torch.einsum("nij,nj->ni", cams.viewmats[:, :3, :3], X) + cams.viewmats[:, :3, 3]
    pix_cv = torch.einsum("nij,nj->ni", cams.Ks, cv)
    assert torch.allclose(pix_cv[:, :2] / pix_cv[:, 2:], pix_p3d, atol=1e-4)
    back = cameras_to_viewpoint(cams)
    assert torch.allclose(back["R"], R, atol=1e-6) and torch.allclose(back["T"], T, atol=1e-5)
    assert torch.allclose(back["focal_length"], focal) and torch.allclose(back["principal_point"], pp, atol=1e-6)
    # the camera looks at the origin: its +Z axis points from the eye to the target
    assert torch.allclose(R[:, :, 2], -torch.nn.functional.normalize(eye, dim=-1), atol=1e-5)
    v = pose_vector(R, T)
    assert v.shape == (4, 12) and torch.allclose(v[:, 9:], torch.nn.functional.normalize(eye, dim=-1), atol=1e-5)


def test_builtin_layout_reads_back(tiny_root):
    seqs = list_sequences(split_dir(tiny_root, "train"))
    assert [s.name for s in seqs] == ["train_0000", "train_0001", "train_0002"]
    s = seqs[0]
    for sub in ("images", "masks", "depths", "depth_masks"):
        assert len(list((s.instance / sub).iterdir())) == 3
    assert read_binvox(s.voxel).data.shape == (8, 8, 8) and read_binvox(s.voxel).data.any()
    pose = read_pose(s.frames[0].pose)
    assert pose["intrinsics_format"] == "ndc_isotropic" and pose["image_size"] == [16, 16]
    depth = np.asarray(Image.open(s.instance / "depths" / "frame000001.jpg.geometric.png")).view(np.float16)
    mask = np.asarray(Image.open(s.frames[0].mask)) > 127
    assert (depth[mask] > 1.0).all() and (depth[~mask] == 0).all()  # CO3D's float16-in-uint16 depth encoding
    ds = Co3dVoxelDataset(split_dir(tiny_root, "train"), cube_len=8, image_size=16)
    item = ds[(1, (0, 2))]
    assert item["images"].shape == (2, 3, 16, 16) and item["poses"].shape == (2, 12)
    assert item["voxels"].shape == (8, 8, 8) and set(item["voxels"].unique().tolist()) <= {0.0, 1.0}
    assert ds.default_views(0, 3) == (0, 1, 2) and ds.mean_shape().shape == (8, 8, 8)


def test_not_the_layout_names_what_is_missing(tmp_path, tiny_root):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not in the CO3D layout.*_processed"):
        resolve_category(tmp_path / "empty")
    with pytest.raises(UserError, match="holds train/"):
        resolve_category(tiny_root)
    import shutil

    cat = tmp_path / "cat"
    shutil.copytree(split_dir(tiny_root, "train"), cat)
    (cat / "train_0001_dataset_instance" / "train_0001.binvox").unlink()
    with pytest.raises(UserError, match=r"sequence 'train_0001'.*missing train_0001_dataset_instance/train_0001.binvox"):
        list_sequences(cat)
    shutil.rmtree(cat / "train_0002_processed" / "poses")
    (cat / "train_0001_dataset_instance" / "train_0001.binvox").write_bytes(b"#binvox 1\n")
    with pytest.raises(UserError, match=r"missing train_0002_processed/poses/"):
        list_sequences(cat)


def test_resample_grid_pools_any_and_takes_nearest():
    g = np.zeros((8, 8, 8), bool)
    g[0, 0, 0] = True
    assert resample_grid(g, 4)[0, 0, 0] and resample_grid(g, 4).sum() == 1
    assert resample_grid(g, 16).sum() == 8
    assert resample_grid(np.ones((6, 6, 6), bool), 4).all()


def _raw_co3d(root):
    """A two-sequence CO3D category: frames, masks, a point cloud of a sphere, frame_annotations.jgz."""
    from utils.visualization.ply import write_point_cloud_ply

    cat = root / "chair"
    frames = []
    rng = np.random.default_rng(0)
    for seq in ("100_1_2", "101_3_4"):
        for sub in ("images", "masks", "depths", "depth_masks"):
            (cat / seq / sub).mkdir(parents=True)
        for n in (1, 2, 3):
            Image.fromarray(np.full((24, 32, 3), 40 * n, np.uint8)).save(cat / seq / "images" / f"frame{n:06d}.jpg")
            Image.fromarray(np.full((24, 32), 255, np.uint8)).save(cat / seq / "masks" / f"frame{n:06d}.png")
            encode_depth(np.ones((24, 32), np.float32)).save(cat / seq / "depths" / f"frame{n:06d}.jpg.geometric.png")
            Image.fromarray(np.full((24, 32), 255, np.uint8)).save(cat / seq / "depth_masks" / f"frame{n:06d}.png")
            a = 2 * math.pi * n / 3
            eye = torch.tensor([[3 * math.cos(a), 3 * math.sin(a), 1.0]])
            R, T = look_at_view(eye, torch.zeros(1, 3), torch.tensor([0.0, 0.0, 1.0]))
            frames.append({"sequence_name": seq, "frame_number": n, "frame_timestamp": 0.1 * n,
                           "image": {"path": f"chair/{seq}/images/frame{n:06d}.jpg", "size": [24, 32]},
                           "mask": {"path": f"chair/{seq}/masks/frame{n:06d}.png", "mass": 1.0},
                           "depth": {"path": f"chair/{seq}/depths/frame{n:06d}.jpg.geometric.png",
                                     "scale_adjustment": 1.0, "mask_path": f"chair/{seq}/depth_masks/frame{n:06d}.png"},
                           "viewpoint": {"R": R[0].tolist(), "T": T[0].tolist(), "focal_length": [1.8, 1.8],
                                         "principal_point": [0.0, 0.0], "intrinsics_format": "ndc_isotropic"}})
        d = rng.normal(size=(6000, 3))
        write_point_cloud_ply(cat / seq / "pointcloud.ply", d / np.linalg.norm(d, axis=1, keepdims=True) * 2 + 5)
    (cat / "frame_annotations.jgz").write_bytes(gzip.compress(json.dumps(frames).encode()))
    return cat, frames


def test_ply2voxel_fills_a_sphere_and_keeps_its_frame(tmp_path):
    from utils.data.co3d.ply2voxel import main, points_to_voxels

    d = np.random.default_rng(1).normal(size=(20000, 3))
    pts = d / np.linalg.norm(d, axis=1, keepdims=True) * 2 + 5  # radius 2 around (5, 5, 5)
    grid, translate, scale = points_to_voxels(pts, 16, padding=0.0)
    c = translate + scale * (np.stack(np.meshgrid(*[np.arange(16)] * 3, indexing="ij"), -1) + 0.5) / 16
    truth = np.linalg.norm(c - 5, axis=-1) <= 2
    iou = (grid & truth).sum() / (grid | truth).sum()
    assert iou > 0.8 and np.allclose(translate, 3.0, atol=0.05) and abs(scale - 4.0) < 0.05
    from utils.visualization.ply import write_point_cloud_ply

    write_point_cloud_ply(tmp_path / "s.ply", pts)
    assert main(["--ply", str(tmp_path / "s.ply"), "--output", str(tmp_path / "s.binvox"), "--cube_len", "16"]) == 0
    assert read_binvox(tmp_path / "s.binvox").data.sum() > 0.3 * 16 ** 3 * 0.5


def test_preprocess_extract_poses_and_split_make_the_layout(tmp_path):
    from utils.data.co3d import preprocess, split
    from utils.data.co3d.extract_poses import extract_poses, read_frame_annotations

    cat, frames = _raw_co3d(tmp_path / "raw")
    written = extract_poses(read_frame_annotations(cat / "frame_annotations.jgz"), tmp_path / "poses_only")
    assert written == {"100_1_2": 3, "101_3_4": 3}
    assert preprocess.main(["--co3d_dir", str(cat), "--output_dir", str(tmp_path / "chair"), "--cube_len", "8"]) == 0
    seqs = list_sequences(tmp_path / "chair")
    assert [s.name for s in seqs] == ["100_1_2", "101_3_4"] and all(len(s.frames) == 3 for s in seqs)
    assert read_pose(seqs[0].frames[1].pose)["R"] == frames[1]["viewpoint"]["R"]
    assert seqs[0].category == "chair" and read_binvox(seqs[0].voxel).data.shape == (8, 8, 8)
    ds = Co3dVoxelDataset(tmp_path / "chair", cube_len=8, image_size=16)
    assert ds[(0, (0, 1, 2))]["images"].shape == (3, 3, 16, 16)
    assert split.main(["--input_dir", str(tmp_path / "chair"), "--output_dir", str(tmp_path / "splits"),
                       "--ratios", "1", "0", "1"]) == 0
    got = json.loads((tmp_path / "splits" / "splits.json").read_text())
    assert sorted(got["train"] + got["test"]) == ["100_1_2", "101_3_4"] and got["val"] == []
    assert len(list_sequences(tmp_path / "splits" / "train" / "chair")) == 1


def test_bad_frame_annotations_are_one_line_errors(tmp_path):
    from utils.data.co3d.extract_poses import read_frame_annotations

    (tmp_path / "f.jgz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="cannot read frame annotations"):
        read_frame_annotations(tmp_path / "f.jgz")
    with pytest.raises(UserError, match="not found"):
        read_frame_annotations(tmp_path / "none.jgz")
