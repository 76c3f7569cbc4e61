"""`Co3dVoxelDataset`: posed views and the occupancy grid of each sequence of a CO3D-layout category.

An item is a sequence and a choice of its frames: `dataset[(i, (f0, f1, ...))]` (or `dataset[i]`
for `default_views`) gives {"images" (V, 3, S, S) in [0, 1], "poses" (V, 12) (`pose_vector`),
"voxels" (L, L, L) float 0/1 indexed [x, y, z], "name", "frames"}. Images are composited on white
through their masks when the frames have them, centre-cropped to a square and resized to S. Grids
whose resolution differs from `cube_len` are resampled: a coarser voxel is occupied when any finer
voxel inside it is (integer ratios), else the nearest voxel is taken.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.data.binvox import read_binvox
from utils.data.co3d.cameras import pose_vector
from utils.data.co3d.layout import Sequence, list_sequences, read_pose, resolve_category
from utils.errors import UserError

__all__ = ["Co3dVoxelDataset", "resample_grid", "load_view"]


def resample_grid(grid: np.ndarray, cube_len: int) -> np.ndarray:
    """A bool grid resampled to cube_len^3 (see the module docstring)."""
    if grid.shape == (cube_len,) * 3:
        return grid
    if all(d % cube_len == 0 for d in grid.shape):
        f = [d // cube_len for d in grid.shape]
        return grid.reshape(cube_len, f[0], cube_len, f[1], cube_len, f[2]).any(axis=(1, 3, 5))
    idx = [np.minimum((np.arange(cube_len) + 0.5) * d / cube_len, d - 1).astype(int) for d in grid.shape]
    return grid[np.ix_(*idx)]


def load_view(image_path, mask_path, size: int, background: float = 1.0) -> np.ndarray:
    """An RGB frame (a path or a PIL image) (composited through its mask), centre-cropped square and resized: (size, size, 3) uint8."""
    try:
        im = (image_path if isinstance(image_path, Image.Image) else Image.open(image_path)).convert("RGB")
        rgb = np.asarray(im, dtype=np.float32) / 255
        if mask_path is not None:
            m = mask_path if isinstance(mask_path, Image.Image) else Image.open(mask_path)
            mask = np.asarray(m.convert("L").resize(im.size, Image.BILINEAR), np.float32) / 255
            rgb = rgb * mask[..., None] + background * (1 - mask[..., None])
    except OSError as err:
        raise UserError(f"cannot read frame {image_path} or its mask ({err}): the file is corrupt or not an "
                        "image") from None
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    square = Image.fromarray((rgb[top:top + s, left:left + s] * 255 + 0.5).astype(np.uint8))
    if s != size:
        square = square.resize((size, size), Image.BICUBIC if size > s else Image.LANCZOS)
    return np.array(square)


class Co3dVoxelDataset(torch.utils.data.Dataset):
    """Every sequence of a category folder in the CO3D layout (utils.data.co3d.layout)."""

    def __init__(self, root: str | Path, cube_len: int = 32, image_size: int = 64, obj: str | None = None,
                 use_mask: bool = True, cache: bool | None = None, min_views: int = 1):
        self.root = resolve_category(root, obj)
        self.sequences: list[Sequence] = list_sequences(self.root)
        self.cube_len, self.image_size, self.use_mask = cube_len, image_size, use_mask
        few = [s for s in self.sequences if len(s.frames) < min_views]
        if few:
            raise UserError(f"sequence '{few[0].name}' has {len(few[0].frames)} frame(s), fewer than --num_views "
                            f"{min_views}: lower --num_views or drop the sequence ({len(few)} such)")
        n_frames = sum(len(s.frames) for s in self.sequences)
        self.cache = n_frames * image_size * image_size * 3 < (512 << 20) if cache is None else cache
        self._views: dict[tuple[int, int], np.ndarray] = {}
        self._grids: dict[int, np.ndarray] = {}
        self._poses: dict[tuple[int, int], torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sequences]

    def num_frames(self, i: int) -> int:
        return len(self.sequences[i].frames)

    def default_views(self, i: int, n: int) -> tuple[int, ...]:
        """n frames spread evenly over the sequence (what evaluation uses)."""
        k = self.num_frames(i)
        if n > k:
            raise UserError(f"sequence '{self.sequences[i].name}' has {k} frame(s), fewer than --num_views {n}")
        return tuple(int(round(x)) for x in np.linspace(0, k - 1, n)) if n > 1 else (0,)

    def voxels(self, i: int) -> torch.Tensor:
        if i not in self._grids:
            self._grids[i] = resample_grid(read_binvox(self.sequences[i].voxel).data, self.cube_len)
        return torch.from_numpy(self._grids[i].astype(np.float32))

    def view(self, i: int, f: int) -> np.ndarray:
        key = (i, f)
        if key in self._views:
            return self._views[key]
        frame = self.sequences[i].frames[f]
        arr = load_view(frame.image, frame.mask if self.use_mask else None, self.image_size)
        if self.cache:
            self._views[key] = arr
        return arr

    def pose(self, i: int, f: int) -> torch.Tensor:
        key = (i, f)
        if key not in self._poses:
            rec = read_pose(self.sequences[i].frames[f].pose)
            self._poses[key] = pose_vector(torch.tensor(rec["R"], dtype=torch.float32),
                                           torch.tensor(rec["T"], dtype=torch.float32))
        return self._poses[key]

    def __getitem__(self, item) -> dict:
        i, frames = (item, self.default_views(item, 1)) if isinstance(item, int) else item
        images = torch.from_numpy(np.stack([self.view(i, f) for f in frames])).permute(0, 3, 1, 2).float() / 255
        return {"images": images, "poses": torch.stack([self.pose(i, f) for f in frames]),
                "voxels": self.voxels(i), "name": self.sequences[i].name, "frames": tuple(frames)}

    def mean_shape(self) -> torch.Tensor:
        """The average occupancy grid of the dataset (the mean-shape baseline's grid)."""
        return torch.stack([self.voxels(i) for i in range(len(self))]).mean(0)


def collate(items: list[dict]) -> dict:
    return {"images": torch.stack([x["images"] for x in items]), "poses": torch.stack([x["poses"] for x in items]),
            "voxels": torch.stack([x["voxels"] for x in items]), "names": [x["name"] for x in items],
            "frames": [x["frames"] for x in items]}
