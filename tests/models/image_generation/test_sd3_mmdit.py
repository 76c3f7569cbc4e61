"""SD3 MMDiT: parity with diffusers' SD3Transformer2DModel and coverage of the official key layout."""
from __future__ import annotations

import pytest
import torch
from diffusers import SD3Transformer2DModel
from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

from models.image_generation.stable_diffusion.convert_mmdit import (infer_mmdit_config, mmdit_config_from_diffusers,
                                                                    mmdit_config_to_diffusers,
                                                                    mmdit_diffusers_to_native,
                                                                    mmdit_native_to_diffusers)
from models.image_generation.stable_diffusion.mmdit import MMDiT, MMDiTConfig
from utils.errors import UserError

TINY = MMDiTConfig.preset("tiny")  # QK-norm and dual attention in block 0 (SD3.5 Medium style)
VARIANTS = {
    "sd3.5-medium-style": TINY,
    "sd3-style": TINY.with_(qk_norm=False, dual_attention_layers=(), depth=3),
    "sd3.5-large-style": TINY.with_(dual_attention_layers=(), depth=3, num_heads=3),
    "dual-no-qknorm": TINY.with_(qk_norm=False, dual_attention_layers=(0, 1), depth=3),
}

# The published diffusers configs (stabilityai/stable-diffusion-3*-*, transformer/config.json).
SD3_MEDIUM_DIFFUSERS = dict(sample_size=128, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=64,
                            num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
                            pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=192)
SD35_MEDIUM_DIFFUSERS = dict(SD3_MEDIUM_DIFFUSERS, pos_embed_max_size=384, qk_norm="rms_norm",
                             dual_attention_layers=tuple(range(13)))
SD35_LARGE_DIFFUSERS = dict(SD3_MEDIUM_DIFFUSERS, num_layers=38, num_attention_heads=38, caption_projection_dim=2432,
                            qk_norm="rms_norm")


def _pair(cfg: MMDiTConfig, seed: int = 0):
    torch.manual_seed(seed)
    ref = SD3Transformer2DModel(**mmdit_config_to_diffusers(cfg)).eval()
    sd = {k: v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    ours = MMDiT(cfg).eval()
    ours.load_state_dict(mmdit_diffusers_to_native(sd))
    return ref, ours, sd


def _inputs(cfg: MMDiTConfig, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, cfg.in_channels, 12, 8, generator=g)  # not square: exercises the crop of the table
    return (x, torch.tensor([12.5, 987.0]), torch.randn(2, 9, cfg.context_in_dim, generator=g),
            torch.randn(2, cfg.adm_in_channels, generator=g))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_parity_with_diffusers(name):
    cfg = VARIANTS[name]
    ref, ours, _ = _pair(cfg)
    x, t, context, pooled = _inputs(cfg)
    with torch.no_grad():
        expected = ref(x, context, pooled, t).sample
        got = ours(x, t, context, pooled)
    assert (expected - got).abs().max() <= 1e-4


@pytest.mark.parametrize("name", ["sd3.5-medium-style", "sd3-style"])
def test_official_layout_through_diffusers_single_file_converter(name):
    cfg = VARIANTS[name]
    ref, ours, sd = _pair(cfg)
    official = {f"model.diffusion_model.{k}": v.clone() for k, v in ours.state_dict().items()}
    converted = convert_sd3_transformer_checkpoint_to_diffusers(official)
    assert set(converted) == set(sd)
    assert all(torch.equal(converted[k], sd[k]) for k in sd)
    # and ours is the exact inverse
    back = mmdit_native_to_diffusers(ours.state_dict())
    assert all(torch.equal(back[k], sd[k]) for k in sd)
    other = SD3Transformer2DModel(**mmdit_config_to_diffusers(cfg)).eval()
    other.load_state_dict(converted)
    x, t, context, pooled = _inputs(cfg, seed=3)
    with torch.no_grad():
        assert (other(x, context, pooled, t).sample - ours(x, t, context, pooled)).abs().max() <= 1e-4


def _shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("preset,diffusers_cfg", [("sd3-medium", SD3_MEDIUM_DIFFUSERS),
                                                  ("sd3.5-medium", SD35_MEDIUM_DIFFUSERS),
                                                  ("sd3.5-large", SD35_LARGE_DIFFUSERS)])
def test_full_size_official_keys(preset, diffusers_cfg):
    cfg = MMDiTConfig.preset(preset)
    assert mmdit_config_from_diffusers(diffusers_cfg) == cfg
    with torch.device("meta"):
        ours = MMDiT(cfg)
        ref = SD3Transformer2DModel(**diffusers_cfg)
    native, diffusers_sd = ours.state_dict(), ref.state_dict()
    assert _shapes(mmdit_diffusers_to_native(diffusers_sd)) == _shapes(native)
    official = {f"model.diffusion_model.{k}": v for k, v in native.items()}
    assert _shapes(convert_sd3_transformer_checkpoint_to_diffusers(official)) == _shapes(diffusers_sd)
    assert _shapes(mmdit_native_to_diffusers(native)) == _shapes(diffusers_sd)
    assert infer_mmdit_config(native) == cfg


def test_size_errors():
    model = MMDiT(TINY)
    with pytest.raises(UserError, match="patch size"):
        model(torch.zeros(1, 16, 7, 8), torch.tensor([1.0]), torch.zeros(1, 3, 80), torch.zeros(1, 56))
    with pytest.raises(UserError, match="too large"):
        model(torch.zeros(1, 16, 40, 8), torch.tensor([1.0]), torch.zeros(1, 3, 80), torch.zeros(1, 56))


# -- single files of sizes no preset has ------------------------------------------------------------

ODD = {
    # SD3.5-style (per-head q/k norms, one dual-attention block): the norms are head_dim wide, so the
    # shapes fix every size and the file loads with no config.
    "qk-norm": MMDiTConfig(depth=3, num_heads=3, head_dim=16, context_in_dim=24, adm_in_channels=20,
                           pos_embed_max_size=12, qk_norm=True, dual_attention_layers=(1,), sample_size=12),
    # SD3-style (no q/k norms): nothing in the weights tells 4 heads of 8 from 2 of 16 or 1 of 32.
    "no-qk-norm": MMDiTConfig(depth=2, num_heads=4, head_dim=8, context_in_dim=24, adm_in_channels=20,
                              pos_embed_max_size=12, sample_size=12),
}


def _odd_single_file(cfg: MMDiTConfig, tmp_path):
    """A diffusers SD3 transformer of `cfg` with random weights (the position table as built), saved as an
    official single file; diffusers' own converter reads it back to the reference's tensors."""
    from safetensors.torch import save_file

    from utils.weights import load_state_dict

    torch.manual_seed(2)
    ref = SD3Transformer2DModel(**mmdit_config_to_diffusers(cfg)).eval()
    sd = {k: v if k == "pos_embed.pos_embed" else v + 0.02 * torch.randn_like(v) for k, v in ref.state_dict().items()}
    ref.load_state_dict(sd)
    official = {f"model.diffusion_model.{k}": v.contiguous() for k, v in mmdit_diffusers_to_native(sd).items()}
    back = convert_sd3_transformer_checkpoint_to_diffusers(dict(official))
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())
    save_file(official, str(tmp_path / "custom_sd3.safetensors"))
    return ref, load_state_dict(tmp_path / "custom_sd3.safetensors")


