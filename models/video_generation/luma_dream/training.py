"""Training the camera adapter (camera_adapter.py) on posed videos, the LTX-Video transformer frozen.

The objective is LTX-Video's flow matching: a clip's standardised VAE latents x0 (posterior mode), noise
eps, a level sigma = sigmoid(n), n ~ N(m, 1) (logit-normal, as rectified-flow video models train; m =
`sigma_mean`, 0 by default: a positive m trains the adapter more at the high noise levels where the clip's
motion is decided, which the tiny proof uses), the noised tokens x = (1 - sigma) x0 + sigma eps, and

    loss = | v(x, sigma, text, camera) - (eps - x0) |^2

where v is the frozen transformer whose projected tokens get the adapter's output added (`token_bias`).
The text is one fixed prompt for every clip (`prompt`); only the adapter's parameters are optimised.

Data (`posed_dataset`):
- `--data`: a folder of videos each with a camera path of the same stem (`clip.mp4` + `clip.json`, the
  JSON schema of camera.py, one pose per frame of the video; a path with fewer or more poses is resampled
  over the clip's frames);
- none (the `tiny` preset): clips rendered here from the repo's own 3D scene (the Gaussian scene of
  `utils.data.synthetic_scene`: floor, sphere, box, torus) in front of a direction-dependent background
  texture, along the camera presets from random start poses on the upper hemisphere facing the scene:
  every clip's cameras are known exactly, nothing is downloaded (`SceneClips`).

`CameraTrainer` runs it on accelerate (CPU, one GPU, `accelerate launch`), with atomic checkpoints and
exact resume (each step's batch and noise are a pure function of (seed, step, rank)), log.jsonl, and the
adapter written as `camera_adapter.safetensors` (which `LTXVideoPipeline(camera_adapter=...)`,
`pipe.load_camera_adapter` and `generate_video.py --camera-adapter` load).

The random tiny transformer is no base model (it has never learnt to make a video), so the tiny recipe
can first fit it on the same clips without a camera (`base_steps`, its own learning rate `base_lr`) and
save it as `base_transformer.safetensors`; the camera stage then freezes it as for released weights.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from utils.errors import UserError
from utils.rendering.cameras import Cameras, camera_rays, look_at

TRAIN_PRESETS: tuple[str, ...] = ("pan-left", "pan-right", "tilt-up", "tilt-down", "orbit", "orbit-left",
                                  "dolly-in", "dolly-out", "zoom-in", "zoom-out", "static")
"""The camera presets the rendered clips move along."""


@dataclass(frozen=True)
class CameraTrainConfig:
    """The adapter's training recipe."""

    preset: str = "tiny"
    """The LTX-Video preset whose (frozen) transformer the adapter feeds; 'tiny': random tiny weights."""
    steps: int = 200
    """Optimisation steps of the adapter."""
    batch_size: int = 4
    """Clips per step (per process)."""
    lr: float = 1e-3
    """AdamW learning rate of the adapter."""
    num_frames: int = 9
    """Frames per clip (1 + k * the VAE's temporal ratio)."""
    size: tuple[int, int] = (32, 32)
    """(height, width) of the clips (multiples of the VAE's spatial ratio)."""
    num_clips: int = 44
    """Rendered clips (no --data): each preset from num_clips / 11 start poses."""
    prompt: str = "a small scene"
    """The text every clip is trained with."""
    hidden: int = 128
    """Hidden width of the adapter's MLP."""
    num_layers: int = 3
    """Hidden layers of the adapter's MLP."""
    fourier_bands: int = 4
    """Octaves of sin/cos features of the Plücker coordinates."""
    sigma_mean: float = 0.0
    """Location m of the adapter stage's logit-normal noise levels, sigma = sigmoid(N(m, 1)) (the base fit keeps 0)."""
    token_mode: str = "mean"
    """Plücker tokens per latent voxel: 'mean' (6 channels) or 'unshuffle'."""
    base_steps: int = 0
    """tiny only: steps of fitting the random transformer on the clips (no camera) before the adapter trains."""
    base_lr: float = 1e-3
    """Learning rate of that fit."""
    base_vae_steps: int = 0
    """tiny only: steps of fitting the random tiny VAE as an autoencoder of the clips first (its latents then
    hold the picture), its latent statistics set from the clips."""
    fps: float = 25.0
    """Frame rate the clips' token positions are computed at."""
    mixed_precision: str = "no"
    """accelerate mixed precision: no, fp16 or bf16."""
    seed: int = 0
    """Seed of the run: the rendered clips, the adapter's initial weights, every step's batch and noise."""

    def check(self) -> None:
        for name in ("steps", "batch_size", "num_frames", "num_clips", "hidden", "num_layers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.base_lr <= 0:
            raise UserError(f"learning rates must be > 0, got {self.lr} and {self.base_lr}")
        if self.base_steps < 0 or self.base_vae_steps < 0:
            raise UserError(f"--base-steps must be >= 0, got {self.base_steps}")
        if (self.base_steps or self.base_vae_steps) and self.preset != "tiny":
            raise UserError("--base-steps fits the random tiny transformer; a released preset is the base model "
                            "already (its transformer stays frozen)")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise UserError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision}")


