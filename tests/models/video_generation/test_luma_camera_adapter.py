"""The camera adapter of the Dream Machine stand-in (luma_dream/camera_adapter.py, training.py): zero start
leaves the transformer's output unchanged, the token bias reaches the output, safetensors round trip with
checks, and a tiny adapter-only training run (transformer frozen) on clips rendered from the built-in scene."""
from __future__ import annotations

import json

import pytest
import torch

from models.video_generation.luma_dream.camera_adapter import (CameraAdapter, CameraAdapterConfig, camera_token_bias,
                                                               load_camera_adapter)
from models.video_generation.luma_dream.config import TRANSFORMER_PRESETS
from models.video_generation.luma_dream.model import LTXVideoTransformer, latent_coords
from utils.errors import UserError


def _transformer() -> LTXVideoTransformer:
    torch.manual_seed(0)
    return LTXVideoTransformer(TRANSFORMER_PRESETS["tiny"]).eval()


def _inputs(f=3, h=4, w=4):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, f * h * w, 8, generator=g)
    ctx = torch.randn(1, 5, 16, generator=g)
    return x, ctx, torch.tensor([500.0]), latent_coords(1, f, h, w, (2 / 25, 4, 4)), torch.ones(1, 5)


def test_fresh_adapter_changes_nothing_and_a_trained_one_does():
    tr = _transformer()
    x, ctx, t, coords, mask = _inputs()
    ad = CameraAdapter(CameraAdapterConfig(width=tr.config.inner_dim, hidden=16))
    bias = camera_token_bias(ad, "pan-left", 5, 16, 16, 2, 4)
    assert bias.shape == (1, 3 * 4 * 4, tr.config.inner_dim) and bias.abs().max() == 0
    with torch.no_grad():
        plain = tr(x, ctx, t, coords, mask)
        assert torch.equal(tr(x, ctx, t, coords, mask, token_bias=bias), plain)
        torch.nn.init.normal_(ad.proj_out.weight)
        moved = tr(x, ctx, t, coords, mask, token_bias=camera_token_bias(ad, "pan-left", 5, 16, 16, 2, 4))
        other = tr(x, ctx, t, coords, mask, token_bias=camera_token_bias(ad, "pan-right", 5, 16, 16, 2, 4))
    assert (moved - plain).abs().max() > 1e-3 and (moved - other).abs().max() > 1e-3
    # frame 0 is the identity pose in every path: its tokens' bias is the same for every preset
    b1, b2 = camera_token_bias(ad, "pan-left", 5, 16, 16, 2, 4), camera_token_bias(ad, "dolly-in", 5, 16, 16, 2, 4)
    assert torch.allclose(b1[:, :16], b2[:, :16]) and not torch.allclose(b1[:, 16:], b2[:, 16:])


def test_unshuffle_tokens_and_the_channel_check():
    ad = CameraAdapter(CameraAdapterConfig(width=32, in_channels=6 * 2 * 16, hidden=8, token_mode="unshuffle"))
    assert camera_token_bias(ad, "orbit", 5, 16, 16, 2, 4).shape == (1, 48, 32)
    with pytest.raises(UserError, match="6-channel"):
        CameraAdapter(CameraAdapterConfig(width=32, hidden=8))(torch.zeros(1, 4, 12))


def test_safetensors_round_trip_and_refusals(tmp_path):
    ad = CameraAdapter(CameraAdapterConfig(width=32, hidden=8, num_layers=1, fourier_bands=2))
    torch.nn.init.normal_(ad.proj_out.weight)
    path = ad.save(tmp_path / "cam.safetensors")
    back = load_camera_adapter(path, width=32)
    assert back.config == ad.config
    tok = torch.randn(1, 7, 6)
    assert torch.equal(back(tok), ad(tok))
    with pytest.raises(UserError, match="width 32"):
        load_camera_adapter(path, width=64)
    with pytest.raises(UserError, match="not found"):
        load_camera_adapter(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(UserError, match="not a safetensors"):
        load_camera_adapter(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="no LTX camera adapter"):
        load_camera_adapter(tmp_path / "other.safetensors")


def test_tiny_training_run_trains_only_the_adapter(tmp_path):
    from models.video_generation.luma_dream.training import CameraRunOptions, CameraTrainConfig, CameraTrainer

    cfg = CameraTrainConfig(steps=3, num_clips=4, num_frames=5, size=(16, 16), batch_size=2, hidden=16)
    trainer = CameraTrainer(cfg, CameraRunOptions(out=str(tmp_path / "run"), progress=False, save_every=2))
    result = trainer.run()
    from models.video_generation.luma_dream.pipeline import LTXVideoPipeline

    fresh = LTXVideoPipeline.tiny().transformer
    for k, v in trainer.pipe.transformer.state_dict().items():  # frozen: still the tiny preset's weights
        assert torch.equal(v.cpu(), fresh.state_dict()[k]), k
    ad = load_camera_adapter(result["adapter"], width=fresh.config.inner_dim)
    assert ad.proj_out.weight.abs().max() > 0  # it moved off zero
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert sorted(p.name for p in (tmp_path / "run" / "ckpts").iterdir()) == ["step_0000002.pt", "step_0000003.pt"]
    # the same settings continue from the checkpoint; another seed is refused
    more = CameraTrainer(CameraTrainConfig(**{**cfg.__dict__, "steps": 4}),
                         CameraRunOptions(out=str(tmp_path / "run"), resume="auto", progress=False)).run()
    assert [h["step"] for h in more["history"]] == [4]
    with pytest.raises(UserError, match="seed"):
        CameraTrainer(CameraTrainConfig(**{**cfg.__dict__, "steps": 5, "seed": 1}),
                      CameraRunOptions(out=str(tmp_path / "run"), resume="auto", progress=False)).run()
    with pytest.raises(UserError, match="already holds"):
        CameraTrainer(cfg, CameraRunOptions(out=str(tmp_path / "run"), progress=False)).run()


def test_scene_clips_have_known_cameras():
    from models.video_generation.luma_dream.training import SceneClips

    clips = SceneClips(3, 5, (16, 16), seed=0, presets=("pan-left", "dolly-in", "static"))
    item = clips[0]
    assert item["video"].shape == (5, 3, 16, 16) and item["video"].min() >= -1 and item["video"].max() <= 1
    assert item["preset"] == "pan-left" and len(item["cameras"]) == 5
    assert item["video"].std() > 0.05
    # the static clip's frames are identical; the pan's are not
    assert torch.equal(clips[2]["video"][0], clips[2]["video"][-1])
    assert (item["video"][0] - item["video"][-1]).abs().mean() > 0.02


def test_tiny_base_fit_writes_the_fitted_vae_and_transformer(tmp_path):
    from safetensors.torch import load_file

    from models.video_generation.luma_dream.training import CameraRunOptions, CameraTrainConfig, CameraTrainer

    cfg = CameraTrainConfig(steps=1, num_clips=2, num_frames=5, size=(16, 16), batch_size=2, hidden=8,
                            base_vae_steps=2, base_steps=2)
    trainer = CameraTrainer(cfg, CameraRunOptions(out=str(tmp_path / "run"), progress=False))
    result = trainer.run()
    vae = load_file(result["base_vae"])
    assert not torch.allclose(vae["latents_std"], torch.ones_like(vae["latents_std"]))  # statistics of the clips
    assert set(load_file(result["base_transformer"])) == set(trainer.pipe.transformer.state_dict())
    with pytest.raises(UserError, match="base"):
        CameraTrainConfig(preset="ltxv-2b-0.9.5", base_vae_steps=1).check()
