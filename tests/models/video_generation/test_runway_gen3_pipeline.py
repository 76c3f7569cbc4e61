"""The Runway Gen-3 stand-in's pipeline: whole-pipeline parity with diffusers' AnimateDiffPipeline (and, with a
ControlNet per frame, AnimateDiffControlNetPipeline) on tiny random components, text-, image- and video-to-video
on the tiny preset."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers
from models.image_generation.stable_diffusion.unet import UNetConfig
from models.video_generation.runway_gen3.pipeline import ANIMATEDIFF_SCHEDULER, RunwayGen3Pipeline
from utils.encoders.clip import CLIPTextEncoderConfig
from utils.encoders.vae import VAEConfig
from utils.errors import UserError
from tests.helpers.tokenizers import write_clip_tokenizer

PROMPT = "a watercolor painting of a red fox"


def _perturb(module, seed: int, std: float = 0.03):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(std * torch.randn(p.shape, generator=g))  # the zero-initialised layers too
    return module.eval()


def _parts(tmp: Path) -> dict:
    """diffusers' tiny random SD 1.5-shaped components, a MotionAdapter for them, saved as folders."""
    from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    ucfg = UNetConfig.preset("tiny-sd15")
    torch.manual_seed(0)
    unet = _perturb(UNet2DConditionModel(**unet_config_to_diffusers(ucfg)), 1)
    adapter = _perturb(MotionAdapter(block_out_channels=ucfg.level_channels, motion_layers_per_block=ucfg.num_res_blocks,
                                     motion_num_attention_heads=4, motion_norm_num_groups=8,
                                     motion_max_seq_length=32), 2, 0.05)
    vae = AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny"))).eval()
    encoder = transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval()
    write_clip_tokenizer(tmp / "tok")
    scheduler = DDIMScheduler.from_config({k: v for k, v in ANIMATEDIFF_SCHEDULER.items() if k != "_class_name"})
    parts = dict(unet=unet, vae=vae, text_encoder=encoder, tokenizer=CLIPTokenizer.from_pretrained(tmp / "tok"),
                 scheduler=scheduler)
    StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(tmp / "sd")
    adapter.save_pretrained(tmp / "adapter")
    return dict(parts, motion_adapter=adapter, ucfg=ucfg)


def test_text_to_video_parity_with_diffusers_animatediff(tmp_path):
    """Same seed, 3 DDIM steps, classifier-free guidance, 4 frames: every frame within 1e-3."""
    from diffusers import AnimateDiffPipeline

    parts = _parts(tmp_path)
    parts.pop("ucfg")
    ref = AnimateDiffPipeline(**parts)
    ref.set_progress_bar_config(disable=True)
    ours = RunwayGen3Pipeline.from_pretrained(tmp_path / "adapter", base=tmp_path / "sd", device="cpu")
    kw = dict(num_frames=4, height=32, width=32)
    expected = ref(PROMPT, num_inference_steps=3, guidance_scale=6.0, generator=torch.Generator().manual_seed(7),
                   output_type="np", **kw).frames  # (B, F, H, W, 3)
    got = ours(PROMPT, steps=3, guidance=6.0, seed=7, progress=False, **kw)
    pixels = got.pixels.permute(0, 1, 3, 4, 2).numpy()
    assert expected.shape == pixels.shape == (1, 4, 32, 32, 3)
    assert expected.std() > 1e-3 and np.abs(np.diff(expected, axis=1)).max() > 1e-3  # frames differ
    assert np.abs(expected - pixels).max() <= 1e-3
    assert len(got.frames) == 1 and len(got.frames[0]) == 4


