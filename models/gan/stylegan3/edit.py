"""Find semantic directions in W and edit with them (models/gan/stylegan3/editing.py says how).

    python -m models.gan.stylegan3.edit ganspace --components 10 --out ffhq_pca.safetensors
    python -m models.gan.stylegan3.edit apply --directions ffhq_pca.safetensors --name pc1 \
        --strengths=-3,-1.5,0,1.5,3 --seed 7 --layers 0-6 --out pc1.png
    python -m models.gan.stylegan3.edit apply --directions smile.safetensors --name smile \
        --ws outputs/projection/projected_w.safetensors --strengths 0,2 --out smile.png
    python -m models.gan.stylegan3.edit interfacegan --latents w.safetensors --labels labels.txt --name smile \
        --out smile.safetensors
    python -m models.gan.stylegan3.edit mix --rows 85,100,75 --cols 55,821,1789 --styles 0-6 --out mix.png
    python -m models.gan.stylegan3.edit video --seeds 0,1,2 --frames-per-seed 60 --space w --out walk.mp4

`mix` draws NVlabs' style-mixing figure (column seeds on top, row seeds on the left, each cell the row's w with
the column's w in --styles); `video` walks through the seeds' latents (lerp in W, or slerp in Z with --space z)
into an .mp4, .webm or .gif. `interfacegan` fits a linear boundary to w codes (save_latents files: (N, w_dim) or (N, num_ws, w_dim)) and
0/1 labels (a text file with one label per line, a .npy, or the labels stored in the latents file), e.g. from
a classifier run on the images of those codes; in Python, `interfacegan_from_classifier` does it all.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got '{text}'") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m models.gan.stylegan3.edit", description="StyleGAN latent editing.",
                                epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def network(q: argparse.ArgumentParser) -> None:
        q.add_argument("--preset", default=None, help="stylegan3 preset (default: stylegan3-t-ffhq-1024)")
        q.add_argument("--weights", default=None, help="NVlabs .pkl, rosinality .pt or native .safetensors")
        q.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")

    g = sub.add_parser("ganspace", help="principal directions of W (GANSpace)")
    network(g)
    g.add_argument("--components", type=int, default=20, help="directions to keep (default: 20)")
    g.add_argument("--samples", type=int, default=10_000, help="w samples for the PCA (default: 10000)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", required=True, help="directions file (.safetensors)")

    f = sub.add_parser("interfacegan", help="a linear SVM boundary on labelled w codes (InterFaceGAN)")
    f.add_argument("--latents", required=True, help="w codes written by save_latents")
    f.add_argument("--labels", default=None, help="0/1 labels: .txt (one per line) or .npy; default: the file's")
    f.add_argument("--name", default="attribute", help="the direction's name")
    f.add_argument("--orthogonal-to", default=None, metavar="FILE:NAME",
                   help="remove another direction from this one (conditional manipulation)")
    f.add_argument("--out", required=True, help="directions file (.safetensors)")

    a = sub.add_parser("apply", help="images along a direction, one column per strength")
    network(a)
    a.add_argument("--directions", required=True, help="a directions file")
    a.add_argument("--name", default="0", help="direction name or index (default: the first)")
    a.add_argument("--strengths", type=_floats, default=[-3.0, 0.0, 3.0],
                   help="comma-separated; write --strengths=-3,0,3 when the first is negative (default: -3,0,3)")
    a.add_argument("--seed", type=int, default=0, help="the seed of the edited image (without --ws)")
    a.add_argument("--ws", default=None, help="edit these ws (e.g. projected_w.safetensors) instead of a seed")
    a.add_argument("--layers", default=None, help="styles to move, e.g. 0-6 (default: all)")
    a.add_argument("--truncation", type=float, default=1.0)
    a.add_argument("--out", required=True, help="output image (.png)")

    m = sub.add_parser("mix", help="the style-mixing grid of NVlabs' figure")
    network(m)
    m.add_argument("--rows", type=_ints, required=True, help="row seeds, e.g. 85,100,75")
    m.add_argument("--cols", type=_ints, required=True, help="column seeds, e.g. 55,821,1789")
    m.add_argument("--styles", default="0-6", help="styles taken from the column seeds (default: 0-6, coarse ones)")
    m.add_argument("--truncation", type=float, default=1.0)
    m.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    m.add_argument("--label", type=int, default=None, help="class of a class-conditional network")
    m.add_argument("--out", required=True, help="output image (.png)")

    v = sub.add_parser("video", help="an interpolation video through seeds (lerp in W or slerp in Z)")
    network(v)
    v.add_argument("--seeds", type=_ints, required=True, help="at least two seeds, e.g. 0,1,2")
    v.add_argument("--frames-per-seed", type=int, default=30, help="frames from one seed to the next (default: 30)")
    v.add_argument("--space", default="w", choices=["w", "z"], help="w: lerp in W (default); z: slerp in Z")
    v.add_argument("--no-loop", action="store_true", help="end at the last seed instead of returning to the first")
    v.add_argument("--fps", type=float, default=30.0)
    v.add_argument("--truncation", type=float, default=1.0)
    v.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
    v.add_argument("--out", required=True, help="output video (.mp4, .webm or .gif)")
    return p


def _load_labels(path: str | None, stored) -> "torch.Tensor":  # noqa: F821
    import numpy as np
    import torch

    if path is None:
        if stored is None:
            raise UserError("the latents file stores no labels: pass --labels")
        return stored
    p = Path(path)
    if not p.is_file():
        raise UserError(f"--labels file not found: {path}")
    if p.suffix == ".npy":
        return torch.as_tensor(np.load(p)).long()
    try:
        return torch.tensor([int(float(line)) for line in p.read_text().split() if line.strip()])
    except ValueError:
        raise UserError(f"{p.name}: expected one 0/1 label per line") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("edit"):
        import models
        from models.gan.latents import load_latents
        from models.gan.stylegan3.editing import Directions, apply_direction, ganspace, interfacegan

        if args.command == "interfacegan":
            ws, stored, _ = load_latents(args.latents)
            labels = _load_labels(args.labels, stored)
            others = None
            if args.orthogonal_to:
                file, _, name = args.orthogonal_to.rpartition(":")
                if not file:
                    raise UserError("--orthogonal-to takes FILE:NAME, e.g. ages.safetensors:age")
                others = Directions.load(file).vectors[Directions.load(file).index(name)]
            d = interfacegan(ws, labels, args.name, orthogonal_to=others)
            d.save(args.out)
            print(f"wrote {args.out}: '{args.name}' (training accuracy {d.info['train_accuracy']:.3f})")
            return 0
        pipe = models.load("gan", "stylegan3", weights=args.weights, preset=args.preset, device=args.device)
        if args.command == "mix":
            out = pipe.style_mixing(args.rows, args.cols, args.styles, args.truncation, args.noise_mode, args.label)
            written = out.save(args.out)
            print(f"wrote {written[0]}: rows {args.rows} x columns {args.cols}, styles {args.styles}")
            return 0
        if args.command == "video":
            from utils.visualization.video import VIDEO_FILE_SUFFIXES

            if Path(args.out).suffix.lower() not in VIDEO_FILE_SUFFIXES:
                raise UserError(f"--out {args.out}: a video is written as {', '.join(VIDEO_FILE_SUFFIXES)}")
            video = pipe.interpolation_video(args.seeds, args.frames_per_seed, args.space, args.truncation,
                                             loop=not args.no_loop, fps=args.fps, noise_mode=args.noise_mode)
            written = video.save(args.out)
            print(f"wrote {written[0]}: {len(video.frames[0])} frames through seeds {args.seeds} ({args.space} space)")
            return 0
        if args.command == "ganspace":
            d = ganspace(pipe, args.components, args.samples, args.seed)
            d.save(args.out)
            share = sum(d.info["explained_variance"])
            print(f"wrote {args.out}: {args.components} directions, {share:.1%} of the variance of w")
            return 0
        from models.gan.stylegan3.pipeline import parse_styles

        d = Directions.load(args.directions)
        name = int(args.name) if args.name.isdigit() else args.name
        if args.ws:
            ws = pipe.check_ws(load_latents(args.ws)[0])[:1]
        else:
            ws = pipe.map(pipe.seed_latents([args.seed]), None, args.truncation)
        layers = parse_styles(args.layers, pipe.num_ws) if args.layers else None
        import torch

        edited = torch.cat([apply_direction(ws, d, name, s, layers) for s in args.strengths])
        out = pipe(ws=edited)
        written = out.save(args.out, nrow=len(args.strengths))
        print(f"wrote {written[0]}: direction {args.name} at strengths {args.strengths}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
