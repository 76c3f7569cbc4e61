"""LTX-Video frame conditioning (luma_dream/conditions.py and `LTXVideoPipeline(conditions=...)`): parity with
diffusers' LTXConditionPipeline on the same tiny random components (T5 from transformers with a SentencePiece
tokenizer, transformer, 0.9 and 0.9.1 VAEs) for a frame-0 image, a later keyframe and a condition video; the
token preparation (extra tokens, masks, causal positions) and the per-token step on their own; user errors."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXVideoTransformer3DModel
from diffusers.pipelines.ltx.pipeline_ltx_condition import LTXConditionPipeline, LTXVideoCondition
from PIL import Image

from models.video_generation.luma_dream import VideoCondition
from models.video_generation.luma_dream.conditions import (PREFIX_LATENT_FRAMES, EncodedCondition,
                                                           causal_frame_coords, check_conditions, per_token_step,
                                                           prepare_tokens, trimmed_length)
from models.video_generation.luma_dream.config import TRANSFORMER_PRESETS
from models.video_generation.luma_dream.convert import official_to_diffusers
from models.video_generation.luma_dream.model import LTXVideoTransformer
from models.video_generation.luma_dream.pipeline import LTXVideoPipeline
from utils.encoders.ltx_vae import LTXVideoVAE, ltx_vae_config
from utils.encoders.t5 import T5EncoderConfig, T5TextEncoder, load_t5_tokenizer
from utils.encoders.vae import DiagonalGaussian
from utils.errors import UserError

V091 = dict(decoder_block_out_channels=(8, 8), decoder_layers_per_block=(1, 2, 1),
            decoder_inject_noise=(True, True, False), upsample_residual=(True, False), upsample_factor=(2, 1),
            timestep_conditioning=True)
SIGMAS = [1.0, 0.8, 0.45, 0.2]  # reaches below 1 - strength for the partial strengths used here


def _tokenizer_writer():
    path = Path(__file__).resolve().parents[2] / "helpers" / "tokenizers.py"
    spec = importlib.util.spec_from_file_location("_luma_cond_tokenizers", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.write_t5_tokenizer


def _randomize(m, seed, scale=0.2):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("t5") / "tokenizer"
    return folder, _tokenizer_writer()(folder)


def _pipeline(tokenizer_folder, vae_extra=None, seed=0) -> LTXVideoPipeline:
    folder, info = tokenizer_folder
    t5 = T5TextEncoder(T5EncoderConfig.preset("tiny").with_(vocab_size=info.vocab_size),
                       tokenizer=load_t5_tokenizer(folder))
    transformer = LTXVideoTransformer(replace(TRANSFORMER_PRESETS["tiny"], caption_channels=t5.config.d_model)).eval()
    vae = LTXVideoVAE(ltx_vae_config("tiny", **(vae_extra or {}))).eval()
    _randomize(transformer, seed)
    _randomize(vae, seed + 1)
    _randomize(t5, seed + 2, 0.5)
    return LTXVideoPipeline(transformer, vae, t5)


def _reference(pipe: LTXVideoPipeline) -> LTXConditionPipeline:
    """diffusers' condition pipeline over the same weights (our converter's diffusers layout)."""
    tr = LTXVideoTransformer3DModel(**pipe.transformer.config.to_diffusers()).eval()
    tr.load_state_dict(official_to_diffusers(pipe.transformer.state_dict()))
    vae = AutoencoderKLLTXVideo(**pipe.vae.config.to_diffusers()).eval()
    vae.load_state_dict(pipe.vae.state_dict())
    ref = LTXConditionPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                               text_encoder=pipe.text_encoder.model, tokenizer=pipe.text_encoder.tokenizer,
                               transformer=tr)
    ref.set_progress_bar_config(disable=True)
    return ref


def _image(seed: int, size=(32, 32)) -> Image.Image:
    arr = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    return Image.fromarray(arr)


CASES = {
    # name: (VAE, clip frames, [(kind, frame, strength)])
    "frame0-image": (None, 5, [("image", 0, 1.0)]),
    "keyframe": (V091, 9, [("image", 4, 1.0)]),
    "video": (None, 9, [("video", 2, 0.6)]),
    "first-and-last": (None, 9, [("image", 0, 0.7), ("image", 8, 1.0)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_condition_parity_with_diffusers(tokenizer_folder, case):
    vae_extra, frames, items = CASES[case]
    pipe = _pipeline(tokenizer_folder, vae_extra, seed=7)
    ref = _reference(pipe)
    media = []
    for n, (kind, frame, strength) in enumerate(items):
        media.append((kind, _image(n) if kind == "image" else [_image(10 + i) for i in range(5)], frame, strength))
    ours = [VideoCondition(**{kind: m}, frame_index=k, strength=s) for kind, m, k, s in media]
    theirs = [LTXVideoCondition(**{kind: m}, frame_index=k, strength=s) for kind, m, k, s in media]
    call = dict(prompt="a red fox runs", negative_prompt="blurry", height=32, width=32, num_frames=frames,
                guidance_scale=3.0, max_sequence_length=16, decode_timestep=0.05, decode_noise_scale=0.025)
    with torch.no_grad():
        torch.manual_seed(21)  # diffusers' 0.9.1 decoder draws its injected noise from the global generator
        want = ref(conditions=theirs, timesteps=[s * 1000 for s in SIGMAS], frame_rate=25, output_type="pt",
                   generator=torch.Generator().manual_seed(21), **call).frames
    out = pipe(conditions=ours, timesteps=SIGMAS, fps=25, seed=21, progress=False, **call)
    assert out.pixels.shape == want.shape == (1, frames, 3, 32, 32)
    assert (out.pixels - want).abs().max() <= 1e-3
    assert want.std() > 1e-2
    # The conditions matter: the same call without them differs.
    free = pipe(timesteps=SIGMAS, fps=25, seed=21, progress=False, **call)
    assert (free.pixels - out.pixels).abs().max() > 1e-3


def test_frame0_condition_keeps_the_encoded_frame(tokenizer_folder):
    """With no per-step noise a strength-1 first frame is never stepped: latent frame 0 is the image's
    posterior sample from the video's generator, exactly."""
    pipe = _pipeline(tokenizer_folder, seed=3)
    image = _image(4)
    kw = dict(prompt="a boat", negative_prompt="", steps=2, seed=5, max_sequence_length=16, progress=False,
              output_type="latent", height=32, width=32, num_frames=5, condition_noise_scale=0.0)
    lat = pipe(conditions=[VideoCondition(image=image)], **kw).latents
    g = torch.Generator().manual_seed(5)
    torch.randn((1, 8, 3, 8, 8), generator=g)  # the clip's noise is drawn first, then the posterior sample
    with torch.no_grad():
        post = pipe.encode_conditions([VideoCondition(image=image)], [_as_pixels(image)])[0].posterior
        want = pipe.vae.normalize(post.sample(g))
    assert torch.equal(lat[:, :, :1], want)
    other = pipe(conditions=[VideoCondition(image=image)], **{**kw, "seed": 6}).latents
    assert (lat[:, :, 1:] - other[:, :, 1:]).abs().max() > 1e-2


