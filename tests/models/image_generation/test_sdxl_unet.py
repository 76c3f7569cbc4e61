"""SDXL UNet: parity with diffusers' UNet2DConditionModel and coverage of the official key layout."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

from models.image_generation.stable_diffusion.conditioning import sdxl_vector
from models.image_generation.stable_diffusion.convert_unet import (infer_unet_config, unet_config_from_diffusers,
                                                                   unet_config_to_diffusers, unet_diffusers_to_native,
                                                                   unet_native_to_diffusers)
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.errors import ConversionError

TINY = UNetConfig.preset("tiny")
# Refiner-shaped: three levels, attention only in the middle level (depth 2), a deeper middle block,
# context from one encoder and five micro-conditioning numbers.
TINY_REFINER = TINY.with_(channel_mult=(1, 2, 2), num_res_blocks=2, transformer_depth=(0, 2, 0),
                          transformer_depth_middle=3, context_dim=24, adm_in_channels=24 + 5 * 8,
                          micro_conditioning="refiner")
# Base-shaped: no attention at full resolution, 1 then 2 transformer blocks.
TINY_BASE = TINY.with_(channel_mult=(1, 2, 2), transformer_depth=(0, 1, 2), transformer_depth_middle=2)

# The published diffusers configs of the official UNets (stabilityai/stable-diffusion-xl-*-1.0, unet/config.json).
SDXL_BASE_DIFFUSERS = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(5, 10, 20),
    transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0)
SDXL_REFINER_DIFFUSERS = dict(
    SDXL_BASE_DIFFUSERS, block_out_channels=(384, 768, 1536, 1536),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(6, 12, 24, 24), transformer_layers_per_block=4, cross_attention_dim=1280,
    projection_class_embeddings_input_dim=2560)


def _pair(cfg: UNetConfig, seed: int = 0) -> tuple[UNet2DConditionModel, SDXLUNet, dict]:
    torch.manual_seed(seed)
    ref = UNet2DConditionModel(**unet_config_to_diffusers(cfg)).eval()
    # Perturb every tensor so that zero-initialised layers (conv_out...) are exercised too.
    sd = {k: v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = SDXLUNet(cfg).eval()
    ours.load_state_dict(unet_diffusers_to_native(sd, cfg))
    return ref, ours, sd


def _inputs(cfg: UNetConfig, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([3.0, 801.0])
    context = torch.randn(2, 7, cfg.context_dim, generator=g)
    n = 6 if cfg.micro_conditioning == "base" else 5
    pooled = torch.randn(2, cfg.adm_in_channels - n * cfg.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[128.0, 96.0, 0.0, 8.0, 128.0, 128.0], [64.0, 64.0, 4.0, 0.0, 128.0, 96.0]])
    if n == 5:
        ids = torch.tensor([[128.0, 96.0, 0.0, 8.0, 6.0], [64.0, 64.0, 4.0, 0.0, 2.5]])
    return x, t, context, pooled, ids


@pytest.mark.parametrize("cfg", [TINY, TINY_BASE, TINY_REFINER], ids=["tiny", "base-style", "refiner-style"])
def test_parity_with_diffusers(cfg):
    ref, ours, _ = _pair(cfg)
    x, t, context, pooled, ids = _inputs(cfg)
    with torch.no_grad():
        expected = ref(x, t, context, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        y = sdxl_vector(pooled, ids, cfg.addition_time_embed_dim)
        got = ours(x, t, context, y)
    assert (expected - got).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg", [TINY_BASE, TINY_REFINER], ids=["base-style", "refiner-style"])
def test_official_layout_through_diffusers_single_file_converter(cfg):
    """Our native state dict, saved as an official file would be, loads through diffusers' own converter."""
    ref, ours, sd = _pair(cfg)
    official = {f"model.diffusion_model.{k}": v for k, v in ours.state_dict().items()}
    converted = convert_ldm_unet_checkpoint(official, dict(ref.config))
    assert set(converted) == set(sd)
    other = UNet2DConditionModel(**unet_config_to_diffusers(cfg)).eval()
    other.load_state_dict(converted)
    x, t, context, pooled, ids = _inputs(cfg, seed=5)
    with torch.no_grad():
        a = other(x, t, context, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        b = ours(x, t, context, sdxl_vector(pooled, ids, cfg.addition_time_embed_dim))
    assert (a - b).abs().max() <= 1e-4


def test_configs_round_trip():
    for cfg in (TINY, TINY_BASE, TINY_REFINER, UNetConfig.preset("sdxl-base"), UNetConfig.preset("sdxl-refiner")):
        assert unet_config_from_diffusers(unet_config_to_diffusers(cfg)) == cfg
    assert unet_config_from_diffusers(SDXL_BASE_DIFFUSERS) == UNetConfig.preset("sdxl-base")
    assert unet_config_from_diffusers(SDXL_REFINER_DIFFUSERS) == UNetConfig.preset("sdxl-refiner")


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("preset,diffusers_cfg", [("sdxl-base", SDXL_BASE_DIFFUSERS),
                                                  ("sdxl-refiner", SDXL_REFINER_DIFFUSERS)])
def test_full_size_official_keys(preset, diffusers_cfg):
    """Full-size models on the meta device: the official key list (what diffusers' converter reads) and
    the diffusers list map onto each other through both converters with nothing missing or left over."""
    cfg = UNetConfig.preset(preset)
    with torch.device("meta"):
        ours = SDXLUNet(cfg)
        ref = UNet2DConditionModel(**diffusers_cfg)
    native, diffusers_sd = ours.state_dict(), ref.state_dict()
    # diffusers -> native (ours) covers the official list exactly.
    assert _shapes(unet_diffusers_to_native(diffusers_sd, cfg)) == _shapes(native)
    # native -> diffusers, by diffusers' own single-file converter and by ours.
    official = {f"model.diffusion_model.{k}": v for k, v in native.items()}
    assert _shapes(convert_ldm_unet_checkpoint(official, dict(ref.config))) == _shapes(diffusers_sd)
    assert _shapes(unet_native_to_diffusers(native, cfg)) == _shapes(diffusers_sd)
    assert infer_unet_config(native) == cfg
    assert sum(v.numel() for v in native.values()) == sum(v.numel() for v in diffusers_sd.values())


def test_unknown_keys_are_named():
    with pytest.raises(ConversionError, match="down_blocks.9"):
        unet_diffusers_to_native({"down_blocks.9.foo.weight": torch.zeros(1)}, TINY)


def test_size_not_multiple_is_a_clear_error():
    from utils.errors import UserError

    model = SDXLUNet(TINY)
    with pytest.raises(UserError, match="multiple"):
        model(torch.zeros(1, 4, 15, 16), torch.tensor([1.0]), torch.zeros(1, 3, 72), torch.zeros(1, 80))


# -- single files of sizes no preset has ------------------------------------------------------------

# No preset has these sizes; the head size (12), groups (4) and Fourier width (4) are not in the weights.
ODD = UNetConfig(model_channels=24, channel_mult=(1, 2), num_res_blocks=1, transformer_depth=(0, 2),
                 transformer_depth_middle=2, head_dim=12, context_dim=40, adm_in_channels=16 + 6 * 4, norm_groups=4,
                 addition_time_embed_dim=4)


def _odd_single_file(tmp_path):
    """A diffusers UNet of the ODD sizes with random weights, saved as an official single file."""
    from utils.weights import load_state_dict

    ref, _, sd = _pair(ODD, seed=4)
    official = {f"model.diffusion_model.{k}": v.contiguous() for k, v in unet_diffusers_to_native(sd, ODD).items()}
    # the official layout: diffusers' own single-file converter reads it back to the reference's tensors
    back = convert_ldm_unet_checkpoint(official, dict(ref.config))
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())
    from safetensors.torch import save_file

    save_file(official, str(tmp_path / "custom_sdxl.safetensors"))
    return ref, load_state_dict(tmp_path / "custom_sdxl.safetensors")


