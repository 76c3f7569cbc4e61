"""generate_video.py --model luma_dream and the facade: the tiny preset writes a clip (text-to-video and
from a first frame) and the live previews; bad frame counts and sizes are one line, exit 2, nothing written."""
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
    return subprocess.run([sys.executable, str(SCRIPT), "--model", "luma_dream", *args], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_tiny_cli_writes_the_clip_and_previews(tmp_path):
    Image.fromarray((np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    res = _run(["--preset", "tiny", "--prompt", "a fox in snow", "--image", "in.png", "--num-frames", "5",
                "--steps", "2", "--fps", "10", "--preview", "steps", "--no-progress", "--out", "fox.gif"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert "wrote 1 video(s) of 5 frames at 10 fps" in res.stdout
    with Image.open(tmp_path / "fox.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (32, 32)
    previews = sorted(p.name for p in (tmp_path / "steps").iterdir())
    assert previews == ["step_000.png", "step_001.png"]
    with Image.open(tmp_path / "steps" / "step_000.png") as im:
        assert im.size == (3 * 32, 32)  # three latent frames side by side


@pytest.mark.parametrize("args, message", [
    (["--num-frames", "120"], "1 + 8k frames: use 113 or 121"),
    (["--height", "500"], "not a multiple of 32"),
    (["--preset", "tiny", "--num-frames", "4"], "1 + 2k frames"),
    (["--timesteps", "0.5,0.9"], "must decrease"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    res = _run(["--prompt", "a fox", *args, "--out", "x.mp4"], tmp_path)
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_facade_generates_video():
    from models import generate

    out = generate("video", "luma_dream", preset="tiny", device="cpu", prompt="waves", steps=2, num_frames=5,
                   progress=False)
    assert out.pixels.shape == (1, 5, 3, 32, 32) and len(out.frames[0]) == 5
    aliased = generate("video", "ltx", preset="tiny", device="cpu", prompt="waves", steps=2, num_frames=5,
                       progress=False)
    assert (aliased.pixels - out.pixels).abs().max() == 0


def test_bf16_code_path_runs_on_the_cpu():
    """The dtype CUDA defaults to (bf16), run on the CPU: every component cast, finite frames."""
    import torch

    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    pipe = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu", dtype="bf16")
    assert pipe.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert pipe.text_encoder.dtype == torch.bfloat16
    out = pipe(prompt="waves", steps=2, progress=False)
    assert torch.isfinite(out.pixels).all() and out.pixels.dtype == torch.float32


@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_cpu_offload_hooks_give_the_same_clip(mode):
    """The offload hooks (accelerate) around T5, the transformer and the VAE's methods, with the CPU as the
    execution device (no GPU here): the same frames, text-to-video and from a first frame."""
    import torch

    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    hooked = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    getattr(hooked, f"enable_{mode}_cpu_offload")("cpu")
    for kw in ({}, {"image": image}):
        want = plain(prompt="waves", steps=2, progress=False, **kw).pixels
        assert torch.equal(hooked(prompt="waves", steps=2, progress=False, **kw).pixels, want)
