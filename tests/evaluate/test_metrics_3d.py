"""evaluate/metrics_3d.py: Chamfer / F-score of .ply and .npy clouds and voxel IoU, end to end, and its errors."""
from __future__ import annotations

import numpy as np

from utils.visualization.ply import write_point_cloud_ply, write_splat_ply


def _clouds(tmp_path):
    pred = np.array([[0.0, 0, 0], [1, 0, 0], [0, 2, 0]])
    target = np.array([[0.0, 0, 0.005], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.save(tmp_path / "pred.npy", pred)
    write_point_cloud_ply(tmp_path / "target.ply", target, colors=np.zeros((4, 3)))
    return pred, target


def test_points_by_hand(tmp_path, run_script):
    _clouds(tmp_path)
    # pred -> target nearest distances: 0.005, 0, 1 ; target -> pred: 0.005, 0, 1, 1
    res = run_script("metrics_3d", "points", tmp_path / "pred.npy", tmp_path / "target.ply", "--threshold", "0.01", "2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    squared = (0.005 ** 2 + 0 + 1) / 3 + (0.005 ** 2 + 0 + 1 + 1) / 4
    assert lines[0].startswith("Chamfer distance (squared): ") and "3 predicted, 4 target points" in lines[0]
    assert abs(float(lines[0].split(": ")[1].split()[0]) - squared) < 1e-5
    # at 0.01: precision 2/3, recall 2/4; at 2: everything is within reach
    f = 2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)
    assert lines[1] == f"F-score@0.01: {f:.4f} (precision 0.6667, recall 0.5000)"
    assert lines[2] == "F-score@2: 1.0000 (precision 1.0000, recall 1.0000)"


def test_points_euclidean_and_splat_ply(tmp_path, call_script):
    pred, target = _clouds(tmp_path)
    n = len(target)
    write_splat_ply(tmp_path / "splats.ply", {"means": target, "sh0": np.zeros((n, 1, 3)), "shN": None,
                                              "opacities": np.zeros(n), "scales": np.zeros((n, 3)),
                                              "quats": np.tile([1.0, 0, 0, 0], (n, 1))})
    code, out, err = call_script("metrics_3d", "points", tmp_path / "pred.npy", tmp_path / "splats.ply", "--euclidean")
    assert code == 0, err
    plain = (0.005 + 0 + 1) / 3 + (0.005 + 0 + 1 + 1) / 4
    assert out.startswith("Chamfer distance (euclidean): ") and abs(float(out.split(": ")[1].split()[0]) - plain) < 1e-5


def test_voxels(tmp_path, call_script):
    a = np.zeros((2, 4, 4, 4), bool)
    a[0, :2] = True  # 32 cells
    a[1, :1] = True  # 16 cells
    b = np.zeros((2, 4, 4, 4), np.float32)
    b[0, 1:3] = 0.9  # 32 cells, 16 shared with a[0]
    b[1, :1] = 0.4  # below the threshold: empty, IoU 0
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    code, out, err = call_script("metrics_3d", "voxels", tmp_path / "a.npy", tmp_path / "b.npy")
    assert code == 0, err
    assert out.strip() == f"voxel IoU: {(16 / 48 + 0) / 2:.4f} (mean of 2 grids: {16 / 48:.4f} 0.0000)"
    code, out, err = call_script("metrics_3d", "voxels", tmp_path / "a.npy", tmp_path / "b.npy", "--threshold", "0.3")
    assert code == 0 and out.strip().endswith(f"{16 / 48:.4f} 1.0000)")


def test_bad_inputs_are_one_line(tmp_path, call_script, one_line_error):
    _clouds(tmp_path)
    np.save(tmp_path / "grid.npy", np.zeros((4, 4, 4)))
    np.save(tmp_path / "small.npy", np.zeros((2, 2, 2)))
    np.save(tmp_path / "nan.npy", np.array([[0.0, np.nan, 0]]))
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    (tmp_path / "cloud.xyz").write_text("0 0 0\n")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    (tmp_path / "mesh.ply").write_text("ply\nformat ascii 1.0\nelement vertex 1\nproperty float u\nend_header\n0\n")
    p = tmp_path
    for args, fragments in [
        (("points", p / "missing.npy", p / "pred.npy"), ["point cloud not found", "missing.npy"]),
        (("points", p / "grid.npy", p / "pred.npy"), ["grid.npy", "(4, 4, 4)", "(N, 3)"]),
        (("points", p / "cloud.xyz", p / "pred.npy"), ["cloud.xyz", ".ply or .npy"]),
        (("points", p / "nan.npy", p / "pred.npy"), ["nan.npy", "NaN"]),
        (("points", p / "empty.npy", p / "pred.npy"), ["empty.npy", "no points"]),
        (("points", p / "junk.npy", p / "pred.npy"), ["cannot read", "junk.npy"]),
        (("points", p / "mesh.ply", p / "pred.npy"), ["mesh.ply", "no x, y, z"]),
        (("points", p / "pred.npy", p / "target.ply", "--threshold", "0"), ["--threshold must be positive"]),
        (("voxels", p / "grid.npy", p / "small.npy"), ["differ in shape", "(4, 4, 4)", "(2, 2, 2)"]),
        (("voxels", p / "pred.npy", p / "grid.npy"), ["pred.npy", "(3, 3)", "(D, H, W)"]),
        (("voxels", p / "grid.npy", p / "target.ply"), ["target.ply", "must be a .npy"]),
    ]:
        code, out, err = call_script("metrics_3d", *args)
        one_line_error(code, err, *fragments)
        assert out == ""


def test_help_names_every_option(run_script):
    def help_text(*args: str) -> str:
        res = run_script("metrics_3d", *args, "--help")  # `python evaluate/metrics_3d.py` from another folder
        assert res.returncode == 0, res.stderr
        return " ".join(res.stdout.split())  # argparse wraps lines

    assert all(k in help_text("points") for k in ("pred", "target", "--threshold", "--euclidean", "squared"))
    assert "--threshold" in help_text("voxels") and "(B, D, H, W)" in help_text("voxels")
    assert all(k in help_text() for k in ("points", "voxels", "F-score", "Chamfer"))
