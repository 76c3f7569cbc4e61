"""Textured meshes from GET3D: `GET3DPipeline`.

    pipe = GET3DPipeline.from_pretrained(preset="shapenet-car")          # nv-tlabs' shapenet_car.pt (hub)
    out = pipe(seed=0)
    out.save("car.glb"); out.save("car.obj"); out.save("car.mp4"); out.save("car/")   # glb, obj+mtl+png, turntable

`source` is an official checkpoint (.pt: torch.save of {'G', 'G_ema', 'D'}; read with weights_only, or
with the restricted unpickler when it pickles other objects, never running code from the file), a
native .safetensors (convert.py, or the `generator.safetensors` a train_3d.py run writes), a run folder
of train_3d.py, or a hub id. `preset="tiny"` without `source` builds random weights. `tets` takes one
of GET3D's pre-computed tetrahedral grids (data/tets/<res>_tets.npz); without it a regular grid of
the configuration's resolution is built.

A call draws one shape (geometry and texture latents from one generator seeded with `seed`), extracts
its DMTet mesh, charts it with xatlas and bakes the texture field into a `texture_size` image, and
renders `n_views` turntable views. `Output3D.writers`: .glb (texture embedded) and .obj (+ .mtl + .png);
`.mp4`/`.gif` save the turntable, `.png` a grid of its views; `Output3D.cameras` holds the views'
world-to-camera matrices (GET3D's convention, primitives.camera_from_angles).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from models.generation_3d.get3d.config import RELEASED, TINY, GET3DConfig
from models.generation_3d.get3d.export import bake_texture, turntable_frames
from models.generation_3d.get3d.model import GET3DGenerator
from models.generation_3d.get3d.spec import SPEC
from utils.errors import UserError, WeightsError
from utils.outputs import Output3D, VideoOutput, check_generated
from utils.torch_utils import local_seed, make_generator, randn, resolve_device

__all__ = ["GET3DPipeline", "load_generator"]

RUN_WEIGHTS = "generator.safetensors"
"""The averaged generator a train_3d.py run writes into its --out folder."""


def preset_config(preset: str) -> GET3DConfig:
    return TINY if preset == "tiny" else RELEASED["shapenet-chair" if preset == "shapenet-table" else preset]


def load_generator(source: str | Path, preset: str, tets: str | Path | None = None) -> GET3DGenerator:
    """A GET3DGenerator with the weights of `source` (see the module docstring)."""
    from utils.rendering.dmtet import load_tet_grid
    from utils.weights.hub import resolve
    from utils.weights.native import read_safetensors_config

    path = Path(source)
    if path.is_dir() and (path / RUN_WEIGHTS).is_file():
        path = path / RUN_WEIGHTS
    elif not path.exists():
        w = SPEC.weights_for(preset)
        path = resolve(source, filename=w.file if w is not None and str(source) == w.source else None)
    if path.is_dir():
        raise WeightsError(f"{path} is a folder without {RUN_WEIGHTS}: pass a GET3D .pt or .safetensors file, or "
                           "the --out folder of a train_3d.py --model get3d run")
    if path.suffix == ".safetensors":
        from utils.weights.files import load_state_dict

        sd = load_state_dict(path)  # first: a damaged file is refused with its name
        cfg = read_safetensors_config(path, GET3DConfig) or preset_config(preset)
    else:
        from models.generation_3d.get3d.convert import load_official

        cfg, sd = preset_config(preset), load_official(path, "G_ema")
    grid = load_tet_grid(tets, scale=cfg.dmtet_scale) if tets is not None else None
    G = GET3DGenerator(cfg, grid=grid)
    from utils.weights import load_into

    load_into(G, sd, strict=True, what=f"GET3D generator ({path.name})")
    return G


class GET3DPipeline:
    """One GET3D generator and the calls that turn a seed into a textured mesh (see the module docstring)."""

    def __init__(self, generator: GET3DGenerator, preset: str, device: torch.device):
        self.generator = generator.eval().requires_grad_(False).to(device)
        self.preset, self.device = preset, device

    @classmethod
    def from_pretrained(cls, source: str | Path | None = None, preset: str | None = None, device=None, dtype=None,
                        tets: str | Path | None = None) -> GET3DPipeline:
        preset = SPEC.check_preset(preset)
        if dtype not in (None, "float32", torch.float32):
            raise UserError(f"GET3D runs in float32 here, not {dtype}: leave dtype out")
        device = resolve_device(device)
        if source is None and preset != "tiny":
            source = SPEC.weights_for(preset).source
        if source is None:
            from utils.rendering.dmtet import load_tet_grid

            with local_seed(0):
                G = GET3DGenerator(TINY, grid=load_tet_grid(tets, TINY.dmtet_scale) if tets else None)
        else:
            G = load_generator(source, preset, tets)
        return cls(G, preset, device)

    def default(self, key: str, value):
        return SPEC.default(self.preset, key) if value is None else value

    @torch.no_grad()
    def meshes(self, seed: int | None = None, truncation_psi: float | None = None):
        """(meshes [(verts, faces)], aux) of one shape drawn from `seed` (see GET3DGenerator.generate_meshes)."""
        G = self.generator
        gen = make_generator(seed)
        z_geo = randn((1, G.cfg.z_dim), gen, self.device)
        z_tex = randn((1, G.cfg.z_dim), gen, self.device)
        return G.generate_meshes(z_geo, z_tex, truncation_psi=self.default("truncation_psi", truncation_psi))

    @torch.no_grad()
    def turntable(self, seed: int | None = None, n_views: int | None = None, render_size: int | None = None,
                  elevation: float | None = None, truncation_psi: float | None = None, fps: float = 12.0,
                  background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> VideoOutput:
        """The shape of `seed` seen by `n_views` cameras circling it, as a video."""
        out = self(seed=seed, n_views=n_views, render_size=render_size, elevation=elevation,
                   truncation_psi=truncation_psi, background=background, texture=False, fps=fps)
        return VideoOutput([out.renders], fps=fps)

    @torch.no_grad()
    def __call__(self, seed: int | None = None, n_views: int | None = None, render_size: int | None = None,
                 texture_size: int | None = None, elevation: float | None = None,
                 truncation_psi: float | None = None, background: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 texture: bool = True, fps: float = 12.0) -> Output3D:
        n_views, render_size = self.default("n_views", n_views), self.default("render_size", render_size)
        texture_size, elevation = self.default("texture_size", texture_size), self.default("elevation", elevation)
        for name, value, low in (("n_views", n_views, 1), ("render_size", render_size, 8),
                                 ("texture_size", texture_size, 8)):
            if int(value) < low:
                raise UserError(f"{name} must be at least {low}, got {value}")
        if not -89.0 <= float(elevation) <= 89.0:
            raise UserError(f"elevation must be between -89 and 89 degrees above the horizon, got {elevation}")
        meshes, aux = self.meshes(seed, truncation_psi)
        verts, faces = meshes[0]
        if faces.numel() == 0:
            raise UserError("this seed gave an empty shape (no surface in the grid): try another seed")
        frames = turntable_frames(self.generator, aux, 0, verts, faces, int(n_views), int(render_size),
                                  float(elevation), background)
        check_generated(verts, "GET3D vertices", flat=False)  # a render may be flat (a shape off-screen)
        check_generated(frames, "GET3D renders", flat=False)
        renders = [Image.fromarray((f.numpy() * 255 + 0.5).astype(np.uint8)) for f in frames]
        v = verts.float().cpu().numpy()
        writers = {}
        if texture:
            tm = bake_texture(self.generator, aux, 0, verts, faces, int(texture_size))
            writers = _textured_writers(tm)
        from models.generation_3d.get3d.export import turntable_cameras

        return Output3D(renders=renders, points=v, writers=writers, fps=fps,
                        cameras=turntable_cameras(int(n_views), float(elevation)))


def _textured_writers(tm) -> dict:
    from utils.visualization.textured_mesh import write_textured_glb, write_textured_obj

    args = (tm["verts"].numpy(), tm["faces"].numpy(), tm["uvs"].numpy(), tm["texture"].numpy())
    return {".glb": lambda p: write_textured_glb(p, *args), ".obj": lambda p: write_textured_obj(p, *args)}
