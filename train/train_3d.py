"""Train a 3D model of the zoo; each model has its own options (`--model NAME --help` lists them).

    python train/train_3d.py --model gaussian_splatting                 # built-in scene, offline
    python train/train_3d.py --model nerf --preset instant-ngp         # built-in scene, a few CPU minutes
    python train/train_3d.py --model gaussian_splatting --data data/nerf_synthetic/lego --steps 30000
    python train/train_3d.py --model gaussian_splatting --data data/garden --downscale 4 --strategy mcmc
    python train/train_3d.py --model voxel_vae_gan --config config/pose.yaml --output_dir models/experiments
    python train/train_3d.py --model get3d                              # tiny, built-in primitives, CPU minutes
    python train/train_3d.py --model get3d --preset shapenet-car --data renders/img/02958343

--data takes a NeRF-synthetic scene (transforms_train.json) or a COLMAP scene (sparse/0 + images/).
Outputs go to outputs/<model>/<scene>/ unless --out: point_cloud.ply, test_renders/, turntable.mp4,
metrics.json (PSNR, SSIM, LPIPS on the held-out views), ckpts/ (resumable) and tb/ (TensorBoard).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

# -- gaussian_splatting -------------------------------------------------------------------------------

def add_gaussian_splatting_args(p: ArgumentParser) -> None:
    p.add_argument("--data", default=None, help="scene folder (NeRF-synthetic or COLMAP); default: the built-in "
                                                 "synthetic scene, written to outputs/datasets/synthetic_scene")
    p.add_argument("--steps", type=int, default=None,
                   help="optimisation steps; schedules scale with it (default: on CUDA the paper's 30000 on --data; "
                        "on CPU what fits --time-budget; 1000 on the built-in scene)")
    p.add_argument("--time-budget", type=float, default=None, metavar="MIN",
                   help="on CPU with --data and no --steps: minutes of training to fit the schedule and Gaussian "
                        "cap to, measured on this machine before starting (default 3)")
    p.add_argument("--strategy", choices=("default", "mcmc"), default="default",
                   help="densification: default (clone/split/prune/reset, 3DGS) or mcmc (3DGS-MCMC)")
    p.add_argument("--preset", default=None, help="model preset: default (100k random init points) or tiny "
                                                  "(3k; the default on the built-in scene)")
    p.add_argument("--cap-max", type=int, default=None, help="most Gaussians (on CPU with --data: from the time "
                                                              "budget; on CUDA mcmc 1M, default strategy unlimited; "
                                                              "10k on the built-in scene)")
    p.add_argument("--antialiased", action="store_true",
                   help="Mip-Splatting's 2D filter: opacities scaled by the eps2d compensation (gsplat's "
                        "antialiased mode), on every backend")
    p.add_argument("--backend", choices=("auto", "numba", "torch", "gsplat"), default="auto",
                   help="rasterizer: auto (gsplat on CUDA, the compiled numba kernels on CPU), numba, torch (the "
                        "pure-PyTorch reference) or gsplat")
    p.add_argument("--downscale", type=int, default=1, help="shrink images by this factor on load")
    p.add_argument("--out", default=None, help="output folder (default outputs/gaussian_splatting/<scene>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of torch and the compiled rasterizer (0: torch's default); 1 by default: on a "
                        "shared 2-core machine a second thread mostly waits")
    p.add_argument("--viewer", action="store_true", help="watch the training live in a browser (viser, on "
                                                         "127.0.0.1 only)")
    p.add_argument("--viewer-port", type=int, default=8080, help="port of --viewer")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out/ckpts")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of each step")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default steps/4)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds another run, "
                                                             "deleting that run's files (else it is refused)")
    p.add_argument("--turntable-frames", type=int, default=60, help="frames of the turntable video (0: none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")


def load_scene(data: str | None, downscale: int):
    """(train, test, scene name, is_builtin) for --data."""
    from utils.data.colmap import is_colmap, load_colmap
    from utils.data.nerf_synthetic import is_nerf_synthetic, load_nerf_synthetic
    from utils.data.synthetic_scene import DEFAULT_SCENE_DIR, ensure_synthetic_scene

    if downscale < 1:
        raise UserError(f"--downscale must be 1 or more, got {downscale}")
    builtin = data is None
    root = ensure_synthetic_scene(DEFAULT_SCENE_DIR) if builtin else Path(data)
    if not root.exists():
        raise UserError(f"data folder '{root}' not found: pass a NeRF-synthetic scene (transforms_train.json) or a "
                        "COLMAP scene (sparse/0), or leave --data out to use the built-in scene")
    if is_nerf_synthetic(root):
        train = load_nerf_synthetic(root, "train", downscale)
        test = load_nerf_synthetic(root, "test", downscale) if (root / "transforms_test.json").is_file() else None
    elif is_colmap(root):
        train, test = load_colmap(root, "train", downscale), load_colmap(root, "test", downscale)
    else:
        raise UserError(f"'{root}' is neither a NeRF-synthetic scene (no transforms_train.json) nor a COLMAP scene "
                        "(no sparse/0/cameras.bin or .txt)")
    return train, test, ("synthetic_scene" if builtin else root.resolve().name), builtin


def train_gaussian_splatting(args: argparse.Namespace, argv: list[str]) -> int:
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be positive, got {args.steps}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be a positive number of minutes, got {args.time_budget}")
    if args.cap_max is not None and args.cap_max < 1:
        raise UserError(f"--cap-max must be positive, got {args.cap_max}")

    from dataclasses import replace

    import torch

    from models.generation_3d.gaussian_splatting.config import TrainConfig, get_config
    from models.generation_3d.gaussian_splatting.strategy import make_strategy
    from models.generation_3d.gaussian_splatting.training import Trainer, write_metrics
    from utils.rendering.splatting import resolve_backend
    from utils.torch_utils import resolve_device
    from utils.visualization.ply import write_splat_ply
    from utils.visualization.turntable import orbit_from_cameras, write_turntable

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        backend = resolve_backend(args.backend, device)
    except ValueError as err:
        raise UserError(f"--backend {args.backend}: {err}") from None
    train, test, scene, builtin = load_scene(args.data, args.downscale)
    out = Path(args.out) if args.out else Path("outputs") / "gaussian_splatting" / scene
    model_cfg = get_config(args.preset or ("tiny" if builtin else "default"))
    model_cfg = replace(model_cfg, raster=replace(model_cfg.raster, backend=args.backend,
                                                  antialiased=args.antialiased))
    if backend == "numba":
        _prepare_compiled_rasterizer()
    steps, cap, plan = _gs_schedule(args, model_cfg, train, builtin, device, out)
    if plan is not None and plan.get("init_points"):
        model_cfg = replace(model_cfg, init_num_points=plan["init_points"])
    overrides = {}
    if cap is not None:
        overrides["cap_max" if args.strategy == "mcmc" else "max_gaussians"] = cap
    strategy = make_strategy(args.strategy, steps, **overrides)
    train_cfg = TrainConfig(seed=args.seed, background=train.background or (1.0, 1.0, 1.0)).scaled_to(steps)
    trainer = Trainer(model_cfg, train_cfg, strategy, train, test, out, device, save_every=args.save_every,
                      tensorboard=not args.no_tensorboard)
    trainer.run_info = {"steps": steps, "cap": cap, **(plan or {})}
    print(f"training gaussian_splatting on {scene}: {len(train)} views {train.cameras.width}x"
          f"{train.cameras.height}, {steps} steps, strategy {args.strategy}, {len(trainer.model)} initial "
          f"Gaussians{'' if cap is None else f' (at most {cap:,})'}, device {device.type} (rasterizer: {backend}"
          f"{', antialiased' if args.antialiased else ''}, {torch.get_num_threads()} thread(s))", file=sys.stderr)
    viewer = None
    if args.viewer:
        from models.generation_3d.gaussian_splatting.viewer import SplatViewer

        viewer = SplatViewer(trainer.model, port=args.viewer_port, live=True, background=train_cfg.background)
        trainer.on_step = lambda t: viewer.refresh(t.step)
        print(f"viewer: {viewer.url}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        result = trainer.fit(resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    finally:
        if viewer is not None:
            viewer.stop()
    train_seconds = time.perf_counter() - t0

    write_splat_ply(out / "point_cloud.ply", {k: v.detach() for k, v in trainer.model.splats.items()})
    metrics = trainer.evaluate(write_dir=out / "test_renders")
    metrics.update(train_seconds=round(train_seconds, 1), strategy=args.strategy, device=device.type,
                   backend=backend, antialiased=args.antialiased, threads=torch.get_num_threads(), scene=scene,
                   command="python " + " ".join(["train/train_3d.py", *argv]))
    if plan is not None:
        metrics["time_budget"] = plan
    write_metrics(out / "metrics.json", metrics)
    if args.turntable_frames > 0:
        cams = orbit_from_cameras(train.cameras, args.turntable_frames)
        write_turntable(lambda c: trainer.render_views(c), cams, out / "turntable.mp4")
    lp = "n/a" if metrics.get("lpips") is None else f"{metrics['lpips']:.4f}"
    print(f"done in {train_seconds:.1f} s ({result['seconds']:.1f} s training): test PSNR {metrics['psnr']:.2f} dB, "
          f"SSIM {metrics['ssim']:.4f}, LPIPS {lp}, {metrics['n_gaussians']} Gaussians -> {out}")
    return 0


def _prepare_compiled_rasterizer() -> None:
    """Load the numba kernels before anything is timed: compiled once per machine (then cached)."""
    from utils.rendering import splat_numba

    t0 = time.perf_counter()
    splat_numba.warmup(dtypes=("float32",))
    if time.perf_counter() - t0 > 5:
        print(f"compiled the CPU rasterizer in {time.perf_counter() - t0:.0f} s (numba caches it: once per "
              "machine)", file=sys.stderr)


def _gs_schedule(args, model_cfg, train, builtin: bool, device, out: Path) -> tuple[int, int | None, dict | None]:
    """(steps, cap, time-budget plan or None): the user's, the resumed run's, or CPU-aware defaults."""
    if args.resume and args.steps is None:
        from utils.training import latest_checkpoint, load_checkpoint

        last = latest_checkpoint(out / "ckpts")
        info = load_checkpoint(last).get("run_info", {}) if last is not None else {}
        if info.get("steps"):
            return int(info["steps"]), args.cap_max or info.get("cap"), {k: info[k] for k in info
                                                                         if k not in ("steps", "cap")} or None
    if builtin:
        return args.steps or BUILTIN_STEPS, args.cap_max or BUILTIN_CAP, None
    if device.type != "cpu" or args.steps is not None:
        if device.type == "cpu" and args.time_budget is not None:
            raise UserError("--time-budget picks the number of steps: pass it or --steps, not both")
        return args.steps or 30_000, args.cap_max, None
    from models.generation_3d.gaussian_splatting.budget import DEFAULT_BUDGET_MIN, plan_for_budget

    budget = args.time_budget or DEFAULT_BUDGET_MIN
    print(f"CPU: fitting the schedule to a {budget:g}-minute budget (timing a few steps on this machine)...",
          file=sys.stderr)
    plan = plan_for_budget(model_cfg, train, budget, cap=args.cap_max, seed=args.seed)
    print(f"  {plan.seconds_per_step * 1e3:.0f} ms/step at {plan.cap:,} Gaussians ({plan.seconds_per_step_init * 1e3:.0f}"
          f" at the {plan.init_points:,} initial ones) -> {plan.steps:,} steps, about "
          f"{plan.expected_s / 60:.1f} min of training (densification, opacity resets, SH degree and the position "
          f"lr decay scaled to it; --steps, --cap-max or --time-budget change it; on CUDA the paper's 30k steps)",
          file=sys.stderr)
    info = {"budget_min": budget, "init_points": plan.init_points, "ms_per_step": round(plan.seconds_per_step * 1e3, 2),
            "ms_per_step_init": round(plan.seconds_per_step_init * 1e3, 2),
            "expected_min": round(plan.expected_s / 60, 2)}
    return plan.steps, plan.cap, info


BUILTIN_STEPS = 1000
"""Default steps on the built-in scene: a few minutes on two CPU cores."""
BUILTIN_CAP = 10_000
"""Default cap on the number of Gaussians on the built-in scene (its ground truth has 3,260)."""


# -- voxel_vae_gan -------------------------------------------------------------------------------------

def add_voxel_vae_gan_args(p) -> None:
    from models.generation_3d.voxel_vae_gan.config import parse_bool

    p.add_argument("--config", default=None, help="YAML config with the seed's keys; config/pose.yaml (the default) "
                                                  "is the copy shipped in models/generation_3d/voxel_vae_gan/configs/")
    p.add_argument("--input_dir", default=None, help="category folder in the CO3D layout (or its parent, with obj); "
                                                     "default: the built-in dataset's train split")
    p.add_argument("--val_dir", default=None, help="validation category folder (default: ../../val/<category> "
                                                   "when --input_dir is <root>/train/<category>)")
    p.add_argument("--output_dir", default=None, help="run folder: checkpoints/, visualizations/, tb/, log.jsonl "
                                                      "(default outputs/voxel_vae_gan/<category>)")
    p.add_argument("--resume", default=None, help="epoch folder to continue from (checkpoints/epoch_N or "
                                                  "checkpoints/latest); without it a run continues from "
                                                  "<output_dir>/checkpoints/latest when there is one")
    p.add_argument("--start_epoch", type=int, default=None, help="count epochs from N (default: the checkpoint's)")
    for key, typ, what in (("n_epochs", int, "training epochs"), ("batch_size", int, "objects per step"),
                           ("z_size", int, "latent size"), ("cube_len", int, "voxel resolution (32 or 64)"),
                           ("image_size", int, "input view size in pixels"), ("obj", str, "object category"),
                           ("num_views", int, "views per object"), ("g_lr", float, "generator learning rate"),
                           ("e_lr", float, "encoder learning rate"), ("d_lr", float, "discriminator learning rate"),
                           ("recon_weight", float, "reconstruction loss weight"),
                           ("kl_weight_start", float, "KL weight at the first step"),
                           ("kl_weight_end", float, "KL weight at the last step"),
                           ("seed", int, "seed of the weights, data order, views and noise"),
                           ("save_every", int, "epochs between checkpoints/epoch_N folders"),
                           ("vis_every", int, "epochs between visualizations/epoch_N.png (0: none)")):
        p.add_argument(f"--{key}", type=typ, default=None, help=f"{what} (default: the config's)")
    p.add_argument("--combine_type", choices=("mean", "max"), default=None, help="view fusion (default: the config's)")
    p.add_argument("--use_pose", type=parse_bool, nargs="?", const=True, default=None,
                   help="pose encoding: --use_pose True|False (default: the config's)")
    p.add_argument("--preset", default=None, help="base architecture: pose (the config's), default (64^3, Wu et al.) "
                                                  "or tiny")
    p.add_argument("--mixed_precision", choices=("no", "fp16", "bf16"), default=None, help="accelerate mixed precision")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU intra-op threads (0: torch's default); 1 by default: a pose.yaml step took 0.68 s on 1 "
                        "thread and 3.6 s on 2 on a shared, loaded 2-core machine")
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    p.add_argument("--no_tensorboard", action="store_true", help="no TensorBoard logs")


VOXEL_KEYS = ("n_epochs", "batch_size", "z_size", "cube_len", "image_size", "obj", "num_views", "combine_type",
              "use_pose", "g_lr", "e_lr", "d_lr", "recon_weight", "kl_weight_start", "kl_weight_end", "seed",
              "save_every", "vis_every", "mixed_precision")


def train_voxel_vae_gan(args: argparse.Namespace, argv: list[str]) -> int:
    from models.generation_3d.voxel_vae_gan.config import build_configs, load_yaml_config

    values = load_yaml_config(args.config or "config/pose.yaml")
    values.update({k: getattr(args, k) for k in VOXEL_KEYS if getattr(args, k) is not None})
    model_cfg, train_cfg = build_configs(values, args.preset)

    import torch

    from models.generation_3d.voxel_vae_gan.training import VoxelVAEGANTrainer
    from utils.data.co3d.builtin import ensure_builtin, split_dir
    from utils.data.co3d.dataset import Co3dVoxelDataset
    from utils.data.co3d.layout import resolve_category

    if args.threads > 0 and (args.device == "cpu" or not torch.cuda.is_available()):
        torch.set_num_threads(args.threads)
    if args.resume is not None:  # a bad --resume is refused before the data is built or read
        from models.generation_3d.voxel_vae_gan.training import read_training_state

        read_training_state(args.resume)
    kw = dict(cube_len=model_cfg.cube_len, image_size=model_cfg.image_size)
    if args.input_dir is None:
        root = ensure_builtin(cube_len=model_cfg.cube_len)
        train_dir, val_dir = split_dir(root, "train"), split_dir(root, "val")
    else:
        train_dir = resolve_category(args.input_dir, train_cfg.obj)
        val_dir = Path(args.val_dir) if args.val_dir else None
        guess = train_dir.parent.parent / "val" / train_dir.name
        if val_dir is None and train_dir.parent.name == "train" and guess.is_dir():
            val_dir = guess
    train_set = Co3dVoxelDataset(train_dir, **kw, min_views=train_cfg.num_views)
    val_set = Co3dVoxelDataset(val_dir, **kw) if val_dir is not None else None
    category = train_dir.name
    out = Path(args.output_dir) if args.output_dir else Path("outputs") / "voxel_vae_gan" / category
    trainer = VoxelVAEGANTrainer(model_cfg, train_cfg, train_set, val_set, out, resume=args.resume,
                                 start_epoch=args.start_epoch, device=args.device, workers=args.workers,
                                 progress=not args.no_progress, tensorboard=not args.no_tensorboard,
                                 dataset_name=str(train_dir), command="python " + " ".join(["train/train_3d.py", *argv]))
    print(f"training voxel_vae_gan on {train_dir}: {len(train_set)} objects ({len(val_set) if val_set else 0} "
          f"validation), {model_cfg.cube_len}^3 voxels from {train_cfg.num_views} view(s) of {model_cfg.image_size} px, "
          f"pose {'on' if model_cfg.use_pose else 'off'}, fusion {train_cfg.combine_type}, epochs "
          f"{trainer.start_epoch + 1}..{train_cfg.n_epochs}", file=sys.stderr)
    t0 = time.perf_counter()
    result = trainer.fit()
    last = result["epochs"][-1] if result["epochs"] else {}
    val = f", validation IoU {last['val_iou']:.4f}" if "val_iou" in last else ""
    print(f"done in {time.perf_counter() - t0:.1f} s: epoch {last.get('epoch', trainer.start_epoch)}, recon "
          f"{last.get('recon', float('nan')):.4f}{val} -> {out}/checkpoints/latest")
    return 0


# -- nerf ----------------------------------------------------------------------------------------------

def add_nerf_args(p) -> None:
    p.add_argument("--preset", default="instant-ngp",
                   help="instant-ngp (hash grid + occupancy grid), nerfacto (proposal networks, contraction, "
                        "appearance, pose refinement), mipnerf (IPE, one multi-scale MLP), vanilla (coarse + fine "
                        "MLPs) or tiny")
    p.add_argument("--data", default=None, help="scene folder (NeRF-synthetic or COLMAP); default: the built-in "
                                                 "synthetic scene, written to outputs/datasets/synthetic_scene")
    p.add_argument("--downscale", type=int, default=1, help="shrink images by this factor on load")
    p.add_argument("--recipe", choices=("auto", "cpu", "paper"), default="auto",
                   help="sizes and schedule: paper (the published networks and schedules, e.g. instant-ngp 20k "
                        "steps of 2^18 samples, nerfacto 30k x 4096 rays, mip-NeRF 1M, NeRF 200k), cpu (smaller "
                        "networks, instant-ngp 1000 steps of 2^14 samples: minutes on 2 CPU cores at 64x64); "
                        "auto: paper on CUDA, cpu on CPU")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the recipe's)")
    p.add_argument("--rays", type=int, default=None, help="rays per step (default: the recipe's; instant-ngp "
                                                          "adapts it to a sample budget)")
    p.add_argument("--out", default=None, help="output folder (default outputs/nerf/<preset>/<scene>)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out/ckpts")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation and of each step")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default steps/4)")
    p.add_argument("--video-frames", type=int, default=60, help="frames of the orbit video camera_path.mp4 (0: none)")
    p.add_argument("--video-size", type=int, default=None, help="orbit video width (default: the training width)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")


def train_nerf(args: argparse.Namespace, argv: list[str]) -> int:
    from models.registry import get_spec

    spec = get_spec("3d", "nerf")
    preset = spec.check_preset(args.preset)
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be positive, got {args.steps}")
    if args.rays is not None and args.rays < 1:
        raise UserError(f"--rays must be positive, got {args.rays}")

    import torch
    from dataclasses import replace

    from models.generation_3d.nerf.config import get_config, train_config
    from models.generation_3d.nerf.training import Trainer, fit_scene, write_metrics
    from utils.torch_utils import resolve_device
    from utils.visualization.turntable import orbit_from_cameras, write_turntable

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    recipe = args.recipe if args.recipe != "auto" else ("paper" if device.type == "cuda" else "cpu")
    train, test, scene, _ = load_scene(args.data, args.downscale)
    from utils.data.colmap import is_colmap
    from utils.data.nerf_synthetic import is_nerf_synthetic

    unbounded = args.data is not None and not is_nerf_synthetic(args.data) and is_colmap(args.data)
    model_cfg, norm = fit_scene(get_config(preset, recipe), train, unbounded)
    train_cfg = train_config(preset, recipe)
    train_cfg = replace(train_cfg, seed=args.seed, steps=args.steps or train_cfg.steps, rays=args.rays or train_cfg.rays)
    out = Path(args.out) if args.out else Path("outputs") / "nerf" / preset / scene
    if args.resume:  # refuse another preset's run before building anything
        from models.generation_3d.nerf.convert import check_checkpoint
        from utils.training import latest_checkpoint

        last = latest_checkpoint(out / "ckpts")
        if last is None:
            raise UserError(f"--resume: no checkpoint in {out / 'ckpts'}: start without --resume, or pass the --out "
                            "folder of the run to continue")
        check_checkpoint(last, preset=preset)
    trainer = Trainer(preset, model_cfg, train_cfg, train, test, out, device, norm, save_every=args.save_every,
                      tensorboard=not args.no_tensorboard)
    print(f"training nerf/{preset} ({recipe} recipe) on {scene}: {len(train)} views {train.cameras.width}x"
          f"{train.cameras.height}, {train_cfg.steps} steps, {trainer.model.n_params():,} parameters, device "
          f"{device.type}", file=sys.stderr)
    t0 = time.perf_counter()
    result = trainer.fit(resume=args.resume, progress=not args.no_progress)
    train_seconds = time.perf_counter() - t0
    metrics = trainer.evaluate(write_dir=out / "test_renders", depth_dir=out / "depth")
    metrics.update(train_seconds=round(train_seconds, 1), fit_seconds=round(result["seconds"], 1),
                   recipe=recipe, device=device.type, scene=scene,
                   command="python " + " ".join(["train/train_3d.py", *argv]))
    write_metrics(out / "metrics.json", metrics)
    if args.video_frames > 0:
        cams = orbit_from_cameras(trainer.cameras.to("cpu"), args.video_frames, args.video_size)
        write_turntable(lambda c: trainer.render(c)["rgb"], cams, out / "camera_path.mp4")
    lp = "n/a" if metrics.get("lpips") is None else f"{metrics['lpips']:.4f}"
    print(f"done in {train_seconds:.1f} s: {metrics['split']} PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}, "
          f"LPIPS {lp} -> {out}")
    return 0


# -- get3d ---------------------------------------------------------------------------------------------

def add_get3d_args(p) -> None:
    p.add_argument("--preset", default=None, help="tiny (the default: a CPU-sized model on --resolution 32) or "
                                                  "shapenet-car, shapenet-chair, shapenet-motorbike, shapenet-table "
                                                  "(the released architecture and recipe)")
    p.add_argument("--data", default=None, help="a category of GET3D's ShapeNet renders (img/<synset>: object "
                                                 "folders of RGBA views) or a NeRF-synthetic scene; default: the "
                                                 "built-in renders of random primitives")
    p.add_argument("--camera", default=None, help="camera folder of the ShapeNet renders (camera/<synset>, "
                                                   "rotation.npy + elevation.npy per object; default: beside img/)")
    p.add_argument("--max-objects", type=int, default=None, help="read at most this many objects of --data")
    p.add_argument("--held-out", type=int, default=None, help="objects held out to measure the silhouette IoU "
                                                              "(default: 2 on the built-in set, 1 on --data; 0: none)")
    p.add_argument("--builtin-shapes", type=int, default=12, help="objects of the built-in set")
    p.add_argument("--builtin-views", type=int, default=8, help="views per object of the built-in set")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps (default: the preset's; tiny 300)")
    p.add_argument("--batch", type=int, default=None, help="views per step (default: the preset's; tiny 4)")
    p.add_argument("--resolution", type=int, default=None, help="training image size, a power of two (default: "
                                                                "the preset's; tiny 32, released 1024)")
    p.add_argument("--lr-g", type=float, default=None, help="generator learning rate (default 0.002)")
    p.add_argument("--lr-d", type=float, default=None, help="discriminator learning rate (default 0.002)")
    p.add_argument("--gamma", type=float, default=None, help="R1 weight of both discriminator branches (default: "
                                                             "the preset's: car 40, motorbike 80, chair 400, tiny 1)")
    p.add_argument("--out", default=None, help="run folder (default outputs/get3d/<preset>-<data>)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out/ckpts")
    p.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds another run")
    p.add_argument("--seed", type=int, default=0, help="seed of the weights and of each step")
    p.add_argument("--save-every", type=int, default=None, help="checkpoint every N steps (default: the preset's)")
    p.add_argument("--sample-every", type=int, default=None, help="sample grid and held-out IoU every N steps")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of torch (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard logs")


def train_get3d(args: argparse.Namespace, argv: list[str]) -> int:
    preset = args.preset or "tiny"
    for name in ("steps", "batch", "resolution", "builtin_shapes", "builtin_views", "max_objects", "save_every",
                 "sample_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.held_out is not None and args.held_out < 0:
        raise UserError(f"--held-out must be 0 or more, got {args.held_out}")
    for name in ("lr_g", "lr_d"):
        if getattr(args, name) is not None and not getattr(args, name) > 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.gamma is not None and not args.gamma >= 0:
        raise UserError(f"--gamma must be 0 or more, got {args.gamma}")
    if args.resolution is not None and (args.resolution < 8 or args.resolution & (args.resolution - 1)):
        raise UserError(f"--resolution must be a power of two of at least 8 (the discriminator halves it to 4), "
                        f"got {args.resolution}")
    if args.camera is not None and args.data is None:
        raise UserError("--camera goes with --data (the ShapeNet renders it holds the cameras of)")

    from dataclasses import replace

    import torch

    from models.generation_3d.get3d.data import builtin_primitives, load_multiview
    from models.generation_3d.get3d.trainer import TRAIN_PRESETS, GET3DTrainer, write_run_metrics
    from utils.torch_utils import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads > 0:
        torch.set_num_threads(args.threads)
    cfg = TRAIN_PRESETS[preset]
    given = {"steps": args.steps, "batch": args.batch, "resolution": args.resolution, "lr_g": args.lr_g,
             "lr_d": args.lr_d, "r1_gamma": args.gamma, "gamma_mask": args.gamma, "seed": args.seed,
             "save_every": args.save_every, "sample_every": args.sample_every}
    cfg = replace(cfg, **{k: v for k, v in given.items() if v is not None})
    name = "primitives" if args.data is None else Path(args.data).resolve().name
    out = Path(args.out) if args.out else Path("outputs") / "get3d" / f"{preset}-{name}"
    if args.data is None:
        data = builtin_primitives(args.builtin_shapes, args.builtin_views, cfg.resolution, seed=args.seed)
    else:
        data = load_multiview(args.data, cfg.resolution, args.camera, args.max_objects)
    held = args.held_out if args.held_out is not None else (2 if args.data is None else 1)
    train, held_out = data.split_objects(held)
    trainer = GET3DTrainer(preset, cfg, train, held_out, out, device, tensorboard=not args.no_tensorboard)
    print(f"training get3d/{preset} on {name}: {len(train)} views ({len(held_out)} held out) at {cfg.resolution} px, "
          f"{cfg.steps} steps of {cfg.batch}, device {device.type}", file=sys.stderr)
    result = trainer.fit(resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    metrics = write_run_metrics(trainer, result, "python " + " ".join(["train/train_3d.py", *argv]))
    first, last = metrics["silhouette_iou_start"], metrics["silhouette_iou"]
    print(f"done: {trainer.step} steps in {result['seconds']:.1f} s, held-out silhouette IoU {first:.4f} -> "
          f"{last:.4f} -> {out}/generator.safetensors (samples/, ckpts/, tb/)")
    return 0


# -- dispatch ------------------------------------------------------------------------------------------

# registry name -> (adds the model's options to the parser, runs the training). A new 3D model adds
# its own two functions above and one entry here.
TRAINERS = {
    "gaussian_splatting": (add_gaussian_splatting_args, train_gaussian_splatting),
    "nerf": (add_nerf_args, train_nerf),
    "voxel_vae_gan": (add_voxel_vae_gan_args, train_voxel_vae_gan),
    "get3d": (add_get3d_args, train_get3d),
}


def build_parser(model: str | None) -> ArgumentParser:
    p = ArgumentParser(prog="train_3d.py", description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", required=True, help=f"registered 3d model to train: {', '.join(TRAINERS)}")
    if model in TRAINERS:
        TRAINERS[model][0](p.add_argument_group(f"{model} options"))
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The model's own options, once --model names it (`--help` without --model lists the models)."""
    from models.registry import get_spec

    argv = sys.argv[1:] if argv is None else list(argv)
    peek = ArgumentParser(prog="train_3d.py", add_help=False)
    peek.add_argument("--model")
    known, _ = peek.parse_known_args(argv)
    model = None
    if known.model is not None:
        model = get_spec("3d", known.model).name
        if model not in TRAINERS:
            raise UserError(f"train_3d.py cannot train '{model}' yet: it trains {', '.join(TRAINERS)}")
    args = build_parser(model).parse_args(argv)
    args.model = model
    return args


@cli_errors("train_3d.py")
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if getattr(args, "preset", None) is not None:  # every model's preset checked before its trainer does any work
        from models.registry import get_spec

        get_spec("3d", args.model).check_preset(args.preset)
    return TRAINERS[args.model][1](args, argv)


if __name__ == "__main__":
    sys.exit(main())
