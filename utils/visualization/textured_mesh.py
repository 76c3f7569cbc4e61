"""Textured meshes (a UV per vertex and one texture image) as .obj + .mtl + .png and as .glb (trimesh).

Each file is written atomically (utils/io.atomic_path). `write_textured_obj(path, ...)` writes the
texture `<stem>.png` and the material `<stem>.mtl` first and the .obj that names them last, so a
finished .obj never points at a missing file. When `path` is a temporary name given by `atomic_path`
(as `Output3D.save` passes), `name` is the final stem to name the sidecar files after.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from utils.io import atomic_path

__all__ = ["atomic_stem", "write_textured_glb", "write_textured_obj"]


def atomic_stem(path: str | Path) -> str:
    """The stem of the final file behind a temporary name of `atomic_path` ('.car.ab12cd.tmp.obj' -> 'car')."""
    name = Path(path).name
    if name.startswith(".") and ".tmp." in name:
        return name[1:].rsplit(".", 3)[0]
    return Path(path).stem


def _texture_image(texture: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(texture, Image.Image):
        return texture.convert("RGB")
    arr = np.asarray(texture, dtype=np.float32)
    return Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")


def write_textured_obj(path: str | Path, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
                       texture: np.ndarray | Image.Image, name: str | None = None) -> list[Path]:
    """Write `<stem>.png`, `<stem>.mtl` and the .obj (v, vt, f v/vt); `texture` (H, W, 3) in [0, 1] or a PIL image."""
    path = Path(path)
    stem = name or atomic_stem(path)
    png, mtl = path.parent / f"{stem}.png", path.parent / f"{stem}.mtl"
    with atomic_path(png) as tmp:
        _texture_image(texture).save(tmp, format="PNG")
    with atomic_path(mtl) as tmp:
        tmp.write_text(f"newmtl {stem}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {png.name}\n")
    v, vt = np.asarray(verts, np.float64), np.asarray(uvs, np.float64)
    f = np.asarray(faces, np.int64) + 1
    lines = [f"mtllib {mtl.name}", f"usemtl {stem}"]
    lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in v]
    lines += [f"vt {a:.6f} {b:.6f}" for a, b in vt]
    lines += [f"f {a}/{a} {b}/{b} {c}/{c}" for a, b, c in f]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return [path, mtl, png]


def write_textured_glb(path: str | Path, verts: np.ndarray, faces: np.ndarray, uvs: np.ndarray,
                       texture: np.ndarray | Image.Image) -> Path:
    """A binary glTF with the texture embedded as the material's base colour."""
    import trimesh

    visual = trimesh.visual.TextureVisuals(uv=np.asarray(uvs, np.float64), image=_texture_image(texture))
    mesh = trimesh.Trimesh(vertices=np.asarray(verts, np.float64), faces=np.asarray(faces, np.int64),
                           visual=visual, process=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(mesh.export(file_type="glb"))
    return Path(path)
