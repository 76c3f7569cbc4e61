"""The consistency decoder against diffusers' ConsistencyDecoderVAE (same weights, same noise), its key
maps (full-size openai/consistency-decoder on meta), its schedule and its loading errors."""
from __future__ import annotations

import pytest
import torch
from diffusers import ConsistencyDecoderVAE
from safetensors.torch import save_file

from utils.encoders import consistency_decoder_convert as cdc
from utils.encoders.consistency_decoder import (ConsistencyDecoder, ConsistencyDecoderConfig, ConsistencyDecoderUNet,
                                                consistency_timesteps)
from utils.errors import ConversionError, UserError


def tiny_reference(seed: int = 0) -> ConsistencyDecoderVAE:
    torch.manual_seed(seed)
    widths = (32, 64)
    vae = ConsistencyDecoderVAE(
        encoder_block_out_channels=(16, 32), encoder_down_block_types=("DownEncoderBlock2D",) * 2,
        encoder_layers_per_block=1, encoder_norm_num_groups=8, decoder_block_out_channels=widths,
        decoder_down_block_types=("ResnetDownsampleBlock2D",) * 2, decoder_up_block_types=("ResnetUpsampleBlock2D",) * 2,
        decoder_layers_per_block=1, decoder_norm_num_groups=8, latent_channels=4)
    with torch.no_grad():  # break the zero inits so every weight matters
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return vae.eval()


def ours_from(vae: ConsistencyDecoderVAE) -> ConsistencyDecoder:
    native, _ = cdc.split_consistency_vae(vae.state_dict())
    cfg = cdc.infer_config(native, "tiny")
    model = ConsistencyDecoder(cfg)
    model.unet.load_state_dict(native)
    return model.eval()


def test_decode_matches_diffusers_with_the_same_noise():
    ref = tiny_reference()
    ours = ours_from(ref)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        # diffusers takes unscaled latents (z / scaling_factor); ours the normalised ones the pipelines hold
        theirs = ref.decode(z / ref.config.scaling_factor, generator=torch.Generator().manual_seed(7)).sample
    mine = ours.decode_latents(z, generator=torch.Generator().manual_seed(7), steps=2, clip_denoised=False)
    assert mine.shape == theirs.shape == (1, 3, 16, 16)
    assert (mine - theirs).abs().max().item() < 1e-4


def test_unet_output_matches_diffusers_unet():
    ref = tiny_reference(1)
    ours = ours_from(ref)
    x = torch.randn(2, 7, 16, 16)
    t = torch.tensor([1008, 512])
    with torch.no_grad():
        theirs = ref.decoder_unet(x, t).sample
        mine = ours.unet(x, t)
    assert (mine - theirs).abs().max().item() < 1e-4


def test_seed_rule_and_one_step_decoding():
    ours = ConsistencyDecoder("tiny").eval()
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0))
    both = ours.decode_latents(z, generator=[torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)])
    second = ours.decode_latents(z[1:], generator=[torch.Generator().manual_seed(6)])
    assert torch.allclose(both[1:], second, atol=1e-6)  # image i depends on its own generator only
    one = ours.decode_latents(z, generator=torch.Generator().manual_seed(5), steps=1)
    assert one.shape == both.shape and not torch.allclose(one, both)
    assert one.abs().max() <= 1.0  # x0 clipped to the image range, as OpenAI's sampler does


def test_schedule_is_the_released_one():
    assert consistency_timesteps(2) == [1008, 512]
    assert consistency_timesteps(1) == [1008]
    with pytest.raises(UserError, match="1 or 2 steps"):
        consistency_timesteps(4)


def test_16_channel_latents_are_refused_in_one_line():
    with pytest.raises(UserError, match="--decoder vae"):
        ConsistencyDecoder("tiny").decode_latents(torch.zeros(1, 16, 4, 4))


def test_full_size_release_keys_convert_with_nothing_missing_or_left_over():
    with torch.device("meta"):
        ref = ConsistencyDecoderVAE()  # openai/consistency-decoder's config is the class default
        ours = ConsistencyDecoderUNet("openai")
    native, kl = cdc.split_consistency_vae(ref.state_dict())
    expected = ours.state_dict()
    assert set(native) == set(expected)
    assert all(tuple(native[k].shape) == tuple(expected[k].shape) for k in expected)
    assert cdc.infer_config(native) == ConsistencyDecoderConfig.preset("openai")
    assert kl and all(k.startswith(("encoder.", "quant_conv.")) for k in kl)
    back = cdc.native_to_diffusers(native)
    assert set(back) == {k[len("decoder_unet."):] for k in ref.state_dict() if k.startswith("decoder_unet.")}


def test_loads_a_diffusers_file_and_refuses_foreign_keys(tmp_path):
    ref = tiny_reference(2)
    path = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    (tmp_path / "config.json").write_text('{"_class_name": "ConsistencyDecoderVAE"}')
    loaded = ConsistencyDecoder.from_pretrained(tmp_path, device="cpu")
    expected = ours_from(ref)
    for k, v in expected.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v)
    assert loaded.c_in.device.type == "cpu" and torch.isfinite(loaded.c_in).all()
    bad = tmp_path / "bad.safetensors"
    save_file({"decoder_unet.conv_in.weight": torch.zeros(1), "vision.x": torch.zeros(1)}, str(bad))
    with pytest.raises(ConversionError, match="vision.x"):
        ConsistencyDecoder.from_pretrained(bad)