def test_sdxl_text_to_video_parity_with_diffusers_animatediff_sdxl(tmp_path):
    """The SDXL path (two text encoders, pooled text and size ids, an SDXL-beta-style adapter without a middle-block
    module) vs AnimateDiffSDXLPipeline: same seed, 3 DDIM steps, guidance 6, frames within 1e-3."""
    from diffusers import (AnimateDiffSDXLPipeline, AutoencoderKL, DDIMScheduler, MotionAdapter,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTokenizer

    from utils.encoders.vae_convert import config_to_diffusers

    ucfg = UNetConfig.preset("tiny")
    torch.manual_seed(0)
    unet = _perturb(UNet2DConditionModel(**unet_config_to_diffusers(ucfg)), 1)
    adapter = _perturb(MotionAdapter(block_out_channels=ucfg.level_channels, motion_layers_per_block=ucfg.num_res_blocks,
                                     motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=32,
                                     use_motion_mid_block=False), 2, 0.05)
    vae = AutoencoderKL(**config_to_diffusers(VAEConfig.preset("tiny"))).eval()
    enc1 = transformers.CLIPTextModel(CLIPTextEncoderConfig.preset("tiny").to_transformers()).eval()
    enc2 = transformers.CLIPTextModelWithProjection(CLIPTextEncoderConfig.preset("tiny-bigg").to_transformers()).eval()
    write_clip_tokenizer(tmp_path / "tok1")
    write_clip_tokenizer(tmp_path / "tok2", pad_token="!")
    scheduler = DDIMScheduler.from_config({k: v for k, v in ANIMATEDIFF_SCHEDULER.items() if k != "_class_name"})
    parts = dict(unet=unet, vae=vae, text_encoder=enc1, text_encoder_2=enc2, scheduler=scheduler,
                 tokenizer=CLIPTokenizer.from_pretrained(tmp_path / "tok1"),
                 tokenizer_2=CLIPTokenizer.from_pretrained(tmp_path / "tok2"))
    StableDiffusionXLPipeline(**parts).save_pretrained(tmp_path / "sdxl")
    adapter.save_pretrained(tmp_path / "adapter")
    ref = AnimateDiffSDXLPipeline(**parts, motion_adapter=adapter)
    # UNetMotionModel.from_unet2d (diffusers 0.42) leaves SDXL's add_embedding freshly initialised: copy it over
    ref.unet.add_embedding.load_state_dict(unet.add_embedding.state_dict())
    ref.set_progress_bar_config(disable=True)
    ours = RunwayGen3Pipeline.from_pretrained(tmp_path / "adapter", preset="sdxl-beta", base=tmp_path / "sdxl",
                                              device="cpu")
    assert ours.is_sdxl and ours.unet.adapter.mid_block is None
    kw = dict(num_frames=4, height=32, width=32)
    expected = ref(PROMPT, num_inference_steps=3, guidance_scale=6.0, generator=torch.Generator().manual_seed(7),
                   output_type="np", **kw).frames
    got = ours(PROMPT, steps=3, guidance=6.0, seed=7, progress=False, **kw).pixels.permute(0, 1, 3, 4, 2).numpy()
    assert expected.std() > 1e-3
    assert np.abs(expected - got).max() <= 1e-3


def test_video_to_video_parity_with_diffusers_animatediff(tmp_path):
    """A clip noised to strength 0.6 of 5 DDIM steps and denoised vs AnimateDiffVideoToVideoPipeline."""
    from diffusers import AnimateDiffVideoToVideoPipeline
    from PIL import Image

    parts = _parts(tmp_path)
    parts.pop("ucfg")
    ref = AnimateDiffVideoToVideoPipeline(**parts)
    ref.set_progress_bar_config(disable=True)
    ours = RunwayGen3Pipeline.from_pretrained(tmp_path / "adapter", base=tmp_path / "sd", device="cpu")
    g = torch.Generator().manual_seed(5)
    clip = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8, generator=g), size=(32, 32), mode="bilinear")
    clip = (clip * 255).round() / 255  # exactly what 8-bit frames hold
    frames = [Image.fromarray((f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for f in clip]
    expected = ref(video=[frames], prompt=PROMPT, strength=0.6, num_inference_steps=5, guidance_scale=6.0,
                   generator=torch.Generator().manual_seed(7), output_type="np", height=32, width=32).frames
    got = ours(PROMPT, video=clip, strength=0.6, steps=5, guidance=6.0, seed=7, num_frames=4, height=32, width=32,
               progress=False)
    assert np.abs(expected - got.pixels.permute(0, 1, 3, 4, 2).numpy()).max() <= 1e-3


def test_control_video_parity_with_diffusers_animatediff_controlnet(tmp_path):
    """A ControlNet per frame (ready condition maps, one per frame) vs AnimateDiffControlNetPipeline."""
    from diffusers import AnimateDiffControlNetPipeline, ControlNetModel

    from models.image_generation.stable_diffusion.controlnet import ControlNetConfig
    from models.image_generation.stable_diffusion.controlnet_convert import controlnet_config_to_diffusers

    parts = _parts(tmp_path)
    ucfg = parts.pop("ucfg")
    cn = _perturb(ControlNetModel(**controlnet_config_to_diffusers(ControlNetConfig(ucfg, hint_block_channels=(8, 16)))),
                  3)
    cn.save_pretrained(tmp_path / "controlnet")
    ref = AnimateDiffControlNetPipeline(**parts, controlnet=cn)
    ref.set_progress_bar_config(disable=True)
    ours = RunwayGen3Pipeline.from_pretrained(tmp_path / "adapter", base=tmp_path / "sd", device="cpu",
                                              controlnet=tmp_path / "controlnet")
    g = torch.Generator().manual_seed(11)
    maps = (torch.rand(4, 3, 8, 8, generator=g) > 0.5).float()
    maps = torch.nn.functional.interpolate(maps, size=(32, 32), mode="nearest")  # blocky condition maps in [0, 1]
    from PIL import Image

    frames = [Image.fromarray((m.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for m in maps]
    kw = dict(num_frames=4, height=32, width=32)
    expected = ref(PROMPT, conditioning_frames=frames, num_inference_steps=3, guidance_scale=6.0,
                   controlnet_conditioning_scale=0.8, generator=torch.Generator().manual_seed(7), output_type="np",
                   **kw).frames
    got = ours(PROMPT, control_video=maps, control_scale=0.8, steps=3, guidance=6.0, seed=7, progress=False, **kw)
    plain = ours(PROMPT, steps=3, guidance=6.0, seed=7, progress=False, **kw)
    pixels = got.pixels.permute(0, 1, 3, 4, 2).numpy()
    assert np.abs(expected - pixels).max() <= 1e-3
    assert (got.pixels - plain.pixels).abs().max() > 1e-2  # the maps steered the clip


@pytest.fixture(scope="module")
def tiny():
    return RunwayGen3Pipeline.from_pretrained(preset="tiny", device="cpu")


def _still(size: int = 32) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1]: a bright square and a disc on a gradient."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    img = torch.stack([xx / size, yy / size, torch.full_like(xx, 0.25, dtype=torch.float32)]).float()
    img[:, size // 4:size // 2, size // 5:size // 2] = 0.9
    img[:, ((yy - 3 * size // 4) ** 2 + (xx - 3 * size // 4) ** 2) < (size // 6) ** 2] = torch.tensor(
        [0.1, 0.8, 0.2])[:, None]
    return img[None]


def test_image_to_video_pins_frame_zero_to_the_image(tiny):
    """Frame 0 is the image through the VAE (encode to the posterior's mode, decode) exactly, so it matches the
    input image within the VAE's own reconstruction error; the other frames move."""
    image = _still()
    out = tiny("a fox", image=image, seed=3, progress=False)
    frame0 = out.pixels[0, 0]
    with torch.inference_mode():
        z = tiny.image_latents(image * 2 - 1)
        recon = ((tiny.decode_latents(z) + 1) / 2).clamp(0, 1)[0]
    vae_error = (recon - image[0]).abs().mean()
    assert (frame0 - recon).abs().max() <= 1e-4
    assert (frame0 - image[0]).abs().mean() <= vae_error + 1e-4
    assert (out.pixels[0, 1:] - frame0).abs().mean() > 1e-3  # the clip is not the still repeated
    half = tiny("a fox", image=image, image_strength=0.5, seed=3, progress=False)
    assert (half.pixels[0, 0] - recon).abs().max() > 1e-3  # a weaker pin leaves frame 0 freer


def test_text_to_video_is_seeded_and_batched(tiny):
    a = tiny("a fox", seed=1, progress=False)
    b = tiny(["a fox", "a cat"], seed=1, progress=False)
    assert a.pixels.shape == (1, 4, 3, 32, 32) and b.pixels.shape == (2, 4, 3, 32, 32)
    assert torch.allclose(a.pixels[0], b.pixels[0], atol=1e-5)  # video i uses seed + i
    assert (b.pixels[0] - b.pixels[1]).abs().max() > 1e-3


def test_video_to_video_follows_the_input_clip_by_strength(tiny):
    """The clip's latents noised to `strength` and denoised: a low strength stays near the clip's latents, full
    strength goes far from them (compared in latent space: the tiny random VAE reconstructs nothing)."""
    clip = _still().repeat(4, 1, 1, 1)
    clip[1:, :, :, 8:16] = 0.0  # a dark band appears after frame 0
    with torch.inference_mode():
        x0 = tiny.encode_frames(clip * 2 - 1, tiny.generators(2, 1), 16)
    low = tiny("a fox", video=clip, strength=0.3, steps=10, seed=2, output_type="latent", progress=False).latents
    high = tiny("a fox", video=clip, strength=1.0, steps=10, seed=2, output_type="latent", progress=False).latents
    err_low, err_high = (low - x0).abs().mean(), (high - x0).abs().mean()
    assert err_low < 0.5 * err_high
    with pytest.raises(UserError, match="frames"):
        tiny("a fox", video=clip[:2], num_frames=4, progress=False)
    with pytest.raises(UserError, match="no step"):
        tiny("a fox", video=clip, strength=0.05, steps=10, progress=False)


def test_bad_calls_are_one_clear_line(tiny):
    with pytest.raises(UserError, match="--image"):
        tiny("a fox", motion_mask=torch.ones(32, 32), progress=False)
    with pytest.raises(UserError, match="--motion-mask"):
        tiny("a fox", image=_still(), motion="right", progress=False)
    with pytest.raises(UserError, match="frame positions"):
        tiny("a fox", num_frames=40, progress=False)
    with pytest.raises(UserError, match="control-video"):
        tiny("a fox", control="pose", progress=False)


def test_a_released_adapter_checkpoint_loads_and_other_files_are_refused(tmp_path):
    """AnimateDiff's released layout as a torch .ckpt (plain or under 'state_dict') loads through the safe loader;
    a file without motion modules is one line naming it."""
    from safetensors.torch import save_file

    from models.image_generation.stable_diffusion.unet import UNetConfig
    from models.video_generation.runway_gen3.convert import load_adapter, native_to_released

    adapter = RunwayGen3Pipeline.tiny_adapter(UNetConfig.preset("tiny-sd15"))
    released = native_to_released(adapter.state_dict())
    torch.save({"state_dict": released}, tmp_path / "mm_tiny.ckpt")
    loaded = load_adapter(tmp_path / "mm_tiny.ckpt")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in adapter.state_dict().items())
    pipe = RunwayGen3Pipeline.from_pretrained(tmp_path / "mm_tiny.ckpt", preset="tiny", device="cpu")
    assert pipe(PROMPT, steps=1, progress=False).pixels.shape == (1, 4, 3, 32, 32)
    save_file({"conv.weight": torch.zeros(2, 2)}, str(tmp_path / "not_an_adapter.safetensors"))
    with pytest.raises(UserError, match="not_an_adapter.safetensors holds no motion modules"):
        load_adapter(tmp_path / "not_an_adapter.safetensors")
