"""Video training data is probed when the dataset is made: a broken video is skipped with one warning line
(never a failure at the step that reaches it), data of which none decodes is one error line."""
from __future__ import annotations

import pytest
from PIL import Image

from utils.data.video import video_problem
from utils.data.video_dataset import VideoClips
from utils.errors import UserError


def _gif(path, frames=6):
    ims = [Image.new("RGB", (16, 16), (40 * i, 100, 200)) for i in range(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100)


def test_a_broken_video_is_skipped_with_one_warning(tmp_path, capsys):
    _gif(tmp_path / "good.gif")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    (tmp_path / "cut.gif").write_bytes((tmp_path / "good.gif").read_bytes()[:40])
    clips = VideoClips(tmp_path, num_frames=4, size=(16, 16))
    err = capsys.readouterr().err
    assert len(clips) == 1 and err.count("\n") == 1 and "skipped 2 of 3 videos" in err, err
    assert "bad.mp4" in err and "cut.gif" in err
    assert clips[0]["video"].shape == (4, 3, 16, 16)
    assert video_problem(tmp_path / "good.gif") is None and video_problem(tmp_path / "bad.mp4")


def test_data_of_which_none_decodes_is_refused(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_text("text, not a frame")
    with pytest.raises(UserError, match="none of the 2 videos"):
        VideoClips(tmp_path, num_frames=4, size=(16, 16))
