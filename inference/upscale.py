"""Upscale images with a super-resolution GAN of the zoo (Real-ESRGAN, ESRGAN, SRGAN).

    python inference/upscale.py --model esrgan --preset realesrgan-x4plus --image in.png --out out.png
    python inference/upscale.py --model esrgan --weights RRDB_ESRGAN_x4.pth --image photos/ --out big/ --tile 256
    python inference/upscale.py --model srgan --weights runs/srgan/generator.safetensors --image in.png --out out.png
    python inference/upscale.py --model esrgan --preset tiny --image in.png --out out.png   # random weights

--image is a file or a folder; --out is a file for one image, a folder for a folder (each image keeps its
name, as .png). --tile cuts large images into tiles of that side (--tile-pad pixels of context each), so a
photo of any size fits in memory; --outscale resizes the result (e.g. 2 with an x4 model).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors

UPSCALERS = ("esrgan", "srgan")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="upscale.py", description="Upscale images with a super-resolution GAN.")
    p.add_argument("--model", default="esrgan", help=f"one of: {', '.join(UPSCALERS)}")
    p.add_argument("--preset", default=None,
                   help="esrgan: realesrgan-x4plus (default), realesrgan-x4plus-anime-6b, realesrgan-x2plus, esrgan; "
                        "srgan: srgan; 'tiny' runs with random weights")
    p.add_argument("--weights", default=None, help="a checkpoint file (any RRDBNet layout, or train_gan's "
                                                   "generator.safetensors); default: the preset's release")
    p.add_argument("--image", required=True, help="an image file or a folder of images")
    p.add_argument("--out", required=True, help="output file (one image) or folder")
    p.add_argument("--tile", type=int, default=None, help="tile side in input pixels (0: whole image)")
    p.add_argument("--tile-pad", type=int, default=None, help="context pixels around each tile (default 10)")
    p.add_argument("--outscale", type=float, default=None, help="final scale of the result (default: the model's)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda when available)")
    p.add_argument("--dtype", default=None, help="fp32, fp16 or bf16")
    return p


def main(argv: list[str] | None = None) -> None:
    with cli_errors("upscale.py"):
        args = build_parser().parse_args(argv)
        from models.registry import find_spec
        from utils.io import atomic_path, check_output_path

        spec = find_spec(args.model, ("gan",))
        if spec.name not in UPSCALERS:
            raise UserError(f"{spec.name} does not upscale images: use one of {', '.join(UPSCALERS)}")
        spec.check_preset(args.preset)
        for flag, value in (("--tile", args.tile), ("--tile-pad", args.tile_pad)):
            if value is not None and value < 0:
                raise UserError(f"{flag} must be 0 or more, got {value}")
        if args.outscale is not None and not 0 < args.outscale <= 16:
            raise UserError(f"--outscale must be in (0, 16], got {args.outscale}")
        source, out = Path(args.image), Path(args.out)
        if not source.exists():
            raise UserError(f"--image not found: {source}: pass an image file or a folder of images")
        pipe_cls = spec.pipeline_class()
        inputs = pipe_cls.expand_inputs(str(source))
        from utils.data.image_folder import check_images

        check_images([Path(i) for i in inputs], "--image")  # every input decodes before any weights load
        folder = source.is_dir()
        if folder and out.suffix:
            raise UserError(f"--image is a folder, so --out must be a folder (got the file name {out.name})")
        if not folder and out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
            raise UserError(f"--out {out} should end in .png, .jpg or .webp for one --image")
        check_output_path(out, "folder" if folder else "file")
        t0 = time.perf_counter()
        pipe = pipe_cls.from_pretrained(args.weights, preset=args.preset, device=args.device, dtype=args.dtype)
        from tqdm.auto import tqdm

        names: set[str] = set()
        pixels = 0
        for item in tqdm(inputs, desc="upscaling", disable=len(inputs) < 2):
            result = pipe(image=item, tile=args.tile, tile_pad=args.tile_pad, outscale=args.outscale)
            image = result.images[0]
            pixels += image.width * image.height
            if folder:
                name = Path(item).stem
                if name in names:  # a.jpg and a.png in one folder
                    name = f"{name}_{Path(item).suffix.lstrip('.')}"
                names.add(name)
                target = out / f"{name}.png"
            else:
                target = out
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                image.save(tmp, format=(target.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG"))
        seconds = time.perf_counter() - t0
        print(f"upscaled {len(inputs)} image(s) x{args.outscale or pipe.scale} into {out} in {seconds:.1f}s "
              f"({pixels / 1e6 / max(seconds, 1e-9):.2f} output megapixels/s)")


if __name__ == "__main__":
    main()
