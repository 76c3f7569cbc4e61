"""Video readers and training clips: mp4/gif/frame folders, stride and fps resampling, resize/crop, a folder of
videos and a metadata.jsonl, and one-line errors."""
from __future__ import annotations

import json

import pytest
import torch

from utils.data.moving_shapes import moving_shapes
from utils.data.video import read_video
from utils.data.video_dataset import VideoClips
from utils.errors import UserError
from utils.visualization.grid import to_pil
from utils.visualization.video import write_video


def _clip(path, frames=12, size=(32, 48), fps=10, seed=0):  # 10 fps: a whole number of a GIF's 1/100 s ticks
    video, _ = moving_shapes(seed, frames, size)
    return write_video(to_pil(video, value_range=(0.0, 1.0)), path, fps=fps)


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_stride_fps_resampling_and_resizing(tmp_path, suffix):
    path = _clip(tmp_path / f"a{suffix}")
    whole = read_video(path)
    assert whole.frames.shape == (12, 3, 32, 48) and abs(whole.fps - 10) < 1e-6
    assert 0 <= float(whole.frames.min()) and float(whole.frames.max()) <= 1
    strided = read_video(path, stride=3)
    assert strided.frames.shape[0] == 4 and abs(strided.fps - 10 / 3) < 1e-6
    resampled = read_video(path, fps=5, num_frames=5)
    assert resampled.frames.shape[0] == 5 and abs(resampled.fps - 5) < 1e-6
    assert torch.allclose(resampled.frames, whole.frames[0:10:2], atol=1e-6)  # every other frame, by time
    cropped = read_video(path, size=(16, 16))
    assert cropped.frames.shape == (12, 3, 16, 16)


def test_frame_folders_and_the_clip_datasets(tmp_path):
    data = tmp_path / "clips"
    data.mkdir()
    _clip(data / "a.mp4")
    frames = data / "b"
    frames.mkdir()
    video, _ = moving_shapes(1, 6, (32, 48))
    for i, im in enumerate(to_pil(video, value_range=(0.0, 1.0))):
        im.save(frames / f"{i:03d}.png")
    clips = VideoClips(data, num_frames=4, size=(16, 16))
    assert len(clips) == 2
    item = clips[1]
    assert item["video"].shape == (4, 3, 16, 16) and -1 <= float(item["video"].min())
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "clips/a.mp4", "fps": 24, "motion_bucket_id": 60})
                                             + "\n" + json.dumps({"video": "clips/b"}) + "\n")
    meta = VideoClips(tmp_path / "metadata.jsonl", num_frames=4, size=(16, 16))
    first = meta[0]
    assert (first["fps"], first["motion_bucket_id"]) == (24.0, 60) and meta[1]["motion_bucket_id"] is None


def test_user_mistakes_are_one_line_errors(tmp_path):
    _clip(tmp_path / "a.gif", frames=3)
    with pytest.raises(UserError, match="not found"):
        VideoClips(tmp_path / "nothing", 4, (16, 16))
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="line 1 is not JSON"):
        VideoClips(tmp_path / "bad.jsonl", 4, (16, 16))
    (tmp_path / "gone.jsonl").write_text(json.dumps({"file_name": "gone.mp4"}) + "\n")
    with pytest.raises(UserError, match="do not exist"):
        VideoClips(tmp_path / "gone.jsonl", 4, (16, 16))
    with pytest.raises(UserError):  # 3 frames cannot give 8
        read_video(tmp_path / "a.gif", num_frames=8)
