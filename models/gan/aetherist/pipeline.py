"""The triplane GANs' pipeline: latents and cameras in, images (and depth, turntables, meshes) out.

    pipe = AetheristPipeline.from_pretrained(preset="eg3d-ffhq-512")    # NVlabs' .pkl, read as data
    out = pipe(num_images=4, seed=0, elevation=10, azimuth=30)          # ImageOutput (labels: the cameras)
    pipe.turntable(seed=0, num_frames=60).save("orbit.mp4")
    pipe.mesh(seed=0, resolution=128).save("head.ply")

Cameras: `elevation`/`azimuth` (degrees, `create_camera_pose`), `radius` (default the preset's
`avg_camera_radius`) and `fov` (degrees), looking at the preset's pivot; or `camera_poses`, camera-to-world
matrices (B, 4, 4) or full 25-value labels (B, 25). The mapping is conditioned on the front camera (as
EG3D's generation scripts do), so one latent keeps its identity across views. One seed draws the latents
and then the ray jitter of the whole call.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from models.gan.aetherist.config import PRESETS, AetheristConfig
from models.gan.aetherist.convert import check_keys, config_from_nvlabs
from models.gan.aetherist.model import TriplaneGenerator
from models.gan.pipeline_base import GANPipeline
from utils.errors import UserError
from utils.outputs import ImageOutput, Output3D, VideoOutput
from utils.rendering.camera_labels import camera_label, create_camera_pose, normalized_intrinsics
from utils.torch_utils import randn

__all__ = ["AetheristPipeline"]


class AetheristPipeline(GANPipeline):
    """A triplane generator (Aetherist or EG3D) ready to sample under any camera."""

    model_name = "aetherist"
    config_class = AetheristConfig
    presets = PRESETS
    network_class = TriplaneGenerator
    weights_files = ("generator.safetensors", "network-snapshot.pkl", "network.pkl")
    config: AetheristConfig

    def __init__(self, generator: TriplaneGenerator, config: AetheristConfig, device: torch.device,
                 dtype: torch.dtype):
        super().__init__(config, device, dtype)
        self.generator = self.place(generator)

    # -- loading ---------------------------------------------------------------------------------

    @staticmethod
    def resolve_source(source: str | Path) -> Path:
        """A URL (the NGC release) is downloaded once into the torch hub cache; anything else as the base does."""
        text = str(source)
        if text.startswith(("http://", "https://")):
            from utils.weights.hub import fetch_url

            target = Path(torch.hub.get_dir()) / "checkpoints" / text.rsplit("/", 1)[-1]
            return fetch_url(text, target, f"EG3D weights {target.name}", instead="or pass --weights with the file")
        return GANPipeline.resolve_source(source)

    @classmethod
    def read_checkpoint(cls, path: Path, preset: str | None) -> tuple[Path, dict[str, Tensor], AetheristConfig]:
        file = cls.checkpoint_file(path)
        if file.suffix.lower() in (".pkl", ".pickle"):
            from dataclasses import replace

            from utils.weights.nvlabs import load_nvlabs_pickle, nvlabs_network

            _, G = nvlabs_network(load_nvlabs_pickle(file), file, what="EG3D generator")
            config = config_from_nvlabs(G.init_kwargs, what=f"the generator in {file.name}")
            nrr = G.state.get("neural_rendering_resolution")
            if isinstance(nrr, int):
                config = replace(config, neural_rendering_resolution=nrr)
            cls.check_fit(config, preset, file)
            return file, G.state_dict(), config
        return super().read_checkpoint(path, preset)

    @classmethod
    def check_fit(cls, config: AetheristConfig, preset: str | None, file: Path) -> None:
        """A checkpoint named with a preset must have that preset's architecture (rendering settings may differ)."""
        if preset is None or preset == "tiny":
            return
        from models.gan.aetherist.config import ARCHITECTURE_FIELDS

        want = PRESETS[preset]
        if any(getattr(config, k) != getattr(want, k) for k in ARCHITECTURE_FIELDS):
            raise UserError(f"the weights in {file.name} do not fit {cls.model_name} preset '{preset}': drop "
                            "--preset to use the checkpoint's own configuration")

    @classmethod
    def convert(cls, state_dict: dict[str, Tensor], config: AetheristConfig, **options: Any) -> dict[str, Tensor]:
        check_keys(state_dict, config, "the generator checkpoint")
        return state_dict

    @classmethod
    def missing_weights(cls, preset: str) -> Exception:
        return UserError(f"no weights are registered for aetherist preset '{preset}': train it (train_gan.py --model "
                         "aetherist), pass --weights with a checkpoint, or use --preset tiny for random weights")

    # -- cameras ---------------------------------------------------------------------------------

    def intrinsics(self, fov: float | None = None) -> Tensor:
        return normalized_intrinsics(self.config.fov_degrees if fov is None else fov)

    def camera_labels(self, n: int, elevation: float | Sequence[float] | None = None,
                      azimuth: float | Sequence[float] | None = None, radius: float | None = None,
                      fov: float | None = None, camera_poses: Tensor | None = None,
                      yaw: float | None = None, pitch: float | None = None) -> Tensor:
        """(n, 25) camera labels from angles (scalars or one per image), EG3D's yaw/pitch (radians, its
        LookAtPoseSampler convention around the preset's pivot), or poses / labels."""
        if yaw is not None or pitch is not None:
            if camera_poses is not None or elevation is not None or azimuth is not None:
                raise UserError("give EG3D's yaw/pitch, or elevation/azimuth, or camera_poses: one of the three")
            from utils.rendering.camera_labels import eg3d_pose

            r = self.config.avg_camera_radius if radius is None else radius
            if r <= 0:
                raise UserError(f"the camera radius must be positive, got {r}")
            pose = eg3d_pose(math.pi / 2 if yaw is None else yaw, math.pi / 2 if pitch is None else pitch, r,
                             self.config.avg_camera_pivot)
            return camera_label(pose, self.intrinsics(fov)).expand(n, 25).clone()
        if camera_poses is not None:
            if elevation is not None or azimuth is not None:
                raise UserError("give either camera_poses or elevation/azimuth, not both")
            poses = torch.as_tensor(camera_poses, dtype=torch.float32)
            if poses.ndim == 2 and poses.shape == (4, 4):
                poses = poses[None]
            if poses.ndim == 2 and poses.shape[1] == 25:
                labels = poses
            elif poses.ndim == 3 and poses.shape[1:] == (4, 4):
                labels = camera_label(poses, self.intrinsics(fov))
            else:
                raise UserError(f"camera_poses are camera-to-world matrices (B, 4, 4) or labels (B, 25), got shape "
                                f"{tuple(poses.shape)}")
            if len(labels) == 1:
                labels = labels.expand(n, 25)
            if len(labels) != n:
                raise UserError(f"{len(labels)} camera poses for {n} images: give one, or one per image")
            return labels.clone()
        r = self.config.avg_camera_radius if radius is None else radius
        el = torch.as_tensor(0.0 if elevation is None else elevation, dtype=torch.float64).flatten()
        az = torch.as_tensor(0.0 if azimuth is None else azimuth, dtype=torch.float64).flatten()
        for name, t in (("elevation", el), ("azimuth", az)):
            if len(t) not in (1, n):
                raise UserError(f"{len(t)} {name} values for {n} images: give one, or one per image")
        el, az = el.expand(n) if len(el) == 1 else el, az.expand(n) if len(az) == 1 else az
        poses = create_camera_pose(el, az, r, target=self.config.avg_camera_pivot)
        return camera_label(poses, self.intrinsics(fov))

    def conditioning_labels(self, n: int) -> Tensor:
        """The front camera the mapping is conditioned on."""
        return self.camera_labels(n)

    # -- generation ------------------------------------------------------------------------------

    def sample_latents(self, n: int, generator: torch.Generator) -> Tensor:
        return randn((n, self.config.latent_dim), generator)

    def map(self, z: Tensor, truncation: float = 1.0) -> Tensor:
        if z.ndim != 2 or z.shape[1] != self.config.latent_dim:
            raise UserError(f"latent codes are (batch, {self.config.latent_dim}), got shape {tuple(z.shape)}")
        c = self.conditioning_labels(len(z)).to(self.device, self.dtype)
        return self.generator.mapping(z.to(self.device, self.dtype), c, truncation_psi=truncation)

    def render(self, ws: Tensor, labels: Tensor, generator: torch.Generator | None = None,
               neural_rendering_resolution: int | None = None, planes: Tensor | None = None) -> dict[str, Tensor]:
        return self.generator.synthesis(ws, labels.to(self.device, self.dtype), neural_rendering_resolution,
                                        generator=generator, planes=planes)

    def check_size(self, height: int | None, width: int | None) -> None:
        size = self.config.image_resolution
        for name, v in (("height", height), ("width", width)):
            if v is not None and v != size:
                raise UserError(f"this aetherist preset generates {size}x{size} images: --{name} must be {size} "
                                "or left out")

    @torch.inference_mode()
    def __call__(self, num_images: int = 4, seed: int | None = None, latents: Tensor | None = None,
                 elevation: float | Sequence[float] | None = None, azimuth: float | Sequence[float] | None = None,
                 radius: float | None = None, fov: float | None = None, camera_poses: Tensor | None = None,
                 truncation: float | None = None, height: int | None = None, width: int | None = None,
                 batch_size: int = 8, steps: int | None = None, prompt: str | None = None,
                 yaw: float | None = None, pitch: float | None = None) -> ImageOutput:
        """Generate `num_images` images seen from the given camera(s); `labels` of the output are the cameras."""
        if steps is not None:
            raise UserError("aetherist is a GAN and generates in one forward pass: --steps does not apply")
        if prompt is not None:
            raise UserError("aetherist is unconditional: it takes no prompt (choose the view with --elevation, "
                            "--azimuth, --radius)")
        if num_images < 1 or batch_size < 1:
            raise UserError("the number of images and the batch size must be at least 1")
        self.check_size(height, width)
        gen = self.noise_generator(seed)
        # the latents are drawn even when given, so the ray jitter that follows is the same either way:
        # the latents an output returns, given back with its seed, give back its images
        n = num_images if latents is None else len(latents)
        drawn = self.sample_latents(n, gen)
        latents = drawn if latents is None else torch.as_tensor(latents, dtype=torch.float32)
        labels = self.camera_labels(n, elevation, azimuth, radius, fov, camera_poses, yaw, pitch)
        psi = self.truncation(truncation)
        images = []
        for i in range(0, n, batch_size):
            ws = self.map(latents[i:i + batch_size], psi)
            images.append(self.render(ws, labels[i:i + batch_size], gen)["image"].float().cpu())
        return self.output(torch.cat(images).clamp(-1, 1), latents=latents, labels=labels)

    def truncation(self, value: float | None) -> float:
        return self.spec().default(self.preset_name, "truncation", 1.0) if value is None else float(value)

    @torch.inference_mode()
    def depth_maps(self, latents: Tensor, labels: Tensor, seed: int | None = 0,
                   truncation: float | None = None) -> Tensor:
        """Rendered depth (B, 1, r, r) (distance along each ray, at the neural rendering resolution)."""
        gen = self.noise_generator(seed)
        ws = self.map(torch.as_tensor(latents, dtype=torch.float32), self.truncation(truncation))
        return self.render(ws, labels, gen)["image_depth"].float().cpu()

    @torch.inference_mode()
    def consistency(self, num_samples: int = 16, seed: int | None = 0, azimuth_offset: float = 20.0,
                    elevation: float = 0.0, truncation: float | None = None, tolerance: float = 0.1,
                    min_opacity: float = 0.5) -> float:
        """The 3D-consistency score (percent, `utils.metrics.consistency_3d`) of the raw renders of each latent
        seen from the front and from `azimuth_offset` degrees aside, reprojected through the rendered depth
        (occluded and transparent pixels left out), averaged over `num_samples` latents. A featureless render
        scores high trivially: `consistency_report` gives the score with its chance level and the gap."""
        return self.consistency_report(num_samples, seed, azimuth_offset, elevation, truncation, tolerance,
                                       min_opacity)["score"]

    @torch.inference_mode()
    def consistency_report(self, num_samples: int = 16, seed: int | None = 0, azimuth_offset: float = 20.0,
                           elevation: float = 0.0, truncation: float | None = None, tolerance: float = 0.1,
                           min_opacity: float = 0.5) -> dict[str, float]:
        """`consistency`'s score with, averaged over the latents, its chance level and the gap (score - chance,
        `utils.metrics.consistency_3d.consistency_report`), the shuffled-latent score (latent i's front view
        against latent i+1's side view, through i's depth; needs 2 latents, else NaN) and `contrast`, the
        mean over latents of the colour std of the scored pixels of the front raw render (0 for a constant
        render)."""
        from utils.metrics.consistency_3d import consistency_report

        if num_samples < 1:
            raise UserError("the number of samples must be at least 1")
        gen = self.noise_generator(seed)
        z = self.sample_latents(num_samples, gen)
        a_label = self.camera_labels(1, elevation, 0.0)
        b_label = self.camera_labels(1, elevation, azimuth_offset)
        views = []
        for i in range(num_samples):
            ws = self.map(z[i:i + 1], self.truncation(truncation))
            planes = self.generator.planes(ws)
            a = self.render(ws, a_label, gen, planes=planes)
            b = self.render(ws, b_label, gen, planes=planes)
            mask = (a["image_opacity"] >= min_opacity).float()
            mask = -torch.nn.functional.max_pool2d(-mask, 3, 1, 1)
            views.append({"a": a["image_raw"].float().cpu(), "depth_a": a["image_depth"].float().cpu(),
                          "b": b["image_raw"].float().cpu(), "depth_b": b["image_depth"].float().cpu(),
                          "mask": mask.float().cpu()})
        rows, shuffled = [], []
        for i, v in enumerate(views):
            if v["mask"].sum() == 0:
                continue
            r = consistency_report(v["a"], v["depth_a"], a_label, v["b"], b_label, v["mask"], tolerance,
                                   depth_b=v["depth_b"], seed=i)
            scored = v["a"].flatten(2)[..., (v["mask"].flatten() > 0)]
            r["contrast"] = float(scored.std(-1).mean()) if scored.shape[-1] > 1 else 0.0
            rows.append(r)
            if num_samples > 1:
                o = views[(i + 1) % num_samples]
                shuffled.append(consistency_report(v["a"], v["depth_a"], a_label, o["b"], b_label, v["mask"],
                                                   tolerance, depth_b=o["depth_b"], seed=i)["score"])
        if not rows:
            raise UserError(f"no render of these {num_samples} latents is opaque anywhere (opacity >= {min_opacity}): "
                            "the consistency score needs surfaces; lower --min-opacity")
        mean = lambda key: float(sum(r[key] for r in rows) / len(rows))  # noqa: E731
        return {"score": mean("score"), "chance": mean("chance"), "gap": mean("gap"), "contrast": mean("contrast"),
                "shuffled": float(sum(shuffled) / len(shuffled)) if shuffled else float("nan"),
                "latents_scored": len(rows)}

    @property
    def preset_name(self) -> str:
        for name, cfg in PRESETS.items():
            if cfg == self.config:
                return name
        return "*"

    @torch.inference_mode()
    def turntable(self, seed: int | None = 0, num_frames: int = 36, elevation: float = 0.0,
                  radius: float | None = None, latents: Tensor | None = None, truncation: float | None = None,
                  fps: float = 12.0, depth: bool = False) -> VideoOutput:
        """An orbit video of one latent around the vertical axis (the same triplanes for every frame)."""
        if num_frames < 1:
            raise UserError("a turntable needs at least one frame")
        gen = self.noise_generator(seed)
        z = self.sample_latents(1, gen) if latents is None else torch.as_tensor(latents, dtype=torch.float32)[:1]
        ws = self.map(z, self.truncation(truncation))
        planes = self.generator.planes(ws)
        az = torch.arange(num_frames, dtype=torch.float64) * (360.0 / num_frames)
        labels = self.camera_labels(num_frames, elevation, az, radius)
        frames = []
        for i in range(num_frames):
            out = self.render(ws, labels[i:i + 1], gen, planes=planes)
            if depth:
                d = out["image_depth"].float().cpu()
                d = (d - d.min()) / (d.max() - d.min()).clamp_min(1e-8) * 2 - 1
                frames.append(d.repeat(1, 3, 1, 1))
            else:
                frames.append(out["image"].float().cpu().clamp(-1, 1))
        video = torch.cat(frames)
        pil = ImageOutput.from_tensor(video).images
        return VideoOutput([pil], fps=fps, pixels=((video + 1) / 2)[None])

    @torch.inference_mode()
    def density_grid(self, seed: int | None = 0, resolution: int = 64, latents: Tensor | None = None,
                     truncation: float | None = None, chunk: int = 65536) -> np.ndarray:
        """The density field (resolution^3, indexed [x, y, z]) over the triplanes' box."""
        if resolution < 2:
            raise UserError("the mesh resolution must be at least 2")
        gen = self.noise_generator(seed)
        z = self.sample_latents(1, gen) if latents is None else torch.as_tensor(latents, dtype=torch.float32)[:1]
        ws = self.map(z, self.truncation(truncation))
        planes = self.generator.planes(ws)
        half = self.config.box_warp / 2
        axis = torch.linspace(-half, half, resolution)
        pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
        sig = []
        for i in range(0, pts.shape[1], chunk):
            p = pts[:, i:i + chunk].to(self.device, self.dtype)
            sig.append(self.generator.sample_mixed(p, torch.zeros_like(p), ws, planes=planes)["sigma"].float().cpu())
        return torch.cat(sig, 1).reshape(resolution, resolution, resolution).numpy()

    def mesh(self, seed: int | None = 0, resolution: int = 64, level: float | None = None,
             latents: Tensor | None = None, truncation: float | None = None) -> Output3D:
        """Marching cubes of the density field at `level` (default: the middle of its range, since an untrained
        field has no meaningful absolute level) as an Output3D that saves .ply or .obj."""
        from utils.visualization.mesh import marching_cubes, write_mesh_obj, write_mesh_ply

        grid = self.density_grid(seed, resolution, latents, truncation)
        lv = float(0.5 * (grid.min() + grid.max())) if level is None else level
        if not grid.min() < lv < grid.max():
            raise UserError(f"the density field spans {grid.min():.3g}..{grid.max():.3g}: level {lv} cuts no surface")
        half = self.config.box_warp / 2
        verts, faces = marching_cubes(grid, lv, bounds=((-half,) * 3, (half,) * 3))
        return Output3D(points=verts, writers={".ply": lambda p: write_mesh_ply(p, verts, faces),
                                               ".obj": lambda p: write_mesh_obj(p, verts, faces)})
