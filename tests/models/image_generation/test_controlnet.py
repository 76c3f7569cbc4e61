"""ControlNet (SD 1.5- and SDXL-shaped): parity with diffusers' ControlNetModel through both layouts, the UNet
taking its residuals, and full-size key coverage of the released layouts on the meta device."""
from __future__ import annotations

import json

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint
from safetensors.torch import save_file

from models.image_generation.stable_diffusion.controlnet import ControlNet, ControlNetConfig, combine
from models.image_generation.stable_diffusion.controlnet_convert import (controlnet_config_from_diffusers,
                                                                         controlnet_config_to_diffusers,
                                                                         controlnet_diffusers_to_native,
                                                                         controlnet_native_to_diffusers,
                                                                         infer_controlnet_config, load_controlnet)
from models.image_generation.stable_diffusion.convert_unet import unet_config_to_diffusers
from models.image_generation.stable_diffusion.unet import SDXLUNet, UNetConfig
from utils.errors import ConversionError, UserError

TINY = ["tiny-sd15", "tiny"]  # SD 1.5-shaped (1x1-conv projections, fixed heads) and SDXL-shaped (vector y)

# The published configs: lllyasviel/control_v11p_sd15_canny and diffusers/controlnet-canny-sdxl-1.0 (config.json).
SD15_CANNY = dict(
    in_channels=4, conditioning_channels=3, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0,
    conditioning_embedding_out_channels=[16, 32, 96, 256], controlnet_conditioning_channel_order="rgb",
    use_linear_projection=False)
SDXL_CANNY = dict(
    in_channels=4, conditioning_channels=3, layers_per_block=2, block_out_channels=[320, 640, 1280],
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    attention_head_dim=[5, 10, 20], transformer_layers_per_block=[1, 2, 10], cross_attention_dim=2048,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    use_linear_projection=True, norm_num_groups=32, flip_sin_to_cos=True, freq_shift=0,
    conditioning_embedding_out_channels=[16, 32, 96, 256], controlnet_conditioning_channel_order="rgb")


