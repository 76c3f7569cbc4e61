"""The Sora stand-in on Wan 2.2 TI2V-5B: whole-generation parity with diffusers' WanPipeline and
WanImageToVideoPipeline with expand_timesteps=True (per-token timesteps, the image as the first latent
frame) on the same tiny random components over the Wan 2.2 VAE, loading a diffusers folder and an
official release folder of the 2.2 layout, the refusal of two-expert folders, the CLI, and the size
errors (sides multiples of 32 for the release)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
from diffusers import WanPipeline as ReferenceT2V
from diffusers import WanTransformer3DModel
from PIL import Image
from safetensors.torch import save_file

from models.video_generation.sora.convert import official_to_diffusers
from models.video_generation.sora.pipeline import WanPipeline
from utils.encoders.t5 import T5TextEncoder, load_t5_tokenizer
from utils.encoders.umt5_convert import transformers_to_official
from utils.encoders.wan_vae_convert import native_to_diffusers, native_to_official
from utils.errors import UserError
from tests.helpers.tokenizers import write_t5_tokenizer


SHIFT = 3.0
CALL = dict(num_frames=9, height=32, width=48, guidance_scale=4.0)


@pytest.fixture(scope="module")
def tokenizer_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("umt5") / "tokenizer"
    return folder, write_t5_tokenizer(folder)


def _pipeline(tokenizer_folder, seed: int = 0) -> WanPipeline:
    """The tiny TI2V pipeline (tiny Wan 2.2 VAE, 6 latent channels) with a real SentencePiece tokenizer and
    perturbed weights (the release zero-inits some projections)."""
    folder, info = tokenizer_folder
    pipe = WanPipeline.tiny(ti2v=True)
    cfg = pipe.text_encoder.config.with_(vocab_size=info.vocab_size)
    pipe.text_encoder = T5TextEncoder(cfg, tokenizer=load_t5_tokenizer(folder))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return pipe


def _reference(pipe: WanPipeline, image_to_video: bool = False):
    tr = WanTransformer3DModel(**pipe.config.to_diffusers()).eval()
    tr.load_state_dict(official_to_diffusers(pipe.transformer.state_dict()))
    vae = AutoencoderKLWan(**pipe.vae.config.to_diffusers()).eval()
    vae.load_state_dict(native_to_diffusers(pipe.vae.state_dict()))
    parts = dict(tokenizer=pipe.text_encoder.tokenizer, text_encoder=pipe.text_encoder.model, vae=vae,
                 transformer=tr, scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT), expand_timesteps=True)
    ref = WanImageToVideoPipeline(**parts) if image_to_video else ReferenceT2V(**parts)
    ref.set_progress_bar_config(disable=True)
    return ref


def _generators(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((40, 56, 3)) * 255).astype(np.uint8))


def test_tiny_ti2v_pipeline_is_wan22():
    pipe = WanPipeline.tiny(ti2v=True)
    assert pipe.expand_timesteps and pipe.takes_image and not pipe.i2v
    assert pipe.vae.config.is_residual and pipe.vae.config.patch_size == 2
    assert pipe.pixel_multiple == 16  # tiny 2.2 VAE: 8 x patch 2 (the release: 16 x 2 = 32)
    assert not WanPipeline.tiny().expand_timesteps
    # Per-token timesteps: the first latent frame's tokens get 0, every other token t.
    ts = pipe.token_timesteps(torch.tensor([700.0, 300.0]), (2, 6, 3, 4, 6), given_first=True)
    assert ts.shape == (2, 3 * 2 * 3)
    assert (ts[:, :6] == 0).all() and (ts[0, 6:] == 700).all() and (ts[1, 6:] == 300).all()


def test_text_to_video_parity_with_diffusers(tokenizer_folder):
    pipe = _pipeline(tokenizer_folder)
    ref = _reference(pipe)
    prompts, negatives = ["a red square slides to the right", "rain over a lake"], ["blurry", ""]
    with torch.no_grad():
        want = ref(prompt=prompts, negative_prompt=negatives, num_inference_steps=3, generator=_generators(7, 8),
                   output_type="pt", max_sequence_length=16, **CALL).frames
    out = pipe(prompt=prompts, negative_prompt=negatives, steps=3, seed=7, shift=SHIFT, max_sequence_length=16,
               progress=False, **CALL)
    assert out.pixels.shape == want.shape == (2, 9, 3, 32, 48)
    assert (out.pixels - want).abs().max().item() <= 1e-3
    assert want.std() > 0.05
    assert out.latents.shape == (2, 6, 3, 4, 6)


def test_image_to_video_parity_with_diffusers(tokenizer_folder):
    """The image is the first latent frame: replaced at every step, its tokens at timestep 0 (as diffusers'
    expand_timesteps runs it, and the Wan 2.2 release's TI2V)."""
    pipe = _pipeline(tokenizer_folder, seed=1)
    ref = _reference(pipe, image_to_video=True)
    image = _image()
    with torch.no_grad():
        want = ref(image=image, prompt="a cat walks", negative_prompt="blur", num_inference_steps=3,
                   generator=_generators(5), output_type="pt", max_sequence_length=16, **CALL).frames
    out = pipe(image=image, prompt="a cat walks", negative_prompt="blur", steps=3, seed=5, shift=SHIFT,
               max_sequence_length=16, progress=False, **CALL)
    assert out.pixels.shape == want.shape == (1, 9, 3, 32, 48)
    assert (out.pixels - want).abs().max().item() <= 1e-3
    assert want.std() > 0.05
    # The returned latents start on the image's own latent frame.
    with torch.no_grad():
        first = pipe.first_frame_latents(pipe._frame_pixels([image], (32, 48)))
    assert torch.allclose(out.latents[:, :, :1], first, atol=1e-6)
    # The image conditions the clip; without it the same model runs text-to-video.
    other = pipe(image=Image.fromarray(255 - np.asarray(image)), prompt="a cat walks", negative_prompt="blur",
                 steps=3, seed=5, shift=SHIFT, max_sequence_length=16, progress=False, **CALL)
    text_only = pipe(prompt="a cat walks", negative_prompt="blur", steps=3, seed=5, shift=SHIFT,
                     max_sequence_length=16, progress=False, **CALL)
    assert (other.pixels - out.pixels).abs().max() > 1e-3
    assert (text_only.pixels - out.pixels).abs().max() > 1e-3


def _official_folder(pipe: WanPipeline, folder: Path) -> Path:
    """The official Wan2.2-TI2V-5B folder layout: transformer safetensors + config.json, Wan2.2_VAE.pth, the
    UMT5 .pth and its tokenizer under google/umt5-xxl/."""
    (folder / "google").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()},
              folder / "diffusion_pytorch_model.safetensors")
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", "dim": pipe.config.dim,
                                                    "num_heads": pipe.config.num_heads, "model_type": "ti2v",
                                                    "in_dim": pipe.config.in_dim, "out_dim": pipe.config.out_dim}))
    torch.save(native_to_official(pipe.vae.state_dict(), pipe.vae.config.num_res_blocks), folder / "Wan2.2_VAE.pth")
    torch.save(transformers_to_official(pipe.text_encoder.model.state_dict()),
               folder / "models_t5_umt5-xxl-enc-bf16.pth")
    pipe.text_encoder.tokenizer.save_pretrained(str(folder / "google" / "umt5-xxl"))
    return folder