def _odd_outputs(model, cfg: UNetConfig, reference: bool = False) -> torch.Tensor:
    x, t, context, pooled, ids = _inputs(cfg)
    x = x[:, :, :8, :8]  # small: this runs four times
    with torch.no_grad():
        if reference:
            return model(x, t, context, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        return model(x, t, context, sdxl_vector(pooled, ids, cfg.addition_time_embed_dim))


def test_non_release_single_file_refuses_then_loads_with_explicit_config(tmp_path):
    from models.image_generation.stable_diffusion import convert as cv
    from models.image_generation.stable_diffusion.convert_unet import read_unet_sizes
    from models.image_generation.stable_diffusion.unet import UNET_PRESETS
    from utils.errors import UserError
    from utils.weights.configs import matching_presets

    ref, sd = _odd_single_file(tmp_path)
    assert matching_presets(read_unet_sizes(cv.denoiser_state(sd, "input_blocks.0.0.weight", "", "")),
                            UNET_PRESETS) == []
    for preset in (None, "sdxl-base"):
        with pytest.raises(UserError) as err:
            cv.unet_from_state(sd, preset)
        msg = str(err.value)
        assert all(f in msg for f in ("head_dim", "norm_groups", "addition_time_embed_dim", "config=UNetConfig("))
        assert "model_channels=24" in msg and "\n" not in msg
    ours = cv.unet_from_state(sd, config=ODD)
    assert ours.config == ODD
    expected = _odd_outputs(ref, ODD, reference=True)
    assert (_odd_outputs(ours, ODD) - expected).abs().max() <= 1e-4
    # each value the refusal avoids guessing changes the outputs (or cannot be built at all)
    from utils.weights import load_into

    native = cv.denoiser_state(sd, "input_blocks.0.0.weight", "", "")
    for wrong in (ODD.with_(head_dim=24), ODD.with_(norm_groups=8)):
        model = SDXLUNet(wrong).eval()
        load_into(model, native)
        assert (_odd_outputs(model, ODD) - expected).abs().max() > 1e-3


def test_explicit_unet_config_errors_are_one_clear_line(tmp_path):
    from models.image_generation.stable_diffusion import convert as cv
    from utils.errors import UserError

    _, sd = _odd_single_file(tmp_path)
    with pytest.raises(UserError, match=r"context_dim is 48 but the weights have 40"):
        cv.unet_from_state(sd, config=ODD.with_(context_dim=48))
    with pytest.raises(UserError, match="head_dim 7 does not divide"):  # not a shape error inside torch
        cv.unet_from_state(sd, config=ODD.with_(head_dim=7))
    with pytest.raises(UserError, match="norm_groups 32 does not divide"):
        cv.unet_from_state(sd, config=ODD.with_(norm_groups=32))

