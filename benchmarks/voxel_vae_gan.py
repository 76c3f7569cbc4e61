"""Multi-view 3D-VAE-GAN quality on the built-in dataset: voxel IoU against the mean-shape baseline.

Trains the config/pose.yaml model twice on the built-in primitives (32^3, 64 px views) with the
same seed and the same number of steps: 4 views with pose encoding (the seed's multi-view + pose
setting) and 1 view without pose (its single-view setting). Then scores both on the held-out test
shapes (mean IoU at --threshold, z = mu, each object's evenly spaced views) next to the mean-shape
baseline: the average training grid thresholded at the value that fits the training grids best.
Prints training wall and process-CPU seconds per run: the claim is for <= 300 s on 2 CPU cores.

    python -m benchmarks.voxel_vae_gan                      # about 2 x 5 minutes on 2 idle CPU cores
    python -m benchmarks.voxel_vae_gan --n_epochs 20 --threads 2
    python -m benchmarks.voxel_vae_gan --toy                # seconds: tiny data and model (the tests)
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from utils.cli import ArgumentParser
from utils.errors import cli_errors

RUNS = (("multi-view + pose", dict(num_views=4, use_pose=True)), ("single view", dict(num_views=1, use_pose=False)))


def run(name: str, overrides: dict, values: dict, train_dir, val_dir, test_dir, out: Path, threshold: float,
        progress: bool) -> dict:
    from models.generation_3d.voxel_vae_gan.config import build_configs
    from models.generation_3d.voxel_vae_gan.training import VoxelVAEGANTrainer, dataset_iou
    from utils.data.co3d.dataset import Co3dVoxelDataset

    model_cfg, train_cfg = build_configs({**values, **overrides})
    kw = dict(cube_len=model_cfg.cube_len, image_size=model_cfg.image_size)
    train_set = Co3dVoxelDataset(train_dir, **kw, min_views=train_cfg.num_views)
    val_set = Co3dVoxelDataset(val_dir, **kw) if val_dir else None
    test_set = Co3dVoxelDataset(test_dir, **kw)
    trainer = VoxelVAEGANTrainer(model_cfg, replace(train_cfg, vis_every=0, save_every=train_cfg.n_epochs),
                                 train_set, val_set, out, device="cpu", progress=progress, tensorboard=False)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    iou = dataset_iou(trainer.model, test_set, train_cfg.num_views, train_cfg.combine_type, threshold)
    from utils.metrics.metrics_3d import voxel_iou

    truth = torch.stack([test_set.voxels(i) for i in range(len(test_set))]) > 0.5
    base = voxel_iou((trainer.mean_shape > trainer.base_t).expand_as(truth), truth)
    return {"run": name, "num_views": train_cfg.num_views, "use_pose": model_cfg.use_pose,
            "steps": train_cfg.n_epochs * trainer.steps_per_epoch, "train_wall_s": round(wall, 1),
            "train_cpu_s": round(cpu, 1), "test_iou": float(iou.mean()), "baseline_iou": float(base.mean()),
            "baseline_threshold": trainer.base_t, "test_objects": len(test_set)}


@cli_errors("benchmarks.voxel_vae_gan")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.voxel_vae_gan", description=__doc__.split("\n\n")[0])
    p.add_argument("--toy", action="store_true", help="tiny dataset and model, one epoch (seconds)")
    p.add_argument("--config", default="config/pose.yaml", help="the training config (the seed's keys)")
    p.add_argument("--n_epochs", type=int, default=None, help="epochs of each run (default: the config's)")
    p.add_argument("--threshold", type=float, default=0.5, help="occupancy threshold of the IoU")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1 ran fastest on the loaded 2-core machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of both runs")
    p.add_argument("--out", default=None, help="where the runs and results.json go (default: a temporary folder)")
    p.add_argument("--no_progress", action="store_true")
    a = p.parse_args(argv)
    from models.generation_3d.voxel_vae_gan.config import load_yaml_config
    from utils.data.co3d.builtin import ensure_builtin, split_dir, write_builtin

    threads = torch.get_num_threads()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    values = load_yaml_config(a.config)
    values["seed"] = a.seed
    if a.n_epochs is not None:
        values["n_epochs"] = a.n_epochs
    tmp = tempfile.TemporaryDirectory() if a.out is None else None
    out = Path(tmp.name if tmp else a.out)
    try:
        if a.toy:
            values.update(preset="tiny", cube_len=16, image_size=32, z_size=16, n_epochs=1, batch_size=2)
            root = write_builtin(out / "data", cube_len=16, splits={"train": 4, "val": 0, "test": 2}, views=4,
                                 image_size=32)
        else:
            root = ensure_builtin(cube_len=int(values.get("cube_len", 32)))
        dirs = [split_dir(root, s) for s in ("train", "val", "test")]
        if not any(dirs[1].glob("*_processed")) if dirs[1].is_dir() else True:
            dirs[1] = None
        rows = [run(name, ov, values, *dirs, out / name.replace(" ", "_").replace("+", "and"), a.threshold,
                    not a.no_progress) for name, ov in RUNS]
    finally:
        torch.set_num_threads(threads)
        if tmp:
            tmp.cleanup()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"voxel_vae_gan on the built-in dataset{' (toy)' if a.toy else ''}: {rows[0]['test_objects']} test shapes, "
          f"IoU at threshold {a.threshold}, {a.threads} thread(s), load average {load:.2f}")
    print(f"  {'run':<20} {'steps':>6} {'wall s':>8} {'cpu s':>8} {'test IoU':>9}")
    for r in rows:
        print(f"  {r['run']:<20} {r['steps']:>6} {r['train_wall_s']:>8.1f} {r['train_cpu_s']:>8.1f} {r['test_iou']:>9.4f}")
    print(f"  {'mean-shape baseline':<20} {'':>6} {'':>8} {'':>8} {rows[0]['baseline_iou']:>9.4f} "
          f"(threshold {rows[0]['baseline_threshold']:.2f})")
    result = {"rows": rows, "baseline_iou": rows[0]["baseline_iou"], "threshold": a.threshold, "toy": a.toy,
              "threads": a.threads, "load_average": load,
              "multi_view_beats_single": rows[0]["test_iou"] > rows[1]["test_iou"],
              "beats_baseline": rows[0]["test_iou"] > rows[0]["baseline_iou"]}
    if a.out is not None:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        (Path(a.out) / "results.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    with cli_errors("benchmarks.voxel_vae_gan"):
        main()