def test_load_diffusers_and_official_folders(tokenizer_folder, tmp_path):
    pipe = _pipeline(tokenizer_folder, seed=2)
    call = dict(prompt="a boat", image=_image(3), steps=2, seed=3, shift=SHIFT, max_sequence_length=16,
                progress=False, **CALL)
    want = pipe(**call).pixels
    # What diffusers writes (model_index.json names expand_timesteps: true); the transformer config also
    # names an image projection that the weights do not hold, as some published TI2V-5B configs do.
    _reference(pipe, image_to_video=True).save_pretrained(tmp_path / "diffusers")
    cfg_file = tmp_path / "diffusers" / "transformer" / "config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "image_dim": 1280, "added_kv_proj_dim": cfg["attention_head_dim"] * 2}))
    assert json.loads((tmp_path / "diffusers" / "model_index.json").read_text())["expand_timesteps"] is True
    loaded = WanPipeline.from_pretrained(tmp_path / "diffusers", device="cpu", dtype="float32")
    assert loaded.expand_timesteps and not loaded.config.i2v and loaded.vae.config == pipe.vae.config
    assert (loaded(**call).pixels - want).abs().max() <= 1e-5
    official = WanPipeline.from_pretrained(_official_folder(pipe, tmp_path / "official"), device="cpu",
                                           dtype="float32")
    assert official.expand_timesteps
    assert (official(**call).pixels - want).abs().max() <= 1e-5


