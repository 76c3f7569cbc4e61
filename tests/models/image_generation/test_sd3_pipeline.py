"""SD3 pipeline: whole-pipeline parity with diffusers' StableDiffusion3Pipeline on tiny random components
(with and without T5), the official single-file layout, img2img, errors, CLI and facade."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from models.image_generation.stable_diffusion.convert import SD3_SCHEDULER
from models.image_generation.stable_diffusion.convert_mmdit import mmdit_config_to_diffusers
from models.image_generation.stable_diffusion.mmdit import MMDiTConfig
from models.image_generation.stable_diffusion.pipeline_sd3 import SD3Pipeline
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.t5 import T5EncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError

import diffusers
import transformers
from tests.helpers import tokenizers as _tok

PROMPT = "a watercolor painting of a red fox"
CFG = MMDiTConfig.preset("tiny")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer, T5EncoderModel, T5Tokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    tmp = tmp_path_factory.mktemp("sd3")
    torch.manual_seed(0)
    _tok.write_clip_tokenizer(tmp / "tok1")
    _tok.write_clip_tokenizer(tmp / "tok2", pad_token="!")
    _tok.write_t5_tokenizer(tmp / "tok3")
    clip = lambda name: transformers.CLIPTextModelWithProjection(  # noqa: E731
        CLIPTextEncoderConfig.preset(name).to_transformers()).eval()
    t5_cfg = T5EncoderConfig.preset("tiny").with_(d_model=CFG.context_in_dim)
    ref = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**mmdit_config_to_diffusers(CFG)).eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=SD3_SCHEDULER["shift"]),
        vae=AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny-16"))).eval(),
        text_encoder=clip("tiny"), tokenizer=CLIPTokenizer.from_pretrained(tmp / "tok1"),
        text_encoder_2=clip("tiny-bigg"), tokenizer_2=CLIPTokenizer.from_pretrained(tmp / "tok2"),
        text_encoder_3=T5EncoderModel(t5_cfg.to_transformers()).eval(),
        tokenizer_3=T5Tokenizer.from_pretrained(tmp / "tok3"))
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(tmp / "sd3")
    return ref, tmp / "sd3"


def _pixels(out):
    return out.pixels.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("with_t5", [True, False], ids=["t5", "no-t5-zeros"])
def test_text_to_image_parity_with_diffusers(folder, with_t5):
    ref, path = folder
    from diffusers import StableDiffusion3Pipeline

    if not with_t5:
        ref = StableDiffusion3Pipeline(**{**ref.components, "text_encoder_3": None, "tokenizer_3": None})
        ref.set_progress_bar_config(disable=True)
    # a folder of tiny size takes the tiny preset's 16 T5 tokens; diffusers' call uses 256
    ours = SD3Pipeline.from_pretrained(path, device="cpu", t5=with_t5, max_sequence_length=256)
    assert (ours.t5 is not None) == with_t5
    expected = ref(PROMPT, negative_prompt="blurry", num_inference_steps=3, guidance_scale=5.0, height=32, width=32,
                   generator=torch.Generator().manual_seed(5), output_type="np").images
    got = _pixels(ours(PROMPT, negative_prompt="blurry", steps=3, guidance=5.0, height=32, width=32, seed=5,
                       progress=False))
    assert abs(expected - got).max() <= 1e-3


def test_official_single_file_loads_like_the_diffusers_folder(folder, tmp_path):
    """sd3_medium_incl_clips_t5xxlfp16 layout: model.diffusion_model., first_stage_model.,
    text_encoders.{clip_l,clip_g,t5xxl}.transformer."""
    _, path = folder
    ours = SD3Pipeline.from_pretrained(path, device="cpu")
    sd = {f"model.diffusion_model.{k}": v for k, v in ours.transformer.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in ours.vae.state_dict().items()})
    for name, enc in (("clip_l", ours.clip_l), ("clip_g", ours.clip_g)):
        for k, v in enc.model.state_dict().items():
            if "position_ids" in k:
                continue
            key = k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"
            sd[f"text_encoders.{name}.transformer.{key}"] = v
    sd.update({f"text_encoders.t5xxl.transformer.{k}": v for k, v in ours.t5.model.state_dict().items()
               if k != "encoder.embed_tokens.weight"})
    file = tmp_path / "sd3_tiny_incl_clips_t5.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, file)
    single = SD3Pipeline.from_pretrained(file, device="cpu",
                                         tokenizers=[path / "tokenizer", path / "tokenizer_2", path / "tokenizer_3"])
    assert single.t5 is not None and single.transformer.config == ours.transformer.config
    a = _pixels(ours(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    b = _pixels(single(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    assert abs(a - b).max() <= 1e-5
    # the same file without text encoders takes them from `text_encoders=` (T5 optional)
    bare = tmp_path / "sd3_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items() if not k.startswith("text_encoders.")}, bare)
    no_te = SD3Pipeline.from_pretrained(bare, device="cpu", text_encoders=path)
    assert no_te.t5 is None and no_te(PROMPT, steps=1, height=32, width=32, progress=False).images


@pytest.mark.slow
def test_img2img_parity_with_diffusers(folder):
    from diffusers import StableDiffusion3Img2ImgPipeline

    ref, path = folder
    ref_i2i = StableDiffusion3Img2ImgPipeline(**ref.components)
    ref_i2i.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = ref_i2i(PROMPT, image=image, strength=0.6, num_inference_steps=5, guidance_scale=4.0,
                       generator=torch.Generator().manual_seed(2), output_type="np").images
    ours = SD3Pipeline.from_pretrained(path, device="cpu", max_sequence_length=256)
    got = _pixels(ours(PROMPT, image=image, strength=0.6, steps=5, guidance=4.0, seed=2, progress=False))
    assert abs(expected - got).max() <= 1e-3


def test_seed_means_seed_plus_image_index():
    """Image i of a call uses seed + i: image 2 of four made with seed 5 is the image made with seed 7, in
    text-to-image and img2img (each image's VAE sample and noise from its own generator)."""
    # float64, so that the batch size cannot move the numbers (in float32 it does, by ~1e-6)
    pipe = SD3Pipeline.from_pretrained(preset="tiny", device="cpu", dtype=torch.float64)
    four = pipe("a red fox", num_images=4, seed=5, steps=2, progress=False)
    one = pipe("a red fox", seed=7, steps=2, progress=False)
    assert (four.latents[2:3] - one.latents).abs().max() <= 1e-5
    assert (four.pixels[2:3] - one.pixels).abs().max() <= 1e-5
    assert (four.latents[0] - four.latents[1]).abs().max() > 1e-2
    four_i = pipe("a red fox", image=one.images[0], num_images=4, seed=5, steps=3, progress=False)
    one_i = pipe("a red fox", image=one.images[0], seed=7, steps=3, progress=False)
    assert (four_i.pixels[2:3] - one_i.pixels).abs().max() <= 1e-5


def test_offload_matches_plain_run():
    """Model and sequential CPU offload through the base (accelerate hooks with the CPU as the execution
    device: the wiring and the same images; the memory saving needs a GPU)."""
    import accelerate  # noqa: F401 - a hard dependency: a broken install fails here

    plain = SD3Pipeline.from_pretrained(preset="tiny", device="cpu")
    expect = plain("a red fox", seed=0, steps=2, progress=False).pixels
    for mode in ("model", "sequential"):
        pipe = SD3Pipeline.from_pretrained(preset="tiny", device="cpu", offload=mode, vae_tiling=True)
        assert pipe.offload == mode and pipe.vae.tile_latent == 64
        assert all(hasattr(m, "_hf_hook") for m in (pipe.clip_l, pipe.clip_g, pipe.t5, pipe.transformer))
        assert torch.allclose(pipe("a red fox", seed=0, steps=2, progress=False).pixels, expect, atol=1e-6)


def test_tiny_preset_and_errors(tmp_path):
    from utils.errors import WeightsError

    pipe = SD3Pipeline.from_pretrained(preset="tiny", device="cpu")
    out = pipe("a fox", num_images=2, seed=0, progress=False)
    assert len(out.images) == 2 and out.images[0].size == (32, 32)
    assert pipe("a fox", image=out.images[0], mask=torch.ones(32, 32), seed=0, steps=2, progress=False).images
    with pytest.raises(UserError, match="does not fit SD3"):
        pipe("x", scheduler="dpm++2m-karras")
    with pytest.raises(UserError, match="multiples of"):
        pipe("x", height=34, width=32)
    with pytest.raises(WeightsError, match="gated"):
        SD3Pipeline.from_pretrained(preset="sd3.5-large", device="cpu")
    bad = tmp_path / "x.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 4, 3, 3)}, bad)
    with pytest.raises(UserError, match="--model sdxl"):
        SD3Pipeline.from_pretrained(bad, device="cpu")


def test_cli_and_facade(tmp_path):
    import models
    from inference.generate_image import main

    out = tmp_path / "fox.png"
    main(["--model", "sd3", "--preset", "tiny", "--prompt", "a fox", "--steps", "2", "--out", str(out)])
    assert out.exists()
    assert models.generate("image", "sd3", preset="tiny", prompt="a fox", steps=1, seed=1).images
