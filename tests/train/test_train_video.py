"""train/train_video.py --model svd: the tiny preset on the built-in moving shapes (offline), atomic checkpoints,
exact resume, EMA, mixed precision and gradient checkpointing, and one-line errors."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from train.train_video import main

BASE = ["--model", "svd", "--batch-size", "1", "--no-progress", "--no-tensorboard", "--seed", "3"]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (its mixed precision): each run here starts from none."""
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    yield


def _weights(out):
    return load_file(str(out / "svd_finetuned.safetensors"))


@pytest.mark.slow  # three tiny runs: ~30 s on an idle 2-core machine
def test_a_resumed_run_equals_an_unbroken_one(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(BASE + ["--steps", "3", "--save-every", "1", "--out", str(whole)]) == 0
    assert main(BASE + ["--steps", "2", "--out", str(broken)]) == 0
    assert main(BASE + ["--steps", "3", "--out", str(broken), "--resume"]) == 0
    a, b = _weights(whole), _weights(broken)
    assert a.keys() == b.keys() and any(k.startswith("model.diffusion_model.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same weights, bit for bit
    log = [json.loads(line) for line in (broken / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert [r["loss"] for r in log] == [json.loads(line)["loss"] for line in (whole / "log.jsonl").read_text().splitlines()]
    ckpts = sorted(p.name for p in (whole / "ckpts").iterdir())
    assert ckpts == ["step_0000001.pt", "step_0000002.pt", "step_0000003.pt"]  # no temporary file left over
    assert (whole / "samples" / "step_0000003.mp4").stat().st_size > 0
    # the fine-tuned file loads back as an SVD pipeline
    from models.video_generation.svd.pipeline import SVDPipeline

    pipe = SVDPipeline.from_pretrained(str(whole / "svd_finetuned.safetensors"), device="cpu")
    assert pipe.preset == "tiny"
    assert torch.equal(pipe.unet.state_dict()["out.2.weight"], a["model.diffusion_model.out.2.weight"])
    # the EMA weights are what is exported, not the raw ones
    raw = torch.load(whole / "ckpts" / "step_0000003.pt", weights_only=True)["unet"]
    assert not torch.equal(raw["out.2.weight"], a["model.diffusion_model.out.2.weight"])


@pytest.mark.slow
def test_mixed_precision_and_gradient_checkpointing(tmp_path):
    assert main(BASE + ["--steps", "2", "--mixed-precision", "bf16", "--gradient-checkpointing", "--ema", "0",
                        "--out", str(tmp_path)]) == 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    from utils.errors import UserError

    with pytest.raises(UserError, match="not found"):
        main(BASE + ["--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "a")])
    with pytest.raises(UserError, match="no checkpoint"):
        main(BASE + ["--resume", "--out", str(tmp_path / "b")])
    with pytest.raises(UserError, match="multiples of"):
        main(BASE + ["--height", "30", "--out", str(tmp_path / "c")])
    with pytest.raises(UserError, match="--stride or --data-fps"):
        main(BASE + ["--stride", "2", "--data-fps", "4", "--out", str(tmp_path / "d")])
    assert not any((tmp_path / n).exists() for n in "abcd")


@pytest.mark.slow  # a whole (one-step) run
def test_a_folder_of_videos_trains(tmp_path):
    from utils.data.moving_shapes import moving_shapes
    from utils.visualization.grid import to_pil
    from utils.visualization.video import write_video

    data = tmp_path / "clips"
    data.mkdir()
    for i in range(2):
        write_video(to_pil(moving_shapes(i, 6, (40, 40))[0], value_range=(0.0, 1.0)), data / f"c{i}.mp4", fps=10)
    out = tmp_path / "run"
    assert main(BASE + ["--data", str(data), "--steps", "1", "--stride", "1", "--out", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["data"] == str(data) and (out / "svd_finetuned.safetensors").stat().st_size > 0
