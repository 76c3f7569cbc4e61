"""The Imagen cascade against diffusers' IFPipeline -> IFSuperResolutionPipeline -> StableDiffusionUpscalePipeline
on tiny random components saved as diffusers folders (loaded through our loaders), with the same seed per
stage; the seed rule; the tiny preset; one-line errors."""
from __future__ import annotations

import pytest
import torch

from models.image_generation.imagen import convert as cv
from models.image_generation.imagen.config import IFUNetConfig, UpscalerUNetConfig
from models.image_generation.imagen.pipeline import (IF_I_SCHEDULER, IF_II_SCHEDULER, IF_NOISING, X4_LOW_RES,
                                                     X4_SCHEDULER, ImagenPipeline)
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.t5 import T5EncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError
from tests.helpers import tokenizers as _tok

PROMPT = "A Photo of a Red Fox in Snow"


def _randomize(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return module.eval()


def _sched(cls, cfg):
    return cls.from_config({k: v for k, v in cfg.items() if k != "_class_name"})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    import transformers
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, IFPipeline, IFSuperResolutionPipeline,
                           StableDiffusionUpscalePipeline, UNet2DConditionModel)
    from transformers import CLIPTokenizer, T5EncoderModel, T5Tokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    tmp = tmp_path_factory.mktemp("imagen")
    torch.manual_seed(0)
    _tok.write_t5_tokenizer(tmp / "t5tok")
    _tok.write_clip_tokenizer(tmp / "cliptok")
    t5 = T5EncoderModel(T5EncoderConfig.preset("tiny").to_transformers()).eval()
    t5tok = T5Tokenizer.from_pretrained(tmp / "t5tok")
    common = dict(safety_checker=None, feature_extractor=None, watermarker=None, requires_safety_checker=False)
    s1 = IFPipeline(tokenizer=t5tok, text_encoder=t5, scheduler=_sched(DDPMScheduler, IF_I_SCHEDULER),
                    unet=_randomize(UNet2DConditionModel(**cv.if_config_to_diffusers(IFUNetConfig.preset("tiny"))), 1),
                    **common)
    s2 = IFSuperResolutionPipeline(
        tokenizer=t5tok, text_encoder=t5, scheduler=_sched(DDPMScheduler, IF_II_SCHEDULER),
        image_noising_scheduler=_sched(DDPMScheduler, IF_NOISING),
        unet=_randomize(UNet2DConditionModel(**cv.if_config_to_diffusers(IFUNetConfig.preset("tiny-sr"))), 2),
        **common)
    vae_cfg = VAEConfig(base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8,
                        scaling_factor=0.08333)
    s3 = StableDiffusionUpscalePipeline(
        vae=_randomize(AutoencoderKL(**config_to_diffusers(vae_cfg)), 3),
        text_encoder=transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval(),
        tokenizer=CLIPTokenizer.from_pretrained(tmp / "cliptok"),
        unet=_randomize(UNet2DConditionModel(**cv.upscaler_config_to_diffusers(UpscalerUNetConfig.preset("tiny"))), 4),
        low_res_scheduler=_sched(DDPMScheduler, X4_LOW_RES), scheduler=_sched(DDIMScheduler, X4_SCHEDULER),
        max_noise_level=350)
    for pipe, name in ((s1, "if1"), (s2, "if2"), (s3, "x4")):
        pipe.set_progress_bar_config(disable=True)
        pipe.save_pretrained(tmp / name)
    return (s1, s2, s3), tmp


def _ours(tmp, **kw) -> ImagenPipeline:
    return ImagenPipeline.from_pretrained(tmp / "if1", device="cpu", stage_2=tmp / "if2", stage_3=tmp / "x4", **kw)


def _reference(stages, s1, s2, s3):
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731 - one fresh generator per stage, as ours
    out = [s1(PROMPT, num_inference_steps=3, guidance_scale=7.0, height=16, width=16, generator=g(),
              output_type="pt").images]
    if stages >= 2:
        out.append(s2(image=out[-1], prompt=PROMPT, num_inference_steps=2, guidance_scale=4.0, noise_level=250,
                      generator=g(), output_type="pt").images)
    if stages >= 3:
        out.append(s3(prompt=PROMPT, image=out[-1], num_inference_steps=2, guidance_scale=9.0, noise_level=100,
                      generator=g(), output_type="pt").images)
    return out


STAGE_ARGS = dict(steps=3, guidance=7.0, sr_steps=2, sr_guidance=4.0, noise_level=250, upscale_steps=2,
                  upscale_guidance=9.0, upscale_noise_level=100, seed=5, progress=False)


def test_stages_i_and_ii_match_diffusers(folders):
    (s1, s2, s3), tmp = folders
    ours = _ours(tmp)
    assert ours.preset == "tiny" and ours.sr_unet is None  # later stages load when a call needs them
    x64, x256 = _reference(2, s1, s2, s3)
    one = ours(PROMPT, stages=1, **STAGE_ARGS)
    assert (one.latents - x64).abs().max().item() < 1e-3
    two = ours(PROMPT, stages=2, **STAGE_ARGS)
    assert two.latents.shape == (1, 3, 32, 32) and (two.latents - x256).abs().max().item() < 1e-3
    assert ours.x4_unet is None


@pytest.mark.slow
def test_whole_cascade_matches_diffusers_through_the_x4_upscaler(folders):
    (s1, s2, s3), tmp = folders
    *_, x1024 = _reference(3, s1, s2, s3)
    three = _ours(tmp)(PROMPT, stages=3, **STAGE_ARGS)
    assert three.pixels.shape == (1, 3, 128, 128)
    assert (three.pixels - x1024).abs().max().item() < 1e-3


def test_super_resolution_preset_upsamples_an_image(folders):
    (_, s2, _), tmp = folders
    sr = ImagenPipeline.from_pretrained(tmp / "if2", preset="if-ii-m", device="cpu")
    assert sr.first_stage == 2 and sr.unet is None
    low = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))  # 1/4 of its 32 px
    ref = s2(image=low * 2 - 1, prompt=PROMPT, num_inference_steps=2, guidance_scale=4.0, noise_level=100,
             generator=torch.Generator().manual_seed(3), output_type="pt").images
    out = sr(PROMPT, image=low, steps=2, guidance=4.0, noise_level=100, seed=3, progress=False)
    assert (out.latents - ref).abs().max().item() < 1e-3
    with pytest.raises(UserError, match="give --image"):
        sr(PROMPT)
    with pytest.raises(UserError, match="between 2 and 3"):
        sr(PROMPT, image=low, stages=1)


def test_tiny_cascade_keeps_the_seed_rule_and_refuses_bad_input():
    pipe = ImagenPipeline.from_pretrained(preset="tiny", device="cpu")
    fewer = dict(steps=2, sr_steps=1, upscale_steps=1, progress=False)
    both = pipe(["a fox", "a cat"], seed=3, **fewer)
    alone = pipe("a cat", seed=4, **fewer)
    assert both.pixels.shape == (2, 3, 128, 128)
    assert torch.allclose(both.pixels[1:], alone.pixels, atol=1e-5)
    with pytest.raises(UserError, match="--stages must be between 1 and 3"):
        pipe("a fox", stages=4)
    with pytest.raises(UserError, match="multiples of 2"):
        pipe("a fox", stages=1, height=15)
    with pytest.raises(UserError, match="drop --image"):
        pipe("a fox", image=torch.rand(1, 3, 8, 8))