def test_two_expert_folders_are_refused(tmp_path):
    for name in ("transformer_2", "high_noise_model"):
        folder = tmp_path / name
        (folder / name).mkdir(parents=True)
        (folder / "transformer").mkdir()
        (folder / "vae").mkdir()
        with pytest.raises(UserError, match="two-expert Wan 2.2 model.*A14B.*use wan2.2-ti2v-5b"):
            WanPipeline.from_pretrained(folder, device="cpu")


def test_sizes_and_user_errors():
    pipe = WanPipeline.tiny(ti2v=True)
    with pytest.raises(UserError, match=r"^Wan generates sizes that are multiples of 16 pixels, got 24x32"):
        pipe(prompt="x", height=24, width=32, progress=False)
    with pytest.raises(UserError, match=r"1 \+ 4k frames.*use 5 or 9"):
        pipe(prompt="x", num_frames=7, progress=False)
    # An image of another aspect ratio: about the preset's area on the 16-pixel grid of this tiny VAE.
    wide = pipe(prompt="x", image=Image.new("RGB", (64, 32), "red"), steps=1, output_type="latent", progress=False)
    assert wide.latents.shape == (1, 6, 2, 2, 6)  # 16 x 48 pixels: about 32 x 32 at 1:2
    with pytest.raises(UserError, match="components come from different models"):
        WanPipeline(WanPipeline.tiny(image_to_video=True).transformer, pipe.vae, pipe.text_encoder,
                    WanPipeline.tiny(image_to_video=True).image_encoder, expand_timesteps=True)


def test_generate_video_cli(tokenizer_folder, tmp_path, monkeypatch, capsys):
    """generate_video.py --model sora --preset wan2.2-ti2v-5b on a diffusers folder of the 2.2 layout (tiny
    weights): text-to-video and image-to-video, and the 32-pixel grid refused in one line before loading."""
    import imageio_ffmpeg

    from inference.generate_video import main
    from utils.errors import cli_errors

    pipe = _pipeline(tokenizer_folder, seed=4)
    _reference(pipe).save_pretrained(tmp_path / "wan22")
    _image(5).save(tmp_path / "first.png")
    monkeypatch.chdir(tmp_path)
    base = ["--model", "sora", "--preset", "wan2.2-ti2v-5b", "--weights", str(tmp_path / "wan22"), "--prompt",
            "a fox in snow", "--height", "32", "--width", "64", "--num-frames", "5", "--steps", "2", "--no-progress"]
    assert main([*base, "--out", "t2v.mp4"]) == 0
    assert main([*base, "--image", "first.png", "--out", "i2v.mp4"]) == 0
    for name in ("t2v.mp4", "i2v.mp4"):
        assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / name))[0] == 5
    assert "5 frames at 24 fps" in capsys.readouterr().out
    before = set(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
        main(["--model", "sora", "--preset", "wan2.2-ti2v-5b", "--prompt", "x", "--height", "48", "--out", "bad.mp4"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "not a multiple of 32" in err, err
    assert set(tmp_path.iterdir()) == before
