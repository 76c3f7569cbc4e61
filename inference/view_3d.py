"""View a Gaussian-splat scene interactively in a browser (viser), rendered by this repo's rasterizer.

    python inference/view_3d.py outputs/gaussian_splatting/lego/point_cloud.ply
    python inference/view_3d.py scene.ply --port 8081 --max-side 800 --device cuda

Serves on http://127.0.0.1:PORT only (this machine); to look from another one, forward the port:
`ssh -L 8080:127.0.0.1:8080 HOST`. Takes a 3DGS .ply, an original 3DGS chkpnt*.pth, a gsplat
ckpt_*.pt or a checkpoint of train_3d.py. Ctrl-C stops it. To watch a training run instead, pass
`--viewer` to train/train_3d.py.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="view_3d.py", description=__doc__.split("\n\n")[0])
    p.add_argument("ply", help="splat file: 3DGS .ply or a checkpoint (.pt/.pth)")
    p.add_argument("--port", type=int, default=8080, help="port on 127.0.0.1 (default 8080)")
    p.add_argument("--max-side", type=int, default=512, help="longest side of the rendered image in pixels")
    p.add_argument("--background", type=float, nargs=3, default=(1.0, 1.0, 1.0), help="RGB behind the splats")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads of the rasterizer (0: torch's default)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    return p


def main(argv: list[str] | None = None, ready=None) -> int:
    """`ready(viewer)` is called once the server listens (tests use it to talk to the viewer)."""
    args = build_parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        raise UserError(f"--port must be 1..65535, got {args.port}")
    if args.max_side < 8:
        raise UserError(f"--max-side must be at least 8 pixels, got {args.max_side}")
    if not Path(args.ply).is_file():
        raise UserError(f"splat file '{args.ply}' not found: pass a 3DGS .ply or a checkpoint")

    import torch

    from models.generation_3d.gaussian_splatting.pipeline import GaussianSplattingPipeline
    from models.generation_3d.gaussian_splatting.viewer import SplatViewer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    pipe = GaussianSplattingPipeline.from_pretrained(args.ply, device=args.device)
    try:
        viewer = SplatViewer(pipe.model, port=args.port, max_side=args.max_side, background=tuple(args.background))
    except OSError as err:
        raise UserError(f"cannot serve on 127.0.0.1:{args.port} ({err.strerror or err}): pass another --port") from None
    print(f"viewing {args.ply} ({len(pipe.model):,} Gaussians) at {viewer.url}  (Ctrl-C stops)", flush=True)
    if ready is not None:
        ready(viewer)
    t0 = time.monotonic()
    try:
        while args.seconds is None or time.monotonic() - t0 < args.seconds:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
    return 0


if __name__ == "__main__":
    with cli_errors("view_3d.py"):
        sys.exit(main())
