"""The built-in captioned dataset: coloured shapes on coloured backgrounds, with the caption that names
them ("a red circle on a blue background"), in square, landscape and portrait sizes. Made by code from a
seed (no files, no network), so the tiny presets train offline in minutes on a CPU; `write_captioned_shapes`
writes the same images as an image folder with metadata.jsonl (the layout `--data FOLDER` reads).
"""
from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from utils.data.captioned import Source

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40),
           "purple": (140, 50, 180), "white": (245, 245, 245), "black": (20, 20, 20), "orange": (240, 140, 30)}
SHAPES = ("circle", "square", "triangle")
SIZES = ((64, 64), (48, 80), (80, 48))
"""(height, width) of the images: square, landscape, portrait (they fall in different buckets)."""


def _spec(i: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed * 100_003 + i)
    names = list(COLOURS)
    fg = names[int(torch.randint(len(names), (1,), generator=g))]
    bg = names[int(torch.randint(len(names) - 1, (1,), generator=g))]
    bg = bg if bg != fg else names[-1]
    shape = SHAPES[int(torch.randint(len(SHAPES), (1,), generator=g))]
    h, w = SIZES[i % len(SIZES)]
    frac = 0.35 + 0.3 * float(torch.rand((), generator=g))
    cx, cy = (0.3 + 0.4 * torch.rand(2, generator=g)).tolist()
    return dict(fg=fg, bg=bg, shape=shape, size=(h, w), frac=frac, centre=(cx, cy))


def draw_shape(spec: dict) -> Image.Image:
    h, w = spec["size"]
    img = Image.new("RGB", (w, h), COLOURS[spec["bg"]])
    r = spec["frac"] * min(h, w) / 2
    cx, cy = spec["centre"][0] * w, spec["centre"][1] * h
    d = ImageDraw.Draw(img)
    colour = COLOURS[spec["fg"]]
    if spec["shape"] == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif spec["shape"] == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return img


def caption_of(spec: dict) -> str:
    return f"a {spec['fg']} {spec['shape']} on a {spec['bg']} background"


def captioned_shapes(n: int = 48, seed: int = 0) -> list[Source]:
    """`n` built-in training images (made when first loaded)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    specs = [_spec(i, seed) for i in range(n)]
    return [Source(f"captioned-shapes/{seed}/{i}", s["size"], caption_of(s), partial(draw_shape, s))
            for i, s in enumerate(specs)]


def write_captioned_shapes(folder: str | os.PathLike, n: int = 48, seed: int = 0) -> Path:
    """The built-in images as an image folder with metadata.jsonl; returns the folder."""
    from utils.io import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(_spec(i, seed) for i in range(n)):
        name = f"{i:04d}.png"
        with atomic_path(folder / name) as tmp:
            draw_shape(s).save(tmp, format="PNG")
        lines.append(json.dumps({"file_name": name, "text": caption_of(s)}))
    with atomic_path(folder / "metadata.jsonl") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


__all__ = ["COLOURS", "SHAPES", "SIZES", "caption_of", "captioned_shapes", "draw_shape", "write_captioned_shapes"]
