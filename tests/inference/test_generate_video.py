"""generate_video.py as a user runs it: an mp4 that ffprobe reads with the asked frame count and fps, and
one-line errors (exit 2, nothing written)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "inference" / "generate_video.py"


def _probe(path: Path) -> tuple[int, float]:
    """(frames, fps) of a video, read by ffprobe (imageio-ffmpeg's ffmpeg where no ffprobe is installed)."""
    if shutil.which("ffprobe"):
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                              "stream=nb_read_frames,r_frame_rate,codec_name,pix_fmt", "-of", "json", str(path)],
                             capture_output=True, text=True, check=True).stdout
        stream = json.loads(out)["streams"][0]
        assert (stream["codec_name"], stream["pix_fmt"]) == ("h264", "yuv420p")
        num, den = stream["r_frame_rate"].split("/")
        return int(stream["nb_read_frames"]), int(num) / int(den)
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return frames, next(imageio_ffmpeg.read_frames(str(path)))["fps"]


def test_the_tiny_preset_writes_an_mp4_with_the_asked_frames_and_fps(tmp_path):
    Image.new("RGB", (40, 48), (200, 30, 60)).save(tmp_path / "in.png")
    res = subprocess.run([sys.executable, str(SCRIPT), "--model", "svd", "--preset", "tiny", "--image", "in.png",
                          "--num-frames", "5", "--fps", "9", "--steps", "2", "--seed", "0", "--decode-chunk-size", "2",
                          "--motion-bucket-id", "100", "--noise-aug", "0.05", "--out", "clip.mp4"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr
    assert "sampling" in res.stderr and "decoding" in res.stderr  # the two progress bars
    assert _probe(tmp_path / "clip.mp4") == (5, 9.0)
    assert "5 frames at 9 fps" in res.stdout


@pytest.mark.parametrize("argv, message", [
    (["--image", "missing.png"], "not found"),
    (["--image", "text.png"], "cannot be read as an image"),
    (["--image", "in.png", "--num-frames", "0"], "num-frames"),
    (["--image", "in.png", "--height", "30"], "not a multiple of 4"),
    (["--image", "in.png", "--preset", "svd", "--width", "1000"], "not a multiple of 64"),
    ([], "give --image"),
    (["--image", "in.png", "--out", "clip.txt"], "--out"),
    (["--image", "in.png", "--preset", "huge"], "huge"),
])
def test_user_errors_are_one_line_exit_2_no_output(tmp_path, monkeypatch, capsys, argv, message):
    from inference.generate_video import main
    from utils.errors import cli_errors

    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    (tmp_path / "text.png").write_text("not a picture")
    before = set(tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    argv = ["--model", "svd", "--preset", "tiny", *argv]
    with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
        main(argv if "--out" in argv else [*argv, "--out", "clip.mp4"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert set(tmp_path.iterdir()) == before, "no partial output on error"


def test_a_read_only_folder_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    """The folder's file system refuses writes (as a read-only mount does: EROFS, which root gets too)."""
    import errno
    import tempfile

    from inference.generate_video import main
    from utils.errors import cli_errors

    Image.new("RGB", (32, 32)).save(tmp_path / "in.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(locked)):
            raise OSError(errno.EROFS, "Read-only file system", str(locked))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
        main(["--preset", "tiny", "--image", str(tmp_path / "in.png"), "--out", str(locked / "clip.mp4")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "read-only" in err, err
    assert list(locked.iterdir()) == []
