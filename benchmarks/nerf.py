"""Radiance-field speed: training and rendering rays per second of each preset on the built-in scene.

Training: full steps of the trainer (ray sampling, the method's sampler, field, volume rendering,
loss, backward, Adam; Instant-NGP's occupancy-grid refreshes included) after warm-up steps, as
rays per second of wall time, with the process CPU time. Rendering: one held-out view, every
pixel, no gradients. The networks are the recipe's ("cpu" by default: what train_3d.py uses on
CPU; "paper" for the published sizes).

There is no reference to divide by on CPU: nerfacc's packed kernels and estimators need CUDA,
and its Instant-NGP example script is not part of the pip package (fetch nerfacc's examples/ to
time it on a GPU next to `--device cuda --preset instant-ngp`).

    python -m benchmarks.nerf                                   # CPU, every preset, 2 threads
    python -m benchmarks.nerf --preset instant-ngp --steps 50
    python -m benchmarks.nerf --device cuda --recipe paper
    python -m benchmarks.nerf --toy                             # seconds: tiny networks, a 16 px scene (the tests)
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

PRESETS = ("instant-ngp", "nerfacto", "mipnerf", "vanilla")

# --toy: networks small enough for a seconds-long run of every preset
TOY = {
    "vanilla": dict(mlp_width=32, mlp_depth=2, skip_layer=1, color_width=16, num_coarse=8, num_fine=8),
    "mipnerf": dict(mlp_width=32, mlp_depth=2, skip_layer=1, color_width=16, num_coarse=8, num_fine=8),
    "instant-ngp": dict(hash_levels=4, hash_log2_size=10, hash_max_res=32, hidden_dim=16, color_hidden=16,
                        color_layers=1, grid_resolution=16, render_steps=64, grid_warmup=2),
    "nerfacto": dict(hash_levels=4, hash_log2_size=10, hash_max_res=32, hidden_dim=16, color_hidden=16,
                     color_layers=1, num_proposal_samples=(16, 8), num_nerf_samples=8, proposal_levels=2,
                     proposal_max_res=(16, 32), proposal_log2_size=10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_preset(preset: str, scene_dir: Path, device: torch.device, recipe: str, steps: int, warmup: int,
                 rays: int | None, toy: bool) -> dict:
    from models.generation_3d.nerf.config import get_config, train_config
    from models.generation_3d.nerf.training import Trainer, fit_scene
    from utils.data.nerf_synthetic import load_nerf_synthetic

    train, test = load_nerf_synthetic(scene_dir, "train"), load_nerf_synthetic(scene_dir, "test")
    cfg = get_config(preset, recipe)
    if toy:
        cfg = replace(cfg, **TOY[preset])
    cfg, norm = fit_scene(cfg, train, False)
    tc = replace(train_config(preset, recipe), steps=warmup + steps, rays=rays or train_config(preset, recipe).rays)
    if toy and tc.target_samples:
        tc = replace(tc, target_samples=2048, max_rays=256)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(preset, cfg, tc, train, test, out, device, norm, tensorboard=False)
        for step in range(warmup):
            trainer.train_step(step)
        _sync(device)
        n_rays, n_samples = 0, 0
        w0, c0 = time.perf_counter(), time.process_time()
        for step in range(warmup, warmup + steps):
            stats = trainer.train_step(step)
            n_rays += int(stats["rays"])
            n_samples += int(stats["samples"])
        _sync(device)
        train_wall, train_cpu = time.perf_counter() - w0, time.process_time() - c0
        view = trainer.test_cameras[:1]
        w0 = time.perf_counter()
        trainer.render(view)
        _sync(device)
        render_wall = time.perf_counter() - w0
    pixels = view.width * view.height
    return {"preset": preset, "params": trainer.model.n_params(), "train_rays_per_s": n_rays / train_wall,
            "train_samples_per_ray": n_samples / max(n_rays, 1), "train_step_s": train_wall / steps,
            "train_cpu_step_s": train_cpu / steps, "render_rays_per_s": pixels / render_wall,
            "render_view_s": render_wall, "size": view.width}


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="benchmarks.nerf", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=PRESETS, action="append", default=None, help="preset(s) to time (default all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--recipe", choices=("cpu", "paper"), default="cpu", help="network sizes (train_3d.py --recipe)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps")
    p.add_argument("--warmup", type=int, default=40, help="untimed steps first (the occupancy grid and proposal "
                                                         "networks settle)")
    p.add_argument("--rays", type=int, default=None, help="rays per step (default: the recipe's)")
    p.add_argument("--size", type=int, default=64, help="image side of the built-in scene")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--toy", action="store_true", help="a seconds-long run: tiny networks, a 16 px scene of 4 views, "
                                                       "2 timed steps")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.size < 8 or args.threads < 1 or (args.rays is not None and args.rays < 1):
        raise UserError("--steps, --threads and --rays must be at least 1, --warmup at least 0 and --size at least 8")
    presets = args.preset or list(PRESETS)
    if args.toy:
        args.steps, args.warmup, args.size, args.rays = 2, 1, 16, 64
    from utils.data.synthetic_scene import DEFAULT_SCENE_DIR, ensure_synthetic_scene
    from utils.torch_utils import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        if args.toy or args.size != 64:
            scene = ensure_synthetic_scene(Path(tmp) / "scene", n_train=4 if args.toy else 48,
                                           n_test=1 if args.toy else 8, size=args.size)
        else:
            scene = ensure_synthetic_scene(DEFAULT_SCENE_DIR)
        rows = [bench_preset(name, scene, device, args.recipe, args.steps, args.warmup, args.rays, args.toy)
                for name in presets]
    print(f"nerf training and rendering, built-in scene {args.size}x{args.size}, {args.recipe} recipe, device "
          f"{device.type}, {args.threads} CPU threads, {args.steps} timed steps after {args.warmup}")
    for r in rows:
        print(f"  {r['preset']:>11}: train {r['train_rays_per_s']:9.0f} rays/s ({r['train_step_s'] * 1e3:.0f} ms wall, "
              f"{r['train_cpu_step_s'] * 1e3:.0f} ms CPU per step, {r['train_samples_per_ray']:.1f} samples/ray)  "
              f"render {r['render_rays_per_s']:9.0f} rays/s")
    print("  (no reference on CPU: nerfacc's estimators and packed kernels need CUDA, and its Instant-NGP "
          "example is not in the pip package)")
    return {r["preset"]: r for r in rows}


if __name__ == "__main__":
    with cli_errors("benchmarks.nerf"):
        main()
