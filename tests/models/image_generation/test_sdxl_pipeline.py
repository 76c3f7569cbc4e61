"""SDXL pipeline: whole-pipeline parity with diffusers on tiny random components, every loading path,
img2img / inpainting / refiner hand-off, the CLI and the facade."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers
from models.image_generation.stable_diffusion.convert import SDXL_SCHEDULER
from models.image_generation.stable_diffusion.pipeline_sdxl import SDXLPipeline
from models.image_generation.stable_diffusion.unet import UNetConfig
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError

import diffusers
import transformers
from tests.helpers.tokenizers import write_clip_tokenizer

PROMPT = "a watercolor painting of a red fox"
REFINER_CFG = UNetConfig.preset("tiny").with_(context_dim=40, adm_in_channels=32 + 5 * 8, micro_conditioning="refiner")


def _diffusers_components(tmp: Path, unet_cfg: UNetConfig = UNetConfig.preset("tiny"), refiner: bool = False):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config_to_diffusers(unet_cfg)).eval()
    vae = AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny"))).eval()
    enc2 = transformers.CLIPTextModelWithProjection(CLIPTextEncoderConfig.preset("tiny-bigg").to_transformers()).eval()
    write_clip_tokenizer(tmp / "tok2", pad_token="!")
    parts = dict(unet=unet, vae=vae, text_encoder_2=enc2, tokenizer_2=CLIPTokenizer.from_pretrained(tmp / "tok2"),
                 scheduler=EulerDiscreteScheduler.from_config({k: v for k, v in SDXL_SCHEDULER.items()
                                                               if k != "_class_name"}))
    if not refiner:
        write_clip_tokenizer(tmp / "tok1")
        parts["text_encoder"] = transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval()
        parts["tokenizer"] = CLIPTokenizer.from_pretrained(tmp / "tok1")
    return parts


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    from diffusers import StableDiffusionXLPipeline

    tmp = tmp_path_factory.mktemp("sdxl")
    ref = StableDiffusionXLPipeline(**_diffusers_components(tmp))
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(tmp / "base")
    return ref, tmp / "base"


def _pixels(out):
    return out.pixels.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("negative", [None, "blurry, low quality"], ids=["zeros-negative", "negative-prompt"])
def test_text_to_image_parity_with_diffusers(base_folder, negative):
    ref, folder = base_folder
    ours = SDXLPipeline.from_pretrained(folder, device="cpu")
    kw = dict(height=32, width=32)
    expected = ref(PROMPT, negative_prompt=negative, num_inference_steps=3, guidance_scale=5.0,
                   generator=torch.Generator().manual_seed(7), output_type="np", **kw).images
    got = _pixels(ours(PROMPT, negative_prompt=negative, steps=3, guidance=5.0, seed=7, progress=False, **kw))
    assert abs(expected - got).max() <= 1e-3


def test_ensemble_hand_off_parity_with_diffusers(base_folder, tmp_path):
    """Base with denoising_end=0.8 -> refiner with denoising_start=0.8, as diffusers' documented recipe."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    ref_base, folder = base_folder
    ref_refiner = StableDiffusionXLImg2ImgPipeline(**_diffusers_components(tmp_path, REFINER_CFG, refiner=True),
                                                   text_encoder=None, tokenizer=None, requires_aesthetics_score=True,
                                                   force_zeros_for_empty_prompt=False)
    ref_refiner.set_progress_bar_config(disable=True)
    ref_refiner.save_pretrained(tmp_path / "refiner")
    g = torch.Generator().manual_seed(3)
    lat = ref_base(PROMPT, num_inference_steps=5, denoising_end=0.8, height=32, width=32, generator=g,
                   output_type="latent").images
    expected = ref_refiner(PROMPT, image=lat, num_inference_steps=5, denoising_start=0.8, generator=g,
                           output_type="np").images

    ours = SDXLPipeline.from_pretrained(folder, device="cpu", refiner=tmp_path / "refiner")
    assert ours.refiner.is_refiner and len(ours.refiner.text_encoders) == 1
    got = _pixels(ours(PROMPT, steps=5, refiner_switch=0.8, height=32, width=32, seed=3, progress=False))
    assert abs(expected - got).max() <= 1e-3


