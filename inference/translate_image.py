"""Translate images with an image-to-image GAN of the zoo (CycleGAN).

    python inference/translate_image.py --model cyclegan --weights latest_net_G_A.pth --input photos/ --out zebras/
    python inference/translate_image.py --model cyclegan --preset monet2photo --input paintings/ --out photos/
    python inference/translate_image.py --model cyclegan --preset tiny --input photo.jpg --out out/   # random weights

--preset names a released generator of junyanz/pytorch-CycleGAN-and-pix2pix (horse2zebra, zebra2horse,
monet2photo, style_monet, style_cezanne, style_ukiyoe, style_vangogh, summer2winter_yosemite,
winter2summer_yosemite, apple2orange, orange2apple, ...: fetched once into the torch hub cache) or an
architecture (resnet-9blocks, resnet-6blocks) for --weights. A folder is translated --batch-size
same-size images per forward.

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
    p.add_argument("--batch-size", type=int, default=8, help="same-size images per forward (batch mode)")
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
        spec.check_preset(args.preset)
        source = Path(args.input)
        if not source.exists():
            raise UserError(f"--input not found: {source}: pass an image file or a folder of images")
        out = Path(args.out)
        if out.suffix:
            raise UserError(f"--out must be a folder (got a file name {out.name}): each image keeps its own name")
        from utils.io import check_output_path

        check_output_path(out, "folder")
        pipe_cls = spec.pipeline_class()
        if args.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.weights is None and args.preset != "tiny" and spec.weights_for(args.preset or "") is None:
            raise UserError("pass --weights with a CycleGAN generator (e.g. latest_net_G_A.pth), a released "
                            "--preset (horse2zebra, monet2photo, style_vangogh, ...), or --preset tiny for random weights")
        inputs = pipe_cls.expand_inputs(str(source))
        from utils.data.image_folder import check_images

        check_images([Path(i) for i in inputs], "--input")  # every input decodes before any weights load
        t0 = time.perf_counter()
        pipe = pipe_cls.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype,
                                        direction=args.direction)
        from tqdm.auto import tqdm

        from utils.io import atomic_path

        names: set[str] = set()
        chunks = [inputs[i:i + args.batch_size] for i in range(0, len(inputs), args.batch_size)]
        for chunk in tqdm(chunks, desc="translating", disable=len(chunks) < 2):
            result = pipe(image=chunk, size=args.size, batch_size=args.batch_size)
            for item, image in zip(chunk, result.images):
                name = Path(item).stem
                if name in names:  # a.jpg and a.png in one folder
                    name = f"{name}_{Path(item).suffix.lstrip('.')}"
                names.add(name)
                with atomic_path(out / f"{name}.png") as tmp:
                    image.save(tmp, format="PNG")
        print(f"translated {len(inputs)} image(s) into {out} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