RECIPES: dict[str, CameraTrainConfig] = {
    "tiny": CameraTrainConfig(),
    # a released 2B transformer: 121-frame clips are too long for one GPU with a frozen 2B model and
    # gradients through it; 25 frames at 512x704 as CameraCtrl's 16-frame clips, a 256-wide adapter
    "*": CameraTrainConfig(steps=10000, batch_size=1, lr=1e-4, num_frames=25, size=(512, 704), hidden=512,
                           num_layers=2, fourier_bands=0, prompt=""),
}


TINY_PROOF = CameraTrainConfig(steps=2500, lr=3e-3, batch_size=8, num_clips=88, num_frames=9, size=(32, 32), hidden=256,
                               base_vae_steps=400, base_steps=1500, sigma_mean=0.8)
"""The recipe of the camera proof (tests/models/video_generation/test_luma_camera_proof.py, benchmarks/luma_camera.py):
the tiny VAE and transformer fitted on 88 rendered 9-frame 32x32 clips, then the adapter alone."""


def recipe(preset: str) -> CameraTrainConfig:
    return RECIPES["tiny"] if preset == "tiny" else replace(RECIPES["*"], preset=preset)


# -- data ------------------------------------------------------------------------------------------------

def _background(cams: Cameras) -> Tensor:
    """A smooth colour texture on the sky sphere (a function of each pixel's ray direction, z up): a turning
    camera sees it slide; (C, H, W, 3) in [0, 1]."""
    _, d = camera_rays(cams.to(dtype=torch.float32))
    az = torch.atan2(d[..., 1], d[..., 0])
    el = torch.asin(d[..., 2].clamp(-1, 1))
    return torch.stack([0.5 + 0.3 * torch.sin(5 * az) * torch.cos(3 * el), 0.5 + 0.3 * torch.cos(4 * az + 1.0),
                        0.55 + 0.3 * torch.sin(6 * el + 2 * az)], -1)


def render_scene(cams: Cameras, gaussians: dict[str, Tensor] | None = None, backend: str = "auto") -> Tensor:
    """The built-in Gaussian scene seen by `cams` over its background: (C, 3, H, W) in [0, 1]."""
    from utils.data.synthetic_scene import ground_truth_gaussians
    from utils.rendering.splatting import RasterConfig, rasterization

    g = gaussians if gaussians is not None else ground_truth_gaussians(0, density=0.5)
    with torch.no_grad():
        rgb, alpha, _ = rasterization(g["means"], g["quats"], g["scales"], g["opacities"], g["sh0"],
                                      cams.viewmats.float(), cams.Ks.float(), cams.width, cams.height, sh_degree=0,
                                      config=RasterConfig(tile_size=16, backend=backend))
    out = rgb + (1 - alpha) * _background(cams)
    return out.clamp(0, 1).permute(0, 3, 1, 2).contiguous()