@pytest.mark.slow
def test_img2img_parity_with_diffusers(base_folder):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    ref, folder = base_folder
    ref_i2i = StableDiffusionXLImg2ImgPipeline(**ref.components)
    ref_i2i.set_progress_bar_config(disable=True)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    expected = ref_i2i(PROMPT, image=image, strength=0.6, num_inference_steps=5, guidance_scale=4.0,
                       generator=torch.Generator().manual_seed(2), output_type="np").images
    ours = SDXLPipeline.from_pretrained(folder, device="cpu")
    got = _pixels(ours(PROMPT, image=image, strength=0.6, steps=5, guidance=4.0, seed=2, progress=False))
    assert abs(expected - got).max() <= 1e-3


def _to_open_clip(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers CLIP keys -> the OpenCLIP layout the official SDXL file stores bigG in (test fixture)."""
    out = {}
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    layers = {int(k.split(".")[3]) for k in hf if ".encoder.layers." in k}
    for i in layers:
        head = f"text_model.encoder.layers.{i}."
        for part, kind in [(p, k) for p in ("q_proj", "k_proj", "v_proj") for k in ("weight", "bias")]:
            pass
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
                [hf[f"{head}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")])
            for src, dst in names.items():
                out[f"transformer.resblocks.{i}.{dst}.{kind}"] = hf[f"{head}{src}.{kind}"]
    out["token_embedding.weight"] = hf["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = hf["text_model.embeddings.position_embedding.weight"]
    out["ln_final.weight"] = hf["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = hf["text_model.final_layer_norm.bias"]
    out["text_projection"] = hf["text_projection.weight"].t().contiguous()
    return out


def _hf_keys(model) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {(k if k.startswith(("text_model.", "text_projection")) else f"text_model.{k}"): v.contiguous()
            for k, v in sd.items() if "position_ids" not in k}


def test_official_single_file_loads_like_the_diffusers_folder(base_folder, tmp_path):
    """sd_xl_base_1.0.safetensors layout: UNet under model.diffusion_model., VAE under first_stage_model.,
    CLIP-L (transformers layout) and bigG (OpenCLIP layout) under conditioner.embedders.{0,1}."""
    ref, folder = base_folder
    from_folder = SDXLPipeline.from_pretrained(folder, device="cpu")
    sd = {f"model.diffusion_model.{k}": v for k, v in from_folder.unet.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in from_folder.vae.state_dict().items()})
    sd.update({f"conditioner.embedders.0.transformer.{k}": v
               for k, v in _hf_keys(from_folder.text_encoders[0].model).items()})
    sd.update({f"conditioner.embedders.1.model.{k}": v
               for k, v in _to_open_clip(_hf_keys(from_folder.text_encoders[1].model)).items()})
    path = tmp_path / "sd_xl_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    single = SDXLPipeline.from_pretrained(path, device="cpu", tokenizers=[folder / "tokenizer", folder / "tokenizer_2"])
    a = _pixels(from_folder(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    b = _pixels(single(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    assert abs(a - b).max() <= 1e-5


@pytest.mark.slow
def test_tiny_preset_runs_offline_with_every_mode():
    pipe = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    out = pipe("a red fox", negative_prompt="blurry", num_images=2, scheduler="dpm++2m-karras", seed=0, progress=False)
    assert len(out.images) == 2 and out.images[0].size == (32, 32)
    again = pipe("a red fox", negative_prompt="blurry", num_images=2, scheduler="dpm++2m-karras", seed=0,
                 progress=False)
    assert torch.equal(out.pixels, again.pixels)
    assert pipe("x", image=out.images[0], strength=0.5, seed=0, scheduler="ddim", progress=False).images
    assert pipe("x", image=out.images[0], mask=torch.ones(32, 32), seed=0, scheduler="heun", progress=False).images
    pipe.refiner = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    assert pipe("x", steps=5, seed=0, progress=False).images


def test_seed_means_seed_plus_image_index():
    """Image i of a call uses seed + i: image 2 of four made with seed 5 is the image made with seed 7,
    with an ancestral sampler (step noise per image) and in img2img (VAE sample and noise per image);
    a list of generators, one per image, means the same."""
    # float64, so that the batch size cannot move the numbers (in float32 it does, by ~1e-6)
    pipe = SDXLPipeline.from_pretrained(preset="tiny", device="cpu", dtype=torch.float64)
    kw = dict(steps=3, scheduler="euler-a", progress=False)
    four = pipe("a red fox", num_images=4, seed=5, **kw)
    one = pipe("a red fox", seed=7, **kw)
    assert (four.latents[2:3] - one.latents).abs().max() <= 1e-5
    assert (four.pixels[2:3] - one.pixels).abs().max() <= 1e-5
    assert (four.latents[0] - four.latents[1]).abs().max() > 1e-2
    listed = pipe("a red fox", num_images=2, generator=[torch.Generator().manual_seed(s) for s in (5, 6)], **kw)
    assert (listed.latents - four.latents[:2]).abs().max() <= 1e-5
    four_i = pipe("a red fox", image=one.images[0], strength=0.6, num_images=4, seed=5, **kw)
    one_i = pipe("a red fox", image=one.images[0], strength=0.6, seed=7, **kw)
    assert (four_i.pixels[2:3] - one_i.pixels).abs().max() <= 1e-5


def test_offload_and_tiling_through_the_base():
    """Model and sequential CPU offload (accelerate hooks, the CPU standing in for the GPU: the wiring and
    the same images; the memory saving needs a GPU), the refiner offloaded with the base, VAE tiling."""
    import accelerate  # noqa: F401 - a hard dependency: a broken install fails here

    plain = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    photo = plain("x", seed=3, steps=2, progress=False).images[0]
    expect = plain("a red fox", seed=0, steps=2, progress=False).pixels
    expect_i2i = plain("a red fox", image=photo, seed=0, steps=2, strength=0.6, progress=False).pixels
    for mode in ("model", "sequential"):
        pipe = SDXLPipeline.from_pretrained(preset="tiny", device="cpu", offload=mode)
        assert pipe.offload == mode and all(hasattr(m, "_hf_hook") for m in (*pipe.text_encoders, pipe.unet))
        assert torch.allclose(pipe("a red fox", seed=0, steps=2, progress=False).pixels, expect, atol=1e-6)
        with pytest.raises(UserError, match="offload"):
            pipe.to("cpu")
    # img2img reaches the VAE encoder through its hook too
    got = pipe("a red fox", image=photo, seed=0, steps=2, strength=0.6, progress=False).pixels
    assert torch.allclose(got, expect_i2i, atol=1e-6)
    ensemble = SDXLPipeline.from_pretrained(preset="tiny", device="cpu", refiner=plain, offload="model",
                                            vae_tiling=True)
    assert ensemble.refiner.offload == "model" and hasattr(ensemble.refiner.unet, "_hf_hook")
    assert ensemble.vae.tile_latent == 64 and ensemble.refiner.vae.tile_latent == 64
    with pytest.raises(UserError, match="offload must be"):
        SDXLPipeline.from_pretrained(preset="tiny", device="cpu", offload="disk")


def test_bad_calls_are_clear_errors():
    pipe = SDXLPipeline.from_pretrained(preset="tiny", device="cpu")
    with pytest.raises(UserError, match="multiples of"):
        pipe("x", height=30, width=32)
    with pytest.raises(UserError, match="does not fit SDXL"):
        pipe("x", scheduler="flow-euler")
    with pytest.raises(UserError, match="unknown scheduler"):
        pipe("x", scheduler="eulr")
    with pytest.raises(UserError, match="ControlNet"):
        pipe("x", control="edges.png")
    with pytest.raises(UserError, match="needs --image"):
        pipe("x", mask=torch.ones(32, 32))


def test_missing_weights_and_wrong_files_are_clear_errors(tmp_path):
    from utils.errors import WeightsError

    with pytest.raises(WeightsError, match="hf download|offline|cache"):
        SDXLPipeline.from_pretrained(preset="sdxl-base", device="cpu")
    bad = tmp_path / "other.safetensors"
    save_file({"foo.weight": torch.zeros(2)}, bad)
    with pytest.raises(UserError, match="no SDXL UNet"):
        SDXLPipeline.from_pretrained(bad, device="cpu")


def test_cli_and_facade(tmp_path):
    import models
    from inference.generate_image import main

    out = tmp_path / "fox.png"
    main(["--model", "sdxl", "--preset", "tiny", "--prompt", "a fox", "--steps", "2", "--scheduler", "euler-a",
          "--out", str(out)])
    assert out.exists()
    res = models.generate("image", "sdxl", preset="tiny", prompt="a fox", steps=2, seed=1)
    assert res.images[0].size == (32, 32)
