"""generate_video.py --model luma_dream with frame conditions: --keyframe PATH[:FRAME[:STRENGTH]], --video,
--strength, alongside --image; the clip follows the conditions; bad specs are one line, exit 2, no file."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "inference" / "generate_video.py"


def _run(args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), "--model", "luma_dream", "--preset", "tiny",
                           "--prompt", "a fox", "--no-progress", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture()
def media(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(tmp_path / "first.png")
    Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "last.png")
    frames = [Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)) for _ in range(5)]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    (tmp_path / "broken.png").write_bytes(b"not an image")
    return tmp_path


def test_keyframes_video_and_image_write_the_clip(media):
    res = _run(["--image", "first.png", "--keyframe", "last.png:4:0.9", "--keyframe", "first.png:2",
                "--video", "clip.gif", "--strength", "0.8", "--steps", "2", "--out", "kf.gif"], media)
    assert res.returncode == 0, res.stderr
    assert "wrote 1 video(s) of 5 frames" in res.stdout
    with Image.open(media / "kf.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (32, 32)


def test_flags_become_the_conditions(media, monkeypatch):
    """What the runner hands the pipeline: --image alone stays first-frame image-to-video; with a keyframe it
    becomes a frame-0 condition; a keyframe without FRAME lands on the last frame, a video on frame 0."""
    from models.video_generation.luma_dream.conditions import VideoCondition
    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    seen = []

    def fake_call(self, **kw):
        seen.append(kw)
        raise KeyboardInterrupt  # stop before sampling
    monkeypatch.setattr(LTXVideoPipeline, "__call__", fake_call)
    monkeypatch.chdir(media)
    main = _main()
    for args in (["--image", "first.png"], ["--image", "first.png", "--keyframe", "last.png", "--video", "clip.gif:2",
                                            "--strength", "0.5"]):
        with pytest.raises(KeyboardInterrupt):
            main(["--model", "luma_dream", "--preset", "tiny", "--prompt", "a fox", "--num-frames", "9", *args])
    assert seen[0]["image"] == "first.png" and seen[0]["conditions"] is None
    assert seen[1]["image"] is None
    assert seen[1]["conditions"] == [VideoCondition(image="first.png", frame_index=0, strength=0.5),
                                     VideoCondition(image="last.png", frame_index=8, strength=0.5),
                                     VideoCondition(video="clip.gif", frame_index=2, strength=0.5)]


def _main():
    sys.path.insert(0, str(ROOT))
    from inference.generate_video import main

    return main


BAD = [
    (["--keyframe", "missing.png:4"], "--keyframe missing.png not found"),
    (["--keyframe", "broken.png"], "cannot be read as an image"),
    (["--video", "missing.mp4"], "--video missing.mp4: not found"),
    (["--keyframe", "last.png:6"], "outside the clip of 5 frames: use a frame from 0 to 4"),
    (["--keyframe", "last.png:3"], "multiples of 2 frames"),
    (["--num-frames", "9", "--video", "clip.gif:5"], "multiples of 2 frames"),
    (["--keyframe", "last.png:4:1.5"], "STRENGTH 1.5 is outside [0, 1]"),
    (["--keyframe", "last.png:four"], "give PATH[:FRAME[:STRENGTH]]"),
    (["--keyframe", "last.png:4:strong"], "give PATH[:FRAME[:STRENGTH]]"),
    (["--strength", "0.5"], "--strength sets how hard --image, --keyframe or --video pull the clip"),
]


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_condition_is_refused_before_loading(media, monkeypatch, args, message):
    from utils.errors import UserError

    monkeypatch.chdir(media)
    with pytest.raises(UserError) as err:
        _main()(["--model", "luma_dream", "--preset", "tiny", "--prompt", "a fox", *args, "--out", "x.mp4"])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not (media / "x.mp4").exists()


@pytest.mark.parametrize("args, message", [
    (["--keyframe", "missing.png:4"], "--keyframe missing.png not found"),
    (["--keyframe", "last.png:4:1.5"], "STRENGTH 1.5 is outside [0, 1]"),
    (["--keyframe", "last.png:3"], "multiples of 2 frames"),
    (["--keyframe", "last.png", "--strength", "-0.1"], "--strength: must be a strength in"),
])
def test_bad_condition_is_one_line_exit_2(media, args, message):
    res = _run([*args, "--out", "x.mp4"], media)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert not (media / "x.mp4").exists()


def test_condition_spec_parsing(tmp_path):
    _main()
    from inference.generate_video import _condition_spec

    assert _condition_spec("a.png", "--keyframe") == ("a.png", None, None)
    assert _condition_spec("a.png:16", "--keyframe") == ("a.png", 16, None)
    assert _condition_spec("dir:x/a.png:16:0.5", "--keyframe") == ("dir:x/a.png", 16, 0.5)
    odd = tmp_path / "odd:name.png"
    odd.write_bytes(b"")
    assert _condition_spec(str(odd), "--keyframe") == (str(odd), None, None)  # a path that exists wins
