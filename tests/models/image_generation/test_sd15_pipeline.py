"""SD 1.5 / 2.1 pipeline: whole-pipeline parity with diffusers' StableDiffusionPipeline on tiny random
components (eps and v prediction), the CompVis single-file layout, the CLI and the facade."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import transformers
from safetensors.torch import save_file

from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers
from models.image_generation.stable_diffusion.pipeline_sd15 import SD15_SCHEDULER, SD21_SCHEDULER, SD15Pipeline
from models.image_generation.stable_diffusion.unet import UNetConfig
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError


def _helper(name: str):
    path = Path(__file__).resolve().parents[2] / "helpers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_sd15_helpers_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


write_clip_tokenizer = _helper("tokenizers").write_clip_tokenizer
PROMPT = "a watercolor painting of a red fox"


def _reference(tmp: Path, preset: str):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config_to_diffusers(UNetConfig.preset(preset))).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))  # exercise the zero-initialised layers
    vae = AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny"))).eval()
    encoder = transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval()
    write_clip_tokenizer(tmp / "tok")
    sched = SD21_SCHEDULER if preset == "tiny-sd21" else SD15_SCHEDULER
    ref = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=encoder,
                                  tokenizer=CLIPTokenizer.from_pretrained(tmp / "tok"),
                                  scheduler=EulerDiscreteScheduler.from_config(
                                      {k: v for k, v in sched.items() if k != "_class_name"}),
                                  safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    ref.set_progress_bar_config(disable=True)
    ref.save_pretrained(tmp / "sd")
    return ref, tmp / "sd"


def _pixels(out):
    return out.pixels.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("preset", ["tiny-sd15", "tiny-sd21"], ids=["sd15-eps", "sd21-v"])
def test_text_to_image_parity_with_diffusers(preset, tmp_path):
    ref, folder = _reference(tmp_path, preset)
    ours = SD15Pipeline.from_pretrained(folder, device="cpu")
    assert ours.scheduler_config["prediction_type"] == ref.scheduler.config.prediction_type
    kw = dict(height=32, width=32)
    expected = ref(PROMPT, negative_prompt="blurry", num_inference_steps=3, guidance_scale=7.5,
                   generator=torch.Generator().manual_seed(7), output_type="np", **kw).images
    got = _pixels(ours(PROMPT, negative_prompt="blurry", steps=3, guidance=7.5, seed=7, progress=False, **kw))
    assert expected.std() > 1e-3
    assert abs(expected - got).max() <= 1e-3


def test_compvis_single_file_loads_like_the_diffusers_folder(tmp_path):
    """v1-5-pruned-emaonly layout: UNet under model.diffusion_model., VAE under first_stage_model. (its native
    names are the official ones), CLIP-L under cond_stage_model.transformer. (transformers layout)."""
    from transformers import CLIPTokenizer

    _, folder = _reference(tmp_path, "tiny-sd15")
    a = SD15Pipeline.from_pretrained(folder, device="cpu")
    sd = {f"model.diffusion_model.{k}": v for k, v in a.unet.state_dict().items()}
    sd.update({f"first_stage_model.{k}": v for k, v in a.vae.state_dict().items()})
    text = {k if k.startswith("text_model.") else f"text_model.{k}": v
            for k, v in a.text_encoder.model.state_dict().items() if "position_ids" not in k}
    sd.update({f"cond_stage_model.transformer.{k}": v for k, v in text.items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "v1-tiny.safetensors")
    b = SD15Pipeline.from_pretrained(tmp_path / "v1-tiny.safetensors", device="cpu",
                                     tokenizer=CLIPTokenizer.from_pretrained(folder / "tokenizer"))
    assert b.scheduler_config["prediction_type"] == "epsilon"
    x = _pixels(a(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    y = _pixels(b(PROMPT, steps=2, seed=1, height=32, width=32, progress=False))
    assert abs(x - y).max() <= 1e-5


def test_bad_calls_are_clear_errors(tmp_path):
    pipe = SD15Pipeline.from_pretrained(preset="tiny", device="cpu")
    with pytest.raises(UserError, match="ControlNet"):
        pipe("x", control="canny")
    with pytest.raises(UserError, match="steps"):
        pipe("x", steps=0)
    with pytest.raises(UserError, match="not an SD diffusers folder"):
        SD15Pipeline.from_pretrained(tmp_path, device="cpu")


def test_facade_generates_an_image():
    import models

    out = models.generate("image", "sd15", preset="tiny", prompt="a red fox", steps=2, seed=3)
    assert out.pixels.shape[1] == 3 and 0.0 <= float(out.pixels.min()) and float(out.pixels.max()) <= 1.0