def _as_pixels(image: Image.Image) -> torch.Tensor:
    arr = np.asarray(image, dtype=np.float32) / 255.0
    return (torch.from_numpy(arr).permute(2, 0, 1) * 2 - 1)[None, :, None]


def _posterior(latents: torch.Tensor) -> DiagonalGaussian:
    """A posterior with zero variance at `latents` (its sample is `latents` whatever the generator)."""
    return DiagonalGaussian(torch.cat([latents, torch.full_like(latents, -30.0 * 4)], dim=1))


def test_prepare_tokens_layout():
    """Frame-0 conditions blend into the first latent frames; a later image becomes h*w extra tokens at its
    frame; a later video's prefix becomes extra tokens and the rest replaces the clip's latents."""
    c, f, h, w, r = 4, 5, 2, 3, 8
    noise = torch.randn(1, c, f, h, w, generator=torch.Generator().manual_seed(0))
    first = torch.ones(1, c, 1, h, w)
    key = torch.full((1, c, 1, h, w), 2.0)
    clip = torch.full((1, c, 4, h, w), 3.0)  # 25 pixel frames -> 4 latent frames
    encoded = [EncodedCondition(0, 1.0, _posterior(first), 1), EncodedCondition(16, 0.5, _posterior(key), 1),
               EncodedCondition(8, 1.0, _posterior(clip), 25)]
    ct = prepare_tokens(noise, encoded, torch.Generator().manual_seed(1), lambda z: z, r, 32, 25.0)
    hw = h * w
    assert ct.num_extra == hw + PREFIX_LATENT_FRAMES * hw
    assert ct.tokens.shape == (1, ct.num_extra + f * hw, c)
    main = ct.tokens[:, ct.num_extra:]
    assert torch.allclose(main[:, :hw], torch.ones(1, hw, c), atol=1e-6)  # frame 0 replaced
    # video at frame 8: latent frames 2, 3 of the video -> clip latent frames 8 // 8 + 2 = 3 and 4
    assert torch.allclose(main[:, 3 * hw:5 * hw], torch.full((1, 2 * hw, c), 3.0), atol=1e-5)
    assert torch.equal(ct.mask[0, ct.num_extra:], torch.tensor([1.0] * hw + [0.0] * 2 * hw + [1.0] * 2 * hw))
    assert torch.equal(ct.mask[0, :hw], torch.full((hw,), 0.5))  # the keyframe's own tokens
    # positions: frames in seconds on causal coordinates; the keyframe at 16 / 25 s, the video from 8 / 25 s
    assert torch.allclose(causal_frame_coords(f, r), torch.tensor([0.0, 1, 9, 17, 25]))
    assert torch.allclose(ct.coords[0, 0, :hw], torch.full((hw,), 16 / 25))
    assert torch.allclose(ct.coords[0, 0, hw:2 * hw], torch.full((hw,), 8 / 25))
    assert torch.allclose(ct.coords[0, 0, 2 * hw:3 * hw], torch.full((hw,), 9 / 25))
    assert torch.allclose(ct.coords[0, 1:, :hw], ct.coords[0, 1:, ct.num_extra:ct.num_extra + hw])
    # per-token timesteps and which tokens move
    t = torch.tensor(700.0)
    assert torch.equal(ct.timesteps(t)[0, :hw], torch.full((hw,), 500.0))
    assert not ct.to_denoise(t)[0, :hw].any() and ct.to_denoise(torch.tensor(400.0))[0, :hw].all()
    assert ct.hard.sum() == 2 * hw + 2 * hw + hw


