"""Aetherist / EG3D generation speed and memory: images per second at 256 and 512 px, next to the seed's table.

Each row times full generations (mapping, backbone, volume rendering with importance sampling,
super-resolution) of one preset scaled to the row's output size (the 256 row uses the 4X
super-resolution module at the same neural rendering resolution), after a warm-up, with peak memory
(CUDA's allocator peak on a GPU; the process's peak resident set on the CPU). Random weights: speed does
not depend on them.

The seed's published figures (RTX 4090): 256 px, batch 16: 42.3 img/s, 4.2 GB; 512 px, batch 8:
18.9 img/s, 7.3 GB. They are printed beside ours; nothing here measures them.

    python -m benchmarks.aetherist                                 # CPU, aetherist-base and eg3d-ffhq-512
    python -m benchmarks.aetherist --device cuda                   # the seed's table: 256 px batch 16, 512 px batch 8
    python -m benchmarks.aetherist --toy                           # seconds: the tiny preset (the tests)
    python -m benchmarks.aetherist --ablation-steps 700 --no-speed   # consistency loss on/off: 3D-consistency

The ablation trains the tiny preset twice on the built-in multi-view set, with the consistency loss
(lambda_consistency 0.05) and without, on the same seed, steps and data, and prints both generators'
3D-consistency report (evaluate/consistency_3d.py's): the score, its chance level and the gap between
them (the score alone rewards blank renders: an untrained generator scores ~96% with a gap of ~0),
the shuffled-latent score and the renders' contrast. `--ablation-seeds 0 1` repeats it per seed;
`--ablation-arms` runs one arm (the arms are independent and deterministic on one CPU machine, so two processes,
one per arm, print the figures of one run).
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import replace

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

SEED_TABLE = {256: (16, 42.3, 4.2), 512: (8, 18.9, 7.3)}
"""Output size -> (batch, images/s, GB) of the seed's RTX 4090 table."""


def row_config(preset: str, size: int, toy: bool):
    from models.gan.aetherist.config import PRESETS

    cfg = PRESETS["tiny" if toy else preset]
    if toy:
        return replace(cfg, image_resolution=size)
    if size == 256:
        return replace(cfg, image_resolution=256, sr_module="SuperresolutionHybrid4X")
    if size == 512:
        return replace(cfg, image_resolution=512, sr_module="SuperresolutionHybrid8XDC")
    raise UserError(f"--sizes takes 256 and 512 (the super-resolution modules' outputs), got {size}")


def bench(preset: str, size: int, batch: int, iters: int, device: torch.device, toy: bool) -> dict:
    from models.gan.aetherist.model import TriplaneGenerator
    from utils.rendering.camera_labels import camera_label, create_camera_pose

    cfg = row_config(preset, size, toy)
    G = TriplaneGenerator(cfg).to(device).eval()
    c = camera_label(create_camera_pose(0.0, 0.0, cfg.avg_camera_radius)).expand(batch, 25).to(device)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def run() -> torch.Tensor:
        z = torch.randn(batch, cfg.latent_dim, generator=gen).to(device)
        return G(z, c, generator=gen)["image"]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        run()  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(iters):
            out = run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
    return {"preset": "tiny" if toy else preset, "size": size, "batch": batch, "images_per_s": batch * iters / wall,
            "cpu_s_per_image": cpu / (batch * iters), "peak_gb": peak / 1e9, "out_shape": tuple(out.shape),
            "params_g": sum(p.numel() for p in G.parameters())}


ARMS = (("with_consistency", 0.05), ("without_consistency", 0.0))
"""The ablation's two runs: (name, lambda_consistency)."""


