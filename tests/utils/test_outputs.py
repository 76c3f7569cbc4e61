"""Outputs save atomically to a file or a folder, and refuse formats they cannot write."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from utils.outputs import ImageOutput, Output3D, VideoOutput
from utils.errors import UserError


def _images(n: int, size: int = 8) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (30 * i, 0, 0)) for i in range(n)]


def test_image_single_file_grid_and_folder(tmp_path):
    one = ImageOutput(_images(1))
    one.save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").size == (8, 8)
    four = ImageOutput(_images(4))
    four.save(tmp_path / "grid.png")
    assert Image.open(tmp_path / "grid.png").size == (2 * 8 + 3 * 2,) * 2  # 2x2 grid with 2 px padding
    paths = four.save(tmp_path / "folder")
    assert [p.name for p in paths] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    assert Image.open(paths[3]).getpixel((0, 0)) == (90, 0, 0)


def test_image_bad_suffix_writes_nothing(tmp_path):
    with pytest.raises(UserError, match="cannot save images as '.txt'"):
        ImageOutput(_images(2)).save(tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path):
    class Broken:
        size = (8, 8)
        mode = "RGB"

        def save(self, path):
            open(path, "wb").write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        ImageOutput([Broken()]).save(tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_video_gif_and_mp4(tmp_path):
    frames = _images(5, 16)
    VideoOutput([frames], fps=5).save(tmp_path / "v.gif")
    gif = Image.open(tmp_path / "v.gif")
    assert gif.n_frames == 5
    VideoOutput([frames], fps=5).save(tmp_path / "v.mp4")
    import imageio.v2 as imageio

    reader = imageio.get_reader(tmp_path / "v.mp4")
    assert reader.count_frames() == 5


def test_3d_writers_renders_and_voxels(tmp_path):
    out = Output3D(renders=_images(2), voxels=np.ones((2, 2, 2), bool),
                   writers={".ply": lambda p: p.write_text("ply\n")})
    out.save(tmp_path / "x.ply")
    assert (tmp_path / "x.ply").read_text() == "ply\n"
    names = sorted(p.relative_to(tmp_path / "all").as_posix() for p in out.save(tmp_path / "all"))
    assert names == ["renders/0000.png", "renders/0001.png", "result.ply", "voxels.npy"]
    with pytest.raises(UserError, match="cannot be saved as '.obj'"):
        out.save(tmp_path / "x.obj")
