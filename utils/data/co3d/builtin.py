"""The built-in dataset: random composite shapes and their rendered views, in the CO3D layout.

    python -m utils.data.co3d.builtin [--out DIR] [--cube_len 32]

Writes DIR/{train,val,test}/primitives/<sequence>_processed|_dataset_instance folders (see
utils.data.co3d.layout): per shape, `views` RGB frames rendered by this repo's ray marcher from
cameras at random azimuths on the upper hemisphere, their masks, CO3D-encoded depths and depth
masks, one CO3D viewpoint .json per frame, and the shape's voxel grid as .binvox. Everything is a
pure function of the seed; a finished copy is reused (a VERSION file marks it complete).
"""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.data.binvox import write_binvox
from utils.data.co3d.cameras import cameras_to_viewpoint, look_at_view, viewpoint_to_cameras
from utils.data.co3d.layout import INSTANCE, PROCESSED, write_pose, write_sequence_meta
from utils.data.co3d.primitives import random_shape, voxelize
from utils.io import atomic_path

__all__ = ["DEFAULT_DIR", "CATEGORY", "SPLITS", "ensure_builtin", "write_builtin", "split_dir", "encode_depth"]

DEFAULT_DIR = Path("outputs") / "datasets" / "co3d_primitives"
CATEGORY = "primitives"
SPLITS = {"train": 160, "val": 16, "test": 32}
"""Shapes per split of the default built-in dataset."""
VERSION = 1
"""Bumped whenever the data change, so that a stale copy is rewritten."""


def split_dir(root: str | Path, split: str) -> Path:
    """The category folder of one split: root/<split>/primitives."""
    return Path(root) / split / CATEGORY


def encode_depth(depth: np.ndarray) -> Image.Image:
    """A depth map as CO3D stores it: float16 values in the bits of a 16-bit PNG."""
    return Image.fromarray(depth.astype(np.float16).view(np.uint16))


def _save(image: Image.Image, path: Path, **kw) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, **kw)


def write_sequence(category_dir: Path, name: str, rng: np.random.Generator, cube_len: int, views: int,
                   image_size: int, category: str = CATEGORY) -> None:
    """One shape: its frames, masks, depths, poses, sequence_meta.json and <name>.binvox."""
    from utils.visualization.voxels import render_field

    shape = random_shape(rng)
    processed, instance = category_dir / (name + PROCESSED), category_dir / (name + INSTANCE)
    az = rng.uniform(0, 2 * math.pi, views)
    el = np.radians(rng.uniform(10, 45, views))
    dist = 3.0
    eye = torch.tensor(np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1) * dist,
                       dtype=torch.float32)
    R, T = look_at_view(eye, torch.zeros_like(eye), torch.tensor([0.0, 0.0, 1.0]))
    focal = 1.0 / math.tan(math.radians(20.0))  # 40 degree field of view, in NDC units
    f = torch.full((views, 2), focal)
    pp = torch.zeros(views, 2)
    cams = viewpoint_to_cameras(R, T, f, pp, image_size, image_size)
    out = render_field(shape.sdf, cams, color=shape.color, normal_eps=2e-3, signed_distance=True)
    vp = cameras_to_viewpoint(cams)
    frames = []
    for i in range(views):
        stem = f"frame{i + 1:06d}"
        rgb = (out["rgb"][i].numpy() * 255 + 0.5).astype(np.uint8)
        mask = out["mask"][i].numpy()
        _save(Image.fromarray(rgb), instance / "images" / f"{stem}.jpg", quality=95)
        _save(Image.fromarray((mask * 255).astype(np.uint8)), instance / "masks" / f"{stem}.png")
        _save(encode_depth(out["depth"][i].numpy()), instance / "depths" / f"{stem}.jpg.geometric.png")
        _save(Image.fromarray((mask * 255).astype(np.uint8)), instance / "depth_masks" / f"{stem}.png")
        write_pose(processed / "poses" / f"{stem}.json", vp["R"][i], vp["T"][i], vp["focal_length"][i],
                   vp["principal_point"][i], (image_size, image_size))
        frames.append({"frame_number": i + 1, "image": f"images/{stem}.jpg", "mask": f"masks/{stem}.png",
                       "depth": f"depths/{stem}.jpg.geometric.png", "depth_mask": f"depth_masks/{stem}.png",
                       "pose": f"poses/{stem}.json"})
    write_binvox(instance / f"{name}.binvox", voxelize(shape.sdf, cube_len), translate=(-1.0, -1.0, -1.0), scale=2.0)
    write_sequence_meta(processed, {"sequence_name": name, "category": category, "family": shape.family,
                                    "voxel": f"{name}.binvox", "cube_len": cube_len, "frames": frames,
                                    "source": f"cv-generative built-in primitives v{VERSION}"})