def scene_start_pose(generator: torch.Generator, radius: float = 4.0) -> Tensor:
    """A camera-to-world (4, 4) on the upper hemisphere (elevation 15-50 degrees, any azimuth) facing the
    scene's centre, z up."""
    az = float(torch.rand((), generator=generator)) * 2 * math.pi
    el = math.radians(15 + 35 * float(torch.rand((), generator=generator)))
    eye = torch.tensor([radius * math.cos(el) * math.cos(az), radius * math.cos(el) * math.sin(az),
                        radius * math.sin(el)], dtype=torch.float64)
    return look_at(eye, torch.tensor([0.0, 0.0, 0.15], dtype=torch.float64), torch.tensor([0.0, 0.0, 1.0],
                                                                                         dtype=torch.float64))


class SceneClips(torch.utils.data.Dataset):
    """Clips of the built-in 3D scene along the camera presets (see the module docstring); item i is a pure
    function of (seed, i): {"video": (T, 3, H, W) in [-1, 1], "cameras": Cameras, "preset": name}."""

    def __init__(self, num_clips: int, num_frames: int, size: tuple[int, int], seed: int = 0,
                 presets: tuple[str, ...] = TRAIN_PRESETS):
        from models.video_generation.luma_dream.camera import preset_cameras, preset_name

        from utils.data.synthetic_scene import ground_truth_gaussians

        self.items: list[dict[str, Any]] = []
        gaussians = ground_truth_gaussians(0, density=0.5)
        g = torch.Generator().manual_seed(seed)
        h, w = size
        for i in range(num_clips):
            name = preset_name(presets[i % len(presets)])
            cams = preset_cameras(name, num_frames, w, h, start=scene_start_pose(g))
            video = render_scene(cams, gaussians) * 2 - 1
            self.items.append({"video": video, "cameras": cams, "preset": name})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class PosedClips(torch.utils.data.Dataset):
    """Videos with a camera path each: `<stem>.<video suffix>` + `<stem>.json` in one folder."""

    def __init__(self, folder: str | os.PathLike, num_frames: int, size: tuple[int, int]):
        from utils.data.video import VIDEO_FILE_SUFFIXES, ANIMATED_SUFFIXES

        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"--data {folder} is not a folder: give a folder of videos, each with a camera path "
                            "<name>.json next to it")
        suffixes = tuple(VIDEO_FILE_SUFFIXES) + tuple(ANIMATED_SUFFIXES)
        self.pairs = [(p, p.with_suffix(".json")) for p in sorted(folder.iterdir())
                      if p.suffix.lower() in suffixes and p.with_suffix(".json").is_file()]
        if not self.pairs:
            raise UserError(f"no posed videos in {folder}: each video needs a camera path of the same name "
                            "(clip.mp4 + clip.json, the schema of models/video_generation/luma_dream/camera.py)")
        self.num_frames, self.size = num_frames, tuple(size)
        # every camera file is read now: a malformed one fails before any training
        self.cameras = [self._cameras(j) for _, j in self.pairs]

    def _cameras(self, path: Path) -> Cameras:
        from models.video_generation.luma_dream.camera import load_camera_path

        return load_camera_path(path, self.num_frames, self.size[1], self.size[0])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from utils.data.video import read_video

        clip = read_video(self.pairs[i][0], num_frames=self.num_frames, size=self.size)
        return {"video": clip.frames * 2 - 1, "cameras": self.cameras[i], "preset": None}


def posed_dataset(cfg: CameraTrainConfig, data: str | None) -> torch.utils.data.Dataset:
    if data is None:
        return SceneClips(cfg.num_clips, cfg.num_frames, cfg.size, cfg.seed)
    return PosedClips(data, cfg.num_frames, cfg.size)


# -- the objective -------------------------------------------------------------------------------------------

def flow_matching_loss(transformer, adapter, x0: Tensor, plucker: Tensor | None, context: Tensor, mask: Tensor,
                       coords: Tensor, generator: torch.Generator, sigma_mean: float = 0.0) -> Tensor:
    """x0 (B, L, C) clean latent tokens; plucker (B, L, 6) (None: no camera, the base fit) -> the loss;
    noise levels sigmoid(N(sigma_mean, 1))."""
    b = x0.shape[0]
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    sigma = torch.sigmoid(torch.randn(b, generator=generator) + sigma_mean).to(x0)[:, None, None]
    x = (1 - sigma) * x0 + sigma * eps
    bias = adapter(plucker) if plucker is not None else None
    timestep = sigma.flatten() * transformer.config.timestep_scale
    v = transformer(x, context.expand(b, -1, -1), timestep, coords.expand(b, -1, -1), mask.expand(b, -1),
                    token_bias=bias)
    return ((v.float() - (eps - x0).float()) ** 2).mean()


