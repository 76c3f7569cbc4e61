"""Gaussian-splatting training speed: the compiled CPU rasterizer against the PyTorch one (and gsplat).

Training steps per second of the full 3DGS step (render, L1 + D-SSIM loss, backward, Adam) on the
built-in scene's views, at fixed numbers of Gaussians (its ground truth plus random ones), image
sizes and CPU threads, for each backend, in one run; then the speed-up of the compiled (numba)
backend over the PyTorch one at each setting. Figures are medians of the timed steps, wall time
and process CPU time (a loaded machine shows CPU well below wall).

    python -m benchmarks.gaussian_splatting                        # 15k and 100k, 100 and 400 px, 1 and 2 threads
    python -m benchmarks.gaussian_splatting --gaussians 15000 --sizes 100 --threads 1
    python -m benchmarks.gaussian_splatting --device cuda          # ours (torch backend) vs gsplat on a GPU
    python -m benchmarks.gaussian_splatting --toy                  # seconds: the scene alone, 32 px (the tests)

`--make-scene DIR` writes another small NeRF-synthetic scene (a still life: a striped vase, a
checkered box, a cone and a banded ball, no floor, transparent background; 60 train and 20 test
views of 100x100 by default), unseen by the defaults, for the time-budget run:

    python -m benchmarks.gaussian_splatting --make-scene outputs/datasets/still_life
    python train/train_3d.py --model gaussian_splatting --data outputs/datasets/still_life
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import replace

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

GT_GAUSSIANS = 3260
"""Gaussians of the built-in scene's ground truth (the smallest benchmark model)."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_backend(backend: str, device: torch.device, n: int, size: int, iters: int, warmup: int) -> dict:
    """Median wall and CPU seconds of a training step with `n` Gaussians at size x size."""
    from models.generation_3d.gaussian_splatting.config import get_config
    from models.generation_3d.gaussian_splatting.model import GaussianSplatting
    from models.generation_3d.gaussian_splatting.training import gs_loss, make_adam
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
    # the compiled backend trains as the Trainer does (fused loss, fused Adam); the torch backend
    # runs the all-PyTorch step of the reference (autograd SSIM, per-tensor Adam)
    compiled = backend == "numba"
    opts = {k: make_adam(p, 1e-3) if compiled else torch.optim.Adam([p], lr=1e-3, eps=1e-15)
            for k, p in model.splats.items()}
    targets, cams = targets.to(device), cams.to(device)
    bg = torch.ones(3, device=device)

    def step(i: int) -> None:
        j = i % len(cams)
        render, _, _ = model.render(cams[j], sh_degree=3, background=bg)
        loss, _ = gs_loss(render, targets[j:j + 1], 0.2, fused=compiled and device.type == "cpu")
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
    return {"backend": backend, "gaussians": len(model), "size": size, "threads": torch.get_num_threads(),
            "wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "iters": iters}


# -- the still-life scene ------------------------------------------------------------------------

def still_life_gaussians(seed: int = 0) -> dict[str, torch.Tensor]:
    """Flat Gaussians on the surfaces of a striped vase, a checkered box, a cone and a banded ball
    (no floor), in the layout of `utils.data.synthetic_scene.ground_truth_gaussians`."""
    from utils.data.synthetic_scene import _frame_from_normals
    from utils.rendering.sh import rgb_to_sh

    g = torch.Generator().manual_seed(seed)
    parts = []  # (points, normals, colours, tangent scale)

    # vase: a surface of revolution, terracotta and cream stripes every 0.1 in height
    n = 2600
    z = torch.rand(n, generator=g) * 1.1
    th = torch.rand(n, generator=g) * 2 * math.pi
    r = 0.22 + 0.1 * torch.sin(z * 4.3)
    dr = 0.43 * torch.cos(z * 4.3)
    p = torch.stack([r * torch.cos(th), r * torch.sin(th), z], -1) + torch.tensor([0.05, 0.15, 0.0])
    nrm = torch.nn.functional.normalize(torch.stack([torch.cos(th), torch.sin(th), -dr], -1), dim=-1)
    stripe = (torch.floor(z / 0.1) % 2)[:, None]
    col = stripe * torch.tensor([0.80, 0.38, 0.22]) + (1 - stripe) * torch.tensor([0.93, 0.88, 0.76])
    parts.append((p, nrm, col, 0.028))
    # box: half size 0.25 turned 30 degrees about z, 4 x 4 checker on every face
    n_face = 450
    half, centre, turn = 0.25, torch.tensor([-0.55, -0.35, 0.25]), math.radians(30)
    rot = torch.tensor([[math.cos(turn), -math.sin(turn), 0.0], [math.sin(turn), math.cos(turn), 0.0],
                        [0.0, 0.0, 1.0]])
    for axis in range(3):
        for sign in (-1.0, 1.0):
            uv = (torch.rand(n_face, 2, generator=g) * 2 - 1) * half
            q = torch.zeros(n_face, 3)
            others = [i for i in range(3) if i != axis]
            q[:, others[0]], q[:, others[1]], q[:, axis] = uv[:, 0], uv[:, 1], sign * half
            nr = torch.zeros(n_face, 3)
            nr[:, axis] = sign
            cell = ((torch.floor((uv[:, 0] + half) / (half / 2)) + torch.floor((uv[:, 1] + half) / (half / 2))) % 2)
            c = cell[:, None] * torch.tensor([0.12, 0.16, 0.45]) + (1 - cell[:, None]) * torch.tensor([0.95, 0.85, 0.2])
            parts.append((q @ rot.T + centre, nr @ rot.T, c, 0.025))
    # cone: base radius 0.28 at z = 0, apex at 0.75, hue around its axis
    n = 1200
    h = torch.sqrt(torch.rand(n, generator=g)) * 0.75  # uniform over the lateral area
    th = torch.rand(n, generator=g) * 2 * math.pi
    rr = 0.28 * h / 0.75
    p = torch.stack([rr * torch.cos(th), rr * torch.sin(th), 0.75 - h], -1) + torch.tensor([0.6, -0.45, 0.0])
    slope = 0.28 / 0.75
    nrm = torch.nn.functional.normalize(torch.stack([torch.cos(th), torch.sin(th), torch.full_like(th, slope)], -1),
                                        dim=-1)
    col = torch.stack([0.5 + 0.4 * torch.cos(th), 0.5 + 0.4 * torch.cos(th - 2.1), 0.5 + 0.4 * torch.cos(th + 2.1)], -1)
    parts.append((p, nrm, col, 0.025))
    # ball: radius 0.22 resting on z = 0, blue and white bands of latitude
    n = 1400
    i = torch.arange(n, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / n)
    theta = math.pi * (1 + 5 ** 0.5) * i
    d = torch.stack([torch.cos(theta) * torch.sin(phi), torch.sin(theta) * torch.sin(phi), torch.cos(phi)], -1)
    band = (torch.floor((d[:, 2] + 1) / 0.25) % 2)[:, None]
    col = band * torch.tensor([0.15, 0.35, 0.85]) + (1 - band) * torch.tensor([0.95, 0.95, 0.97])
    parts.append((d * 0.22 + torch.tensor([-0.4, 0.55, 0.22]), d, col, 0.022))

    means = torch.cat([p for p, _, _, _ in parts])
    normals = torch.cat([nr for _, nr, _, _ in parts])
    colors = torch.cat([c for _, _, c, _ in parts]).clamp(0, 1)
    tangent = torch.cat([torch.full((len(p),), s) for p, _, _, s in parts])
    return {"means": means, "quats": _frame_from_normals(normals),
            "scales": torch.stack([tangent, tangent, torch.full_like(tangent, 0.003)], -1),
            "opacities": torch.full((len(means),), 0.97), "sh0": rgb_to_sh(colors)[:, None, :]}


def make_scene(root: str, n_train: int = 60, n_test: int = 20, size: int = 100, seed: int = 1):
    """Write the still life in the NeRF-synthetic layout (the built-in scene's writer and cameras)."""
    from utils.data.synthetic_scene import write_synthetic_scene

    return write_synthetic_scene(root, n_train=n_train, n_test=n_test, size=size, seed=seed,
                                 gaussians=still_life_gaussians(seed), backend="numba")


# -- command line -----------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated counts like 15000,100000, got '{text}'")
    return values


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="benchmarks.gaussian_splatting", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--gaussians", type=_ints, default=[15_000, 100_000], help="model sizes, comma-separated")
    p.add_argument("--sizes", type=_ints, default=[100, 400], help="image sides in pixels, comma-separated")
    p.add_argument("--threads", type=_ints, default=[1, 2], help="CPU thread counts, comma-separated")
    p.add_argument("--backends", default=None, help="comma-separated (default: numba,torch on CPU; torch,gsplat on CUDA)")
    p.add_argument("--iters", type=int, default=20, help="timed steps per setting (median reported)")
    p.add_argument("--torch-iters", type=int, default=5, help="timed steps of the (slow) torch backend on CPU")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--make-scene", metavar="DIR", default=None,
                   help="write the still-life scene (60 train + 20 test views, 100x100) to DIR and exit")
    p.add_argument("--toy", action="store_true",
                   help="a seconds-long run: the built-in scene's own Gaussians only, 32x32, 1 thread, 3 timed steps")
    args = p.parse_args(argv)
    if args.make_scene:
        root = make_scene(args.make_scene)
        print(f"wrote the still-life scene to {root}")
        return {"scene": str(root)}
    if args.toy:
        args.gaussians, args.sizes, args.threads = [0], [32], [1]
        args.iters = args.torch_iters = 3
        args.warmup = 1
    from utils.torch_utils import resolve_device

    device = resolve_device(args.device)
    backends = (args.backends.split(",") if args.backends else
                (["torch", "gsplat"] if device.type == "cuda" else ["numba", "torch"]))
    if device.type == "cuda" and "numba" in backends:
        raise UserError("the numba backend renders on the CPU: with --device cuda use --backends torch,gsplat")
    threads_before = torch.get_num_threads()
    rows = []
    print(f"gaussian splatting training step (render + L1/D-SSIM + backward + Adam), device {device.type}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    try:
        for threads in (args.threads if device.type == "cpu" else [threads_before]):
            torch.set_num_threads(threads)
            for size in args.sizes:
                for n in args.gaussians:
                    for backend in backends:
                        iters = args.torch_iters if (backend == "torch" and device.type == "cpu") else args.iters
                        r = bench_backend(backend, device, n, size, iters, args.warmup)
                        rows.append(r)
                        print(f"  {r['gaussians']:>7} Gaussians {size:>4}x{size:<4} {threads} thread(s) "
                              f"{backend:>6}: {1 / r['wall_s']:8.2f} it/s  ({r['wall_s'] * 1e3:8.1f} ms wall, "
                              f"{r['cpu_s'] * 1e3:8.1f} ms CPU per step)", flush=True)
    finally:
        torch.set_num_threads(threads_before)
    out: dict = {"rows": rows, "load_average_end": os.getloadavg()[0]}
    ref, fast = ("gsplat", "torch") if device.type == "cuda" else ("torch", "numba")
    ratios = {}
    for r in rows:
        if r["backend"] != fast:
            continue
        other = [o for o in rows if o["backend"] == ref and all(o[k] == r[k] for k in ("gaussians", "size", "threads"))]
        if other:
            key = f"{r['gaussians']}@{r['size']}px/{r['threads']}t"
            ratios[key] = other[0]["wall_s"] / r["wall_s"]
    if ratios:
        name = "gsplat / ours" if device.type == "cuda" else "speed-up of numba over torch"
        print(f"  {name} (time per step ratio): " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    out["ratios"] = ratios
    print(f"  load average {out['load_average_end']:.1f} at the end (figures from a loaded machine are not speeds)")
    return out


if __name__ == "__main__":
    with cli_errors("benchmarks.gaussian_splatting"):
        main()
