"""CLIP score of a folder of images against their prompts (utils/metrics/clip_score.py says exactly what).

    python evaluate/clip_score.py DIR                                # prompts from x.txt sidecars or metadata.jsonl
    python evaluate/clip_score.py DIR --prompt "a red fox in snow"   # one prompt for every image
    python evaluate/clip_score.py DIR --model ViT-L-14 --pretrained openai --per-image scores.csv
    python evaluate/clip_score.py DIR --model ./my_open_clip_folder  # open_clip_config.json + weights

Images are found recursively. A prompt comes from `--prompt`, else from a `metadata.jsonl` (one
JSON object per line with `file_name` and `text`, `caption` or `prompt`, the Hugging Face
imagefolder convention), else from a same-named `.txt` next to the image (`cat.png` + `cat.txt`).
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="clip_score", description="CLIP score (100 * max(cos, 0), averaged over the images) of a folder of "
        "images against their prompts, with open_clip.", epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="a folder of images (searched recursively)")
    p.add_argument("--prompt", default=None, help="one prompt for every image (default: each image's own, from "
                                                  "metadata.jsonl or a .txt sidecar)")
    p.add_argument("--model", default="ViT-B-32",
                   help="an open_clip model name, or a folder in open_clip's hub layout (default: ViT-B-32)")
    p.add_argument("--pretrained", default=None,
                   help="an open_clip pretrained tag or a checkpoint file, for a model name (default: openai); "
                        "a model folder brings its own weights")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64, help="image-text pairs per forward pass (default: 64)")
    p.add_argument("--per-image", metavar="OUT.csv", default=None,
                   help="also write file,prompt,score for every image to this CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli_errors("clip_score")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("clip_score"):
        import csv

        import torch
        from tqdm.auto import tqdm

        from utils.data.image_folder import ImageFolderDataset, load_rgb
        from utils.io import atomic_path
        from utils.metrics.clip_score import CLIPScorer

        if args.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.per_image is not None and not args.per_image.endswith(".csv"):
            raise UserError(f"--per-image needs a .csv file name, got '{args.per_image}'")
        if args.prompt is not None and not args.prompt.strip():
            raise UserError("--prompt is empty: give the text the images were made from")
        model_folder = os.path.isdir(os.path.expanduser(args.model.removeprefix("local-dir:")))
        if model_folder and args.pretrained is not None:
            raise UserError(f"--model {args.model} is a folder and brings its own weights: drop --pretrained")
        images = ImageFolderDataset(args.folder, captions=args.prompt is None)
        prompts = [args.prompt] * len(images) if args.prompt is not None else list(images.captions)
        missing = [p for p, text in zip(images.paths, prompts) if not (text or "").strip()]
        if missing:
            raise UserError(f"{len(missing)} of {len(images)} images have no prompt (first: {missing[0]}): add "
                            f"{missing[0].with_suffix('.txt').name} next to it, list it in a metadata.jsonl, or "
                            "pass --prompt")
        scorer = CLIPScorer(args.model, None if model_folder else (args.pretrained or "openai"), args.device,
                            args.batch_size)
        chunks = []
        for i in tqdm(range(0, len(images), args.batch_size), desc="CLIP score", disable=args.quiet, leave=False):
            batch = images.paths[i:i + args.batch_size]  # read as scored: memory stays at one batch of images
            chunks.append(scorer.scores([load_rgb(p) for p in batch], prompts[i:i + args.batch_size]))
        scores = torch.cat(chunks)
        if args.per_image is not None:
            with atomic_path(args.per_image) as tmp:
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    writer = csv.writer(f)
                    writer.writerow(["file", "prompt", "score"])
                    for path, text, score in zip(images.paths, prompts, scores.tolist()):
                        writer.writerow([path.relative_to(images.root).as_posix(), text, f"{score:.6f}"])
        weights = "its folder" if model_folder else (args.pretrained or "openai")
        print(f"CLIP score: {float(scores.mean()):.4f} ({len(scores)} images, {args.model} with {weights} weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
