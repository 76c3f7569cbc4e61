"""SD 1.5 / 2.1 pipeline: whole-pipeline parity with diffusers' StableDiffusionPipeline on tiny random
components (eps and v prediction), the CompVis single-file layout, the CLI and the facade."""
from __future__ import annotations

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
from tests.helpers.tokenizers import write_clip_tokenizer


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


def _open_clip_layout(hf: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIP text state dict in OpenCLIP's names (what SD 2.x files hold under
    cond_stage_model.model.)."""
    out = {"token_embedding.weight": hf["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": hf["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": hf["text_model.final_layer_norm.weight"],
           "ln_final.bias": hf["text_model.final_layer_norm.bias"],
           "text_projection": hf["text_model.final_layer_norm.weight"].new_zeros(
               hf["text_model.final_layer_norm.weight"].shape[0], 16)}
    names = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
    for i in {int(k.split(".")[3]) for k in hf if ".encoder.layers." in k}:
        head = f"text_model.encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
                [hf[f"{head}self_attn.{p}.{kind}"] for p in ("q_proj", "k_proj", "v_proj")])
            for src, dst in names.items():
                out[f"transformer.resblocks.{i}.{dst}.{kind}"] = hf[f"{head}{src}.{kind}"]
    return {k: v.contiguous() for k, v in out.items()}


def test_sd2_open_clip_single_file_takes_the_penultimate_layer(tmp_path):
    """v2-1_768-ema-pruned layout: OpenCLIP under cond_stage_model.model.; the context is the penultimate
    layer's states through the final layer norm (SD 2.x's FrozenOpenCLIPEmbedder), here against transformers."""
    from models.image_generation.stable_diffusion.pipeline_sd15 import text_encoder_from_state

    torch.manual_seed(2)
    cfg = CLIPTextEncoderConfig.preset("tiny").with_(num_layers=4, hidden_act="gelu")
    ref = transformers.CLIPTextModel(cfg.to_transformers()).eval()
    hf = {(k if k.startswith("text_model.") else f"text_model.{k}"): v
          for k, v in ref.state_dict().items() if "position_ids" not in k}
    sd = {f"cond_stage_model.model.{k}": v for k, v in _open_clip_layout(hf).items()}
    encoder = text_encoder_from_state(sd, 32, None)
    assert encoder.config.num_layers == 3
    ids = torch.tensor([[998, 5, 17, 999, 1, 1]])
    with torch.no_grad():
        out = ref(input_ids=ids, output_hidden_states=True)
        final_norm = ref.text_model.final_layer_norm if hasattr(ref, "text_model") else ref.final_layer_norm
        expected = final_norm(out.hidden_states[-2])
        got = encoder(ids).last_hidden_state
    assert (expected - got).abs().max() <= 1e-5

    from models.image_generation.stable_diffusion.unet import SDXLUNet

    unet = SDXLUNet(UNetConfig.preset("tiny-sd21"))  # SD 2-shaped (linear projections): v prediction
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})
    sd.update({f"first_stage_model.{k}": v for k, v in SD15Pipeline.tiny().vae.state_dict().items()})
    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "v2-tiny.safetensors")
    pipe = SD15Pipeline.from_pretrained(tmp_path / "v2-tiny.safetensors", device="cpu")
    assert pipe.scheduler_config["prediction_type"] == "v_prediction" and pipe.unet.config.linear_projection


def test_cli_writes_an_image(tmp_path):
    from inference.generate_image import main

    main(["--model", "sd15", "--preset", "tiny", "--prompt", "a fox", "--steps", "2", "--seed", "1",
          "--out", str(tmp_path / "fox.png")])
    from PIL import Image

    assert Image.open(tmp_path / "fox.png").size == (64, 64)


_SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "posterior_variance",
                     "model_ema.decay", "model_ema.num_updates")


@pytest.mark.parametrize("preset", ["sd15", "sd21"])
def test_full_size_official_single_file_layout_on_meta(preset):
    """v1-5-pruned-emaonly / v2-1_768-ema-pruned key layouts, built on meta (no memory): UNet, VAE and text
    encoder (CLIP-L in the transformers layout / OpenCLIP-H in its own, 24 layers) each load whole, at the
    release sizes, and the DDPM buffers stored beside them are left alone."""
    from models.image_generation.stable_diffusion import convert as cv
    from models.image_generation.stable_diffusion.pipeline_sd15 import text_encoder_from_state
    from models.image_generation.stable_diffusion.unet import SDXLUNet
    from utils.encoders.vae import AutoencoderKL

    clip_cfg = (CLIPTextEncoderConfig.preset("clip-l") if preset == "sd15" else
                CLIPTextEncoderConfig.preset("clip-l").with_(hidden_size=1024, intermediate_size=4096, num_layers=24,
                                                             num_heads=16, hidden_act="gelu"))
    with torch.device("meta"):
        unet, vae = SDXLUNet(preset), AutoencoderKL("sd")
        clip = transformers.CLIPTextModel(clip_cfg.to_transformers())
    hf = {(k if k.startswith("text_model.") else f"text_model.{k}"): v
          for k, v in clip.state_dict().items() if "position_ids" not in k}
    sd = {k: torch.empty(1000, device="meta") for k in _SCHEDULE_BUFFERS}
    sd.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})
    sd.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    if preset == "sd15":
        sd.update({f"cond_stage_model.transformer.{k}": v for k, v in hf.items()})
    else:
        sd.update({f"cond_stage_model.model.{k}": v for k, v in _open_clip_layout(hf).items()})
    loaded = cv.unet_from_state(sd)
    assert loaded.config == unet.config and loaded.label_emb is None
    assert cv.vae_from_state(sd, "sd", preset).config.scaling_factor == 0.18215
    encoder = text_encoder_from_state(sd, unet.config.context_dim, tokenizer=None)
    assert encoder.config.num_layers == (12 if preset == "sd15" else 23)  # SD 2: the penultimate layer's tower
    assert encoder.config.hidden_act == ("quick_gelu" if preset == "sd15" else "gelu")
    params = sum(p.numel() for p in encoder.model.parameters())
    # CLIP-L 123.06 M; OpenCLIP-H cut to 23 layers 340.39 M (the diffusers SD 2.1 text_encoder)
    assert params == (123_060_480 if preset == "sd15" else 340_387_840)
