"""Gaussian splatting: .ply round trip and the original layout, checkpoint conversion, the
pipeline and the facade (the densification strategies: test_gs_strategy.py)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from models.generation_3d.gaussian_splatting import SPLAT_KEYS
from models.generation_3d.gaussian_splatting.convert import convert_to_native, detect_layout, load_splats
from utils.errors import ConversionError, UserError
from utils.visualization.ply import read_splat_ply, write_splat_ply


def _splats(n: int = 50, degree: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    k = (degree + 1) ** 2
    return {"means": torch.randn(n, 3, generator=g), "scales": torch.randn(n, 3, generator=g) - 3,
            "quats": torch.randn(n, 4, generator=g), "opacities": torch.randn(n, generator=g),
            "sh0": torch.randn(n, 1, 3, generator=g), "shN": torch.randn(n, k - 1, 3, generator=g)}


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_is_exact(tmp_path, degree):
    s = _splats(37, degree)
    write_splat_ply(tmp_path / "s.ply", s)
    back = read_splat_ply(tmp_path / "s.ply")
    for k in SPLAT_KEYS:
        assert back[k].shape == s[k].shape and torch.equal(back[k], s[k]), k


def _write_original_layout(path, xyz, f_dc, f_rest, opacity, scale, rot):
    """A .ply as the original 3DGS `save_ply` lays it out, built independently of our writer:
    attribute list x y z nx ny nz f_dc_* f_rest_* opacity scale_* rot_*, features transposed to
    channel-major, plus a comment line like some exporters add."""
    n = len(xyz)
    rest = f_rest.transpose(0, 2, 1).reshape(n, -1)  # (N, K-1, 3) -> (N, 3*(K-1)) channel-major
    attrs = ["x", "y", "z", "nx", "ny", "nz"] + [f"f_dc_{i}" for i in range(3)] + \
        [f"f_rest_{i}" for i in range(rest.shape[1])] + ["opacity"] + [f"scale_{i}" for i in range(3)] + \
        [f"rot_{i}" for i in range(4)]
    values = np.concatenate([xyz, np.zeros_like(xyz), f_dc, rest, opacity[:, None], scale, rot], axis=1)
    arr = np.empty(n, dtype=[(a, "f4") for a in attrs])
    for i, a in enumerate(attrs):
        arr[a] = values[:, i]
    header = "ply\nformat binary_little_endian 1.0\ncomment written by a test\nelement vertex %d\n" % n
    header += "".join(f"property float {a}\n" for a in attrs) + "end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode())
        f.write(arr.tobytes())


def test_original_3dgs_ply_loads(tmp_path):
    rng = np.random.default_rng(0)
    n = 20
    xyz, f_dc = rng.normal(size=(n, 3)).astype("f4"), rng.normal(size=(n, 3)).astype("f4")
    f_rest = rng.normal(size=(n, 15, 3)).astype("f4")
    op, sc, rot = rng.normal(size=n).astype("f4"), rng.normal(size=(n, 3)).astype("f4"), rng.normal(size=(n, 4)).astype("f4")
    _write_original_layout(tmp_path / "point_cloud.ply", xyz, f_dc, f_rest, op, sc, rot)
    s = load_splats(tmp_path / "point_cloud.ply")
    assert np.array_equal(s["shN"].numpy(), f_rest)  # f_rest_0..14 are red's 15 coefficients
    assert np.array_equal(s["sh0"][:, 0].numpy(), f_dc)
    assert np.array_equal(s["quats"].numpy(), rot) and np.array_equal(s["opacities"].numpy(), op)
    # and our writer produces the same bytes after the header
    write_splat_ply(tmp_path / "ours.ply", s)
    a, b = (tmp_path / "point_cloud.ply").read_bytes(), (tmp_path / "ours.ply").read_bytes()
    assert a[a.index(b"end_header\n"):] == b[b.index(b"end_header\n"):]


def test_ply_errors(tmp_path):
    (tmp_path / "pts.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\n"
                                       b"property float x\nproperty float y\nproperty float z\nend_header\n")
    with pytest.raises(UserError, match="not a Gaussian-splat"):
        read_splat_ply(tmp_path / "pts.ply")
    with pytest.raises(UserError, match="not found"):
        read_splat_ply(tmp_path / "missing.ply")


def test_convert_original_checkpoint_and_gsplat_ckpt(tmp_path):
    s = _splats(10)
    n = 10
    capture = (3, s["means"], s["sh0"], s["shN"], s["scales"], s["quats"], s["opacities"][:, None],
               torch.zeros(n), torch.zeros(n, 1), torch.zeros(n, 1), {"state": {}, "param_groups": []}, 4.2)
    torch.save((capture, 30000), tmp_path / "chkpnt30000.pth")
    assert detect_layout((capture, 30000)) == "3dgs_ckpt"
    native = load_splats(tmp_path / "chkpnt30000.pth")
    for k in SPLAT_KEYS:
        assert torch.equal(native[k], s[k]), k
    torch.save({"step": 7, "splats": {**s, "opacities": s["opacities"]}}, tmp_path / "ckpt_6999_rank0.pt")
    native = load_splats(tmp_path / "ckpt_6999_rank0.pt")
    assert all(torch.equal(native[k], s[k]) for k in SPLAT_KEYS)
    with pytest.raises(ConversionError, match="missing keys"):
        convert_to_native({"means": s["means"], "colors": s["sh0"]})


def test_pipeline_renders_and_saves(tmp_path):
    s = _splats(64, 3)
    s["means"] *= 0.3
    s["opacities"] = torch.full((64,), 2.0)
    write_splat_ply(tmp_path / "scene.ply", s)
    from models.generation_3d.gaussian_splatting.pipeline import GaussianSplattingPipeline

    out = GaussianSplattingPipeline.from_pretrained(device="cpu")(ply=tmp_path / "scene.ply", n_views=3, width=24)
    assert len(out.renders) == 3 and out.renders[0].size == (24, 24)
    assert np.asarray(out.renders[0]).std() > 1  # not a blank frame
    out.save(tmp_path / "again.ply")
    back = read_splat_ply(tmp_path / "again.ply")
    assert all(torch.equal(back[k], s[k]) for k in SPLAT_KEYS)


def test_facade_generate(tmp_path):
    import models
    from utils.outputs import Output3D

    write_splat_ply(tmp_path / "scene.ply", _splats(16, 0))
    out = models.generate("3d", "gaussian_splatting", ply=str(tmp_path / "scene.ply"), n_views=2, width=16)
    assert isinstance(out, Output3D) and ".ply" in out.writers and len(out.renders) == 2
    tiny = models.generate("3d", "gaussian_splatting", preset="tiny", n_views=1, width=16)
    assert len(tiny.renders) == 1
    with pytest.raises(UserError, match="no splats"):
        models.generate("3d", "gaussian_splatting", n_views=1)
