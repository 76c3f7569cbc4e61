"""camera= of LTXVideoPipeline (luma_dream): without it, or with a fresh (zero) adapter, the clip is unchanged;
a trained-looking adapter changes it per preset; no adapter, an unknown preset or a malformed JSON path are one
line before any sampling."""
from __future__ import annotations

import pytest
import torch

from models.video_generation.luma_dream.camera_adapter import CameraAdapter, CameraAdapterConfig
from models.video_generation.luma_dream.pipeline import LTXVideoPipeline
from utils.errors import UserError


@pytest.fixture(scope="module")
def pipe():
    return LTXVideoPipeline.tiny()


KW = dict(prompt="a cube", num_frames=5, height=16, width=16, steps=2, guidance_scale=1.0, output_type="latent",
          progress=False, seed=3)


def test_camera_moves_the_latents_only_through_the_adapter(pipe, tmp_path):
    plain = pipe(**KW).latents
    with pytest.raises(UserError, match="needs a camera adapter"):
        pipe(camera="orbit", **KW)
    ad = CameraAdapter(CameraAdapterConfig(width=pipe.transformer.config.inner_dim, hidden=16))
    path = ad.save(tmp_path / "zero.safetensors")
    pipe.load_camera_adapter(path)
    try:
        assert torch.equal(pipe(camera="orbit", **KW).latents, plain)  # zero-initialised: no change
        torch.nn.init.normal_(pipe.camera_adapter.proj_out.weight, std=0.5)
        left = pipe(camera="pan-left", **KW).latents
        right = pipe(camera="pan-right", **KW).latents
        assert (left - plain).abs().max() > 1e-3 and (left - right).abs().max() > 1e-3
        with pytest.raises(UserError, match="unknown camera preset 'sideways'.*valid presets"):
            pipe(camera="sideways", **KW)
        bad = tmp_path / "cam.json"
        bad.write_text('{"frames": [{"camera_to_world": [[1, 0], [0, 1]]}]}')
        with pytest.raises(UserError, match="cam.json: frames\\[0\\].camera_to_world"):
            pipe(camera=str(bad), **KW)
    finally:
        pipe.camera_adapter = None


def test_camera_scale_is_guidance_away_from_the_camera_free_prediction(pipe, tmp_path):
    ad = CameraAdapter(CameraAdapterConfig(width=pipe.transformer.config.inner_dim, hidden=16))
    torch.nn.init.normal_(ad.proj_out.weight, std=0.5)
    pipe.camera_adapter = ad
    one = dict(KW, steps=1)
    try:
        plain = pipe(**one).latents
        cam = pipe(camera="pan-left", **one).latents
        assert torch.equal(pipe(camera="pan-left", camera_scale=1.0, **one).latents, cam)
        assert torch.allclose(pipe(camera="pan-left", camera_scale=0.0, **one).latents, plain, atol=1e-6)
        # one Euler step is linear in the velocity: scale 3 moves three times as far from the plain clip
        three = pipe(camera="pan-left", camera_scale=3.0, **one).latents
        assert torch.allclose(three - plain, 3 * (cam - plain), atol=1e-5)
        with pytest.raises(UserError, match="camera_scale must be >= 0"):
            pipe(camera="pan-left", camera_scale=-1.0, **one)
    finally:
        pipe.camera_adapter = None