def test_per_token_step_goes_to_the_next_level_below():
    sigmas = torch.tensor([1.0, 0.6, 0.3, 0.0])
    x, v = torch.zeros(1, 3, 1), torch.ones(1, 3, 1)
    prev, x0 = per_token_step(x, v, torch.tensor([[1000.0, 500.0, 0.0]]), sigmas)
    assert torch.allclose(prev[0, :, 0], torch.tensor([-0.4, -0.2, 0.0]))
    assert torch.allclose(x0[0, :, 0], torch.tensor([-1.0, -0.5, 0.0]))


def test_trimmed_length_and_checks():
    assert trimmed_length(0, 30, 121, 8) == 25 and trimmed_length(112, 30, 121, 8) == 9
    assert trimmed_length(120, 30, 121, 8) == 1
    check_conditions([VideoCondition(image="x.png", frame_index=120)], 121, 8)
    with pytest.raises(UserError, match="outside the clip of 121 frames"):
        check_conditions([VideoCondition(image="x.png", frame_index=121)], 121, 8)
    with pytest.raises(UserError, match="multiples of 8 frames.*use 16 or 24"):
        check_conditions([VideoCondition(image="x.png", frame_index=20)], 121, 8)
    with pytest.raises(UserError, match="strength must be in \\[0, 1\\]"):
        VideoCondition(image="x.png", strength=1.5)
    with pytest.raises(UserError, match="an image or a video"):
        VideoCondition()
    with pytest.raises(UserError, match="integer frame"):
        VideoCondition(image="x.png", frame_index=2.5)


