"""LPIPS between two folders of same-named images (utils/metrics/lpips.py says exactly what).

    python evaluate/lpips_score.py DIR_A DIR_B                      # LPIPS-AlexNet, the lpips package default
    python evaluate/lpips_score.py DIR_A DIR_B --net vgg --per-image lpips.csv
    python evaluate/lpips_score.py DIR_A DIR_B --backbone-weights alexnet-owt-7be5be79.pth

Images pair up by their path relative to each folder, without the extension (`a/x.png` with
`b/x.jpg`); both images of a pair must have the same size. The ImageNet backbone comes from
`--backbone-weights`, else torchvision's cache ($TORCH_HOME/hub/checkpoints), else it is
downloaded (not with HF_HUB_OFFLINE=1); the calibrated heads ship with the `lpips` package.
"""
from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
from pathlib import Path
from typing import Sequence

from utils.cli import ArgumentParser
from utils.errors import UserError, WeightsError, cli_errors


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="lpips_score", description="LPIPS v0.1 distance between the same-named images of two folders "
        "(mean over the pairs; lower is more similar).", epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder_a", help="a folder of images (searched recursively)")
    p.add_argument("folder_b", help="a folder with an image of the same name for each image of folder_a")
    p.add_argument("--net", choices=("alex", "vgg"), default="alex",
                   help="backbone: alex (the lpips package default, for evaluation) or vgg (default: alex)")
    p.add_argument("--backbone-weights", metavar="PATH", default=None,
                   help="torchvision's ImageNet AlexNet / VGG16 checkpoint (default: the torch hub cache, else "
                        "downloaded)")
    p.add_argument("--heads", metavar="PATH", default=None,
                   help="the calibrated heads file, v0.1/{alex,vgg}.pth (default: the one shipped with lpips)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per forward pass (default: 16)")
    p.add_argument("--per-image", metavar="OUT.csv", default=None,
                   help="also write file,lpips for every pair to this CSV")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


@cli_errors("lpips_score")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with cli_errors("lpips_score"):
        import csv

        import numpy as np
        import torch
        from tqdm.auto import tqdm

        from utils.data.image_folder import find_images, load_rgb
        from utils.io import atomic_path
        from utils.metrics.lpips import LPIPS
        from utils.torch_utils import resolve_device

        if args.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
        if args.per_image is not None and not args.per_image.endswith(".csv"):
            raise UserError(f"--per-image needs a .csv file name, got '{args.per_image}'")
        sides = []
        for folder in (args.folder_a, args.folder_b):
            root = Path(os.path.expanduser(folder))
            if not root.is_dir():
                raise UserError(f"folder not found: {root}: check the path" if not root.exists() else
                                f"{root} is a file, not a folder: pass the folder that holds the images")
            by_name: dict[str, Path] = {}
            for path in find_images(root):
                key = path.relative_to(root).with_suffix("").as_posix()
                if key in by_name:
                    raise UserError(f"{by_name[key].name} and {path.name} in {path.parent} share a name: pairs are "
                                    "matched by name without the extension, so keep one of them")
                by_name[key] = path
            if not by_name:
                raise UserError(f"no images in {root}: check the folder")
            sides.append((root, by_name))
        (root_a, a), (root_b, b) = sides
        only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
        if only_a or only_b:
            first = f"{a[only_a[0]].relative_to(root_a)} has no counterpart in {root_b}" if only_a else \
                f"{b[only_b[0]].relative_to(root_b)} has no counterpart in {root_a}"
            raise UserError(f"the folders do not pair up: {len(only_a)} images only in {root_a}, {len(only_b)} only "
                            f"in {root_b} (e.g. {first}): give two folders with the same file names")
        names = sorted(a)
        device = resolve_device(args.device)
        try:
            model = LPIPS.from_pretrained(args.net, backbone_weights=args.backbone_weights,
                                          heads=args.heads if args.heads is not None else True, device=device)
        except WeightsError as err:  # name the command-line option, not the Python argument
            raise WeightsError(str(err).replace("backbone_weights=<path>", "--backbone-weights PATH")) from None

        def tensor(path: Path) -> torch.Tensor:  # (3, H, W) in [-1, 1]
            return torch.from_numpy(np.asarray(load_rgb(path), dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1

        distances: list[float] = []
        for i in tqdm(range(0, len(names), args.batch_size), desc="LPIPS", disable=args.quiet, leave=False):
            batch = names[i:i + args.batch_size]
            pairs = [(tensor(a[name]), tensor(b[name])) for name in batch]
            for name, (x, y) in zip(batch, pairs):
                if x.shape != y.shape:
                    raise UserError(f"{a[name]} is {x.shape[2]}x{x.shape[1]} but {b[name]} is {y.shape[2]}x"
                                    f"{y.shape[1]}: LPIPS compares images of the same size, resize one set first")
            out = [0.0] * len(batch)
            with torch.no_grad():
                for shape in dict.fromkeys(x.shape for x, _ in pairs):  # one forward pass per image size
                    idx = [k for k, (x, _) in enumerate(pairs) if x.shape == shape]
                    d = model(torch.stack([pairs[k][0] for k in idx]).to(device),
                              torch.stack([pairs[k][1] for k in idx]).to(device))
                    for k, v in zip(idx, d.cpu().tolist()):
                        out[k] = v
            distances += out
        if args.per_image is not None:
            with atomic_path(args.per_image) as tmp:
                with open(tmp, "w", newline="", encoding="utf-8") as f:
                    writer = csv.writer(f)
                    writer.writerow(["file", "lpips"])
                    for name, d in zip(names, distances):
                        writer.writerow([a[name].relative_to(root_a).as_posix(), f"{d:.6f}"])
        print(f"LPIPS ({args.net}): {float(np.mean(distances)):.4f} (mean over {len(distances)} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
