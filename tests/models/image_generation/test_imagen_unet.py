"""The cascade's UNets against diffusers with the same random weights: IF stage I and II
(UNet2DConditionModel at IF configs) and the x4 upscaler; the key maps both ways; full-size key
coverage of IF-I-XL and IF-II-L on meta; config reading; the Efficient U-Net option."""
from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from models.image_generation.imagen import convert as cv
from models.image_generation.imagen.config import IFUNetConfig, UpscalerUNetConfig
from models.image_generation.imagen.unet import IFUNet
from models.image_generation.imagen.upscaler import UpscalerUNet
from utils.errors import ConversionError, UserError


def randomize(module: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():  # break the zero inits so every weight matters
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def reference_if(preset: str, seed: int = 0) -> tuple[UNet2DConditionModel, IFUNet]:
    cfg = IFUNetConfig.preset(preset)
    torch.manual_seed(seed)
    ref = randomize(UNet2DConditionModel(**cv.if_config_to_diffusers(cfg)), seed)
    ours = IFUNet(cv.if_config_from_diffusers(dict(ref.config))).eval()
    ours.load_state_dict(cv.if_diffusers_to_native(ref.state_dict(), ours.config))
    return ref, ours


def test_stage_i_unet_matches_diffusers():
    ref, ours = reference_if("tiny")
    assert ours.config == IFUNetConfig.preset("tiny")
    x, t, text = torch.randn(2, 3, 16, 16), torch.tensor([999, 17]), torch.randn(2, 7, 32)
    with torch.no_grad():
        theirs = ref(x, t, encoder_hidden_states=text).sample
        mine = ours(x, t, text)
    assert mine.shape == (2, 6, 16, 16)
    assert (mine - theirs).abs().max().item() < 1e-4


def test_stage_ii_unet_matches_diffusers():
    ref, ours = reference_if("tiny-sr", seed=1)
    cfg = ours.config
    assert cfg.super_resolution and cfg.only_cross_attention and cfg.efficient_activation
    assert abs(cfg.skip_scale - 0.7071) < 1e-6 and cfg.num_res_blocks == (1, 2)
    x, t, text = torch.randn(1, 6, 32, 32), torch.tensor([500]), torch.randn(1, 5, 32)
    level = torch.tensor([250])
    with torch.no_grad():
        theirs = ref(x, t, encoder_hidden_states=text, class_labels=level).sample
        mine = ours(x, t, text, noise_level=level)
    assert (mine - theirs).abs().max().item() < 1e-4
    with pytest.raises(UserError, match="noise_level"):
        ours(x, t, text)


def test_upscaler_unet_matches_diffusers():
    cfg = UpscalerUNetConfig.preset("tiny")
    torch.manual_seed(2)
    ref = randomize(UNet2DConditionModel(**cv.upscaler_config_to_diffusers(cfg)), 2)
    assert cv.upscaler_config_from_diffusers(dict(ref.config)) == cfg
    ours = UpscalerUNet(cfg).eval()
    ours.load_state_dict(cv.upscaler_diffusers_to_native(ref.state_dict(), cfg))
    x, t, text, level = torch.randn(2, 7, 8, 8), torch.tensor([900, 3]), torch.randn(2, 6, 32), torch.tensor([20, 20])
    with torch.no_grad():
        theirs = ref(x, t, encoder_hidden_states=text, class_labels=level).sample
        mine = ours(x, t, text, level)
    assert (mine - theirs).abs().max().item() < 1e-4
    back = cv.upscaler_native_to_diffusers(ours.state_dict(), cfg)
    assert set(back) == set(ref.state_dict())


@pytest.mark.parametrize("preset", ["tiny", "tiny-sr"])
def test_key_maps_round_trip_exactly(preset):
    ref, ours = reference_if(preset, seed=3)
    back = cv.if_native_to_diffusers(ours.state_dict(), ours.config)
    theirs = ref.state_dict()
    assert set(back) == set(theirs)
    assert all(torch.equal(back[k], theirs[k]) for k in theirs)


@pytest.mark.parametrize("preset", ["if-i-xl", "if-ii-l", "sd-x4-upscaler"])
def test_full_size_keys_convert_with_nothing_missing_or_left_over(preset):
    if preset == "sd-x4-upscaler":
        cfg = UpscalerUNetConfig.preset(preset)
        with torch.device("meta"):
            ref = UNet2DConditionModel(**cv.upscaler_config_to_diffusers(cfg))
            ours = UpscalerUNet(cfg)
        native = cv.upscaler_diffusers_to_native(ref.state_dict(), cfg)
    else:
        cfg = IFUNetConfig.preset(preset)
        with torch.device("meta"):
            ref = UNet2DConditionModel(**cv.if_config_to_diffusers(cfg))
            ours = IFUNet(cfg)
        assert cv.if_config_from_diffusers(dict(ref.config)) == cfg
        native = cv.if_diffusers_to_native(ref.state_dict(), cfg)
        assert cv.infer_if_config(native, preset=preset) == cfg  # the official layout tells its own sizes
    expected = ours.state_dict()
    assert set(native) == set(expected)
    assert all(tuple(native[k].shape) == tuple(expected[k].shape) for k in expected)
    if preset == "if-i-xl":  # the published 4.3B parameters
        assert 4.2e9 < sum(p.numel() for p in ours.parameters()) < 4.4e9


def test_loader_reads_diffusers_folders_and_official_files(tmp_path):
    from safetensors.torch import save_file

    ref, ours = reference_if("tiny-sr", seed=4)
    ref.save_pretrained(tmp_path / "pipe" / "unet")
    loaded = cv.load_if_unet(tmp_path / "pipe")
    assert loaded.config == ours.config
    official = tmp_path / "official"
    official.mkdir()
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, str(official / "model.safetensors"))
    (official / "config.yml").write_text("params:\n  num_head_channels: 8\n  att_pool_heads: 4\n"
                                         "  scale_skip_connection: true\n  efficient_activation: true\n"
                                         "  image_size: 32\n")
    from_file = cv.load_if_unet(official / "model.safetensors", preset="tiny-sr")
    assert from_file.config == ours.config
    g = torch.Generator().manual_seed(0)
    x, t, text, level = (torch.randn(1, 6, 32, 32, generator=g), torch.tensor([10]), torch.randn(1, 3, 32, generator=g),
                         torch.tensor([100]))
    with torch.no_grad():  # the same weights: float32 rounding only (a freshly loaded layout may take other kernels)
        assert torch.allclose(from_file(x, t, text, level), ours(x, t, text, level), rtol=0, atol=1e-5)
    broken = dict(ours.state_dict())
    broken["input_blocks.1.9.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="input_blocks.1.9.weight"):
        cv.if_native_to_diffusers(broken, ours.config)
    with pytest.raises(UserError, match="not a DeepFloyd IF UNet"):
        cv.if_config_from_diffusers({"down_block_types": ["DownBlock2D"], "block_out_channels": [32]})


def test_efficient_unet_moves_work_to_low_resolution_and_runs():
    cfg = IFUNetConfig.preset("tiny-sr").with_(efficient=True, num_res_blocks=(1, 3))
    net = IFUNet(cfg).eval()
    assert net.skip_out.count(True) == cfg.levels and net.skip_in.count(True) == cfg.levels  # one skip per level
    assert isinstance(net.input_blocks[2][0], type(net.input_blocks[1][0])) and net.input_blocks[2][0].resample == "down"
    x = torch.randn(1, 6, 16, 16)
    with torch.no_grad():
        out = net(x, torch.tensor([3]), torch.randn(1, 4, 32), torch.tensor([0]))
    assert out.shape == (1, 6, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(UserError, match="no diffusers"):
        cv.if_config_to_diffusers(cfg)
    paper = IFUNetConfig.preset("efficient-unet-sr256")
    assert paper.num_res_blocks == (2, 4, 8, 8) and paper.efficient and abs(paper.skip_scale - 0.7071) < 1e-6
