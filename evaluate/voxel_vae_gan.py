"""Test a trained multi-view 3D-VAE-GAN on a split in the CO3D layout (the seed project's test.py).

    python evaluate/voxel_vae_gan.py --model_path <out>/checkpoints/epoch_1000/ --test_dir test/chair/ \\
        --output_dir <out> --num_views 4 --use_pose --threshold 0.4
    python evaluate/voxel_vae_gan.py --model_path outputs/voxel_vae_gan/primitives/checkpoints/latest   # built-in test split

Writes <output_dir>/test_results/: metrics.json (mean IoU at --threshold, per object, and the
mean-shape baseline: the training mean grid at its best training threshold), renders/<name>.png
(input views | predicted | true grid), meshes/<name>.obj and .ply (marching cubes at --threshold)
and voxels/<name>.binvox. An empty prediction is reported with the advice to lower --threshold.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    from models.generation_3d.voxel_vae_gan.config import parse_bool

    p = ArgumentParser(prog="voxel_vae_gan.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model_path", required=True, help="epoch folder of a run (checkpoints/epoch_N or latest), or "
                                                       "its model.safetensors")
    p.add_argument("--test_dir", default=None, help="category folder in the CO3D layout (default: the built-in "
                                                    "dataset's test split)")
    p.add_argument("--output_dir", default=None, help="results go to <output_dir>/test_results (default: the run "
                                                      "folder of --model_path)")
    p.add_argument("--num_views", type=int, default=None, help="views per object (default: the training value)")
    p.add_argument("--use_pose", type=parse_bool, nargs="?", const=True, default=None,
                   help="the model uses pose encoding (default: as trained; it must match the checkpoint)")
    p.add_argument("--combine_type", choices=("mean", "max"), default=None, help="view fusion (default: as trained)")
    p.add_argument("--threshold", type=float, default=0.5, help="occupancy threshold of the IoU, renders and meshes")
    p.add_argument("--obj", default=None, help="category subfolder, when --test_dir is its parent")
    p.add_argument("--batch_size", type=int, default=16, help="objects per forward pass")
    p.add_argument("--no_meshes", action="store_true", help="skip the .obj/.ply meshes")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    return p


def run_folder(model_path: Path) -> Path:
    """The run folder of an epoch folder (<run>/checkpoints/epoch_N), else the folder itself."""
    p = model_path if model_path.is_dir() else model_path.parent
    return p.parent.parent if p.parent.name == "checkpoints" else p


@cli_errors("voxel_vae_gan.py")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.threshold < 1:
        raise UserError(f"--threshold must be in (0, 1), got {args.threshold}")
    if args.num_views is not None and args.num_views < 1:
        raise UserError(f"--num_views must be 1 or more, got {args.num_views}")
    if args.batch_size < 1:
        raise UserError(f"--batch_size must be positive, got {args.batch_size}")

    import torch

    from models.generation_3d.voxel_vae_gan.pipeline import VoxelVAEGANPipeline, voxel_mesh
    from utils.data.binvox import write_binvox
    from utils.data.co3d.builtin import ensure_builtin, split_dir
    from utils.data.co3d.dataset import Co3dVoxelDataset, collate
    from utils.io import atomic_path
    from utils.metrics.metrics_3d import voxel_iou
    from utils.training.checkpoints import write_json
    from utils.visualization.mesh import write_mesh
    from utils.visualization.voxels import voxel_panel

    model_path = Path(args.model_path)
    pipe = VoxelVAEGANPipeline.from_pretrained(model_path, device=args.device)
    cfg, trained = pipe.cfg, pipe.info.get("train") or {}
    if args.use_pose is not None and args.use_pose != cfg.use_pose:
        raise UserError(f"{model_path} was trained with use_pose {cfg.use_pose}: "
                        f"{'pass --use_pose' if cfg.use_pose else 'drop --use_pose'} (the pose encoder is part of "
                        "the weights)")
    num_views = args.num_views or trained.get("num_views") or 1
    combine = args.combine_type or trained.get("combine_type", "mean")
    test_dir = Path(args.test_dir) if args.test_dir else split_dir(ensure_builtin(cube_len=cfg.cube_len), "test")
    ds = Co3dVoxelDataset(test_dir, cube_len=cfg.cube_len, image_size=cfg.image_size, obj=args.obj or trained.get("obj"),
                          min_views=num_views)
    out = (Path(args.output_dir) if args.output_dir else run_folder(model_path)) / "test_results"
    mean_shape = pipe.info.get("mean_shape")
    base_t = pipe.info.get("baseline_threshold") or 0.5

    rows, ious, base_ious, empty = [], [], [], []
    model = pipe.model
    for start in range(0, len(ds), args.batch_size):
        idx = list(range(start, min(start + args.batch_size, len(ds))))
        batch = collate([ds[(i, ds.default_views(i, num_views))] for i in idx])
        poses = batch["poses"].to(pipe.device) if cfg.use_pose else None
        with torch.no_grad():
            mu, _ = model.encoder(batch["images"].to(pipe.device), poses, combine)
            probs = torch.sigmoid(model.generator(mu)).float().cpu()
        truth = batch["voxels"] > 0.5
        iou = voxel_iou(probs, truth, threshold=args.threshold)
        ious += iou.tolist()
        if mean_shape is not None:
            base_ious += voxel_iou((mean_shape > base_t).expand_as(truth), truth).tolist()
        for k, name in enumerate(batch["names"]):
            occupied = probs[k] > args.threshold
            rows.append({"name": name, "iou": ious[len(rows)], "frames": list(batch["frames"][k]),
                         "occupied": int(occupied.sum()), "max_probability": float(probs[k].max())})
            panel = voxel_panel([(list(batch["images"][k]), probs[k], batch["voxels"][k])], size=128,
                                threshold=args.threshold)
            with atomic_path(out / "renders" / f"{name}.png") as tmp:
                panel.save(tmp)
            write_binvox(out / "voxels" / f"{name}.binvox", occupied.numpy(), (-1.0, -1.0, -1.0), 2.0)
            if not occupied.any():
                empty.append(name)
                print(f"warning: the prediction for {name} is empty at --threshold {args.threshold} (highest "
                      f"occupancy {float(probs[k].max()):.3f}): try a lower threshold, e.g. --threshold 0.1, or "
                      "train for more epochs", file=sys.stderr)
            elif not args.no_meshes:
                verts, faces = voxel_mesh(probs[k].numpy(), args.threshold)
                write_mesh(out / "meshes" / f"{name}.obj", verts, faces)
                write_mesh(out / "meshes" / f"{name}.ply", verts, faces)
    mean_iou = sum(ious) / len(ious)
    metrics = {"mean_iou": mean_iou, "threshold": args.threshold, "num_views": num_views, "combine_type": combine,
               "use_pose": cfg.use_pose, "objects": len(ds), "empty_predictions": len(empty),
               "model_path": str(model_path), "test_dir": str(test_dir), "per_object": rows}
    if base_ious:
        metrics.update(baseline_mean_shape_iou=sum(base_ious) / len(base_ious), baseline_threshold=base_t)
    write_json(out / "metrics.json", metrics)
    base = f", mean-shape baseline {metrics['baseline_mean_shape_iou']:.4f}" if base_ious else ""
    print(f"mean IoU {mean_iou:.4f} at threshold {args.threshold} over {len(ds)} objects ({num_views} view(s), "
          f"{combine}){base}; {len(empty)} empty -> {out}")
    return 0


if __name__ == "__main__":
    with cli_errors("voxel_vae_gan.py"):
        sys.exit(main())