def _perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere, the zero convolutions included (else every residual would be zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return module.eval()


def _reference(cfg: ControlNetConfig, seed: int = 0) -> ControlNetModel:
    torch.manual_seed(seed)
    return _perturbed(ControlNetModel(**controlnet_config_to_diffusers(cfg)), seed)


def _inputs(cfg: ControlNetConfig, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    u = cfg.unet
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([11.0, 760.0])
    ctx = torch.randn(2, 5, u.context_dim, generator=g)
    y = torch.randn(2, u.adm_in_channels, generator=g) if u.adm_in_channels else None
    hint = torch.rand(2, 3, 8 * cfg.hint_downscale, 8 * cfg.hint_downscale, generator=g)
    return x, t, ctx, y, hint


def _ref_y(cfg: ControlNetConfig, seed: int = 2):
    """SDXL: diffusers builds y from pooled text + six numbers; ours takes y itself. Give both the same."""
    u = cfg.unet
    if not u.adm_in_channels:
        return None, None
    from utils.nn import timestep_embedding

    g = torch.Generator().manual_seed(seed)
    pooled = torch.randn(2, u.adm_in_channels - 6 * u.addition_time_embed_dim, generator=g)
    ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0], [32.0, 48.0, 4.0, 2.0, 64.0, 64.0]])
    feats = timestep_embedding(ids.flatten(), u.addition_time_embed_dim, flip_sin_to_cos=True,
                               downscale_freq_shift=0).reshape(2, -1)
    return torch.cat([pooled, feats], 1), {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": ids}}


def _compare(ref: ControlNetModel, ours: ControlNet, cfg: ControlNetConfig, scale: float = 0.7):
    x, t, ctx, _, hint = _inputs(cfg)
    y, kwargs = _ref_y(cfg)
    with torch.no_grad():
        expected = ref(x, t, ctx, controlnet_cond=hint, conditioning_scale=scale, return_dict=False, **(kwargs or {}))
        got = ours(x, t, ctx, y, hint, scale=scale)
    down_ref, mid_ref = expected
    assert len(got.down) == len(down_ref)
    assert mid_ref.abs().mean() > 1e-3  # a real signal, not zeros
    for a, b in zip(got.down, down_ref):
        assert (a - b).abs().max() <= 1e-4
    assert (got.mid - mid_ref).abs().max() <= 1e-4


@pytest.mark.parametrize("preset", TINY)
def test_parity_through_the_diffusers_layout(preset, tmp_path):
    cfg = ControlNetConfig.preset(preset)
    ref = _reference(cfg)
    ref.save_pretrained(tmp_path / "cn")
    ours = load_controlnet(tmp_path / "cn", dtype=torch.float32)
    assert ours.config == cfg  # config.json read back whole
    _compare(ref, ours, cfg)


@pytest.mark.parametrize("preset", TINY)
def test_parity_through_the_official_layout(preset, tmp_path):
    """The reference's tensors renamed to lllyasviel's `control_model.*` layout (checked against diffusers' own
    reader of that layout), saved as a .pth and as safetensors, load with the sizes read off the shapes."""
    cfg = ControlNetConfig.preset(preset)
    ref = _reference(cfg, seed=3)
    sd = ref.state_dict()
    native = controlnet_diffusers_to_native(sd, cfg)
    official = {f"control_model.{k}": v.contiguous() for k, v in native.items()}
    back = convert_controlnet_checkpoint(official, dict(ref.config))  # diffusers' reader of the released files
    # (that reader knows the SD 1.x layout; SDXL's vector MLP, label_emb as in the UNet, it leaves out)
    expected = {k: v for k, v in sd.items() if not k.startswith("add_embedding.")}
    assert set(back) == set(expected) and all(torch.equal(back[k], v) for k, v in expected.items())
    torch.save(official, tmp_path / "control_tiny.pth")
    save_file(official, str(tmp_path / "control_tiny.safetensors"))
    for name in ("control_tiny.pth", "control_tiny.safetensors"):
        ours = load_controlnet(tmp_path / name, dtype=torch.float32)
        assert ours.config == cfg
        _compare(ref, ours, cfg, scale=1.0)


@pytest.mark.parametrize("preset", TINY)
def test_unet_takes_the_residuals_as_diffusers_does(preset):
    """One UNet step with control: our UNet + ControlNet vs diffusers' UNet2DConditionModel + ControlNetModel."""
    cfg = ControlNetConfig.preset(preset)
    u = cfg.unet
    torch.manual_seed(4)
    ref_unet = _perturbed(UNet2DConditionModel(**unet_config_to_diffusers(u)), 4)
    ours_unet = SDXLUNet(u)
    from models.image_generation.stable_diffusion.convert_unet import unet_diffusers_to_native

    ours_unet.load_state_dict(unet_diffusers_to_native(ref_unet.state_dict(), u))
    ours_unet.eval()
    ref_cn = _reference(cfg, seed=5)
    ours_cn = ControlNet(cfg)
    ours_cn.load_state_dict(controlnet_diffusers_to_native(ref_cn.state_dict(), cfg))
    ours_cn.eval()
    x, t, ctx, _, hint = _inputs(cfg)
    y, kwargs = _ref_y(cfg)
    kwargs = kwargs or {}
    with torch.no_grad():
        down, mid = ref_cn(x, t, ctx, controlnet_cond=hint, conditioning_scale=0.5, return_dict=False, **kwargs)
        expected = ref_unet(x, t, ctx, down_block_additional_residuals=down, mid_block_additional_residual=mid,
                            **kwargs).sample
        plain = ours_unet(x, t, ctx, y)
        residuals = ours_cn(x, t, ctx, y, hint, scale=0.5)
        got = ours_unet(x, t, ctx, y, **residuals.unet_kwargs())
        doubled = ours_unet(x, t, ctx, y, **combine([residuals, residuals]).unet_kwargs())
    assert (got - expected).abs().max() <= 1e-4
    assert (got - plain).abs().max() > 1e-3  # the control changes the prediction
    assert (doubled - got).abs().max() > 1e-3  # two ControlNets add


def test_fresh_controlnet_leaves_the_unet_untouched():
    """Zero convolutions: an untrained ControlNet's residuals are exactly zero."""
    cfg = ControlNetConfig.preset("tiny-sd15")
    x, t, ctx, y, hint = _inputs(cfg)
    with torch.no_grad():
        r = ControlNet(cfg)(x, t, ctx, y, hint)
    assert all(torch.count_nonzero(d) == 0 for d in r.down) and torch.count_nonzero(r.mid) == 0


def test_full_size_sd15_canny_official_keys_on_meta():
    """control_v11p_sd15_canny: our official-layout keys, read by diffusers' converter of the released .pth,
    give exactly the diffusers ControlNetModel of the published config (names and shapes)."""
    with torch.device("meta"):
        ours = ControlNet("sd15")
        ref = ControlNetModel(**SD15_CANNY)
    official = {f"control_model.{k}": v for k, v in ours.state_dict().items()}
    back = convert_controlnet_checkpoint(official, dict(ref.config))
    expected = ref.state_dict()
    assert set(back) == set(expected)
    assert all(back[k].shape == v.shape for k, v in expected.items())
    native = {k[len("control_model."):]: v for k, v in official.items()}
    assert infer_controlnet_config(native) == ControlNetConfig.preset("sd15")
    assert controlnet_config_from_diffusers(SD15_CANNY) == ControlNetConfig.preset("sd15")


def test_full_size_sdxl_canny_diffusers_keys_on_meta():
    """diffusers/controlnet-canny-sdxl-1.0: every released key converts, nothing missing or left over."""
    cfg = controlnet_config_from_diffusers(SDXL_CANNY)
    assert cfg == ControlNetConfig.preset("sdxl")
    with torch.device("meta"):
        ref = ControlNetModel(**SDXL_CANNY)
        ours = ControlNet(cfg)
    native = controlnet_diffusers_to_native(ref.state_dict(), cfg)
    mine = ours.state_dict()
    assert set(native) == set(mine)
    assert all(native[k].shape == v.shape for k, v in mine.items())
    assert set(controlnet_native_to_diffusers(mine, cfg)) == set(ref.state_dict())
    assert infer_controlnet_config(native, preset="sdxl-base") == cfg


def test_bad_controlnet_files(tmp_path):
    save_file({"foo.weight": torch.zeros(2)}, str(tmp_path / "not_cn.safetensors"))
    with pytest.raises(UserError, match="not a ControlNet"):
        load_controlnet(tmp_path / "not_cn.safetensors")
    cfg = ControlNetConfig.preset("tiny-sd15")
    sd = controlnet_native_to_diffusers(ControlNet(cfg).state_dict(), cfg)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "lonely.safetensors"))
    with pytest.raises(UserError, match="no config.json"):
        load_controlnet(tmp_path / "lonely.safetensors")
    native = ControlNet(cfg).state_dict()
    native.pop("zero_convs.1.0.weight")
    save_file({f"control_model.{k}": v for k, v in native.items()}, str(tmp_path / "cut.safetensors"))
    with pytest.raises(ConversionError, match="zero_convs.1.0.weight"):
        load_controlnet(tmp_path / "cut.safetensors")
    (tmp_path / "cfg_only").mkdir()
    (tmp_path / "cfg_only" / "x.json").write_text(json.dumps({}))
    with pytest.raises(UserError, match="without config.json"):
        load_controlnet(tmp_path / "cfg_only")


def test_controlnet_for_another_unet_is_refused():
    cn = ControlNet("tiny")
    with pytest.raises(UserError, match="another UNet"):
        cn.check_fits(UNetConfig.preset("tiny-sd15"))
    cfg = ControlNetConfig.preset("tiny-sd15")
    x, t, ctx, y, hint = _inputs(cfg)
    with pytest.raises(UserError, match="8x the latent size"):
        ControlNet(cfg)(x, t, ctx, y, hint[..., :32, :32])
