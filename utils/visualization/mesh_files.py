"""Mesh files with vertex colours by suffix: .ply and .obj (`utils.visualization.mesh`), .glb (trimesh)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from utils.visualization.mesh import write_mesh_obj, write_mesh_ply


def write_mesh_glb(path: str | Path, verts: np.ndarray, faces: np.ndarray, colours: np.ndarray | None = None) -> Path:
    """A binary glTF of the mesh, vertex colours (V, 3) in [0, 1] as RGBA bytes."""
    import trimesh

    c = None if colours is None else (np.clip(colours, 0, 1) * 255).round().astype(np.uint8)
    mesh = trimesh.Trimesh(vertices=verts, faces=faces, vertex_colors=c, process=False)
    path = Path(path)
    with open(path, "wb") as f:
        f.write(mesh.export(file_type="glb"))
    return path


def mesh_writers(verts: np.ndarray, faces: np.ndarray, colours: np.ndarray | None) -> dict[str, Callable[[Path], None]]:
    """{suffix: writer(path)} for .ply, .obj and .glb (Output3D.writers)."""
    return {".ply": lambda p: write_mesh_ply(p, verts, faces, colours),
            ".obj": lambda p: write_mesh_obj(p, verts, faces, colours),
            ".glb": lambda p: write_mesh_glb(p, verts, faces, colours)}


__all__ = ["mesh_writers", "write_mesh_glb"]
