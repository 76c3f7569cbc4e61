"""GET3D speed: meshes per second of the generator, textured shapes per second of the pipeline, and rasterized
frames per second of the shared mesh rasterizer, ours (pure PyTorch) against nvdiffrast in the same run
where nvdiffrast and CUDA are there.

- generator: `generate_meshes` (mapping, triplanes, SDF/deformation at every grid vertex, DMTet) of a
  preset's architecture with random weights (the released ones are not needed for speed), batch 1;
- pipeline: one call (mesh, xatlas atlas, texture bake at --texture-size, --views renders);
- rasterizer: `rasterize` + `interpolate` of a DMTet sphere (grid --sphere-res) from --views cameras at
  --size; with nvdiffrast on CUDA both backends rasterize the same clip-space triangles, and the table
  gives their ratio and the largest difference of the interpolated positions on pixels both cover.

On CPU only our side runs: nvdiffrast has no CPU path, so there is no reference and no ratio.

    python -m benchmarks.get3d                                  # shapenet-car architecture, 256 px frames
    python -m benchmarks.get3d --preset tiny --size 128 --device cuda
    python -m benchmarks.get3d --toy                            # seconds (the tests)
"""
from __future__ import annotations

import time

import torch

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def _timed(fn, iters: int, device: torch.device) -> float:
    """Seconds per call (after one warm-up call)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def generator_rows(preset: str, tet_res: int | None, iters: int, device: torch.device, texture_size: int,
                   views: int, size: int) -> dict:
    from dataclasses import replace

    from models.generation_3d.get3d.model import GET3DGenerator
    from models.generation_3d.get3d.pipeline import GET3DPipeline, preset_config
    from utils.torch_utils import local_seed

    cfg = preset_config(preset)
    if tet_res is not None:
        cfg = replace(cfg, tet_res=tet_res)
    with local_seed(0):
        G = GET3DGenerator(cfg)
    pipe = GET3DPipeline(G, preset, device)
    seeds = iter(range(10_000))
    mesh_s = _timed(lambda: pipe.meshes(seed=next(seeds)), iters, device)
    call_s = _timed(lambda: pipe(seed=next(seeds), n_views=views, render_size=size, texture_size=texture_size),
                    iters, device)
    (v, f), = pipe.meshes(seed=0)[0]
    return {"preset": preset, "tet_res": cfg.tet_res, "grid_vertices": len(G.grid.verts),
            "mesh_faces": len(f), "meshes_per_s": 1 / mesh_s, "shapes_per_s": 1 / call_s}


def raster_rows(sphere_res: int, views: int, size: int, iters: int, device: torch.device) -> dict:
    from models.generation_3d.get3d.export import turntable_cameras
    from models.generation_3d.get3d.render import projection_matrix
    from utils.rendering.dmtet import marching_tetrahedra, regular_tet_grid
    from utils.rendering.mesh_raster import interpolate, nvdiffrast_available, rasterize

    g = regular_tet_grid(sphere_res, scale=1.0)
    v, f = marching_tetrahedra(g.verts, 0.35 - g.verts.norm(dim=-1), g.tets)
    v, f = v.to(device), f.to(device)
    mv = turntable_cameras(views, 20.0).to(device)
    homo = torch.cat([v, torch.ones_like(v[:, :1])], -1)
    clip = torch.einsum("nij,vj->nvi", mv, homo) @ projection_matrix().to(device).T

    def frame(backend):
        rast = rasterize(clip, f, (size, size), backend=backend)
        return rast, interpolate(v.unsqueeze(0), rast, f, backend=backend)

    ours_s = _timed(lambda: frame("torch"), iters, device)
    row = {"triangles": len(f), "views": views, "size": size, "ours_frames_per_s": views / ours_s,
           "nvdiffrast_frames_per_s": None, "ratio": None, "max_abs_diff": None}
    if device.type == "cuda" and nvdiffrast_available():
        ref_s = _timed(lambda: frame("nvdiffrast"), iters, device)
        (ra, pa), (rb, pb) = frame("torch"), frame("nvdiffrast")
        both = (ra[..., 3] > 0) & (rb[..., 3] > 0) & (ra[..., 3] == rb[..., 3])
        row.update(nvdiffrast_frames_per_s=views / ref_s, ratio=ref_s / ours_s,
                   max_abs_diff=float((pa - pb).abs()[both].max()) if both.any() else 0.0)
    return row


@cli_errors("benchmarks.get3d")
def main(argv: list[str] | None = None) -> dict:
    p = ArgumentParser(prog="python -m benchmarks.get3d", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="shapenet-car", help="architecture to time (random weights): tiny or a "
                                                            "released one")
    p.add_argument("--tet-res", type=int, default=None, help="tetrahedral grid resolution (default: the preset's)")
    p.add_argument("--size", type=int, default=256, help="rendered frame side in pixels")
    p.add_argument("--views", type=int, default=8, help="views per rasterizer call and per pipeline call")
    p.add_argument("--texture-size", type=int, default=512, help="texture atlas side of the pipeline call")
    p.add_argument("--sphere-res", type=int, default=64, help="grid resolution of the rasterized DMTet sphere")
    p.add_argument("--iters", type=int, default=3, help="timed calls per figure")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of torch (0: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--toy", action="store_true", help="tiny sizes: seconds, for the tests")
    args = p.parse_args(argv)
    from models.registry import get_spec
    from utils.torch_utils import resolve_device

    preset = get_spec("3d", "get3d").check_preset("tiny" if args.toy else args.preset)
    if args.toy:
        args.tet_res, args.size, args.views, args.texture_size, args.sphere_res, args.iters = None, 32, 2, 32, 12, 1
    if args.tet_res is not None and args.tet_res < 2:
        raise UserError(f"--tet-res must be at least 2, got {args.tet_res}")
    for name in ("size", "texture_size", "sphere_res"):
        if getattr(args, name) < 8:
            raise UserError(f"--{name.replace('_', '-')} must be at least 8, got {getattr(args, name)}")
    device = resolve_device(args.device)
    threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    try:
        gen = generator_rows(preset, args.tet_res, args.iters, device, args.texture_size, args.views, args.size)
        ras = raster_rows(args.sphere_res, args.views, args.size, args.iters, device)
    finally:
        torch.set_num_threads(threads)
    print(f"get3d/{gen['preset']} on {device.type} ({torch.get_num_threads() if args.threads <= 0 else args.threads} "
          f"thread(s)), grid {gen['tet_res']} ({gen['grid_vertices']} vertices), {gen['mesh_faces']} faces:")
    print(f"  meshes/s {gen['meshes_per_s']:10.3f}   textured shapes/s (atlas {args.texture_size} px, {args.views} "
          f"views of {args.size} px) {gen['shapes_per_s']:8.3f}")
    ref = "n/a (nvdiffrast needs CUDA)" if ras["nvdiffrast_frames_per_s"] is None else \
        f"{ras['nvdiffrast_frames_per_s']:10.2f}  ratio ours/nvdiffrast {ras['ratio']:.3f}, max |diff| " \
        f"{ras['max_abs_diff']:.2e}"
    print(f"rasterizer, {ras['triangles']} triangles, {ras['views']} views of {ras['size']} px: ours frames/s "
          f"{ras['ours_frames_per_s']:10.2f}   nvdiffrast {ref}")
    return {"generator": gen, "raster": ras, "device": device.type}


if __name__ == "__main__":
    main()