def _max_diff(ref, ours, cfg: MMDiTConfig) -> float:
    x, t, context, pooled = _inputs(cfg)
    with torch.no_grad():
        return float((ref(x, context, pooled, t).sample - ours(x, t, context, pooled)).abs().max())


@pytest.mark.parametrize("name", list(ODD))
def test_non_release_single_file_loads_exactly_or_refuses(name, tmp_path):
    from models.image_generation.stable_diffusion import convert as cv
    from models.image_generation.stable_diffusion.convert_mmdit import read_mmdit_sizes
    from models.image_generation.stable_diffusion.mmdit import MMDIT_PRESETS
    from utils.weights.configs import matching_presets

    cfg = ODD[name]
    ref, sd = _odd_single_file(cfg, tmp_path)
    native = cv.denoiser_state(sd, "x_embedder.proj.weight", "", "")
    assert matching_presets(read_mmdit_sizes(native), MMDIT_PRESETS) == []
    if cfg.qk_norm:  # every size is in the shapes (the sample size in the position table's values)
        ours = cv.mmdit_from_state(sd)
        assert ours.config == cfg
        assert _max_diff(ref, ours, cfg) <= 1e-4
        return
    for preset in (None, "sd3-medium"):
        with pytest.raises(UserError) as err:
            cv.mmdit_from_state(sd, preset)
        msg = str(err.value)
        assert "head_dim" in msg and "config=MMDiTConfig(" in msg and "num_heads = 32 // head_dim" in msg
        assert "\n" not in msg
    ours = cv.mmdit_from_state(sd, config=cfg)
    assert _max_diff(ref, ours, cfg) <= 1e-4
    # the guess the refusal avoids would be wrong: 2 heads of 16 give other outputs from the same tensors
    wrong = MMDiT(cfg.with_(num_heads=2, head_dim=16)).eval()
    wrong.load_state_dict(native)
    assert _max_diff(ref, wrong, cfg) > 1e-3
    with pytest.raises(UserError, match=r"depth is 3 but the weights have 2"):
        cv.mmdit_from_state(sd, config=cfg.with_(depth=3))

