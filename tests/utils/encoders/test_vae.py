"""AutoencoderKL: parity with diffusers through our converter, tiling, slicing, loading real layouts."""
from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from utils.encoders import vae_convert as conv
from utils.encoders.vae import AutoencoderKL, VAEConfig
from utils.errors import ConversionError, UserError
from utils.weights import load_into

import diffusers


def _reference(cfg: VAEConfig, seed: int = 0):
    """diffusers' AutoencoderKL at `cfg` with random, non-trivial weights (norms included)."""
    torch.manual_seed(seed)
    ref = diffusers.AutoencoderKL(**conv.config_to_diffusers(cfg)).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return ref


def _image(b: int = 2, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


CASES = {
    "4ch-quant": VAEConfig.preset("tiny"),
    "4ch-noquant": VAEConfig.preset("tiny").with_(use_quant_conv=False, use_post_quant_conv=False),
    "16ch-noquant": VAEConfig.preset("tiny-16"),
    "16ch-quant": VAEConfig.preset("tiny-16").with_(use_quant_conv=True, use_post_quant_conv=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_diffusers_from_folder(case, tmp_path):
    cfg = CASES[case]
    ref = _reference(cfg)
    ref.save_pretrained(tmp_path / "vae")
    ours = AutoencoderKL.from_pretrained(tmp_path, device="cpu")  # the pipeline root: finds vae/
    assert ours.config.latent_channels == cfg.latent_channels
    assert (ours.quant_conv is None) == (not cfg.use_quant_conv)
    x = _image()
    with torch.inference_mode():
        ref_dist, our_dist = ref.encode(x).latent_dist, ours.encode(x)
        assert (ref_dist.mean - our_dist.mean).abs().max() <= 1e-4
        assert (ref_dist.logvar - our_dist.logvar).abs().max() <= 1e-4
        z = torch.randn(2, cfg.latent_channels, 16, 16, generator=torch.Generator().manual_seed(2))
        ref_img, our_img = ref.decode(z).sample, ours.decode(z)
    assert our_img.std() > 0.05  # a real signal, not a constant
    assert (ref_img - our_img).abs().max() <= 1e-4


def test_sample_matches_diffusers_with_same_generator():
    cfg = CASES["4ch-quant"]
    ref = _reference(cfg)
    ours = AutoencoderKL(cfg).eval()
    load_into(ours, conv.diffusers_to_native(ref.state_dict()))
    x = _image()
    with torch.inference_mode():
        a = ref.encode(x).latent_dist.sample(generator=torch.Generator().manual_seed(5))
        b = ours.encode(x).sample(generator=torch.Generator().manual_seed(5))
    assert (a - b).abs().max() <= 1e-4


def test_scaling_presets():
    assert VAEConfig.preset("sd").scaling_factor == 0.18215
    assert VAEConfig.preset("sdxl").scaling_factor == 0.13025 and VAEConfig.preset("sdxl").force_upcast
    sd3, flux = VAEConfig.preset("sd3"), VAEConfig.preset("flux")
    assert (sd3.scaling_factor, sd3.shift_factor, sd3.latent_channels) == (1.5305, 0.0609, 16)
    assert (flux.scaling_factor, flux.shift_factor, flux.use_quant_conv) == (0.3611, 0.1159, False)
    vae = AutoencoderKL("tiny-16")
    z = torch.randn(1, 16, 4, 4)
    assert torch.allclose(vae.unscale_latents(vae.scale_latents(z)), z, atol=1e-6)
    with pytest.raises(UserError, match="did you mean"):
        VAEConfig.preset("fluxx")


def _periodic(channels: int, size: int, period: int = 8) -> torch.Tensor:
    """A smooth pattern whose statistics are the same in every tile (tile starts are multiples of the period)."""
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    planes = [torch.sin(2 * math.pi * xs / period + c) * torch.cos(2 * math.pi * ys / period + 0.5 * c)
              for c in range(channels)]
    return torch.stack(planes)[None]


def test_tile_blending_is_exact_for_a_local_map():
    import torch.nn.functional as F

    from utils.encoders.vae import _tiled

    x = torch.randn(1, 4, 48, 40)
    up = _tiled(lambda t: F.interpolate(t, scale_factor=2), x, 24, 8, 2, 4)
    assert (up - F.interpolate(x, scale_factor=2)).abs().max() <= 1e-6
    down = _tiled(lambda t: t[:, :, ::2, ::2], x, 16, 6, 0.5, 4)
    assert (down - x[:, :, ::2, ::2]).abs().max() <= 1e-6


def test_tiled_decode_close_to_untiled():
    cfg = VAEConfig.preset("tiny")
    ref = _reference(cfg)
    ours = AutoencoderKL(cfg).eval()
    load_into(ours, conv.diffusers_to_native(ref.state_dict()))
    z = _periodic(4, 48)
    with torch.inference_mode():
        full = ours.decode(z)
        ours.enable_tiling(tile_latent=32, overlap_latent=8)
        tiled = ours.decode(z)
        assert tiled.shape == full.shape
        assert (ours.decode(z, tiled=False) - full).abs().max() == 0
        # diffusers' own tiling at the same tile size and overlap, as the yardstick
        ref.enable_tiling()
        ref.tile_latent_min_size, ref.tile_sample_min_size = 32, 64
        theirs = ref.decode(z).sample
    # GroupNorm and the mid attention see one tile at a time, so tiles differ a little from the whole.
    ours_err, their_err = (tiled - full).abs().mean(), (theirs - full).abs().mean()
    assert ours_err < 0.2 * full.abs().mean()
    assert ours_err <= their_err * 1.1


def test_tiled_encode_close_to_untiled():
    ours = AutoencoderKL(VAEConfig.preset("tiny")).eval()
    load_into(ours, conv.diffusers_to_native(_reference(VAEConfig.preset("tiny")).state_dict()))
    x = _periodic(3, 64) * 0.8
    with torch.inference_mode():
        full = ours.encode(x).mean
        ours.enable_tiling(tile_latent=16, overlap_latent=8)  # 32-pixel tiles, 16 pixels of overlap
        tiled = ours.encode(x).mean
    assert tiled.shape == full.shape
    assert (tiled - full).abs().mean() < 0.2 * full.abs().mean()


def test_sliced_decode_equals_batched():
    ours = AutoencoderKL("tiny").eval()
    z = torch.randn(3, 4, 8, 8)
    with torch.inference_mode():
        assert (ours.decode(z, sliced=True) - ours.decode(z)).abs().max() <= 1e-5


def test_fp16_upcast_decodes_in_float32_and_restores_weights():
    ours = AutoencoderKL(VAEConfig.preset("tiny").with_(force_upcast=True)).eval()
    z = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        ref = ours.decode(z)
        ours.half()
        out = ours.decode(z.half())
    assert out.dtype == torch.float16 and ours.dtype == torch.float16
    assert (out.float() - ref).abs().max() < 1e-2


def test_single_file_with_first_stage_model_prefix(tmp_path):
    cfg = VAEConfig.preset("tiny")
    ref = _reference(cfg)
    native = conv.diffusers_to_native(ref.state_dict())
    full = {f"first_stage_model.{k}": v.contiguous() for k, v in native.items()}
    full["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 4, 3, 3)  # the rest of an SD file
    full["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.ones(8)
    path = tmp_path / "sd_model.safetensors"
    save_file(full, str(path))
    ours = AutoencoderKL.from_pretrained(path, preset="tiny", device="cpu")
    x = _image()
    with torch.inference_mode():
        assert (ours.encode(x).mean - ref.encode(x).latent_dist.mean).abs().max() <= 1e-4
    # the attention as linear (2-D) weights and a `vae.` prefix in diffusers layout also load
    dsd = {f"vae.{k}": v.contiguous() for k, v in ref.state_dict().items()}
    save_file(dsd, str(tmp_path / "merged.safetensors"))
    ours2 = AutoencoderKL.from_pretrained(tmp_path / "merged.safetensors", preset="tiny", device="cpu")
    with torch.inference_mode():
        assert (ours2.encode(x).mean - ref.encode(x).latent_dist.mean).abs().max() <= 1e-4


def test_missing_and_unexpected_keys_are_named(tmp_path):
    native = AutoencoderKL("tiny").state_dict()
    native.pop("decoder.mid.attn_1.q.weight")
    native["decoder.extra.weight"] = torch.zeros(1)
    save_file({k: v.contiguous() for k, v in native.items()}, str(tmp_path / "vae.safetensors"))
    with pytest.raises(ConversionError, match=r"missing: decoder\.mid\.attn_1\.q\.weight.*unexpected: decoder\.extra"):
        AutoencoderKL.from_pretrained(tmp_path / "vae.safetensors", preset="tiny")


def test_format_and_preset_detection():
    native = AutoencoderKL("tiny-16").state_dict()
    assert conv.detect_vae_format(native) == "native"
    assert conv.detect_vae_format(conv.native_to_diffusers(native)) == "diffusers"
    assert conv.find_vae_prefix({f"first_stage_model.{k}": v for k, v in native.items()}) == "first_stage_model."
    with pytest.raises(UserError, match="preset='sd3' or preset='flux'"):
        conv.infer_config(native, hint="some_vae.safetensors")
    assert conv.infer_config(native, hint="/x/ae.safetensors").scaling_factor == 0.3611
    with pytest.raises(ConversionError, match="no VAE"):
        conv.find_vae_prefix({"foo.weight": torch.zeros(1)})


@pytest.mark.parametrize("preset", ["sd", "sdxl", "sd3", "flux"])
def test_full_size_official_keys_convert_exactly(preset):
    """Official key/shape lists, derived on the meta device with diffusers' own single-file converter."""
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    cfg = VAEConfig.preset(preset)
    dcfg = conv.config_to_diffusers(cfg)
    with torch.device("meta"):
        theirs = diffusers.AutoencoderKL(**dcfg)
        ours = AutoencoderKL(cfg)
    native = ours.state_dict()
    diffusers_sd = theirs.state_dict()
    # our native layout is the official single-file layout: diffusers' converter reads it completely
    prefix = "first_stage_model." if preset in ("sd", "sdxl", "sd3") else ""
    converted = convert_ldm_vae_checkpoint({prefix + k: v for k, v in native.items()}, dcfg)
    assert set(converted) == set(diffusers_sd)
    assert all(tuple(converted[k].shape) == tuple(diffusers_sd[k].shape) for k in diffusers_sd)
    # and our converter reads diffusers' full-size layout with nothing missing or left over
    mine = conv.diffusers_to_native(diffusers_sd)
    assert set(mine) == set(native)
    assert all(tuple(mine[k].shape) == tuple(native[k].shape) for k in native)
    assert conv.native_to_diffusers(native).keys() == diffusers_sd.keys()
    assert ("quant_conv.weight" in native) == (preset in ("sd", "sdxl"))
    # full-size loading on meta: no allocation, every key assigned
    with torch.device("meta"):
        fresh = AutoencoderKL(cfg)
    load_into(fresh, mine, what="VAE")


# -- single files of sizes no preset has ------------------------------------------------------------

# Sizes no VAE preset has; their GroupNorm group counts (4, 16) are not stored in the weights.
ODD_SIZES = {
    "4ch-24wide-groups4": VAEConfig(base_channels=24, channel_mult=(1, 2), num_res_blocks=1, latent_channels=4,
                                    norm_groups=4),
    "16ch-3levels-groups16": VAEConfig(base_channels=16, channel_mult=(1, 3, 3), num_res_blocks=1, latent_channels=16,
                                       norm_groups=16, use_quant_conv=False, use_post_quant_conv=False,
                                       scaling_factor=1.5305, shift_factor=0.0609),
}


def _official_single_file(ref, path) -> dict:
    """The reference's weights in the ldm single-file layout (`first_stage_model.` prefix), saved to `path`.

    diffusers' own single-file converter reads the file back to exactly the reference's tensors, so the
    layout is the official one and not merely ours.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    official = {f"first_stage_model.{k}": v.contiguous() for k, v in conv.diffusers_to_native(ref.state_dict()).items()}
    back = convert_ldm_vae_checkpoint(official, dict(ref.config))
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    save_file(official, str(path))
    return official


def _max_diff(ref, ours, cfg: VAEConfig) -> float:
    x = _image(size=16)
    z = torch.randn(2, cfg.latent_channels, 8, 8, generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        a = (ref.encode(x).latent_dist.mean - ours.encode(x).mean).abs().max()
        b = (ref.decode(z).sample - ours.decode(z)).abs().max()
    return float(max(a, b))


@pytest.mark.parametrize("name", sorted(ODD_SIZES))
def test_non_release_single_file_refuses_then_loads_with_explicit_config(name, tmp_path):
    from utils.weights.configs import matching_presets
    from utils.encoders.vae import VAE_PRESETS

    cfg = ODD_SIZES[name]
    ref = _reference(cfg)
    path = tmp_path / "custom_vae.safetensors"
    official = _official_single_file(ref, path)
    assert matching_presets(conv.read_sizes(conv.to_native(official)), VAE_PRESETS) == []
    # no config: one line naming the field the weights cannot tell, and what to pass
    for preset in (None, "sdxl", "flux"):  # a preset names the latent scaling, not the sizes
        with pytest.raises(UserError) as err:
            AutoencoderKL.from_pretrained(path, preset=preset)
        msg = str(err.value)
        assert "norm_groups" in msg and "config=VAEConfig(" in msg and f"base_channels={cfg.base_channels}" in msg
        assert "\n" not in msg
    # the explicit config loads and reproduces the source model
    ours = AutoencoderKL.from_pretrained(path, config=cfg, device="cpu")
    assert ours.config == cfg
    assert _max_diff(ref, ours, cfg) <= 1e-4
    # the same through the SD pipelines' single-file path
    from models.image_generation.stable_diffusion import convert as cv
    from utils.weights import load_state_dict

    again = cv.vae_from_state(load_state_dict(path), "sdxl", str(path), config=cfg)
    assert _max_diff(ref, again, cfg) <= 1e-4
    # the guess the refusal avoids would be wrong: another group count changes the outputs
    wrong = AutoencoderKL(cfg.with_(norm_groups=8 if cfg.norm_groups != 8 else 4)).eval()
    load_into(wrong, conv.to_native(official))
    assert _max_diff(ref, wrong, cfg) > 1e-2


def test_explicit_config_that_contradicts_the_weights_is_one_clear_line(tmp_path):
    cfg = ODD_SIZES["4ch-24wide-groups4"]
    path = tmp_path / "vae.safetensors"
    _official_single_file(_reference(cfg), path)
    with pytest.raises(UserError, match=r"base_channels is 32 but the weights have 24"):
        AutoencoderKL.from_pretrained(path, config=cfg.with_(base_channels=32))
    # 32 groups cannot split 24 channels: a UserError, not torch's ValueError from GroupNorm
    with pytest.raises(UserError, match="norm_groups 32 does not divide"):
        AutoencoderKL.from_pretrained(path, config=cfg.with_(norm_groups=32))


def test_release_sizes_need_no_config():
    for preset in ("sd", "sdxl", "sd3", "flux"):
        with torch.device("meta"):
            native = AutoencoderKL(preset).state_dict()
        got = conv.infer_config(native, preset=preset)
        assert got == VAEConfig.preset(preset)
