"""Gaussian-splatting training speed on the built-in scene.

CPU: training iterations per second of the full 3DGS step (render with the pure-PyTorch tile
rasterizer, L1 + D-SSIM loss, backward, Adam) at a fixed number of Gaussians, wall and process-CPU
time. gsplat has no CPU rasterizer (its PyTorch reference functions call CUDA kernels for tile
intersection), so on CPU there is no reference to divide by and the ratio is not printed.

CUDA (--device cuda): the same step with our rasterizer and with gsplat's fused `rasterization`,
in one run, and the ratio ours/gsplat (below 1.0: ours is faster).

    python -m benchmarks.gaussian_splatting                        # CPU, 2 threads
    python -m benchmarks.gaussian_splatting --device cuda --gaussians 100000 --size 256
    python -m benchmarks.gaussian_splatting --toy                  # seconds: the scene alone, 32 px (the tests)
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from dataclasses import replace

import torch

from utils.errors import cli_errors


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_backend(backend: str, device: torch.device, n: int, size: int, iters: int, warmup: int) -> dict:
    from models.generation_3d.gaussian_splatting.config import get_config
    from models.generation_3d.gaussian_splatting.model import GaussianSplatting
    from models.generation_3d.gaussian_splatting.training import gs_loss
    from utils.data.synthetic_scene import ground_truth_gaussians
    from utils.rendering.cameras import orbit_cameras
    from utils.rendering.splatting import RasterConfig, rasterization

    gt = ground_truth_gaussians(0)
    cams = orbit_cameras(16, 4.0, size, size, fov_x=math.radians(40), elevation=math.radians(30),
                         target=(0.0, 0.0, 0.15))
    with torch.no_grad():
        targets, _, _ = rasterization(gt["means"], gt["quats"], gt["scales"], gt["opacities"], gt["sh0"],
                                      cams.viewmats, cams.Ks, size, size, sh_degree=0, backgrounds=torch.ones(16, 3))
    cfg = replace(get_config("tiny"), raster=RasterConfig(backend=backend))
    # a converged-looking model: the ground-truth Gaussians (plus random ones up to n)
    model = GaussianSplatting.random(cfg, generator=torch.Generator().manual_seed(0), n=max(0, n - len(gt["means"])))
    splats = {k: v.detach() for k, v in model.splats.items()}
    splats["means"] = torch.cat([gt["means"], splats["means"] * 0.6])
    splats["quats"] = torch.cat([gt["quats"], splats["quats"]])
    splats["scales"] = torch.cat([torch.log(gt["scales"]), splats["scales"] - 1.0])
    splats["opacities"] = torch.cat([torch.logit(gt["opacities"]), splats["opacities"]])
    splats["sh0"] = torch.cat([gt["sh0"], splats["sh0"]])
    splats["shN"] = torch.zeros(len(splats["means"]), 15, 3)
    model.load_splats(splats)
    model.to(device)
    opts = {k: torch.optim.Adam([p], lr=1e-3, eps=1e-15) for k, p in model.splats.items()}
    targets, cams = targets.to(device), cams.to(device)
    bg = torch.ones(3, device=device)

    def step(i: int) -> None:
        j = i % len(cams)
        render, _, _ = model.render(cams[j], sh_degree=3, background=bg)
        loss, _ = gs_loss(render, targets[j:j + 1], 0.2)
        loss.backward()
        for o in opts.values():
            o.step()
            o.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i)
    _sync(device)
    walls, cpus = [], []
    for i in range(iters):
        w0, c0 = time.perf_counter(), time.process_time()
        step(i)
        _sync(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return {"backend": backend, "gaussians": len(model), "wall_s": statistics.median(walls),
            "cpu_s": statistics.median(cpus)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="benchmarks.gaussian_splatting", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--gaussians", type=int, default=10_000, help="number of Gaussians in the model")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (the built-in scene: 64)")
    p.add_argument("--iters", type=int, default=30, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--toy", action="store_true",
                   help="a seconds-long run: the built-in scene's own Gaussians only, 32x32, 3 timed steps")
    args = p.parse_args(argv)
    if args.toy:
        args.gaussians, args.size, args.iters, args.warmup = 0, 32, 3, 1
    from utils.torch_utils import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = [bench_backend("torch", device, args.gaussians, args.size, args.iters, args.warmup)]
    if device.type == "cuda":
        rows.append(bench_backend("gsplat", device, args.gaussians, args.size, args.iters, args.warmup))
    print(f"gaussian splatting training step, {rows[0]['gaussians']} Gaussians, {args.size}x{args.size}, "
          f"device {device.type}, {args.threads} CPU threads")
    for r in rows:
        print(f"  {r['backend']:>6}: {1 / r['wall_s']:8.2f} it/s  ({r['wall_s'] * 1e3:.1f} ms wall, "
              f"{r['cpu_s'] * 1e3:.1f} ms CPU per step)")
    if len(rows) == 2:
        print(f"  ratio ours/gsplat (time per step): {rows[0]['wall_s'] / rows[1]['wall_s']:.2f}")
    else:
        print("  (no reference on CPU: gsplat's rasterizer needs CUDA)")
    out = {r["backend"]: r for r in rows}
    if len(rows) == 2:
        out["ratio"] = rows[0]["wall_s"] / rows[1]["wall_s"]
    return out


if __name__ == "__main__":
    with cli_errors("benchmarks.gaussian_splatting"):
        main()