def ablation(steps: int, batch: int, samples: int, seed: int = 0, log_every: int = 0,
             arms: tuple[str, ...] | None = None) -> dict:
    """3D-consistency reports of the tiny preset trained `steps` steps on the built-in multi-view set with and
    without the consistency loss (same seed, steps and data): each arm's score, its chance level, the gap
    (score - chance: what the geometry explains; a featureless render has ~0), the shuffled-latent score and
    the renders' contrast (`AetheristPipeline.consistency_report`, `samples` latents, views 20 degrees apart,
    pixels of opacity >= 0.05). `arms` (names of ARMS) runs only those: each arm is independent and
    deterministic, so arms run in separate processes give the figures of one run."""
    from models.gan.aetherist.pipeline import AetheristPipeline
    from models.gan.aetherist.training import fit

    scores = {}
    for name, weight in ARMS:
        if arms is not None and name not in arms:
            continue
        t0, w0 = time.process_time(), time.perf_counter()
        rec, logs = fit("tiny", steps=steps, batch_size=batch, seed=seed, lambda_consistency=weight,
                        log_every=log_every, log_prefix=f"seed {seed} {name}")
        pipe = AetheristPipeline(rec.generator.eval(), rec.config, torch.device("cpu"), torch.float32)
        report = pipe.consistency_report(samples, seed=seed, min_opacity=0.05)
        scores[name] = {"consistency_3d": report["score"], "chance": report["chance"], "gap": report["gap"],
                        "shuffled": report["shuffled"], "contrast": report["contrast"],
                        "loss_d_last": logs[-1]["loss_d"] if logs else float("nan"),
                        "cpu_s": time.process_time() - t0, "wall_s": time.perf_counter() - w0}
        r = scores[name]
        print(f"seed {seed} {name:>20}: 3D consistency {r['consistency_3d']:6.2f}%, chance {r['chance']:6.2f}%, "
              f"gap {r['gap']:6.2f} pts, shuffled latents {r['shuffled']:6.2f}%, contrast {r['contrast']:.3f} "
              f"after {steps} steps ({r['cpu_s']:.0f} CPU s)", flush=True)
    return scores


def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="benchmarks/aetherist.py", description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["aetherist-base", "eg3d-ffhq-512"])
    p.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    p.add_argument("--batch", type=int, default=None, help="images per call (default: the seed's table; 1 on CPU)")
    p.add_argument("--iters", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--toy", action="store_true", help="the tiny preset at 32 and 64 px, batch 2 (seconds)")
    p.add_argument("--ablation-steps", type=int, default=0,
                   help="also train the tiny preset this many steps with and without the consistency loss")
    p.add_argument("--ablation-samples", type=int, default=16, help="latents scored per ablation run")
    p.add_argument("--ablation-seeds", nargs="+", type=int, default=[0], help="seeds of the ablation (default: 0)")
    p.add_argument("--ablation-arms", nargs="+", choices=[name for name, _ in ARMS], default=None,
                   help="run only these arms (default: both)")
    p.add_argument("--ablation-log-every", type=int, default=0, help="print the losses every N training steps")
    p.add_argument("--no-speed", action="store_true", help="skip the speed rows (with --ablation-steps)")
    with cli_errors("benchmarks/aetherist.py"):
        args = p.parse_args(argv)
        if args.iters < 1 or (args.batch is not None and args.batch < 1):
            raise UserError("--iters and --batch must be at least 1")
        if args.ablation_steps < 0 or args.ablation_samples < 1:
            raise UserError("--ablation-steps must be >= 0 and --ablation-samples >= 1")
        if args.threads:
            torch.set_num_threads(args.threads)
        device = torch.device(args.device)
        presets, sizes = (["tiny"], [32, 64]) if args.toy else (args.presets, args.sizes)
        rows = {}
        for preset in ([] if args.no_speed else presets):
            for size in sizes:
                batch = args.batch or (2 if args.toy else SEED_TABLE[size][0] if device.type == "cuda" else 1)
                r = bench(preset, size, batch, args.iters, device, args.toy)
                rows[f"{preset}@{size}"] = r
                seed = SEED_TABLE.get(size)
                quoted = (f"   seed (RTX 4090, batch {seed[0]}): {seed[1]} img/s, {seed[2]} GB" if seed else "")
                print(f"{preset:>15} {size:4d} px batch {batch:2d}: {r['images_per_s']:8.3f} img/s, "
                      f"{r['cpu_s_per_image']:7.3f} CPU s/img, peak {r['peak_gb']:.2f} GB ({device.type}){quoted}")
        if args.ablation_steps:
            rows["ablation"] = {seed: ablation(args.ablation_steps, args.batch or 4, args.ablation_samples, seed,
                                               args.ablation_log_every, args.ablation_arms)
                                for seed in args.ablation_seeds}
            diffs = [r["with_consistency"]["gap"] - r["without_consistency"]["gap"]
                     for r in rows["ablation"].values() if len(r) == 2]
            if diffs:
                print(f"gap with - without the consistency loss, per seed: {' '.join(f'{d:+.2f}' for d in diffs)}; "
                      f"mean {sum(diffs) / len(diffs):+.2f} points, higher in {sum(d > 0 for d in diffs)} of "
                      f"{len(diffs)} seeds")
        return rows


if __name__ == "__main__":
    main()