def fit_vae(vae, dataset, cfg: CameraTrainConfig, device: torch.device, progress: bool = False) -> None:
    """Fit the (random tiny) VAE as an autoencoder of the clips: AdamW 2e-3, |decode(encode(x).mode()) - x|^2,
    `cfg.base_vae_steps` steps of `2 * batch_size` clips; then its per-channel latent mean and std are set from
    the clips (as a release's latent statistics are), so the standardised latents have unit scale."""
    from tqdm.auto import tqdm

    from utils.training.seeding import epoch_indices

    videos = torch.stack([dataset[i]["video"] for i in range(len(dataset))]).permute(0, 2, 1, 3, 4)
    vae.to(device).train().requires_grad_(True)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    n = min(len(videos), 2 * cfg.batch_size)
    for step in tqdm(range(cfg.base_vae_steps), desc="base vae", disable=not progress):
        x = videos[epoch_indices(len(videos), n, step, cfg.seed + 2)].to(device)
        loss = torch.nn.functional.mse_loss(vae.decode(vae.encode(x).mode()).float(), x.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        raw = torch.cat([vae.encode(videos[i:i + 8].to(device)).mode().float() for i in range(0, len(videos), 8)])
        vae.latents_mean.copy_(raw.mean(dim=(0, 2, 3, 4)))
        vae.latents_std.copy_(raw.std(dim=(0, 2, 3, 4)).clamp_min(1e-6))


# -- the trainer ---------------------------------------------------------------------------------------------

@dataclass
class CameraRunOptions:
    """Where and how a run writes (not part of the recipe)."""

    out: str
    data: str | None = None
    weights: str | None = None
    resume: str | None = None
    device: str | None = None
    save_every: int = 0
    keep: int = 3
    progress: bool = True


RESUME_FIXED = ("seed", "batch_size", "num_frames", "size", "preset", "num_clips", "hidden", "num_layers",
                "fourier_bands", "token_mode", "base_steps", "base_vae_steps", "prompt")


class CameraTrainer:
    """One adapter training run; `run()` trains (or resumes) to `config.steps` and returns a summary."""

    def __init__(self, config: CameraTrainConfig, options: CameraRunOptions):
        config.check()
        self.cfg, self.opts = config, options
        self.out = Path(options.out)
        self.ckpt_dir = self.out / "ckpts"

    def _resume_path(self) -> Path | None:
        from utils.training.checkpoints import latest_checkpoint

        if not self.opts.resume:
            found = latest_checkpoint(self.ckpt_dir)
            if found is not None:
                raise UserError(f"{self.out} already holds the checkpoints of a run (up to {found.name}): pass --resume "
                                "to continue it, or another --out to start afresh")
            return None
        path = latest_checkpoint(self.ckpt_dir) if self.opts.resume == "auto" else Path(self.opts.resume)
        if path is None:
            raise UserError(f"--resume: no checkpoint in {self.ckpt_dir}: start without --resume")
        return path

    def _pipeline(self):
        from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

        if self.cfg.preset == "tiny" and self.opts.weights is None:
            return LTXVideoPipeline.tiny()
        return LTXVideoPipeline.from_pretrained(self.opts.weights, preset=self.cfg.preset, device="cpu", dtype="fp32")

    def _check_sizes(self, pipe) -> tuple[int, int]:
        vc = pipe.vae.config
        rt, rs = vc.temporal_ratio, vc.spatial_ratio
        h, w = self.cfg.size
        if (self.cfg.num_frames - 1) % rt or h % rs or w % rs:
            raise UserError(f"the {self.cfg.preset} VAE needs 1 + {rt}k frames and sides that are multiples of {rs}, "
                            f"got {self.cfg.num_frames} frames of {h}x{w}")
        return rt, rs

    def _latents(self, pipe, dataset, device) -> tuple[Tensor, Tensor]:
        """Every clip's standardised latent tokens (N, L, C) and Plücker tokens (N, L, 6), computed once."""
        from models.video_generation.luma_dream.pipeline import pack

        rt, rs = self._check_sizes(pipe)
        lat, plk = [], []
        with torch.no_grad():
            for i in range(len(dataset)):
                item = dataset[i]
                x = item["video"].permute(1, 0, 2, 3)[None].to(device, pipe.vae.dtype)
                lat.append(pack(pipe.vae.normalize(pipe.vae.encode(x).mode().float()))[0].cpu())
                plk.append(self.adapter.tokens(item["cameras"].to(dtype=torch.float64), rt, rs).float())
        return torch.stack(lat), torch.stack(plk)

    def run(self) -> dict[str, Any]:
        from accelerate import Accelerator
        from tqdm.auto import tqdm

        from models.video_generation.luma_dream.camera_adapter import CameraAdapter, CameraAdapterConfig
        from models.video_generation.luma_dream.model import latent_coords
        from utils.training.checkpoints import (checkpoint_path, load_checkpoint, prune_checkpoints, save_checkpoint,
                                                write_json)
        from utils.training.seeding import epoch_indices, seed_step
        from utils.torch_utils import local_seed, resolve_device

        cfg, opts = self.cfg, self.opts
        resume_from = self._resume_path()
        dataset = posed_dataset(cfg, opts.data)  # data problems fail before the weights load
        device = resolve_device(opts.device)
        acc = Accelerator(cpu=device.type == "cpu", mixed_precision=cfg.mixed_precision)
        pipe = self._pipeline()
        transformer = pipe.transformer
        with local_seed(cfg.seed):
            self.adapter = CameraAdapter(CameraAdapterConfig(width=transformer.config.inner_dim, hidden=cfg.hidden,
                                                             num_layers=cfg.num_layers,
                                                             fourier_bands=cfg.fourier_bands,
                                                             token_mode=cfg.token_mode))
        pipe.to(acc.device)
        pipe.vae.eval().requires_grad_(False)
        with torch.no_grad():
            context, mask = pipe.encode_prompt([cfg.prompt], int(pipe.default("max_sequence_length")))
        if cfg.base_vae_steps and resume_from is None:
            fit_vae(pipe.vae, dataset, cfg, acc.device, opts.progress and acc.is_main_process)
        elif cfg.base_vae_steps:
            pipe.vae.load_state_dict(load_checkpoint(resume_from)["base_vae"])
        pipe.vae.eval().requires_grad_(False)
        latents, pluckers = self._latents(pipe, dataset, acc.device)
        rt, rs = self._check_sizes(pipe)
        f = 1 + (cfg.num_frames - 1) // rt
        coords = latent_coords(1, f, cfg.size[0] // rs, cfg.size[1] // rs, (rt / cfg.fps, rs, rs), device=acc.device)
        context, mask = context.to(acc.device).float(), mask.to(acc.device)
        history: list[dict[str, float]] = []
        start, base_done = 0, 0
        state = None
        if resume_from is not None:
            state = load_checkpoint(resume_from)
            saved = json.loads(state["config"])
            mine = json.loads(json.dumps(asdict(cfg)))
            changed = [f"{k} {saved.get(k)!r}" for k in RESUME_FIXED if saved.get(k) != mine[k]]
            if changed:
                raise UserError(f"{resume_from.name} was trained with {', '.join(changed)}: pass the same to continue "
                                "it exactly, or start a new run in another --out")
            self.adapter.load_state_dict(state["adapter"])
            if "base_transformer" in state:
                transformer.load_state_dict(state["base_transformer"])
            start, base_done = int(state["step"]), cfg.base_steps
        rank, world = acc.process_index, acc.num_processes
        if acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            write_json(self.out / "settings.json", {"config": asdict(cfg), "data": opts.data, "weights": opts.weights})

        def batch(step: int, salt: int) -> tuple[Tensor, Tensor]:
            idx = epoch_indices(len(latents), min(cfg.batch_size, len(latents)), step + salt, cfg.seed, rank, world)
            return latents[idx].to(acc.device), pluckers[idx].to(acc.device)

        # stage 1 (tiny only): the random transformer learns the clips without a camera
        if cfg.base_steps and base_done < cfg.base_steps:
            transformer.train().requires_grad_(True)
            opt = torch.optim.AdamW(transformer.parameters(), lr=cfg.base_lr)
            net, opt = acc.prepare(transformer, opt)
            for step in tqdm(range(cfg.base_steps), desc="base", disable=not opts.progress or not acc.is_main_process):
                gen = seed_step(cfg.seed + 1, step, rank)
                x0, _ = batch(step, 1_000_000)
                with acc.autocast():
                    loss = flow_matching_loss(net, None, x0, None, context, mask, coords, gen)
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                opt.step()
            transformer = acc.unwrap_model(net)
        transformer.eval().requires_grad_(False)
        # stage 2: the adapter, the transformer frozen
        adapter = self.adapter.to(acc.device).train()
        opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
        adapter_p, opt = acc.prepare(adapter, opt)
        transformer.to(acc.device)

        def checkpoint(step: int) -> None:
            if not acc.is_main_process:
                return
            st = {"step": step, "config": json.dumps(asdict(cfg)),
                  "adapter": acc.unwrap_model(adapter_p).state_dict(), "optimizer": opt.state_dict()}
            if cfg.base_steps:
                st["base_transformer"] = transformer.state_dict()
            if cfg.base_vae_steps:
                st["base_vae"] = pipe.vae.state_dict()
            save_checkpoint(checkpoint_path(self.ckpt_dir, step), st)
            prune_checkpoints(self.ckpt_dir, opts.keep)

        bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="camera adapter",
                   disable=not opts.progress or not acc.is_main_process, dynamic_ncols=True)
        for step in bar:
            gen = seed_step(cfg.seed, step, rank)
            x0, plk = batch(step, 0)
            with acc.autocast():
                loss = flow_matching_loss(transformer, adapter_p, x0, plk, context, mask, coords, gen, cfg.sigma_mean)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise UserError(f"the loss is {value} at step {step + 1}: lower --lr, or use --mixed-precision no")
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            opt.step()
            done = step + 1
            history.append({"step": done, "loss": value})
            if acc.is_main_process:
                bar.set_postfix(loss=f"{value:.4f}")
                with open(self.out / "log.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": done, "loss": value}) + "\n")
            if opts.save_every and done % opts.save_every == 0 and done != cfg.steps:
                checkpoint(done)
        acc.wait_for_everyone()
        result: dict[str, Any] = {"out": str(self.out), "history": history, "steps": cfg.steps}
        if acc.is_main_process:
            checkpoint(cfg.steps)
            final = acc.unwrap_model(adapter_p).eval()
            result["adapter"] = str(final.save(self.out / "camera_adapter.safetensors"))
            if cfg.base_steps:
                from safetensors.torch import save_file

                from utils.io import atomic_path

                with atomic_path(self.out / "base_transformer.safetensors") as tmp:
                    save_file({k: v.detach().float().contiguous().cpu() for k, v in transformer.state_dict().items()},
                              str(tmp))
                result["base_transformer"] = str(self.out / "base_transformer.safetensors")
            if cfg.base_vae_steps:
                from safetensors.torch import save_file

                from utils.io import atomic_path

                with atomic_path(self.out / "base_vae.safetensors") as tmp:
                    save_file({k: v.detach().float().contiguous().cpu() for k, v in pipe.vae.state_dict().items()},
                              str(tmp))
                result["base_vae"] = str(self.out / "base_vae.safetensors")
        self.pipe, self.adapter = pipe, acc.unwrap_model(adapter_p)
        return result


__all__ = ["CameraRunOptions", "CameraTrainConfig", "CameraTrainer", "PosedClips", "RECIPES", "SceneClips",
           "TINY_PROOF", "TRAIN_PRESETS", "fit_vae", "flow_matching_loss", "posed_dataset", "recipe", "render_scene", "scene_start_pose"]
