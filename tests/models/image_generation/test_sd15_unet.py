"""SD 1.5 / 2.1 UNets (presets of the SDXL UNet code): parity with diffusers' UNet2DConditionModel through
a diffusers folder and through the CompVis single-file layout, and full-size key coverage on meta."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from safetensors.torch import save_file

from models.image_generation.stable_diffusion import convert as cv
from models.image_generation.stable_diffusion.convert_unet import (infer_unet_config, unet_config_from_diffusers,
                                                                   unet_config_to_diffusers, unet_diffusers_to_native,
                                                                   unet_native_to_diffusers)
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.weights import load_state_dict

# The published diffusers configs (runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1, unet/config.json).
SD15_DIFFUSERS = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0)
SD21_DIFFUSERS = dict(SD15_DIFFUSERS, sample_size=96, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                      use_linear_projection=True, upcast_attention=True)

TINY_PRESETS = ["tiny-sd15", "tiny-sd21"]


def _reference(cfg: UNetConfig, seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    ref = UNet2DConditionModel(**unet_config_to_diffusers(cfg)).eval()
    # Perturb every tensor so that zero-initialised layers (conv_out, proj_out) are exercised too.
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return ref


def _inputs(cfg: UNetConfig, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 16, 16, generator=g), torch.tensor([3.0, 801.0]),
            torch.randn(2, 7, cfg.context_dim, generator=g))


def _compare(ref, ours, cfg):
    x, t, context = _inputs(cfg)
    with torch.no_grad():
        expected = ref(x, t, context).sample
        got = ours(x, t, context)
    assert expected.abs().mean() > 1e-3  # a real signal, not zeros
    assert (expected - got).abs().max() <= 1e-4


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_parity_through_a_diffusers_folder(preset, tmp_path):
    cfg = UNetConfig.preset(preset)
    ref = _reference(cfg)
    ref.save_pretrained(tmp_path / "unet")
    ours = cv.unet_from_diffusers(tmp_path / "unet", torch.float32)
    assert ours.config == cfg  # the config.json (heads in attention_head_dim, projections) read back whole
    _compare(ref, ours, cfg)


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_parity_through_the_official_single_file(preset, tmp_path):
    """The reference's tensors in the CompVis layout (made by our converter and checked against diffusers'
    own single-file reader), saved as a checkpoint, load with the preset read off the shapes."""
    cfg = UNetConfig.preset(preset)
    ref = _reference(cfg, seed=3)
    sd = ref.state_dict()
    official = {f"model.diffusion_model.{k}": v.contiguous() for k, v in unet_diffusers_to_native(sd, cfg).items()}
    back = convert_ldm_unet_checkpoint(official, dict(ref.config))
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())
    save_file(official, str(tmp_path / "v1-tiny.safetensors"))
    ours = cv.unet_from_state(load_state_dict(tmp_path / "v1-tiny.safetensors"))
    assert ours.config == cfg and ours.label_emb is None
    _compare(ref, ours, cfg)


def test_sd1_and_sd2_differ_where_the_weights_say():
    """SD 1.x projects with 1x1 convs, SD 2.x with linear layers: the shapes tell them apart."""
    a, b = SDXLUNet("tiny-sd15"), SDXLUNet("tiny-sd21")
    assert a.middle_block[1].proj_in.weight.ndim == 4 and b.middle_block[1].proj_in.weight.ndim == 2
    assert infer_unet_config(a.state_dict()) == a.config and infer_unet_config(b.state_dict()) == b.config


def test_configs_round_trip():
    for name in ("tiny-sd15", "tiny-sd21", "sd15", "sd21"):
        cfg = UNetConfig.preset(name)
        assert unet_config_from_diffusers(unet_config_to_diffusers(cfg)) == cfg
    assert unet_config_from_diffusers(SD15_DIFFUSERS) == UNetConfig.preset("sd15")
    assert unet_config_from_diffusers(SD21_DIFFUSERS) == UNetConfig.preset("sd21")


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("preset,diffusers_cfg,params", [("sd15", SD15_DIFFUSERS, 859_520_964),
                                                         ("sd21", SD21_DIFFUSERS, 865_910_724)])
def test_full_size_official_keys(preset, diffusers_cfg, params):
    """v1-5-pruned-emaonly / v2-1_768-ema-pruned UNets on meta: the official key list (what diffusers'
    single-file converter reads) and the diffusers list map onto each other with nothing missing or left over."""
    cfg = UNetConfig.preset(preset)
    with torch.device("meta"):
        ours = SDXLUNet(cfg)
        ref = UNet2DConditionModel(**diffusers_cfg)
    native, diffusers_sd = ours.state_dict(), ref.state_dict()
    assert _shapes(unet_diffusers_to_native(diffusers_sd, cfg)) == _shapes(native)
    official = {f"model.diffusion_model.{k}": v for k, v in native.items()}
    assert _shapes(convert_ldm_unet_checkpoint(official, dict(ref.config))) == _shapes(diffusers_sd)
    assert _shapes(unet_native_to_diffusers(native, cfg)) == _shapes(diffusers_sd)
    assert infer_unet_config(native) == cfg
    assert sum(v.numel() for v in native.values()) == params  # the released UNets' parameter counts
