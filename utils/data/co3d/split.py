"""Split a CO3D-layout category into train / val / test folders, by sequence.

    python -m utils.data.co3d.split --input_dir data/chair --output_dir data/splits [--ratios 0.8 0.1 0.1] [--seed 0]

Writes <output_dir>/{train,val,test}/<category>/ with each sequence's two folders linked (or copied
with --copy), and <output_dir>/splits.json naming the sequences of each split. The seed's
`--input_dir <root>/train/chair` and `--test_dir <root>/test/chair` then point at them; training
finds <root>/val/chair by itself.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from utils.data.co3d.layout import INSTANCE, PROCESSED, list_sequences
from utils.errors import UserError
from utils.io import atomic_path

__all__ = ["split_sequences", "split_category", "SPLIT_NAMES"]

SPLIT_NAMES = ("train", "val", "test")


def split_sequences(names: list[str], ratios=(0.8, 0.1, 0.1), seed: int = 0) -> dict[str, list[str]]:
    """Names shuffled with `seed` and cut by `ratios` (each non-empty split gets at least one when it can)."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or r.sum() <= 0:
        raise UserError(f"--ratios takes three non-negative numbers (train val test), got {list(ratios)}")
    r = r / r.sum()
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    counts = np.floor(r * len(order)).astype(int)
    for k in np.argsort(-(r * len(order) - counts)):  # hand out the remainder by largest fraction
        if counts.sum() >= len(order):
            break
        counts[k] += 1
    for k in range(3):  # a split asked for but rounded to nothing takes one from train
        if r[k] > 0 and counts[k] == 0 and counts[0] > 1:
            counts[k], counts[0] = 1, counts[0] - 1
    cuts = np.cumsum(counts)
    return {name: sorted(order[(cuts[k - 1] if k else 0):cuts[k]]) for k, name in enumerate(SPLIT_NAMES)}


def _place(src: Path, dst: Path, copy: bool) -> None:
    if dst.exists() or dst.is_symlink():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copytree(src, dst, symlinks=True)
        return
    try:
        os.symlink(src.resolve(), dst, target_is_directory=True)
    except OSError:
        shutil.copytree(src, dst, symlinks=True)


def split_category(input_dir: str | Path, output_dir: str | Path, ratios=(0.8, 0.1, 0.1), seed: int = 0,
                   copy: bool = False) -> dict[str, list[str]]:
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    names = [s.name for s in list_sequences(input_dir)]
    splits = split_sequences(names, ratios, seed)
    for split, members in splits.items():
        for name in members:
            for suffix in (PROCESSED, INSTANCE):
                _place(input_dir / f"{name}{suffix}", output_dir / split / input_dir.name / f"{name}{suffix}", copy)
    with atomic_path(output_dir / "splits.json") as tmp:
        tmp.write_text(json.dumps({"category": input_dir.name, "seed": seed, "ratios": list(ratios), **splits},
                                  indent=1))
    return splits


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m utils.data.co3d.split", description=__doc__.split("\n\n")[0])
    p.add_argument("--input_dir", required=True, help="a category folder in the CO3D layout")
    p.add_argument("--output_dir", required=True, help="root of the train/, val/ and test/ folders")
    p.add_argument("--ratios", type=float, nargs=3, default=(0.8, 0.1, 0.1), help="train val test shares")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffle")
    p.add_argument("--copy", action="store_true", help="copy the sequence folders instead of linking them")
    a = p.parse_args(argv)
    splits = split_category(a.input_dir, a.output_dir, tuple(a.ratios), a.seed, a.copy)
    cat = Path(a.input_dir).name
    print(", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f" sequences -> {a.output_dir}/{{train,val,test}}/{cat}")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("utils.data.co3d.split"):
        sys.exit(main())