def test_pipeline_refuses_bad_conditions():
    pipe = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    image = torch.rand(3, 32, 32)
    with pytest.raises(UserError, match="not both"):
        pipe(prompt="x", image=image, conditions=[VideoCondition(image=image)], progress=False)
    with pytest.raises(UserError, match="outside the clip of 5 frames"):
        pipe(prompt="x", conditions=[VideoCondition(image=image, frame_index=6)], progress=False)
    with pytest.raises(UserError, match="multiples of 2 frames"):
        pipe(prompt="x", conditions=[VideoCondition(image=image, frame_index=3)], progress=False)
    with pytest.raises(UserError, match="VideoCondition items"):
        pipe(prompt="x", conditions=["x.png"], progress=False)
    with pytest.raises(UserError, match="condition_noise_scale"):
        pipe(prompt="x", conditions=VideoCondition(image=image), condition_noise_scale=-1, progress=False)


def test_tiny_conditions_with_a_batch_and_previews():
    """Conditions combine with a batch of videos and live previews (previews of the clip's tokens only)."""
    pipe = LTXVideoPipeline.from_pretrained(preset="tiny", device="cpu")
    shapes = []
    g = torch.Generator().manual_seed(0)
    clip, image = torch.rand(5, 3, 40, 48, generator=g), torch.rand(3, 32, 32, generator=g)
    conditions = [VideoCondition(video=clip, frame_index=2, strength=0.9), VideoCondition(image=image, frame_index=4)]
    out = pipe(prompt=["a fox", "a cat"], num_videos=2, steps=2, progress=False, conditions=conditions,
               callback=lambda i, total, frames: shapes.append(tuple(frames.shape)))
    assert out.pixels.shape == (4, 5, 3, 32, 32) and torch.isfinite(out.pixels).all()
    assert shapes == [(4, 3, 3, 8, 8)] * 2
    # video i of a call is made again alone from seed + i
    again = pipe(prompt="a cat", seed=3, steps=2, progress=False, conditions=conditions)
    assert (again.pixels[0] - out.pixels[3]).abs().max() <= 1e-5


def test_conditions_with_a_camera_adapter(tmp_path):
    """The camera adapter's bias covers the clip's tokens (the extra condition tokens get none): a fresh
    (zero) adapter changes nothing, a perturbed one changes the clip; both with a keyframe's extra tokens."""
    from models.video_generation.luma_dream.camera_adapter import CameraAdapter, CameraAdapterConfig

    pipe = LTXVideoPipeline.tiny()
    kw = dict(prompt="a cube", steps=2, guidance_scale=3.0, output_type="latent", progress=False, seed=3,
              conditions=[VideoCondition(image=torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1)),
                                         frame_index=4, strength=0.8)])
    plain = pipe(**kw).latents
    pipe.camera_adapter = CameraAdapter(CameraAdapterConfig(width=pipe.transformer.config.inner_dim, hidden=16))
    assert torch.equal(pipe(camera="orbit", **kw).latents, plain)
    torch.nn.init.normal_(pipe.camera_adapter.proj_out.weight, std=0.5)
    assert (pipe(camera="pan-left", **kw).latents - plain).abs().max() > 1e-3
