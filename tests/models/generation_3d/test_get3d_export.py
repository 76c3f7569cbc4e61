"""Textured exports: the UV atlas (xatlas) covers the mesh, the baked texture shows the field at the surface
point behind each texel, and the .obj + .mtl + .png and .glb files read back with trimesh hold the mesh, its
UVs and that texture; a generated tiny shape saves through the pipeline, atomically."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from models.generation_3d.get3d.pipeline import GET3DPipeline
from utils.errors import UserError
from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid
from utils.rendering.uv_atlas import dilate, texel_positions, uv_atlas
from utils.visualization.textured_mesh import atomic_stem, write_textured_glb, write_textured_obj


def _sphere():
    g = regular_tet_grid(12, scale=1.6)
    return marching_tetrahedra(g.verts, 0.5 - g.verts.norm(dim=-1), g.tets)


def _lookup(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Nearest texel of uv (OBJ convention: v up)."""
    h, w = texture.shape[:2]
    x = np.clip((uv[:, 0] * w).astype(int), 0, w - 1)
    y = np.clip(((1 - uv[:, 1]) * h).astype(int), 0, h - 1)
    return texture[y, x]


def test_atlas_splits_seams_only_and_texels_lie_on_the_surface():
    v, f = _sphere()
    atlas = uv_atlas(v, f)
    assert atlas.faces.shape == f.shape and len(atlas.verts) >= len(v)
    assert torch.equal(atlas.verts, v[atlas.source])  # every vertex copies an input vertex
    assert torch.equal(atlas.source[atlas.faces], f)  # same triangles, in the same order
    assert atlas.uvs.min() >= 0 and atlas.uvs.max() <= 1
    pos, covered = texel_positions(atlas, 64)
    assert 0.3 < covered.float().mean() < 1.0
    r = pos[covered].norm(dim=-1)  # on the sphere's triangles: within a cell of radius 0.5, never at the origin
    assert r.min() > 0.4 and r.max() < 0.51
    with pytest.raises(UserError, match="no faces"):
        uv_atlas(v, f[:0])


def test_dilate_fills_only_the_gutter_next_to_charts():
    img = torch.zeros(5, 5, 3)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    img[2, 2], mask[2, 2] = torch.tensor([1.0, 0.5, 0.25]), True
    out = dilate(img, mask, iterations=1)
    assert torch.equal(out[1, 1], img[2, 2]) and torch.equal(out[3, 2], img[2, 2])
    assert torch.equal(out[0, 0], torch.zeros(3))  # two texels away: not reached in one iteration


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_written_files_read_back_with_mesh_uvs_and_texture(tmp_path, suffix):
    v, f = _sphere()
    atlas = uv_atlas(v, f)
    pos, covered = texel_positions(atlas, 128)
    texture = dilate((pos * 0.8 + 0.5).clamp(0, 1), covered).numpy()  # colour = a function of the 3D point
    path = tmp_path / f"ball{suffix}"
    args = (atlas.verts.numpy(), atlas.faces.numpy(), atlas.uvs.numpy(), texture)
    if suffix == ".obj":
        written = write_textured_obj(path, *args)
        assert [p.name for p in written] == ["ball.obj", "ball.mtl", "ball.png"]
        assert "map_Kd ball.png" in (tmp_path / "ball.mtl").read_text()
    else:
        write_textured_glb(path, *args)
    assert not list(tmp_path.glob(".*tmp*"))
    mesh = trimesh.load(path, force="mesh", process=False)
    assert mesh.vertices.shape == atlas.verts.shape and np.array_equal(mesh.faces, atlas.faces.numpy())
    assert np.allclose(mesh.vertices, atlas.verts.numpy(), atol=1e-5)
    assert np.allclose(mesh.visual.uv, atlas.uvs.numpy(), atol=1e-5)
    mat = mesh.visual.material
    image = getattr(mat, "baseColorTexture", None) or getattr(mat, "image", None)
    assert image.size == (128, 128)
    back = np.asarray(image.convert("RGB"), np.float32) / 255
    assert np.abs(back - texture).max() <= 1 / 255 + 1e-6  # 8-bit rounding only
    # the texel behind each face's centre shows the colour of the 3D point there
    centre_uv = mesh.visual.uv[mesh.faces].mean(1)
    centre_xyz = mesh.vertices[mesh.faces].mean(1)
    err = np.abs(_lookup(back, centre_uv) - np.clip(centre_xyz * 0.8 + 0.5, 0, 1))
    assert np.median(err) < 0.02 and np.mean(err) < 0.03


def test_atomic_stem_names_sidecars_after_the_final_file():
    assert atomic_stem("/x/.car.ab_12cd.tmp.obj") == "car" and atomic_stem("/x/.my.car.k2j3.tmp.obj") == "my.car"
    assert atomic_stem("/x/car.obj") == "car"


def test_tiny_pipeline_saves_textured_glb_obj_and_turntable(tmp_path):
    pipe = GET3DPipeline.from_pretrained(preset="tiny")
    out = pipe(seed=3, n_views=3, render_size=24, texture_size=32)
    assert len(out.renders) == 3 and out.renders[0].size == (24, 24) and out.cameras.shape == (3, 4, 4)
    frames = np.stack([np.asarray(im) for im in out.renders])
    assert not np.array_equal(frames[0], frames[1])  # the turntable turns
    assert out.save(tmp_path / "shape.glb") == [tmp_path / "shape.glb"]
    out.save(tmp_path / "shape.obj")
    assert {p.name for p in tmp_path.iterdir()} == {"shape.glb", "shape.obj", "shape.mtl", "shape.png"}
    glb, obj = (trimesh.load(tmp_path / n, force="mesh", process=False) for n in ("shape.glb", "shape.obj"))
    assert np.allclose(glb.vertices, obj.vertices, atol=1e-5) and np.array_equal(glb.faces, obj.faces)
    assert len(np.unique(out.points, axis=0)) == len(np.unique(glb.vertices, axis=0))  # the atlas only splits seams
    assert Image.open(tmp_path / "shape.png").size == (32, 32)
    video = out.save(tmp_path / "turn.gif")
    assert video and Image.open(video[0]).n_frames == 3
    again = pipe(seed=3, n_views=3, render_size=24, texture_size=32)
    assert np.array_equal(np.asarray(again.renders[1]), frames[1])  # seeded
    with pytest.raises(UserError, match="n_views"):
        pipe(seed=3, n_views=0)
    with pytest.raises(UserError, match="elevation"):
        pipe(seed=3, elevation=95)


def test_turntable_is_a_video_output_of_the_shapes_views(tmp_path):
    from utils.outputs import VideoOutput

    pipe = GET3DPipeline.from_pretrained(preset="tiny")
    video = pipe.turntable(seed=3, n_views=4, render_size=24, fps=6.0)
    assert isinstance(video, VideoOutput) and len(video.frames[0]) == 4 and video.fps == 6.0
    still = pipe(seed=3, n_views=4, render_size=24, texture_size=16)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(video.frames[0], still.renders))
    written = video.save(tmp_path / "turn.mp4")
    assert written[0].stat().st_size > 0
