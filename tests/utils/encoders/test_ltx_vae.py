"""LTX-Video VAE (utils/encoders/ltx_vae.py): parity with diffusers' AutoencoderKLLTXVideo at three tiny
configs (0.9, 0.9.1 and 0.9.5 block kinds), with the official code's outputs on two tiny official-layout
checkpoints (tests/fixtures/ltx_video/vae_golden.safetensors, made by make_vae_golden.py), the 2B
release's key list on meta, each file format through from_pretrained, and the one-line errors."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo
from safetensors.torch import load_file, save_file

from utils.encoders.ltx_vae import LTXVAEConfig, LTXVideoVAE, ltx_vae_config
from utils.encoders.ltx_vae_convert import block_map, to_native
from utils.errors import ConversionError, UserError
from utils.weights import load_into

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ltx_video"

V091 = LTXVAEConfig(block_out_channels=(8, 16, 16), decoder_block_out_channels=(8, 16, 32),
                    layers_per_block=(1, 1, 1, 1), decoder_layers_per_block=(1, 2, 1, 1),
                    spatio_temporal_scaling=(True, True, False), decoder_spatio_temporal_scaling=(True, True, True),
                    decoder_inject_noise=(True, True, False, False), downsample_type=("conv",) * 3,
                    upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=True,
                    latent_channels=8, down_block_types=("LTXVideoDownBlock3D",) * 3, patch_size=2)
V095 = LTXVAEConfig(block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(8, 16, 32),
                    layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1),
                    spatio_temporal_scaling=(True,) * 4, decoder_spatio_temporal_scaling=(True,) * 3,
                    decoder_inject_noise=(False,) * 4, downsample_type=("spatial", "temporal", "spatiotemporal", "conv"),
                    upsample_residual=(True,) * 3, upsample_factor=(2, 2, 2), timestep_conditioning=True,
                    latent_channels=8, down_block_types=("LTXVideo095DownBlock3D",) * 4, patch_size=2)
# The golden fixture's configs in diffusers terms.
GOLDEN = {
    "v090": ltx_vae_config("tiny"),
    "v091": ltx_vae_config("tiny", decoder_block_out_channels=(8, 8), decoder_layers_per_block=(1, 2, 1),
                           decoder_inject_noise=(True, True, False), upsample_residual=(True, False),
                           upsample_factor=(2, 1), timestep_conditioning=True),
}


def _pair(cfg: LTXVAEConfig, seed: int = 0):
    ref = AutoencoderKLLTXVideo(**cfg.to_diffusers()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    ours = LTXVideoVAE(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ours, ref


@pytest.mark.parametrize("cfg", [ltx_vae_config("tiny"), V091, V095], ids=["0.9", "0.9.1", "0.9.5"])
def test_parity_with_diffusers(cfg):
    ours, ref = _pair(cfg)
    r, s = cfg.temporal_ratio, cfg.spatial_ratio
    x = torch.randn(2, 3, 1 + 2 * r, 2 * s, 2 * s, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.05, 0.4]) if cfg.timestep_conditioning else None
    with torch.no_grad():
        want = ref.encode(x).latent_dist
        got = ours.encode(x)
        assert got.mean.shape == (2, cfg.latent_channels, 3, 2, 2)
        assert (got.mean - want.mean).abs().max() <= 1e-4 and (got.logvar - want.logvar).abs().max() <= 1e-4
        torch.manual_seed(7)  # the injected noise of 0.9.1 decoders comes from the global generator in both
        frames_ref = ref.decode(want.mean, t).sample
        torch.manual_seed(7)
        frames = ours.decode(want.mean, t)
    assert frames.shape == frames_ref.shape and frames.shape[:2] == (2, 3)
    assert (frames - frames_ref).abs().max() <= 1e-4 and frames_ref.abs().mean() > 1e-2


def test_decode_timestep_matters_and_is_required():
    ours, _ = _pair(V091)
    z = torch.randn(1, 8, 2, 2, 2)
    with torch.no_grad():
        torch.manual_seed(0)
        a = ours.decode(z, 0.05)
        torch.manual_seed(0)
        b = ours.decode(z, 0.5)
    assert (a - b).abs().max() > 1e-3
    with pytest.raises(UserError, match="timestep-conditioned"):
        ours.decode(z)


@pytest.mark.parametrize("name", ["v090", "v091"])
def test_official_layout_matches_the_official_code(name):
    golden = load_file(FIXTURES / "vae_golden.safetensors")
    prefix = f"{name}.vae."
    official = {k[len(name) + 1:]: v for k, v in golden.items() if k.startswith(prefix)}
    cfg = GOLDEN[name]
    model = LTXVideoVAE(cfg).eval()
    load_into(model, to_native(official, cfg), what="golden LTX VAE")
    with torch.no_grad():
        means = model.encode(golden["clip"]).mean
        frames = model.decode(golden[f"{name}.means"], torch.tensor([0.05]) if cfg.timestep_conditioning else None)
    assert (means - golden[f"{name}.means"]).abs().max() <= 1e-4
    assert (frames - golden[f"{name}.frames"]).abs().max() <= 1e-4


def test_official_0_9_keys_on_meta():
    official = json.load(gzip.open(FIXTURES / "official_keys.json.gz", "rt"))["vae_0.9"]
    sd = {"vae." + k: torch.empty(s, device="meta") for k, s in official.items()}
    for stat in ("mean-of-means", "std-of-means", "mean-of-stds", "channel"):  # the release's statistics
        sd[f"vae.per_channel_statistics.{stat}"] = torch.empty(128, device="meta")
    sd["model.diffusion_model.proj_out.weight"] = torch.empty(128, 2048, device="meta")  # the transformer half
    with torch.device("meta"):
        model = LTXVideoVAE(ltx_vae_config("ltxv-0.9"))
    native = to_native(sd, model.config)
    assert {k: list(v.shape) for k, v in native.items()} == {k: list(v.shape) for k, v in model.state_dict().items()}
    load_into(model, native, what="LTX-Video 0.9 VAE")
    assert block_map(model.config)["encoder.down_blocks.9"] == "encoder.mid_block"
    assert block_map(model.config)["decoder.up_blocks.8"] == "decoder.up_blocks.3.upsamplers.0"


def test_unknown_official_block_is_a_conversion_error():
    with pytest.raises(ConversionError, match="blocks this config does not have"):
        to_native({"encoder.down_blocks.40.res_blocks.0.conv1.conv.weight": torch.zeros(1)}, ltx_vae_config("tiny"))


def test_from_pretrained_each_format(tmp_path):
    cfg = ltx_vae_config("tiny")
    ours, ref = _pair(cfg, seed=4)
    ref.save_pretrained(tmp_path / "pipe" / "vae")
    golden = load_file(FIXTURES / "vae_golden.safetensors")
    save_file({k[5:]: v for k, v in golden.items() if k.startswith("v090.vae.")}, tmp_path / "ltx-single.safetensors")
    x = golden["clip"]
    for source, kw, want in [(tmp_path / "pipe", {}, ours), (tmp_path / "pipe" / "vae", {}, ours)]:
        model = LTXVideoVAE.from_pretrained(source, **kw)
        with torch.no_grad():
            assert (model.encode(x).mean - want.encode(x).mean).abs().max() <= 1e-5
    single = LTXVideoVAE.from_pretrained(tmp_path / "ltx-single.safetensors", preset="tiny")
    with torch.no_grad():
        assert (single.encode(x).mean - golden["v090.means"]).abs().max() <= 1e-4


def test_normalize_round_trip_uses_the_statistics():
    vae = LTXVideoVAE(ltx_vae_config("tiny"))
    vae.latents_mean.fill_(0.5)
    vae.latents_std.fill_(2.0)
    z = torch.randn(1, 8, 2, 2, 2)
    assert torch.allclose(vae.normalize(z), (z - 0.5) / 2.0)
    assert torch.allclose(vae.denormalize(vae.normalize(z)), z, atol=1e-6)


@pytest.mark.parametrize("shape,match", [((1, 3, 4, 16, 16), "1 \\+ 2k frames"), ((1, 3, 5, 15, 16), "multiples of 4"),
                                         ((3, 5, 16, 16), "batch, channels")])
def test_bad_clips_are_one_line(shape, match):
    vae = LTXVideoVAE(ltx_vae_config("tiny"))
    with pytest.raises(UserError, match=match):
        vae.encode(torch.zeros(shape))
