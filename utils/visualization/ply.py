"""Gaussian-splat .ply files in the layout of the original 3DGS code (read by every splat viewer).

One `vertex` element, binary little-endian float32 properties in this order:

    x y z  nx ny nz  f_dc_0..2  f_rest_0..(3*(K-1)-1)  opacity  scale_0..2  rot_0..3

f_dc are the DC SH coefficients per channel; f_rest are the higher ones channel-major
(all of red's K-1 coefficients, then green's, then blue's); opacity is a logit; scales are
natural logs; rot is a quaternion w x y z (not necessarily normalised); the normals are zero.
In memory the splats use the native layout of `models.generation_3d.gaussian_splatting`:
means (N, 3), scales (N, 3) logs, quats (N, 4) wxyz, opacities (N,) logits, sh0 (N, 1, 3),
shN (N, K-1, 3).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError
from utils.io import atomic_path

__all__ = ["write_splat_ply", "read_splat_ply", "read_ply_vertices", "write_point_cloud_ply"]

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _to_numpy(x) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().float().numpy()
    return np.asarray(x, dtype=np.float32)


def write_splat_ply(path: str | Path, splats: dict) -> Path:
    """Write splats (native layout, tensors or arrays) as a 3DGS .ply, atomically."""
    means = _to_numpy(splats["means"]).reshape(-1, 3)
    n = len(means)
    sh0 = _to_numpy(splats["sh0"]).reshape(n, 3)
    shN = _to_numpy(splats["shN"]).reshape(n, -1, 3) if splats.get("shN") is not None else np.zeros((n, 0, 3))
    rest = shN.transpose(0, 2, 1).reshape(n, -1)  # channel-major
    columns = ([("x", means[:, 0]), ("y", means[:, 1]), ("z", means[:, 2])]
               + [(c, np.zeros(n, np.float32)) for c in ("nx", "ny", "nz")]
               + [(f"f_dc_{i}", sh0[:, i]) for i in range(3)]
               + [(f"f_rest_{i}", rest[:, i]) for i in range(rest.shape[1])]
               + [("opacity", _to_numpy(splats["opacities"]).reshape(n))]
               + [(f"scale_{i}", _to_numpy(splats["scales"]).reshape(n, 3)[:, i]) for i in range(3)]
               + [(f"rot_{i}", _to_numpy(splats["quats"]).reshape(n, 4)[:, i]) for i in range(4)])
    data = np.empty(n, dtype=[(name, "<f4") for name, _ in columns])
    for name, values in columns:
        data[name] = values
    header = "ply\nformat binary_little_endian 1.0\nelement vertex {}\n{}end_header\n".format(
        n, "".join(f"property float {name}\n" for name, _ in columns))
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())
    return path


def read_ply_vertices(path: str | Path) -> np.ndarray:
    """The `vertex` element of a .ply (binary little/big endian or ascii) as a structured array."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: give the path of a .ply file")
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise UserError(f"{path} is not a .ply file (it does not start with 'ply')")
        fmt, elements, current = None, [], None
        while True:
            line = f.readline()
            if not line:
                raise UserError(f"{path}: the .ply header has no end_header line")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                break
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                current = (words[1], int(words[2]), [])
                elements.append(current)
            elif words[0] == "property":
                if words[1] == "list":
                    raise UserError(f"{path}: list properties (faces) are not supported in a splat file")
                if current is None or words[1] not in _PLY_TYPES:
                    raise UserError(f"{path}: malformed .ply property line '{' '.join(words)}'")
                current[2].append((words[2], _PLY_TYPES[words[1]]))
        if not elements or elements[0][0] != "vertex":
            raise UserError(f"{path}: the first .ply element must be 'vertex'")
        _, count, props = elements[0]
        if fmt == "ascii":
            rows = np.loadtxt(f, max_rows=count, ndmin=2)
            data = np.empty(count, dtype=[(n, t) for n, t in props])
            for i, (name, _) in enumerate(props):
                data[name] = rows[:, i]
            return data
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise UserError(f"{path}: unknown .ply format '{fmt}'")
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(n, order + t) for n, t in props])
        raw = f.read(dtype.itemsize * count)
        if len(raw) < dtype.itemsize * count:
            raise UserError(f"{path} is truncated: expected {count} vertices")
        return np.frombuffer(raw, dtype=dtype, count=count)


def read_splat_ply(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a 3DGS .ply into the native layout (float32 tensors). The SH degree follows the
    number of f_rest properties (0, 9, 24 or 45 for degrees 0 to 3)."""
    v = read_ply_vertices(path)
    names = v.dtype.names or ()
    needed = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
              "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in needed if n not in names]
    if missing:
        raise UserError(f"{path} is not a Gaussian-splat .ply: it lacks {', '.join(missing[:6])}"
                        f"{'...' if len(missing) > 6 else ''} (a plain point cloud cannot be rendered as splats)")
    rest_names = sorted((n for n in names if re.fullmatch(r"f_rest_\d+", n)), key=lambda n: int(n[7:]))
    n_rest = len(rest_names)
    if n_rest % 3 or (n_rest // 3 + 1) not in (1, 4, 9, 16):
        raise UserError(f"{path} has {n_rest} f_rest properties: expected 0, 9, 24 or 45 (SH degree 0 to 3)")

    def col(*keys: str) -> np.ndarray:
        return np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], -1)

    n = len(v)
    rest = col(*rest_names).reshape(n, 3, n_rest // 3) if n_rest else np.zeros((n, 3, 0), np.float32)
    return {
        "means": torch.from_numpy(col("x", "y", "z")),
        "scales": torch.from_numpy(col("scale_0", "scale_1", "scale_2")),
        "quats": torch.from_numpy(col("rot_0", "rot_1", "rot_2", "rot_3")),
        "opacities": torch.from_numpy(np.asarray(v["opacity"], dtype=np.float32).copy()),
        "sh0": torch.from_numpy(col("f_dc_0", "f_dc_1", "f_dc_2"))[:, None, :],
        "shN": torch.from_numpy(np.ascontiguousarray(rest.transpose(0, 2, 1))),
    }


def write_point_cloud_ply(path: str | Path, points, colors=None) -> Path:
    """A plain coloured point cloud (x y z [red green blue as uchar]), binary little-endian."""
    pts = _to_numpy(points).reshape(-1, 3)
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    data = np.empty(len(pts), dtype=fields)
    data["x"], data["y"], data["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    props = "property float x\nproperty float y\nproperty float z\n"
    if colors is not None:
        c = np.clip(_to_numpy(colors).reshape(-1, 3) * 255 + 0.5, 0, 255).astype(np.uint8)
        data["red"], data["green"], data["blue"] = c[:, 0], c[:, 1], c[:, 2]
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {len(pts)}\n{props}end_header\n"
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(data.tobytes())
    return path
