"""The Wan 2.2 video VAE (48 channels, 16x spatial): parity with diffusers' AutoencoderKLWan (is_residual,
patch_size 2) through our converter at two tiny configs, the official `Wan2.2_VAE.pth` layout (a tiny file
written in its key names; the full-size key list from the Wan team's code, tests/fixtures/wan22), the
released diffusers config on the meta device, chunked causal coding, tiling, loading and the user errors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan

from utils.encoders.wan22_vae import (WAN22_LATENTS_MEAN, WAN22_LATENTS_STD, SpaceTimeAverageDown, SpaceTimeRepeatUp,
                                      patchify, unpatchify)
from utils.encoders.wan_vae import WanVAE, WanVAEConfig, _config_of, wan_vae_config
from utils.encoders.wan_vae_convert import (detect_layout, diffusers_to_native, is_wan22, native_to_diffusers,
                                            native_to_official, official_to_native, read_sizes, to_native)
from utils.errors import ConversionError, UserError
from utils.torch_utils import local_seed

FIXTURES = Path(__file__).parents[2] / "fixtures" / "wan22"
TINY = wan_vae_config("tiny-2.2")
# A second shape: the release's level layout (four levels, time halved at the last two resamplers, two
# resnets per level), narrow, with the release's 48 latent channels and statistics.
TINY_B = WanVAEConfig(base_dim=4, decoder_base_dim=6, z_dim=48, dim_mult=(1, 2, 2, 2), num_res_blocks=2,
                      temporal_downsample=(False, True, True), is_residual=True, patch_size=2,
                      latents_mean=WAN22_LATENTS_MEAN, latents_std=WAN22_LATENTS_STD)
# Wan-AI/Wan2.2-TI2V-5B-Diffusers vae/config.json as published (the statistics are checked separately).
RELEASED = dict(attn_scales=[], base_dim=160, decoder_base_dim=256, dim_mult=[1, 2, 4, 4], dropout=0.0, in_channels=12,
                is_residual=True, num_res_blocks=2, out_channels=12, patch_size=2, scale_factor_spatial=16,
                scale_factor_temporal=4, temperal_downsample=[False, True, True], z_dim=48,
                latents_mean=list(WAN22_LATENTS_MEAN), latents_std=list(WAN22_LATENTS_STD))


def _pair(cfg: WanVAEConfig, seed: int = 0) -> tuple[WanVAE, AutoencoderKLWan]:
    with local_seed(seed):  # diffusers' own init draws from the global generator: fix it, whatever ran before
        ref = AutoencoderKLWan(**cfg.to_diffusers()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)  # the release zero-inits some projections
    ours = WanVAE(cfg).eval()
    ours.load_state_dict(diffusers_to_native(ref.state_dict()), strict=True)
    return ours, ref


def _video(frames: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("cfg", [TINY, TINY_B], ids=["tiny-2.2", "tiny-b"])
def test_encode_decode_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg)
    s = cfg.spatial_ratio
    x = _video(9, 2 * s)
    with torch.no_grad():
        want = ref.encode(x).latent_dist
        got = ours.encode(x)
        assert got.mean.shape == want.mean.shape == (1, cfg.z_dim, 3, 2, 2)
        assert (got.mean - want.mean).abs().max().item() <= 1e-4
        assert (got.logvar - want.logvar).abs().max().item() <= 1e-4
        z = torch.randn(1, cfg.z_dim, 3, 2, 2, generator=torch.Generator().manual_seed(2)) * 0.3
        want_x = ref.decode(z).sample
        got_x = ours.decode(z)
    assert got_x.shape == want_x.shape == (1, 3, 9, 2 * s, 2 * s)
    assert (got_x - want_x).abs().max().item() <= 1e-4
    assert (want_x.abs() < 0.999).float().mean() > 0.5  # real values, not the clamp
    assert want_x.std() > 0.05


def test_sizes_and_ratios():
    full = wan_vae_config("wan2.2")
    assert (full.spatial_ratio, full.temporal_ratio, full.network_channels, full.decoder_dim) == (16, 4, 12, 256)
    assert (TINY.spatial_ratio, wan_vae_config("wan2.1").spatial_ratio) == (8, 8)
    assert len(WAN22_LATENTS_MEAN) == len(WAN22_LATENTS_STD) == 48 and min(WAN22_LATENTS_STD) > 0


def test_patchify_and_shortcuts():
    x = torch.randn(2, 3, 5, 8, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 12, 5, 4, 3)
    assert torch.equal(unpatchify(p, 2), x)
    # Channel c*4 + j*2 + i holds row i, column j of each 2x2 cell (columns the slower index).
    assert torch.equal(p[:, 3 * 0 + 1], x[:, 0, :, 1::2, 0::2])
    assert torch.equal(p[:, 2], x[:, 0, :, 0::2, 1::2])
    # The weightless shortcuts: a constant volume stays constant through both; repeat-up of a
    # 1-frame first chunk stays 1 frame.
    ones = torch.ones(1, 4, 4, 4, 4)
    assert torch.allclose(SpaceTimeAverageDown(4, 8, 2, 2)(ones), torch.ones(1, 8, 2, 2, 2))
    up = SpaceTimeRepeatUp(8, 4, 2, 2)
    assert up(torch.ones(1, 8, 1, 2, 2), first_chunk=True).shape == (1, 4, 1, 4, 4)
    assert up(torch.ones(1, 8, 3, 2, 2)).shape == (1, 4, 6, 4, 4)
    with pytest.raises(UserError, match="groups"):
        SpaceTimeAverageDown(3, 5, 1, 1)


def test_chunked_coding_equals_one_pass_and_is_causal():
    from tests.utils.encoders.test_wan_vae import assert_chunked_coding_is_exact_and_causal

    ours, _ = _pair(TINY, seed=3)
    assert_chunked_coding_is_exact_and_causal(ours, _video(17, 16))


def test_official_layout_round_trip_and_tiny_file(tmp_path):
    """A tiny Wan2.2_VAE.pth in the release's own key names loads through the converter and decodes as
    diffusers does; the names round-trip."""
    for cfg in (TINY, TINY_B):
        ours, ref = _pair(cfg, seed=7)
        native = ours.state_dict()
        official = native_to_official(native, cfg.num_res_blocks)
        assert detect_layout(official) == "official" and is_wan22(official) and is_wan22(native)
        back = official_to_native(official)
        assert back.keys() == native.keys() and all(torch.equal(back[k], native[k]) for k in native)
        assert native_to_diffusers(native).keys() == ref.state_dict().keys()
        assert read_sizes(native) == {k: getattr(cfg, k) for k in read_sizes(native)}
        torch.save({"vae." + k: v for k, v in official.items()}, tmp_path / "Wan2.2_VAE.pth")  # a prefix, too
        loaded = WanVAE.from_pretrained(tmp_path / "Wan2.2_VAE.pth", device="cpu", dtype="float32")
        assert loaded.config == cfg  # tiny: its preset; tiny-b: the Wan 2.2 statistics for 48 channels
        z = torch.randn(1, cfg.z_dim, 2, 2, 2, generator=torch.Generator().manual_seed(8)) * 0.3
        with torch.no_grad():
            assert (loaded.decode(z) - ref.decode(z).sample).abs().max() <= 1e-4
    wan21 = WanVAE(wan_vae_config("tiny")).state_dict()
    assert not is_wan22(wan21) and not is_wan22(native_to_official(wan21, 1))
    assert "encoder.downsamples.1.downsamples.2.time_conv.weight" in official  # TINY_B: level 1 halves time
    assert "decoder.upsamples.0.upsamples.3.resample.1.weight" in official
    with pytest.raises(ConversionError, match="does not know"):
        official_to_native({**official, "encoder.downsamples.0.downsamples.0.extra.weight": torch.zeros(1)})


def test_diffusers_folder_loads(tmp_path):
    ours, ref = _pair(TINY, seed=9)
    ref.save_pretrained(tmp_path / "pipe" / "vae")
    x = _video(5, 16)
    vae = WanVAE.from_pretrained(tmp_path / "pipe", device="cpu", dtype="float32")
    assert vae.config == TINY
    with torch.no_grad():
        assert (vae.encode(x).mean - ours.encode(x).mean).abs().max() <= 1e-6
    # Normalisation uses the config's 2.2-style statistics.
    z = torch.randn(1, TINY.z_dim, 1, 2, 2)
    assert torch.allclose(vae.normalize(z), (z - torch.tensor(TINY.latents_mean).view(1, -1, 1, 1, 1))
                          / torch.tensor(TINY.latents_std).view(1, -1, 1, 1, 1))


def test_full_size_keys_on_meta():
    """The release's 196 tensors (the Wan team's WanVAE_ of vae2_2.py, tests/fixtures/wan22) and diffusers'
    AutoencoderKLWan built from the published config convert onto our full-size model exactly."""
    official = json.loads(gzip.open(FIXTURES / "official_keys.json.gz", "rt").read())["wan2.2_vae"]
    assert len(official) == 196
    cfg = wan_vae_config("wan2.2")
    with torch.device("meta"):
        ours = WanVAE(cfg)
        ref = AutoencoderKLWan(**RELEASED)
    native = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    mapped = official_to_native({k: torch.empty(v, device="meta") for k, v in official.items()})
    assert {k: tuple(v.shape) for k, v in mapped.items()} == native
    assert {k: tuple(v.shape) for k, v in diffusers_to_native(ref.state_dict()).items()} == native
    assert set(native_to_official(ours.state_dict(), 2)) == set(official)
    assert WanVAEConfig.from_diffusers(dict(ref.config)) == cfg
    assert WanVAEConfig.from_diffusers({**RELEASED, "clip_output": False}) == cfg  # the file's extra key
    assert native["encoder.conv_in.conv.weight"] == (160, 12, 3, 3, 3)
    assert native["decoder.conv_out.conv.weight"] == (12, 256, 3, 3, 3)
    released = to_native({k: torch.empty(v, device="meta") for k, v in official.items()})
    assert released.keys() == native.keys()
    # A bare Wan2.2_VAE.pth stores no config: its shapes pick the wan2.2 preset (with the 48 statistics).
    assert _config_of(read_sizes(released)) == cfg


def test_tiled_decode_and_encode():
    ours, _ = _pair(TINY, seed=5)
    z = torch.randn(1, TINY.z_dim, 2, 12, 16, generator=torch.Generator().manual_seed(6)) * 0.3
    x = _video(5, 96)
    with torch.no_grad():
        whole = ours.decode(z)
        moments = ours.encode(x).mean
        ours.enable_tiling(8, 4)  # 2 x 3 tiles of the latent, 2 x 2 of the frames (64 pixels, 32 overlap)
        tiled = ours.decode(z)
        by_chunks = ours.decode(z, chunk_size=None)
        tiled_moments = ours.encode(x).mean
        other = ours.decode(z.flip(-1))
        ours.disable_tiling()
    assert tiled.shape == whole.shape == (1, 3, 5, 96, 128)
    assert tiled_moments.shape == moments.shape == (1, TINY.z_dim, 2, 12, 12)
    assert (tiled - by_chunks).abs().max() <= 1e-5  # each tile streams through time like the whole clip
    assert not torch.equal(tiled, whole) and not torch.equal(tiled_moments, moments)  # it did run in tiles
    # Random weights see far past a tile's edge, so seams differ; the tiled clip is still the same clip.
    assert (tiled - whole).abs().mean() < 0.5 * (other - whole).abs().mean()
    assert (tiled_moments - moments).abs().mean() < 0.5 * (moments.flip(-1) - moments).abs().mean()


def test_user_errors():
    vae = WanVAE(TINY)
    with pytest.raises(UserError, match="divisible by 8"):
        vae.encode(torch.zeros(1, 3, 5, 20, 16))
    full_ratio = wan_vae_config("wan2.2").spatial_ratio
    assert full_ratio == 16
    with pytest.raises(UserError, match="fit patch_size"):
        WanVAEConfig.from_diffusers({**RELEASED, "in_channels": 3})
    with pytest.raises(UserError, match="patch_size and decoder_base_dim"):
        WanVAEConfig(patch_size=0)