def write_builtin(root: str | Path, cube_len: int = 32, seed: int = 0, splits: dict[str, int] | None = None,
                  views: int = 8, image_size: int = 64, progress: bool = False) -> Path:
    """Write the dataset under `root` (replacing what is there); returns `root`."""
    root = Path(root)
    splits = SPLITS if splits is None else splits
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(seed)
    total, done = sum(splits.values()), 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small tensor ops: one thread ran 12x faster than two on a loaded 2-core machine
    try:
        for split, n in splits.items():
            for i in range(n):
                write_sequence(split_dir(root, split), f"{split}_{i:04d}", rng, cube_len, views, image_size)
                done += 1
                if progress and (done % 25 == 0 or done == total):
                    print(f"built-in dataset: {done}/{total} shapes -> {root}", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(threads)
    (root / "VERSION").write_text(json.dumps({"version": VERSION, "cube_len": cube_len, "seed": seed,
                                              "splits": splits, "views": views, "image_size": image_size}))
    return root


def ensure_builtin(root: str | Path | None = None, cube_len: int = 32, progress: bool = True) -> Path:
    """The default built-in dataset for `cube_len` (written on first use, about a minute); returns its root."""
    root = Path(root) if root is not None else DEFAULT_DIR.with_name(f"{DEFAULT_DIR.name}_{cube_len}")
    stamp = root / "VERSION"
    if stamp.is_file():
        try:
            info = json.loads(stamp.read_text())
        except json.JSONDecodeError:
            info = {}
        if info.get("version") == VERSION and info.get("cube_len") == cube_len and info.get("splits") == SPLITS:
            return root
    return write_builtin(root, cube_len=cube_len, progress=progress)


def main(argv: list[str] | None = None) -> int:
    from utils.cli import ArgumentParser

    p = ArgumentParser(prog="python -m utils.data.co3d.builtin", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="dataset root (default outputs/datasets/co3d_primitives_<cube_len>)")
    p.add_argument("--cube_len", type=int, default=32, help="voxel grid resolution of the .binvox files")
    p.add_argument("--seed", type=int, default=0, help="seed of the shapes and cameras")
    p.add_argument("--views", type=int, default=8, help="frames per shape")
    p.add_argument("--image_size", type=int, default=64, help="frame width and height in pixels")
    p.add_argument("--train", type=int, default=SPLITS["train"], help="training shapes")
    p.add_argument("--val", type=int, default=SPLITS["val"], help="validation shapes")
    p.add_argument("--test", type=int, default=SPLITS["test"], help="test shapes")
    a = p.parse_args(argv)
    from utils.errors import UserError

    if a.cube_len < 4 or a.views < 1 or a.image_size < 8 or min(a.train, a.val, a.test) < 0:
        raise UserError("--cube_len must be at least 4, --views at least 1, --image_size at least 8, and the split "
                        "sizes not negative")
    root = Path(a.out) if a.out else DEFAULT_DIR.with_name(f"{DEFAULT_DIR.name}_{a.cube_len}")
    write_builtin(root, a.cube_len, a.seed, {"train": a.train, "val": a.val, "test": a.test}, a.views,
                  a.image_size, progress=True)
    print(f"wrote {a.train + a.val + a.test} shapes x {a.views} views -> {root}")
    return 0


if __name__ == "__main__":
    from utils.errors import cli_errors

    with cli_errors("utils.data.co3d.builtin"):
        sys.exit(main())
