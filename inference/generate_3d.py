"""Generate or render with a 3D model of the zoo; each model has its own options (`--model NAME --help`).

    python inference/generate_3d.py --model gaussian_splatting --ply scene.ply
    python inference/generate_3d.py --model nerf --ckpt outputs/nerf/instant-ngp/synthetic_scene --camera-path orbit \\
        --mesh mesh.ply --points points.ply
    python inference/generate_3d.py --model gaussian_splatting --ply outputs/gaussian_splatting/synthetic_scene/point_cloud.ply \\
        --frames 120 --size 512 --elevation 30 --out orbit/

Writes <out>/turntable.mp4 and <out>/renders/*.png (orbit cameras around the splats' median,
z up unless --up), and a copy of the splats as <out>/scene.ply. --ply takes a 3DGS .ply, an
original 3DGS chkpnt*.pth, a gsplat ckpt_*.pt or a checkpoint of train_3d.py.

    python inference/generate_3d.py --model voxel_vae_gan --model_path <run>/checkpoints/latest \\
        --images a.jpg b.jpg --poses a.json b.json --threshold 0.4      # shape.binvox/.obj/.ply, renders/
    python inference/generate_3d.py --model shap_e --prompt "a red chair" --out chair.glb --turntable chair.gif
    python inference/generate_3d.py --model shap_e --image photo.png --out chair.obj    # the image300M preset
    python inference/generate_3d.py --model point_e --prompt "a red motorcycle" --out cloud.ply --mesh mesh.glb
    python inference/generate_3d.py --model get3d --preset shapenet-car --seed 0 --out car.glb --turntable car.mp4
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


# -- gaussian_splatting -------------------------------------------------------------------------------

def add_gaussian_splatting_args(p) -> None:
    p.add_argument("--ply", default=None, help="splat file: 3DGS .ply or a checkpoint (.pt/.pth)")
    p.add_argument("--preset", default=None, help="'tiny' renders random Gaussians without a file")
    p.add_argument("--out", default=None, help="output folder (default outputs/generate_3d/<name>)")
    p.add_argument("--frames", type=int, default=60, help="number of orbit views")
    p.add_argument("--size", type=int, default=512, help="image width and height in pixels")
    p.add_argument("--fov", type=float, default=40.0, help="horizontal field of view, degrees")
    p.add_argument("--elevation", type=float, default=25.0, help="camera elevation above the orbit plane, degrees")
    p.add_argument("--radius", type=float, default=None, help="orbit radius (default: fitted to the splats)")
    p.add_argument("--up", type=float, nargs=3, default=(0.0, 0.0, 1.0), help="world up axis")
    p.add_argument("--center", type=float, nargs=3, default=None, help="orbit centre (default: splat median)")
    p.add_argument("--background", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="background RGB in [0, 1]")
    p.add_argument("--fps", type=float, default=24.0, help="video frame rate")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_gaussian_splatting(args) -> int:
    from models import load

    if args.ply is None and args.preset != "tiny":
        raise UserError("give --ply scene.ply (a 3DGS .ply or checkpoint), or --preset tiny for random Gaussians")
    if args.ply is not None and not Path(args.ply).exists():
        raise UserError(f"--ply {args.ply} not found: give the path of a .ply or checkpoint")
    if args.frames < 1 or args.size < 8:
        raise UserError("--frames must be at least 1 and --size at least 8")
    pipe = load("3d", "gaussian_splatting", preset=args.preset, device=args.device)
    out = pipe(ply=args.ply, n_views=args.frames, width=args.size, fov=args.fov, elevation=args.elevation,
               radius=args.radius, up=tuple(args.up), center=tuple(args.center) if args.center else None,
               background=tuple(args.background), fps=args.fps)
    name = Path(args.ply).stem if args.ply else "tiny"
    folder = Path(args.out) if args.out else Path("outputs") / "generate_3d" / name
    out.save(folder / "turntable.mp4")
    out.save(folder / "scene.ply")
    from utils.outputs import ImageOutput

    ImageOutput(out.renders).save(folder / "renders")
    print(f"{len(out.renders)} views of {len(out.points)} Gaussians -> {folder}/turntable.mp4, renders/")
    return 0


# -- nerf ----------------------------------------------------------------------------------------------

def add_nerf_args(p) -> None:
    p.add_argument("--ckpt", default=None, help="checkpoint of train_3d.py --model nerf: a ckpts/step_*.pt file or "
                                                "the run's --out folder (its newest checkpoint)")
    p.add_argument("--preset", default=None, help="check that the checkpoint holds this preset; 'tiny' without "
                                                  "--ckpt renders a random field")
    p.add_argument("--camera-path", default="orbit", help="orbit (fitted to the training views), train (the "
                                                          "training views), or a .json: a nerfstudio camera path "
                                                          "or a NeRF-synthetic transforms file")
    p.add_argument("--out", default=None, help="output folder (default outputs/generate_3d/nerf-<preset>)")
    p.add_argument("--frames", type=int, default=60, help="number of orbit views")
    p.add_argument("--size", type=int, default=256, help="image width in pixels (height follows the path's aspect)")
    p.add_argument("--fov", type=float, default=40.0, help="horizontal field of view of the orbit, degrees")
    p.add_argument("--elevation", type=float, default=None, help="orbit elevation, degrees (default: the training "
                                                                  "views' mean)")
    p.add_argument("--radius", type=float, default=None, help="orbit radius in world units (default: the training "
                                                              "views' mean distance)")
    p.add_argument("--center", type=float, nargs=3, default=None, help="orbit centre in world units")
    p.add_argument("--up", type=float, nargs=3, default=None, help="world up axis of the orbit (default: the "
                                                                   "training views', else z)")
    p.add_argument("--background", type=float, nargs=3, default=None, help="background RGB in [0, 1] (default: "
                                                                           "the training background)")
    p.add_argument("--fps", type=float, default=24.0, help="video frame rate")
    p.add_argument("--mesh", default=None, help="also write a marching-cubes mesh with vertex colours (.ply or .obj)")
    p.add_argument("--mesh-resolution", type=int, default=128, help="grid points per side of the marching cubes")
    p.add_argument("--density-threshold", type=float, default=10.0, help="density of the mesh surface (per world "
                                                                         "unit, in the model's scale)")
    p.add_argument("--points", default=None, help="also write a coloured point cloud .ply (opaque pixels of the "
                                                  "training views lifted to their depth)")
    p.add_argument("--num-points", type=int, default=100_000, help="points in the point cloud")
    p.add_argument("--min-opacity", type=float, default=0.9, help="pixels less opaque than this give no point")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_nerf(args) -> int:
    import numpy as np
    from PIL import Image

    from models import load
    from models.registry import get_spec
    from utils.io import atomic_path

    spec = get_spec("3d", "nerf")
    if args.preset is not None:
        spec.check_preset(args.preset)
    if args.ckpt is None and args.preset != "tiny":
        raise UserError("give --ckpt (a train_3d.py --model nerf checkpoint or its --out folder), or --preset tiny "
                        "for a random field")
    if args.ckpt is not None and not Path(args.ckpt).exists():
        raise UserError(f"--ckpt {args.ckpt} not found: give a ckpts/step_*.pt file or a train_3d.py --out folder")
    if args.frames < 1 or args.size < 8 or args.mesh_resolution < 8:
        raise UserError("--frames must be at least 1, --size and --mesh-resolution at least 8")
    for opt, path, ok in (("--mesh", args.mesh, (".ply", ".obj")), ("--points", args.points, (".ply",))):
        if path is not None and Path(path).suffix.lower() not in ok:
            raise UserError(f"{opt} {path}: the file must end in {' or '.join(ok)}")
    if args.ckpt is not None:
        from models.generation_3d.nerf.pipeline import NeRFPipeline

        pipe = NeRFPipeline.from_pretrained(args.ckpt, preset=args.preset, device=args.device)
    else:
        pipe = load("3d", "nerf", preset="tiny", device=args.device)
    cams = pipe.camera_path(args.camera_path, args.frames, args.size, None, args.fov, args.elevation, args.radius,
                            tuple(args.center) if args.center else None, tuple(args.up) if args.up else None)
    mesh = points = None  # computed before anything is written: a failure leaves no partial output
    if args.mesh:
        mesh = pipe.mesh(args.mesh_resolution, args.density_threshold)
        if len(mesh[1]) == 0:
            raise UserError(f"no surface at density {args.density_threshold}: lower --density-threshold "
                            "(or train longer)")
    if args.points:
        points = pipe.point_cloud(num_points=args.num_points, min_opacity=args.min_opacity)
        if len(points[0]) == 0:
            raise UserError(f"no pixel of the training views is {args.min_opacity} opaque: lower --min-opacity "
                            "(or train longer)")
    renders = pipe.render(cams, tuple(args.background) if args.background else None)
    from models.generation_3d.nerf.training import depth_to_image
    from utils.outputs import ImageOutput
    from utils.visualization.video import write_video

    frames = [Image.fromarray((f.numpy() * 255 + 0.5).astype(np.uint8)) for f in renders["rgb"]]
    folder = Path(args.out) if args.out else Path("outputs") / "generate_3d" / f"nerf-{pipe.preset}"
    write_video(frames, folder / "camera_path.mp4", args.fps)
    ImageOutput(frames).save(folder / "renders")
    for i in range(len(cams)):
        with atomic_path(folder / "depth" / f"{i:04d}.png") as tmp:
            Image.fromarray(depth_to_image(renders["depth"][i], renders["opacity"][i])).save(tmp)
    extra = ""
    if mesh is not None:
        from utils.visualization.mesh import write_mesh

        write_mesh(args.mesh, *mesh)
        extra += f", mesh {args.mesh} ({len(mesh[0])} vertices, {len(mesh[1])} faces)"
    if points is not None:
        from utils.visualization.ply import write_point_cloud_ply

        write_point_cloud_ply(args.points, *points)
        extra += f", point cloud {args.points} ({len(points[0])} points)"
    print(f"{len(frames)} views of nerf/{pipe.preset} -> {folder}/camera_path.mp4, renders/, depth/{extra}")
    return 0


# -- voxel_vae_gan -------------------------------------------------------------------------------------

def add_voxel_vae_gan_args(p) -> None:
    p.add_argument("--model_path", default=None, help="epoch folder of a train_3d.py run (checkpoints/epoch_N or "
                                                      "latest) or its model.safetensors")
    p.add_argument("--preset", default=None, help="'tiny' (or another preset) runs random weights without a file")
    p.add_argument("--images", nargs="+", default=None, help="the object's views (image files)")
    p.add_argument("--masks", nargs="+", default=None, help="their foreground masks, in the same order (optional)")
    p.add_argument("--poses", nargs="+", default=None, help="their CO3D pose .json files (models trained with pose)")
    p.add_argument("--threshold", type=float, default=0.5, help="occupancy threshold")
    p.add_argument("--combine_type", choices=("mean", "max"), default=None, help="view fusion (default: as trained)")
    p.add_argument("--seed", type=int, default=None, help="draw z from N(mu, sigma) with this seed (default: z = mu)")
    p.add_argument("--size", type=int, default=256, help="render width and height in pixels")
    p.add_argument("--out", default=None, help="output folder (default outputs/generate_3d/voxel_vae_gan)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_voxel_vae_gan(args) -> int:
    from models import load

    if args.images is None:
        raise UserError("give the object's views: --images a.jpg b.jpg (and --poses a.json b.json for a pose model)")
    if args.model_path is None and args.preset is None:
        raise UserError("give --model_path <run>/checkpoints/latest (a trained model), or --preset tiny for random "
                        "weights")
    if args.size < 8:
        raise UserError("--size must be at least 8")
    if args.model_path is not None:
        from models.generation_3d.voxel_vae_gan.pipeline import VoxelVAEGANPipeline

        pipe = VoxelVAEGANPipeline.from_pretrained(args.model_path, device=args.device)
    else:
        pipe = load("3d", "voxel_vae_gan", preset=args.preset, device=args.device)
    out = pipe(images=args.images, poses=args.poses, masks=args.masks, threshold=args.threshold, seed=args.seed,
               combine_type=args.combine_type, render_size=args.size)
    folder = Path(args.out) if args.out else Path("outputs") / "generate_3d" / "voxel_vae_gan"
    written = [p for suffix in (".binvox", ".npy", ".obj", ".ply") if suffix in out.writers
               for p in out.save(folder / f"shape{suffix}")]
    from utils.outputs import ImageOutput

    written += ImageOutput(out.renders).save(folder / "renders")
    occupied = int((out.voxels > args.threshold).sum())
    if occupied == 0:
        print(f"warning: the prediction is empty at --threshold {args.threshold} (highest occupancy "
              f"{float(out.voxels.max()):.3f}): try a lower threshold, e.g. --threshold 0.1", file=sys.stderr)
    print(f"{occupied} occupied voxels of {out.voxels.size} from {len(args.images)} view(s) -> {folder}/ "
          f"({', '.join(sorted({p.name for p in written if p.parent == folder}))}, renders/)")
    return 0

def _check_inputs(image: str | None, outputs: tuple[tuple[str, str | None], ...] = ()) -> None:
    """Before any weights load: the --image decodes, and the extra output files (--turntable, --mesh) can be
    written (--out itself is checked by the parser)."""
    from utils.io import check_output_path

    if image is not None:
        from utils.data.image_folder import image_problem

        if not Path(image).is_file():
            raise UserError(f"--image {image} not found: give the path of a .png or .jpg picture of the object")
        why = image_problem(image)
        if why is not None:
            raise UserError(f"--image {image} is not a readable image ({why}): give a .png or .jpg picture")
    for flag, path in outputs:
        if path:
            check_output_path(path, "file", flag=flag)


# -- shap_e (text/image to 3D) ----------------------------------------------------------------------

SHAP_E_SUFFIXES = (".glb", ".obj", ".ply", ".npz", ".gif", ".mp4", ".png")


def add_shap_e_args(p) -> None:
    p.add_argument("--prompt", default=None, help="what to make, e.g. \"a red chair\" (text presets)")
    p.add_argument("--image", default=None, help="a picture of the object (image300M / tiny-image presets)")
    p.add_argument("--preset", default=None, help="text300M (default; image300M when --image is given), image300M, "
                                                  "tiny, tiny-image (random weights, offline)")
    p.add_argument("--source", default=None, help="a diffusers Shap-E folder or hub id (default: the preset's)")
    p.add_argument("--out", default="outputs/generate_3d/shap_e.glb",
                   help=f"output file ({', '.join(SHAP_E_SUFFIXES)}) or a folder (every format)")
    p.add_argument("--turntable", default=None, help="also write a turntable of the renders (.gif or .mp4)")
    p.add_argument("--steps", type=int, default=None, help="diffusion steps (default 64)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 15, image 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of object 0 (object i uses seed + i)")
    p.add_argument("--batch", type=int, default=1, help="objects to make (side by side in one mesh file)")
    p.add_argument("--frame-size", type=int, default=None, help="render side in pixels (default 64)")
    p.add_argument("--views", type=int, default=None, help="turntable views (default 20)")
    p.add_argument("--mesh-resolution", type=int, default=None, help="marching-cubes grid side (default 128)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_shap_e(args) -> int:
    from models import load

    out = Path(args.out)
    for target in (out, Path(args.turntable) if args.turntable else None):
        if target is not None and target.suffix and target.suffix.lower() not in SHAP_E_SUFFIXES:
            raise UserError(f"cannot write '{target.suffix}' with shap_e: use one of {', '.join(SHAP_E_SUFFIXES)} "
                            "or a folder")
    if args.turntable and Path(args.turntable).suffix.lower() not in (".gif", ".mp4"):
        raise UserError("--turntable takes a .gif or .mp4 path")
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("the prompt is empty: describe the object, e.g. --prompt \"a red chair\"")
    if args.prompt is None and args.image is None:
        raise UserError("give --prompt \"a red chair\" or --image photo.png")
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    preset = args.preset or ("image300M" if args.image is not None else "text300M")
    from models.generation_3d.shap_e.config import PRESETS as SHAP_E_PRESETS

    cond = SHAP_E_PRESETS[preset].prior.cond if preset in SHAP_E_PRESETS else None
    if cond == "text" and args.image is not None:  # refused before anything loads
        raise UserError(f"shap_e preset '{preset}' is text-conditioned: give a prompt, or use the image300M preset "
                        "for --image")
    if cond == "image" and args.image is None:
        raise UserError(f"shap_e preset '{preset}' is image-conditioned: give an image, or use the text300M preset "
                        "for a prompt")
    _check_inputs(args.image, (("--turntable", args.turntable),))
    if args.source is not None:
        from models.generation_3d.shap_e.pipeline import ShapEPipeline

        pipe = ShapEPipeline.from_pretrained(args.source, preset=preset, device=args.device)
    else:
        pipe = load("3d", "shap_e", preset=preset, device=args.device)
    image = None
    if args.image is not None:
        image = pipe.preprocess_image(args.image) if pipe.cond == "image" else args.image
    result = pipe(prompt=args.prompt, image=image, num_images=args.batch, steps=args.steps,
                  guidance_scale=args.guidance, seed=args.seed, frame_size=args.frame_size, n_views=args.views,
                  mesh_resolution=args.mesh_resolution, progress=True)
    written = result.save(out)
    if args.turntable:
        written += result.save(Path(args.turntable))
    print(f"{args.batch} object(s), {len(result.points) if result.points is not None else 0} mesh vertices -> "
          f"{', '.join(str(p) for p in written[:4])}{' ...' if len(written) > 4 else ''}")
    return 0


# -- aetherist (a 3D-aware GAN of the gan modality: orbit videos and meshes of one latent) -------------

def add_aetherist_args(p) -> None:
    p.add_argument("--weights", default=None, help="checkpoint: EG3D .pkl, native .safetensors (default: the preset's)")
    p.add_argument("--preset", default=None, help="'tiny' runs random weights; eg3d-ffhq-512 ... load NVlabs' networks")
    p.add_argument("--seed", type=int, default=0, help="the latent's seed")
    p.add_argument("--out", default=None, help="output folder (default outputs/generate_3d/aetherist-<preset>)")
    p.add_argument("--turntable", action="store_true", help="write an orbit video turntable.mp4")
    p.add_argument("--frames", type=int, default=36, help="turntable views")
    p.add_argument("--elevation", type=float, default=0.0, help="turntable camera elevation, degrees")
    p.add_argument("--radius", type=float, default=None, help="camera distance (default: the preset's)")
    p.add_argument("--fps", type=float, default=12.0, help="turntable frame rate")
    p.add_argument("--mesh", action="store_true", help="write a marching-cubes mesh of the density field mesh.ply")
    p.add_argument("--mesh-format", default=".ply", choices=[".ply", ".obj"], help="mesh file format")
    p.add_argument("--mesh-resolution", type=int, default=64, help="grid points per side of the marching cubes")
    p.add_argument("--level", type=float, default=None, help="density of the surface (default: mid-range)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_aetherist(args) -> int:
    from models import load

    if args.frames < 1 or args.mesh_resolution < 2:
        raise UserError("--frames must be at least 1 and --mesh-resolution at least 2")
    preset = args.preset
    out = Path(args.out or f"outputs/generate_3d/aetherist-{preset or 'default'}")
    pipe = load("gan", "aetherist", weights=args.weights, preset=preset, device=args.device)
    written = []
    if args.turntable:
        video = pipe.turntable(seed=args.seed, num_frames=args.frames, elevation=args.elevation, radius=args.radius,
                               fps=args.fps)
        out.mkdir(parents=True, exist_ok=True)
        written += video.save(out / "turntable.mp4")
    if args.mesh:
        out.mkdir(parents=True, exist_ok=True)
        written += pipe.mesh(seed=args.seed, resolution=args.mesh_resolution, level=args.level).save(
            out / f"mesh{args.mesh_format}")
    if not written:
        out.mkdir(parents=True, exist_ok=True)
        written += pipe(num_images=1, seed=args.seed, radius=args.radius, elevation=args.elevation).save(
            out / "front.png")
    print(f"aetherist seed {args.seed} -> {', '.join(str(p) for p in written)}")
    return 0


# -- point_e (text/image to point clouds) ----------------------------------------------------------

POINT_E_SUFFIXES = (".ply", ".npz", ".obj", ".glb")


def add_point_e_args(p) -> None:
    p.add_argument("--prompt", default=None, help="what to make (base40M-textvec, tiny)")
    p.add_argument("--image", default=None, help="a picture of the object (base40M, base300M, base1B, tiny-image)")
    p.add_argument("--preset", default=None, help="base40M-textvec (default; base40M with --image), base40M, "
                                                  "base300M, base1B, tiny, tiny-image (random weights, offline)")
    p.add_argument("--source", default=None, help="a folder with the release's .pt files (default: download them)")
    p.add_argument("--out", default="outputs/generate_3d/point_e.ply",
                   help="point cloud file (.ply or .npz) or a folder (every format)")
    p.add_argument("--mesh", default=None, help="also write a mesh through the SDF model (.ply, .obj or .glb)")
    p.add_argument("--mesh-resolution", type=int, default=None, help="marching-cubes grid side (default 128)")
    p.add_argument("--steps", type=int, default=None, help="Karras steps of the base model (default 64)")
    p.add_argument("--upsample-steps", type=int, default=None, help="Karras steps of the upsampler (default 64)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of object 0 (object i uses seed + i)")
    p.add_argument("--batch", type=int, default=1, help="clouds to make (side by side in one file)")
    p.add_argument("--no-upsample", action="store_true", help="stop at the base model's 1024 points")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_point_e(args) -> int:
    from models import load

    out, mesh = Path(args.out), Path(args.mesh) if args.mesh else None
    if out.suffix and out.suffix.lower() not in (".ply", ".npz"):
        raise UserError(f"cannot write a point cloud as '{out.suffix}': use .ply, .npz or a folder (meshes: --mesh)")
    if mesh is not None and mesh.suffix.lower() not in (".ply", ".obj", ".glb"):
        raise UserError(f"cannot write a mesh as '{mesh.suffix or mesh.name}': use --mesh x.ply, x.obj or x.glb")
    if args.prompt is not None and not args.prompt.strip():
        raise UserError("the prompt is empty: describe the object, e.g. --prompt \"a red motorcycle\"")
    if args.prompt is None and args.image is None:
        raise UserError("give --prompt \"a red motorcycle\" or --image photo.png")
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    preset = args.preset or ("base40M" if args.image is not None else "base40M-textvec")
    _check_inputs(args.image, (("--mesh", args.mesh),))
    if args.source is not None:
        from models.generation_3d.point_e.pipeline import PointEPipeline

        pipe = PointEPipeline.from_pretrained(args.source, preset=preset, device=args.device)
    else:
        pipe = load("3d", "point_e", preset=preset, device=args.device)
    result = pipe(prompt=args.prompt, image=args.image, num_images=args.batch, steps=args.steps,
                  upsample_steps=args.upsample_steps, guidance_scale=args.guidance, seed=args.seed,
                  mesh=mesh is not None, mesh_resolution=args.mesh_resolution, upsample=not args.no_upsample,
                  progress=True)
    written = result.save(out) if out.suffix else [p for s in (".ply", ".npz") for p in result.save(out / f"cloud{s}")]
    if mesh is not None:
        if mesh.suffix.lower() == ".ply":  # the cloud owns .ply: write the mesh through its own writer
            from models.generation_3d.point_e.pipeline import mesh_ply_writer

            mesh_ply_writer(result)(mesh)
            written.append(mesh)
        else:
            written += result.save(mesh)
    print(f"{args.batch} cloud(s) of {len(result.points) // args.batch} points -> {', '.join(map(str, written))}")
    return 0


# -- get3d (a GAN of textured meshes) -------------------------------------------------------------------

GET3D_SUFFIXES = (".glb", ".obj")


def add_get3d_args(p) -> None:
    p.add_argument("--preset", default=None, help="shapenet-car (default), shapenet-chair, shapenet-motorbike, "
                                                  "shapenet-table (nv-tlabs' checkpoints, CC BY-NC-SA 4.0) or tiny "
                                                  "(random weights, offline)")
    p.add_argument("--weights", default=None, help="an official .pt, a network-snapshot .pkl, a native "
                                                   ".safetensors or a train_3d.py --model get3d run folder "
                                                   "(default: the preset's download)")
    p.add_argument("--tets", default=None, help="one of GET3D's tetrahedral grids (data/tets/<res>_tets.npz); "
                                                "default: a regular grid of the model's resolution")
    p.add_argument("--seed", type=int, default=0, help="the shape's seed (geometry and texture latents)")
    p.add_argument("--out", default="outputs/generate_3d/get3d.glb",
                   help="textured mesh: .glb (texture embedded) or .obj (+ .mtl + .png beside it), or a folder "
                        "(both, and the renders)")
    p.add_argument("--turntable", default=None, help="also write a turntable video (.mp4, .gif or .webm)")
    p.add_argument("--frames", type=int, default=None, help="turntable views (default 8; tiny 2)")
    p.add_argument("--size", type=int, default=None, help="render side in pixels (default 512; tiny 32)")
    p.add_argument("--texture-size", type=int, default=None, help="texture atlas side in pixels (default 1024)")
    p.add_argument("--elevation", type=float, default=None, help="turntable camera elevation above the horizon, "
                                                                 "degrees (default 20)")
    p.add_argument("--truncation", type=float, default=None, help="truncation psi of the latents (default 1)")
    p.add_argument("--fps", type=float, default=12.0, help="turntable frame rate")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")


def run_get3d(args) -> int:
    from models import load
    from utils.io import check_output_path

    out = Path(args.out)
    if out.suffix and out.suffix.lower() not in GET3D_SUFFIXES:
        raise UserError(f"cannot write a textured mesh as '{out.suffix}': use --out x.glb, x.obj or a folder "
                        "(videos: --turntable x.mp4)")
    if args.turntable and Path(args.turntable).suffix.lower() not in (".mp4", ".gif", ".webm"):
        raise UserError(f"--turntable {args.turntable}: the file must end in .mp4, .gif or .webm")
    for opt, value, low in (("--frames", args.frames, 1), ("--size", args.size, 8),
                            ("--texture-size", args.texture_size, 8)):
        if value is not None and value < low:
            raise UserError(f"{opt} must be at least {low}, got {value}")
    if args.elevation is not None and not -89 <= args.elevation <= 89:
        raise UserError(f"--elevation must be between -89 and 89 degrees, got {args.elevation}")
    if args.truncation is not None and not 0 <= args.truncation <= 2:
        raise UserError(f"--truncation must be between 0 and 2, got {args.truncation}")
    if args.weights is not None and not Path(args.weights).exists() and args.weights.count("/") != 1:
        raise UserError(f"--weights {args.weights} not found: give a GET3D .pt/.pkl/.safetensors file or a "
                        "train_3d.py --model get3d run folder")
    if args.tets is not None and not Path(args.tets).is_file():
        raise UserError(f"--tets {args.tets} not found: give one of GET3D's data/tets/*.npz files, or leave it out")
    check_output_path(out, "file" if out.suffix else "folder", flag="--out")
    if args.weights is not None or args.tets is not None:
        from models.generation_3d.get3d.pipeline import GET3DPipeline

        pipe = GET3DPipeline.from_pretrained(args.weights, preset=args.preset, device=args.device, tets=args.tets)
    else:
        pipe = load("3d", "get3d", preset=args.preset, device=args.device)
    result = pipe(seed=args.seed, n_views=args.frames, render_size=args.size, texture_size=args.texture_size,
                  elevation=args.elevation, truncation_psi=args.truncation, fps=args.fps)
    written = result.save(out)
    if out.suffix.lower() == ".obj":
        written += [out.with_suffix(".mtl"), out.with_suffix(".png")]
    if args.turntable:
        written += result.save(Path(args.turntable))
    print(f"get3d/{pipe.preset} seed {args.seed}: {len(result.points)} vertices -> "
          f"{', '.join(str(p) for p in written[:5])}{' ...' if len(written) > 5 else ''}")
    return 0


# -- dispatch ------------------------------------------------------------------------------------------

# registry name -> (adds the model's options, runs it). A new 3D model adds its two functions and one entry.
RUNNERS = {
    "gaussian_splatting": (add_gaussian_splatting_args, run_gaussian_splatting),
    "nerf": (add_nerf_args, run_nerf),
    "voxel_vae_gan": (add_voxel_vae_gan_args, run_voxel_vae_gan),
    "aetherist": (add_aetherist_args, run_aetherist),
    "shap_e": (add_shap_e_args, run_shap_e),
    "point_e": (add_point_e_args, run_point_e),
    "get3d": (add_get3d_args, run_get3d),
}


OTHER_MODALITY = {"aetherist": "gan"}
"""Runners of models registered under another modality than '3d'."""


def build_parser(model: str | None = "gaussian_splatting") -> ArgumentParser:
    p = ArgumentParser(prog="generate_3d.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gaussian_splatting", help=f"3d model: {', '.join(RUNNERS)}")
    if model in RUNNERS:
        RUNNERS[model][0](p.add_argument_group(f"{model} options"))
    return p.add_limits("3d")


@cli_errors("generate_3d.py")
def main(argv: list[str] | None = None) -> int:
    from models.registry import get_spec

    argv = sys.argv[1:] if argv is None else list(argv)
    peek = ArgumentParser(prog="generate_3d.py", add_help=False)
    peek.add_argument("--model", default="gaussian_splatting")
    name = peek.parse_known_args(argv)[0].model
    model = get_spec(OTHER_MODALITY.get(name, "3d"), name).name
    if model not in RUNNERS:
        raise UserError(f"generate_3d.py cannot run '{model}' yet: it runs {', '.join(RUNNERS)}")
    args = build_parser(model).parse_args(argv)
    args.model = model
    if getattr(args, "preset", None) is not None:  # every model's preset checked before its runner does any work
        get_spec(OTHER_MODALITY.get(model, "3d"), model).check_preset(args.preset)
    return RUNNERS[model][1](args)


if __name__ == "__main__":
    sys.exit(main())
