"""The Wan 2.1 video VAE: parity with diffusers' AutoencoderKLWan through our converter (two tiny configs),
chunked causal coding equal to one pass, the official layout (full-size keys from the Wan team's code,
tests/fixtures/wan), loading each released format from disk, and the user errors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import save_file

from utils.encoders.wan_vae import WanVAE, WanVAEConfig, wan_vae_config
from utils.encoders.wan_vae_convert import (detect_layout, diffusers_to_native, native_to_diffusers,
                                            native_to_official, official_to_native, to_native)
from utils.errors import ConversionError, UserError
from utils.torch_utils import local_seed

FIXTURES = Path(__file__).parents[2] / "fixtures" / "wan"
TINY = wan_vae_config("tiny")
# A second shape: three temporal levels of four, two resnets per level (the release's layout, narrower).
TINY_B = WanVAEConfig(base_dim=4, z_dim=3, dim_mult=(1, 2, 2, 1), num_res_blocks=2,
                      temporal_downsample=(False, True, True), latents_mean=(0.0, 1.0, -1.0),
                      latents_std=(1.0, 2.0, 0.5))


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


@pytest.mark.parametrize("cfg,size", [(TINY, 16), (TINY_B, 16)], ids=["tiny", "tiny-b"])
def test_encode_decode_parity_with_diffusers(cfg, size):
    ours, ref = _pair(cfg)
    x = _video(9, size)
    with torch.no_grad():
        want = ref.encode(x).latent_dist
        got = ours.encode(x)
        assert got.mean.shape == (1, cfg.z_dim, 3, size // cfg.spatial_ratio, size // cfg.spatial_ratio)
        assert (got.mean - want.mean).abs().max().item() <= 1e-4
        assert (got.logvar - want.logvar).abs().max().item() <= 1e-4
        z = torch.randn(1, cfg.z_dim, 3, 2, 2, generator=torch.Generator().manual_seed(2)) * 0.3
        want_x = ref.decode(z).sample
        got_x = ours.decode(z)
    assert got_x.shape == (1, 3, 9, 2 * cfg.spatial_ratio, 2 * cfg.spatial_ratio)
    assert (got_x - want_x).abs().max().item() <= 1e-4
    # Not saturated: the comparison is over real values, not the clamp.
    assert (want_x.abs() < 0.999).float().mean() > 0.5


def test_chunked_coding_equals_one_pass():
    ours, _ = _pair(TINY, seed=3)
    assert_chunked_coding_is_exact_and_causal(ours, _video(17, 16))


def assert_chunked_coding_is_exact_and_causal(ours, x: torch.Tensor) -> None:
    """Encoding by 4 or 8 frames and decoding by 1 or 2 latent frames equal one pass; decoded frames do not
    depend on later latents (shared with the Wan 2.2 VAE's tests)."""
    with torch.no_grad():
        by4 = ours.encode(x, chunk_size=4).mean
        by8 = ours.encode(x, chunk_size=8).mean
        whole = ours.encode(x, chunk_size=None).mean
        z = torch.randn(1, ours.config.z_dim, 5, 2, 2, generator=torch.Generator().manual_seed(4)) * 0.3
        one = ours.decode(z, chunk_size=1)
        two = ours.decode(z, chunk_size=2)
        rest = ours.decode(z, chunk_size=None)
    assert (by4 - whole).abs().max() <= 1e-5 and (by8 - whole).abs().max() <= 1e-5
    assert (one - rest).abs().max() <= 1e-5 and (two - rest).abs().max() <= 1e-5
    # Causal: the first frames do not depend on later latents.
    z2 = z.clone()
    z2[:, :, 3:] += 1.0
    with torch.no_grad():
        changed = ours.decode(z2)
    assert (changed[:, :, :9] - one[:, :, :9]).abs().max() <= 1e-6
    assert (changed[:, :, 9:] - one[:, :, 9:]).abs().max() > 1e-3


def test_latent_normalisation_round_trip():
    vae = WanVAE(TINY)
    z = torch.randn(2, 4, 2, 3, 3)
    assert torch.allclose(vae.denormalize(vae.normalize(z)), z, atol=1e-6)
    mean = torch.tensor(TINY.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(TINY.latents_std).view(1, -1, 1, 1, 1)
    assert torch.allclose(vae.normalize(z), (z - mean) / std)


def test_official_and_diffusers_layouts_round_trip():
    ours, ref = _pair(TINY_B)
    native = ours.state_dict()
    official = native_to_official(native, TINY_B.num_res_blocks)
    assert detect_layout(official) == "official" and detect_layout(ref.state_dict()) == "diffusers"
    assert "decoder.upsamples.3.resample.1.weight" in official and "encoder.downsamples.0.residual.2.weight" in official
    back = official_to_native(official)
    assert back.keys() == native.keys() and all(torch.equal(back[k], native[k]) for k in native)
    assert native_to_diffusers(native).keys() == ref.state_dict().keys()
    prefixed = to_native({"vae." + k: v for k, v in official.items()})
    assert prefixed.keys() == native.keys()
    with pytest.raises(ConversionError, match="does not know"):
        official_to_native({**official, "encoder.downsamples.0.extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="not a Wan VAE"):
        to_native({"foo.weight": torch.zeros(1)})


def test_full_size_official_keys_on_meta():
    """The release's 194 tensors (from the Wan team's WanVAE_, tests/fixtures/wan) convert onto our
    full-size model with nothing missing or left over, and every shape matches diffusers' too."""
    official = json.loads(gzip.open(FIXTURES / "official_keys.json.gz", "rt").read())["wan2.1_vae"]
    with torch.device("meta"):
        ours = WanVAE(wan_vae_config("wan2.1"))
        ref = AutoencoderKLWan()
    native = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    mapped = official_to_native({k: torch.empty(v, device="meta") for k, v in official.items()})
    assert {k: tuple(v.shape) for k, v in mapped.items()} == native
    assert {k: tuple(v.shape) for k, v in diffusers_to_native(ref.state_dict()).items()} == native
    assert WanVAEConfig.from_diffusers(dict(ref.config)) == wan_vae_config("wan2.1")


def test_from_pretrained_each_format(tmp_path):
    ours, ref = _pair(TINY)
    x = _video(5, 16)
    with torch.no_grad():
        want = ours.encode(x).mean
    ref.save_pretrained(tmp_path / "pipe" / "vae")  # a diffusers folder (config.json + safetensors)
    official = native_to_official(ours.state_dict(), TINY.num_res_blocks)
    torch.save(official, tmp_path / "Wan2.1_VAE.pth")
    save_file({"first_stage_model." + k: v.contiguous() for k, v in official.items()}, tmp_path / "repack.safetensors")
    for source, kw in [(tmp_path / "pipe", {}), (tmp_path / "pipe" / "vae", {}),
                       (tmp_path / "Wan2.1_VAE.pth", {"preset": "tiny"}),
                       (tmp_path / "repack.safetensors", {"preset": "tiny"})]:
        vae = WanVAE.from_pretrained(source, device="cpu", dtype="float32", **kw)
        with torch.no_grad():
            assert (vae.encode(x).mean - want).abs().max() <= 1e-6, source


def test_user_errors():
    vae = WanVAE(TINY)
    with pytest.raises(UserError, match=r"1 \+ 4k frames.*use 5 or 9"):
        vae.encode(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(UserError, match="divisible by 4"):
        vae.encode(torch.zeros(1, 3, 5, 18, 16))
    with pytest.raises(UserError, match="latents"):
        vae.decode(torch.zeros(1, 3, 2, 2, 2))
    with pytest.raises(UserError, match="unknown Wan VAE preset"):
        wan_vae_config("wan21")
    # A Wan 2.2 config without its 48 latent statistics (diffusers' defaults are Wan 2.1's 16).
    with pytest.raises(UserError, match="latents_mean/std need 48 values"):
        WanVAEConfig.from_diffusers({"is_residual": True, "z_dim": 48, "patch_size": 2, "in_channels": 12})


def test_tiled_blending_is_exact_for_a_pointwise_map():
    """The tile layout and blend: a map that sees no neighbours comes out of the tiles exactly as whole."""
    from utils.encoders.wan_vae import _tiled_volume

    x = torch.randn(2, 4, 3, 12, 16, generator=torch.Generator().manual_seed(0))

    def up(part):  # (B, 4, T, h, w) -> (B, 3, T, 4h, 4w), each output pixel from one input pixel
        return torch.nn.functional.interpolate(part, scale_factor=(1, 4, 4), mode="nearest")[:, :3] * 2 - 0.5

    assert (_tiled_volume(up, x, 6, 2, 4, 3, 3) - up(x)).abs().max() <= 1e-6


def test_tiled_decode_and_encode():
    ours, _ = _pair(TINY, seed=5)
    z = torch.randn(1, TINY.z_dim, 2, 12, 16, generator=torch.Generator().manual_seed(6)) * 0.3
    x = _video(5, 48)
    with torch.no_grad():
        whole = ours.decode(z)
        moments = ours.encode(x).mean
        ours.enable_tiling(8, 4)  # 2 x 3 tiles of the latent, 2 x 2 of the frames (32 pixels, 16 overlap)
        tiled = ours.decode(z)
        by_chunks = ours.decode(z, chunk_size=None)  # each tile streams through time like the whole clip
        tiled_moments = ours.encode(x).mean
        small = ours.decode(z[..., :8, :8])  # fits one tile: no tiling at all
        untiled_small = ours.decode(z[..., :8, :8], tiled=False)
        ours.disable_tiling()
        assert torch.equal(ours.decode(z), whole)
    assert tiled.shape == whole.shape == (1, 3, 5, 48, 64)
    assert (tiled - by_chunks).abs().max() <= 1e-5
    assert torch.equal(small, untiled_small)
    # Random weights see far past a tile's edge, so tiles this small differ from the whole near every seam;
    # still the tiled clip is the same clip: much closer to the whole decode than another clip is.
    with torch.no_grad():
        other = ours.decode(z.flip(-1))
    assert not torch.equal(tiled_moments, moments)  # the encode did run in tiles
    assert (tiled - whole).abs().mean() < 0.5 * (other - whole).abs().mean()
    assert tiled_moments.shape == moments.shape
    assert (tiled_moments - moments).abs().mean() < 0.5 * (moments.flip(-1) - moments).abs().mean()
    with pytest.raises(UserError, match="overlap < tile"):
        ours.enable_tiling(8, 8)


def test_decode_progress_bar(capsys):
    vae = WanVAE(TINY).eval()
    with torch.no_grad():
        vae.decode(torch.zeros(1, TINY.z_dim, 3, 2, 2), progress=True)
    assert "decoding" in capsys.readouterr().err
