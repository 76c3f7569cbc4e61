"""train/train_video.py --model runway_gen3: only the motion modules train (the image UNet frozen, no gradient,
unchanged), the loss falls on a fixed batch, the adapter is written in AnimateDiff's released layout and loads
back into the pipeline (which then generates with it), the CLI runs on the tiny preset, resume is bit-exact."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from models.image_generation.stable_diffusion.pipeline_sd15 import SD15Pipeline
from models.video_generation.runway_gen3.training import (image_parameters, new_adapter, objective, save_adapter,
                                                          training_loss)
from models.video_generation.runway_gen3.unet_motion import MotionUNet
from utils.errors import UserError

BASE = ["--model", "runway_gen3", "--batch-size", "1", "--no-progress", "--no-tensorboard", "--seed", "3",
        "--threads", "1"]


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """accelerate keeps one process-wide state (its mixed precision): each run here starts from none."""
    from accelerate.state import AcceleratorState, PartialState

    AcceleratorState._reset_state(True)
    PartialState._reset_state()
    yield


def _clips(seed: int = 0, b: int = 2, f: int = 4):
    from utils.data.moving_shapes import MovingShapes

    data = MovingShapes(num_clips=b, num_frames=f, size=(32, 32), seed=seed)
    return torch.stack([data[i]["video"] for i in range(b)])


def test_only_the_motion_modules_learn_and_the_loss_falls_on_a_fixed_batch():
    image = SD15Pipeline.tiny()
    adapter = new_adapter(image.unet.config, seed=0)
    for frozen in (image.unet, image.vae, image.text_encoder):
        frozen.eval().requires_grad_(False)
    model = MotionUNet(image.unet, adapter.train())
    before_image = {n: p.detach().clone() for n, p in image_parameters(model)}
    before_adapter = {n: p.detach().clone() for n, p in adapter.named_parameters()}
    with torch.no_grad():  # a new adapter is the identity: the MotionUNet is the image UNet frame by frame
        x, t = torch.randn(1, 4, 4, 8, 8), torch.tensor([500.0])
        ctx = torch.randn(1, 5, image.unet.config.context_dim)
        frame_wise = image.unet(x[0], t.expand(4), ctx.expand(4, -1, -1))
        assert torch.allclose(model(x, t, ctx)[0], frame_wise, atol=1e-5)
    ctx = image.text_encoder.encode([""]).last_hidden_state.float().clone()
    video, target = _clips(b=1), objective()
    opt = torch.optim.AdamW(adapter.parameters(), lr=3e-3)

    def loss_at_fixed_noise():
        return training_loss(model, image.vae, ctx, video, target, torch.Generator().manual_seed(7))[0]

    losses = []
    for _ in range(4):
        loss = loss_at_fixed_noise()
        losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        assert all(p.grad is None for _, p in image_parameters(model))  # the image UNet takes no gradient
        opt.step()
    with torch.no_grad():
        losses.append(float(loss_at_fixed_noise()))
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, before_image[n]) for n, p in image_parameters(model))
    assert all(not p.requires_grad for p in [*image.unet.parameters(), *image.vae.parameters()])
    changed = [n for n, p in adapter.named_parameters() if not torch.equal(p, before_adapter[n])]
    assert any(".proj_out." in n for n in changed) and any(".attn1." in n for n in changed)


def test_the_saved_adapter_is_the_released_layout_and_loads_into_the_pipeline(tmp_path):
    from models.video_generation.runway_gen3.convert import load_adapter
    from models.video_generation.runway_gen3.pipeline import RunwayGen3Pipeline

    image = SD15Pipeline.tiny()
    adapter = new_adapter(image.unet.config, seed=1)
    with torch.no_grad():  # as if trained: move every weight, the zero output projections included
        g = torch.Generator().manual_seed(2)
        for p in adapter.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    path = save_adapter(tmp_path / "motion_adapter.safetensors", adapter.eval())
    sd = load_file(str(path))
    assert all(".temporal_transformer." in k for k in sd)  # AnimateDiff's released key names
    assert any(k.endswith("attention_blocks.1.pos_encoder.pe") for k in sd)
    loaded = load_adapter(str(path))
    assert loaded.config == adapter.config
    mine = adapter.state_dict()
    assert all(torch.equal(v, mine[k]) for k, v in loaded.state_dict().items())
    # the pipeline loads the file on the tiny SD 1.5 and generates what the trained modules give
    pipe = RunwayGen3Pipeline.from_pretrained(str(path), preset="tiny", device="cpu")
    direct = RunwayGen3Pipeline(MotionUNet(image.unet, adapter), image.vae, image.text_encoder)
    kw = dict(num_frames=4, height=32, width=32, steps=2, seed=0, output_type="latent", progress=False)
    a, b = pipe("shapes", **kw).latents, direct("shapes", **kw).latents
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-5)


def test_user_mistakes_are_one_line_errors(tmp_path):
    from train.train_video import main

    with pytest.raises(UserError, match="SDXL"):
        main(BASE + ["--preset", "tiny-sdxl", "--out", str(tmp_path / "a")])
    with pytest.raises(UserError, match="at most 32"):
        main(BASE + ["--num-frames", "40", "--out", str(tmp_path / "b")])
    with pytest.raises(UserError, match="no checkpoint"):
        main(BASE + ["--resume", "--out", str(tmp_path / "c")])
    with pytest.raises(UserError, match="multiples of"):
        main(BASE + ["--height", "30", "--out", str(tmp_path / "d")])
    assert not any((tmp_path / n).exists() for n in "abcd")
    (tmp_path / "e" / "ckpts").mkdir(parents=True)
    (tmp_path / "e" / "ckpts" / "step_0000002.pt").write_bytes(b"")
    with pytest.raises(UserError, match="already holds the checkpoints"):  # another run's folder is not overwritten
        main(BASE + ["--out", str(tmp_path / "e")])
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["ckpts"]


def test_the_cli_trains_the_tiny_preset_end_to_end(tmp_path, capsys):
    from models.video_generation.runway_gen3.convert import load_adapter
    from train.train_video import main

    assert main(BASE + ["--steps", "1", "--prompt", "shapes", "--out", str(tmp_path)]) == 0
    assert "motion modules (image model frozen)" in capsys.readouterr().out
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["config"]["prompt"] == "shapes" and settings["data"] is None
    assert load_adapter(str(tmp_path / "motion_adapter.safetensors")).config.block_out_channels == (32, 64, 64)
    assert (tmp_path / "samples" / "step_0000001.mp4").stat().st_size > 0
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1]


@pytest.mark.slow  # three tiny runs: 15 s on a lightly loaded 2-core machine, over a minute under load
def test_the_cli_trains_and_a_resumed_run_equals_an_unbroken_one(tmp_path):
    from train.train_video import main

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    assert main(BASE + ["--steps", "3", "--save-every", "1", "--out", str(whole)]) == 0
    assert main(BASE + ["--steps", "2", "--out", str(broken)]) == 0
    assert main(BASE + ["--steps", "3", "--out", str(broken), "--resume"]) == 0
    a, b = (load_file(str(o / "motion_adapter.safetensors")) for o in (whole, broken))
    assert a.keys() == b.keys() and all(".motion_modules." in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same adapter, bit for bit
    rows = [[json.loads(line) for line in (o / "log.jsonl").read_text().splitlines()] for o in (whole, broken)]
    assert [r["step"] for r in rows[1]] == [1, 2, 3] and rows[0] == rows[1]
    assert sorted(p.name for p in (whole / "ckpts").iterdir()) == ["step_0000001.pt", "step_0000002.pt",
                                                                   "step_0000003.pt"]
    state = torch.load(whole / "ckpts" / "step_0000003.pt", weights_only=True)
    assert all(k.split(".")[0] in ("down_blocks", "mid_block", "up_blocks") for k in state["adapter"])
    assert (whole / "samples" / "step_0000003.mp4").stat().st_size > 0
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in a.items() if ".proj_out." in k)  # it trained
