"""Translate images with an image-to-image GAN of the zoo (CycleGAN).

    python inference/translate_image.py --model cyclegan --weights latest_net_G_A.pth --input photos/ --out zebras/
    python inference/translate_image.py --model cyclegan --preset tiny --input photo.jpg --out out/   # random weights

Each input image is written to --out under its own name as .png (atomically). A folder input is
read in sorted order; --direction BtoA runs G_B of a checkpoint that holds both generators.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

TRANSLATORS = ("cyclegan",)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="translate_image.py", description="Translate a folder of images with CycleGAN.")
    p.add_argument("--model", default="cyclegan", help=f"one of: {', '.join(TRANSLATORS)}")
    p.add_argument("--weights", default=None,
                   help="generator checkpoint: latest_net_G_A.pth of the original release, or a generator.safetensors "
                        "written by train/train_gan.py")
    p.add_argument("--preset", default=None, help="model preset; 'tiny' runs with random weights")
    p.add_argument("--input", required=True, help="an image file or a folder of images")
    p.add_argument("--out", default="outputs/translated", help="output folder (default: outputs/translated)")
    p.add_argument("--direction", default="AtoB", choices=["AtoB", "BtoA"],
                   help="AtoB (G_A) or BtoA (G_B, for checkpoints holding both generators)")
    p.add_argument("--size", type=int, default=None,
                   help="resize inputs to this square side (a multiple of 4); default: own size rounded to 4")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="fp32, fp16 or bf16")
    return p


def main(argv: list[str] | None = None) -> None:
    with cli_errors("translate_image.py"):
        args = build_parser().parse_args(argv)
        from models.registry import find_spec

        spec = find_spec(args.model, ("gan",))
        if spec.name not in TRANSLATORS:
            raise UserError(f"{spec.name} does not translate images: use one of {', '.join(TRANSLATORS)} "
                            "(inference/generate_image.py generates from noise)")
        source = Path(args.input)
        if not source.exists():
            raise UserError(f"--input not found: {source}: pass an image file or a folder of images")
        out = Path(args.out)
        if out.suffix:
            raise UserError(f"--out must be a folder (got a file name {out.name}): each image keeps its own name")
        pipe_cls = spec.pipeline_class()
        if args.weights is None and args.preset != "tiny":
            raise UserError("pass --weights with a CycleGAN generator (e.g. latest_net_G_A.pth), "
                            "or --preset tiny for random weights")
        t0 = time.perf_counter()
        pipe = pipe_cls.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                        direction=args.direction)
        inputs = pipe.expand_inputs(str(source))
        from tqdm.auto import tqdm

        from utils.io import atomic_path

        names: set[str] = set()
        for item in tqdm(inputs, desc="translating", disable=len(inputs) < 2):
            result = pipe(image=item, size=args.size)
            name = Path(item).stem
            if name in names:  # a.jpg and a.png in one folder
                name = f"{name}_{Path(item).suffix.lstrip('.')}"
            names.add(name)
            with atomic_path(out / f"{name}.png") as tmp:
                result.images[0].save(tmp, format="PNG")
        print(f"translated {len(inputs)} image(s) into {out} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
