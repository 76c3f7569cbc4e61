"""Triangle meshes: marching cubes of a scalar grid, and .ply / .obj files with vertex colours.

`marching_cubes(values, level, bounds)` extracts the surface where a grid of samples crosses
`level` (Lorensen & Cline 1987). Its case table is derived here rather than typed in: for each of
the 256 inside/outside patterns of a cell's 8 corners, every face of the cell contributes the
segments that bound its inside part (on a face with two inside corners diagonal to each other,
the segments cut each inside corner off, the same choice seen from both cells that share the
face, so the surface is closed); the segments chain into loops around the cell and each loop
becomes a triangle fan. Vertices on a grid edge are shared by the cells around it, so the mesh
is indexed and, away from the grid border, watertight. Triangles wind counter-clockwise seen
from outside (low values), so normals point from high values to low ones: out of a density.

Files: binary little-endian .ply (vertex x y z [red green blue], face vertex_indices) and .obj
(`v x y z [r g b]` with colours in [0, 1], the common extension, and 1-based `f` lines).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from utils.errors import UserError
from utils.io import atomic_path

__all__ = ["marching_cubes", "case_table", "write_mesh", "write_mesh_ply", "write_mesh_obj", "read_mesh_ply",
           "mesh_volume"]

# corner c of a cell sits at offset (c & 1, (c >> 1) & 1, (c >> 2) & 1) along (x, y, z)
_CORNERS = np.array([[(c >> a) & 1 for a in range(3)] for c in range(8)])
# edges: pairs of corners that differ in one bit, and that bit (the axis)
_EDGES = [(a, a | (1 << axis), axis) for axis in range(3) for a in range(8) if not (a >> axis) & 1]
_EDGE_OF = {frozenset((a, b)): i for i, (a, b, _) in enumerate(_EDGES)}


def _face_loops() -> list[list[int]]:
    """The 6 faces of a cell, each as its 4 corners counter-clockwise seen from outside the cell."""
    faces = []
    for axis in range(3):
        for side in (0, 1):
            corners = [c for c in range(8) if (c >> axis) & 1 == side]
            normal = np.zeros(3)
            normal[axis] = 1.0 if side else -1.0
            centre = _CORNERS[corners].mean(0)
            # order by angle in the face plane, with the plane's basis (u, v) chosen so u x v = normal
            u = np.zeros(3)
            u[(axis + 1) % 3] = 1.0
            v = np.cross(normal, u)
            ang = [np.arctan2((_CORNERS[c] - centre) @ v, (_CORNERS[c] - centre) @ u) for c in corners]
            faces.append([corners[i] for i in np.argsort(ang)])
    return faces


_FACES = _face_loops()


@lru_cache(maxsize=1)
def case_table() -> np.ndarray:
    """(256, 5, 3) int: for each corner pattern (bit c set: corner c inside), up to five triangles
    as cell-edge indices (-1 pads)."""
    table = -np.ones((256, 5, 3), dtype=np.int64)
    for case in range(1, 255):
        inside = [(case >> c) & 1 == 1 for c in range(8)]
        succ: dict[int, int] = {}
        for loop in _FACES:
            # crossings in counter-clockwise order: an exit leaves the inside part, an entry comes back
            events = []
            for k in range(4):
                a, b = loop[k], loop[(k + 1) % 4]
                if inside[a] != inside[b]:
                    events.append((_EDGE_OF[frozenset((a, b))], inside[a]))
            exits = [i for i, (_, is_exit) in enumerate(events) if is_exit]
            for i in exits:
                # pair each exit with the entry just before it: the segment cuts that inside stretch off
                j = (i - 1) % len(events)
                succ[events[i][0]] = events[j][0]
        tris = []
        seen: set[int] = set()
        for start in succ:
            if start in seen:
                continue
            loop_edges = [start]
            seen.add(start)
            nxt = succ[start]
            while nxt != start:
                loop_edges.append(nxt)
                seen.add(nxt)
                nxt = succ[nxt]
            for k in range(1, len(loop_edges) - 1):
                tris.append((loop_edges[0], loop_edges[k + 1], loop_edges[k]))
        table[case, :len(tris)] = tris
    return table


def marching_cubes(values: np.ndarray | torch.Tensor, level: float = 0.0,
                   bounds: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float32, faces (F, 3) int64) of the surface values = level of a grid
    `values` (X, Y, Z) indexed [x, y, z]; inside is values >= level. Vertices are in grid units
    (0 .. X-1 ...) or, with `bounds` ((xmin, ymin, zmin), (xmax, ymax, zmax)), in those
    coordinates, the grid's first and last samples at the bounds."""
    v = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    v = v.astype(np.float64, copy=False)
    if v.ndim != 3 or min(v.shape) < 2:
        raise UserError(f"marching_cubes needs a 3D grid of at least 2 samples a side, got shape {v.shape}")
    inside = v >= level
    nx, ny, nz = v.shape
    case = np.zeros((nx - 1, ny - 1, nz - 1), dtype=np.int64)
    for c, (dx, dy, dz) in enumerate(_CORNERS):
        case |= inside[dx:nx - 1 + dx, dy:ny - 1 + dy, dz:nz - 1 + dz].astype(np.int64) << c
    cells = np.nonzero((case > 0) & (case < 255))
    if len(cells[0]) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    tris = case_table()[case[cells]]  # (K, 5, 3) cell edges
    valid = tris[..., 0] >= 0
    cell_xyz = np.stack(cells, -1)  # (K, 3)
    k_idx, t_idx = np.nonzero(valid)
    edges = tris[k_idx, t_idx]  # (T, 3)
    base = cell_xyz[k_idx]  # (T, 3)
    edge_start = np.array([_CORNERS[a] for a, _, _ in _EDGES])  # (12, 3)
    edge_axis = np.array([axis for _, _, axis in _EDGES])
    start = base[:, None, :] + edge_start[edges]  # (T, 3, 3) grid point where each edge starts
    axis = edge_axis[edges]
    # one id per grid edge, shared by the four cells around it
    gid = ((start[..., 0] * ny + start[..., 1]) * nz + start[..., 2]) * 3 + axis
    uniq, inverse = np.unique(gid.reshape(-1), return_inverse=True)
    faces = inverse.reshape(-1, 3).astype(np.int64)
    axis_u = uniq % 3
    p = uniq // 3
    x0 = np.stack([p // (ny * nz), (p // nz) % ny, p % nz], -1)
    x1 = x0 + np.eye(3, dtype=np.int64)[axis_u]
    f0, f1 = v[x0[:, 0], x0[:, 1], x0[:, 2]], v[x1[:, 0], x1[:, 1], x1[:, 2]]
    denom = f1 - f0
    frac = np.where(np.abs(denom) > 1e-12, (level - f0) / np.where(np.abs(denom) > 1e-12, denom, 1.0), 0.5)
    verts = x0 + np.clip(frac, 0.0, 1.0)[:, None] * (x1 - x0)
    if bounds is not None:
        lo, hi = np.asarray(bounds[0], np.float64), np.asarray(bounds[1], np.float64)
        verts = lo + verts / (np.array(v.shape) - 1) * (hi - lo)
    # drop triangles that collapsed onto one point (a corner exactly at the level)
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    return verts.astype(np.float32), faces[keep]


def mesh_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume enclosed by a closed mesh (positive when its normals point outwards)."""
    a, b, c = (verts[faces[:, i]].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _colors_u8(colors, n: int) -> np.ndarray:
    c = colors.detach().cpu().numpy() if torch.is_tensor(colors) else np.asarray(colors)
    c = c.reshape(n, 3).astype(np.float64)
    if c.max(initial=0.0) <= 1.0:
        c = c * 255.0
    return np.clip(c + 0.5, 0, 255).astype(np.uint8)


def write_mesh_ply(path: str | Path, verts, faces, colors=None) -> Path:
    """A binary little-endian .ply mesh; `colors` (V, 3) in [0, 1] (or 0..255) become uchar RGB."""
    verts = np.asarray(verts, dtype=np.float32).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    props = "property float x\nproperty float y\nproperty float z\n"
    if colors is not None:
        vfields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        props += "property uchar red\nproperty uchar green\nproperty uchar blue\n"
    vdata = np.empty(len(verts), dtype=vfields)
    vdata["x"], vdata["y"], vdata["z"] = verts[:, 0], verts[:, 1], verts[:, 2]
    if colors is not None:
        c = _colors_u8(colors, len(verts))
        vdata["red"], vdata["green"], vdata["blue"] = c[:, 0], c[:, 1], c[:, 2]
    fdata = np.empty(len(faces), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    fdata["n"] = 3
    fdata["i"] = faces
    header = (f"ply\nformat binary_little_endian 1.0\nelement vertex {len(verts)}\n{props}"
              f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(vdata.tobytes())
            f.write(fdata.tobytes())
    return path


def write_mesh_obj(path: str | Path, verts, faces, colors=None) -> Path:
    """A Wavefront .obj mesh; vertex colours as `v x y z r g b` in [0, 1]."""
    verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    lines = ["# written by cv-generative utils.visualization.mesh"]
    if colors is not None:
        c = _colors_u8(colors, len(verts)) / 255.0
        lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}" for (x, y, z), (r, g, b) in zip(verts, c)]
    else:
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += [f"f {a + 1} {b + 1} {c_ + 1}" for a, b, c_ in faces]
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def write_mesh(path: str | Path, verts, faces, colors=None) -> Path:
    """.ply or .obj by the suffix of `path`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".ply":
        return write_mesh_ply(path, verts, faces, colors)
    if suffix == ".obj":
        return write_mesh_obj(path, verts, faces, colors)
    raise UserError(f"cannot write a mesh as '{suffix}': use .ply or .obj")


def read_mesh_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(vertices, faces, colours or None) of a binary .ply mesh as `write_mesh_ply` writes it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: give the path of a .ply mesh")
    data = path.read_bytes()
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply") or end < 0:
        raise UserError(f"{path} is not a .ply file")
    header = data[:end].decode("ascii").splitlines()
    if "format binary_little_endian 1.0" not in header:
        raise UserError(f"{path}: only binary little-endian .ply meshes are read here")
    n_v = n_f = 0
    has_color = any(ln.endswith(" red") for ln in header)
    for ln in header:
        if ln.startswith("element vertex"):
            n_v = int(ln.split()[-1])
        elif ln.startswith("element face"):
            n_f = int(ln.split()[-1])
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")] + ([("red", "u1"), ("green", "u1"), ("blue", "u1")]
                                                            if has_color else [])
    body = data[end + len(b"end_header\n"):]
    vdata = np.frombuffer(body, dtype=vfields, count=n_v)
    fdata = np.frombuffer(body, dtype=[("n", "u1"), ("i", "<i4", (3,))], count=n_f, offset=vdata.nbytes)
    verts = np.stack([vdata["x"], vdata["y"], vdata["z"]], -1)
    colors = np.stack([vdata["red"], vdata["green"], vdata["blue"]], -1) if has_color else None
    return verts, fdata["i"].astype(np.int64), colors
