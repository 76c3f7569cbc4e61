"""Point-E text/image -> coloured point cloud (1024 points, upsampled to 4096) -> optional mesh.

    pipe = PointEPipeline.from_pretrained(preset="base40M-textvec")     # image: base40M/300M/1B
    out = pipe(prompt="a red motorcycle", seed=0, mesh=True)
    out.save("cloud.ply"); out.save("cloud.npz"); out.save("mesh.glb")
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from models.generation_3d.point_e.config import get_config
from models.generation_3d.point_e.diffusion import SAMPLING, GaussianDiffusion, karras_sample
from models.generation_3d.point_e.model import PointESDF, PointETransformer
from models.generation_3d.point_e.spec import SDF_URL, SPEC, UPSAMPLE_URL
from utils.errors import UserError
from utils.outputs import Output3D

TINY = {"tiny": ("tiny-textvec", "tiny-upsample", "tiny-sdf"), "tiny-image": ("tiny", "tiny-upsample", "tiny-sdf")}
CLIP_VIT_L_14 = "openai/clip-vit-large-patch14"


def _bar(items, desc: str, enabled: bool):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, leave=False)


def _seeded(module: torch.nn.Module, seed: int, std: float = 0.2) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    return module.eval()


class PointEPipeline:
    """Base model, upsampler, SDF model and the CLIP encoder(s) of one preset."""

    def __init__(self, base: PointETransformer, upsampler: PointETransformer, sdf: PointESDF | None,
                 clip: Any, preset: str):
        self.base, self.upsampler, self.sdf = base.eval(), upsampler.eval(), sdf.eval() if sdf else None
        self.clip, self.preset = clip, preset
        self.base_diffusion = GaussianDiffusion(SAMPLING["base"][0])
        self.upsample_diffusion = GaussianDiffusion(SAMPLING["upsample"][0])

    @property
    def cond(self) -> str:
        return "text" if self.base.config.cond == "vec" else "image"

    @property
    def device(self) -> torch.device:
        return self.base.input_proj.weight.device

    # -- loading ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, preset: str | None = None,
                        device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
                        ) -> "PointEPipeline":
        """`source`: a folder with the release's base_*.pt, upsample_40m.pt and sdf.pt; none: the
        release files (downloaded once), or fixed random weights for 'tiny' / 'tiny-image'."""
        from utils.torch_utils import resolve_device

        preset = SPEC.check_preset(preset)
        dev = resolve_device(device)
        if source is None and preset in TINY:
            return cls.random(preset).to(dev)
        from models.generation_3d.point_e.convert import from_official
        from utils.weights import load_into, load_state_dict
        from utils.weights.hub import fetch_release

        url = SPEC.weights_for(preset).source
        if source is not None:
            folder = Path(os.path.expanduser(str(source)))
            files = [folder / u.rsplit("/", 1)[-1] for u in (url, UPSAMPLE_URL, SDF_URL)]
            missing = [f.name for f in files[:2] if not f.is_file()]
            if missing:
                raise UserError(f"{folder} lacks {', '.join(missing)}: give a folder with the Point-E release files")
        else:
            files = [fetch_release(u, "Point-E") for u in (url, UPSAMPLE_URL, SDF_URL)]
        base = load_into(PointETransformer(get_config(preset)), from_official(load_state_dict(files[0])),
                         what=f"Point-E {preset}")
        up = load_into(PointETransformer(get_config("upsample")), from_official(load_state_dict(files[1])),
                       what="Point-E upsampler")
        sdf = None
        if files[2].is_file():
            sdf = load_into(PointESDF(get_config("sdf")), load_state_dict(files[2]), what="Point-E SDF model")
        from transformers import CLIPModel, CLIPTokenizer

        clip = CLIPModel.from_pretrained(CLIP_VIT_L_14).eval()
        clip.tokenizer = CLIPTokenizer.from_pretrained(CLIP_VIT_L_14)
        return cls(base, up, sdf, clip, preset).to(dev)

    @classmethod
    def random(cls, preset: str = "tiny") -> "PointEPipeline":
        from transformers import CLIPConfig, CLIPModel

        base_name, up_name, sdf_name = TINY[preset]
        base = _seeded(PointETransformer(get_config(base_name)), 10)
        up = _seeded(PointETransformer(get_config(up_name)), 11)
        sdf = _seeded(PointESDF(get_config(sdf_name)), 12)
        with torch.no_grad():  # the random field sits near +0.3: shifted so that it has a surface to mesh
            sdf.output_proj.bias -= 0.3
        from utils.encoders.tiny_tokenizer import TinyTokenizer

        torch.manual_seed(2)
        cfg = CLIPConfig(text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=4, bos_token_id=998, eos_token_id=999, pad_token_id=999),
                         vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, image_size=224, patch_size=32),
                         projection_dim=24)
        clip = CLIPModel(cfg).eval()
        clip.tokenizer = TinyTokenizer(1000, eos_id=999, pad_id=999, bos_id=998)
        return cls(base, up, sdf, clip, preset)

    def to(self, device=None) -> "PointEPipeline":
        for m in (self.base, self.upsampler, self.sdf, self.clip):
            if m is not None:
                m.to(device)
        return self

    # -- conditioning -------------------------------------------------------------------------------

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise UserError("the prompt is empty: describe the object, e.g. --prompt \"a red motorcycle\"")
        tok = self.clip.tokenizer(list(prompts), padding="max_length", max_length=77, truncation=True,
                                  return_tensors="pt")
        pooled = self.clip.text_model(input_ids=tok["input_ids"].to(self.device)).pooler_output
        emb = self.clip.text_projection(pooled)
        return (emb / emb.norm(dim=-1, keepdim=True)).float()

    def encode_image(self, image: Any) -> torch.Tensor:
        """CLIP's patch grid (B, width, patches) of an image (PIL, path or pixel tensor): the last layer
        before the final norm, class token dropped."""
        from utils.encoders.clip_preprocess import clip_pixels

        pixels = clip_pixels(image, self.clip.config.vision_config.image_size)
        hidden = self.clip.vision_model(pixel_values=pixels.to(self.device)).last_hidden_state
        return hidden[:, 1:].permute(0, 2, 1).float()

    # -- sampling -----------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, prompt: str | Sequence[str] | None = None, image: Any = None, num_images: int = 1,
                 steps: int | None = None, upsample_steps: int | None = None, guidance_scale: float | None = None,
                 seed: int | None = None, mesh: bool = False, mesh_resolution: int | None = None,
                 upsample: bool = True, n_views: int | None = None, frame_size: int | None = None,
                 progress: bool = False) -> Output3D:
        """`num_images` clouds per prompt (or image); object i uses seed + i. Returns an Output3D with
        `points` (N, 3) and `colors` (N, 3) in [0, 1] (objects side by side along x when several),
        writers .ply/.npz (the cloud) and, with `mesh`, .obj/.glb/.mesh.ply; `renders`: a turntable of
        the cloud (`n_views` frames of `frame_size` pixels) for .gif/.mp4/.png."""
        d = lambda key, v: v if v is not None else SPEC.default(self.preset, key)  # noqa: E731
        steps, upsample_steps = int(d("steps", steps)), int(d("upsample_steps", upsample_steps))
        guidance_scale, mesh_resolution = float(d("guidance_scale", guidance_scale)), int(d("mesh_resolution",
                                                                                             mesh_resolution))
        if num_images < 1 or steps < 1 or upsample_steps < 1:
            raise UserError("num_images, steps and upsample_steps must be at least 1")
        cond = self._condition(prompt, image).repeat_interleave(num_images, dim=0)
        base_seed = int(torch.randint(0, 2 ** 31 - 1, (1,))) if seed is None else int(seed)
        clouds = []
        for i in _bar(range(cond.shape[0]), "Point-E objects", progress and cond.shape[0] > 1):
            gen = torch.Generator().manual_seed(base_seed + i)
            clouds.append(self._one(cond[i:i + 1], steps, upsample_steps, guidance_scale, gen, upsample, progress))
        meshes = [self.extract_mesh(c, mesh_resolution, progress) for c in clouds] if mesh else []
        out = _output(clouds, meshes)
        from models.generation_3d.point_e.render import render_points, turntable_cameras

        out.cameras = turntable_cameras(out.points, int(d("n_views", n_views)), int(d("frame_size", frame_size)))
        out.renders = render_points(out.points, out.colors, out.cameras)
        return out

    def _condition(self, prompt, image) -> torch.Tensor:
        if self.cond == "text":
            if image is not None:
                raise UserError(f"point_e preset '{self.preset}' is text-conditioned: give a prompt, or an image "
                                "preset (base40M, base300M, base1B) for --image")
            if prompt is None:
                raise UserError("give a prompt, e.g. prompt=\"a red motorcycle\"")
            return self.encode_prompt([prompt] if isinstance(prompt, str) else list(prompt))
        if image is None:
            raise UserError(f"point_e preset '{self.preset}' is image-conditioned: give an image, or the "
                            "base40M-textvec preset for a prompt")
        return torch.cat([self.encode_image(im) for im in (image if isinstance(image, (list, tuple)) else [image])])

    def _one(self, cond, steps, upsample_steps, guidance, gen, upsample, progress) -> torch.Tensor:
        _, smin, smax, churn = SAMPLING["base"]
        both = torch.cat([cond, torch.zeros_like(cond)])
        bar = (lambda it: _bar(it, "Point-E base", True)) if progress else None
        low = karras_sample(lambda x, t: self.base(x, t, clip=both if guidance not in (0, 1) else cond),
                            self.base_diffusion, (1, 6, self.base.config.n_ctx), steps, smin, smax, churn, guidance,
                            gen, self.device, bar)
        if not upsample:
            return low[0]
        _, smin, smax, churn = SAMPLING["upsample"]
        up_guidance = guidance if self.cond == "image" else 0.0  # text: the upsampler runs unconditioned
        clip = both if up_guidance not in (0, 1) else (cond if self.cond == "image" else None)
        lows = torch.cat([low, low]) if up_guidance not in (0, 1) else low
        bar = (lambda it: _bar(it, "Point-E upsampler", True)) if progress else None
        high = karras_sample(lambda x, t: self.upsampler(x, t, clip=clip, low_res=lows), self.upsample_diffusion,
                             (1, 6, self.upsampler.config.n_ctx), upsample_steps, smin, smax, churn, up_guidance,
                             gen, self.device, bar)
        return torch.cat([low, high], dim=-1)[0]

    @torch.no_grad()
    def extract_mesh(self, cloud: torch.Tensor, resolution: int = 128, progress: bool = False):
        """(6, N) cloud -> (vertices, faces, colours): the SDF model's zero level on a grid over
        [-0.51, 0.51]^3 (the release's side 1.02), marching cubes, each vertex coloured like its
        nearest point."""
        from utils.visualization.mesh import marching_cubes

        if self.sdf is None:
            raise UserError("this Point-E pipeline has no SDF model (sdf.pt): meshes need it")
        n = self.sdf.config.n_ctx
        coords = cloud[:3, :n][None].to(self.device)
        latents = self.sdf.encode(coords)
        half = 0.51
        axis = torch.linspace(-half, half, resolution, device=self.device)
        grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
        values = []
        starts = range(0, grid.shape[0], 4096)
        for s in _bar(starts, "marching cubes", progress):
            values.append(self.sdf.predict(grid[s:s + 4096].T[None], latents)[0])
        field = torch.cat(values).reshape(resolution, resolution, resolution).cpu()
        verts, faces = marching_cubes(-field, level=0.0, bounds=((-half,) * 3, (half,) * 3))
        pts = cloud[:3].T.cpu()
        if len(verts) == 0:
            return verts, faces, np.zeros((0, 3), np.float32)
        nearest = torch.cdist(torch.from_numpy(verts), pts).argmin(1)
        colours = (cloud[3:6].T.cpu()[nearest] / 255.0).clamp(0, 1).numpy()
        return verts, faces, colours


def _output(clouds: list[torch.Tensor], meshes: list) -> Output3D:
    from utils.visualization.mesh_files import mesh_writers
    from utils.visualization.ply import write_point_cloud_ply

    pts = np.concatenate([c[:3].T.cpu().numpy() + np.array([1.2 * i, 0, 0], np.float32) for i, c in enumerate(clouds)])
    cols = np.concatenate([(c[3:6].T.cpu() / 255.0).clamp(0, 1).numpy() for c in clouds])
    writers = {}
    if meshes:
        verts, faces, colours, off = [], [], [], 0
        for i, (v, f, c) in enumerate(meshes):
            verts.append(v + np.array([1.2 * i, 0, 0], np.float32)), faces.append(f + off), colours.append(c)
            off += len(v)
        mw = mesh_writers(np.concatenate(verts), np.concatenate(faces), np.concatenate(colours))
        writers.update({".obj": mw[".obj"], ".glb": mw[".glb"], ".mesh.ply": mw[".ply"]})
    writers[".ply"] = lambda p: write_point_cloud_ply(p, pts, cols)

    def write_npz(path: Path) -> None:
        with open(path, "wb") as f:
            np.savez(f, coords=pts.astype(np.float32), colors=cols.astype(np.float32))

    writers[".npz"] = write_npz
    return Output3D(points=pts.astype(np.float32), colors=cols.astype(np.float32), writers=writers, fps=10.0)


def mesh_ply_writer(out: Output3D):
    """The writer of the mesh as .ply (the `.ply` writer of a Point-E result is the cloud's)."""
    if ".mesh.ply" not in out.writers:
        raise UserError("this result has no mesh: call the pipeline with mesh=True")
    from utils.io import atomic_path

    def write(path: Path) -> None:
        with atomic_path(Path(path)) as tmp:
            out.writers[".mesh.ply"](tmp)

    return write

