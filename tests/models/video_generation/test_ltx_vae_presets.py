"""The LTX VAE presets of the 2B releases (0.9, 0.9.1, 0.9.5): the same tensors as diffusers'
AutoencoderKLLTXVideo of the same config (on meta), and the version of an official single file read off
its tensors (the official 0.9 key list; the golden tiny official checkpoint)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLLTXVideo
from safetensors.torch import load_file

from utils.encoders.ltx_vae import LTX_VAE_PRESETS, LTXVideoVAE, ltx_vae_config, match_vae_config
from utils.errors import ConversionError

FIXTURES = Path(__file__).parents[2] / "fixtures" / "ltx_video"


@pytest.mark.parametrize("name", ["ltxv-0.9", "ltxv-0.9.1", "ltxv-0.9.5"])
def test_release_presets_match_diffusers_on_meta(name):
    cfg = ltx_vae_config(name)
    with torch.device("meta"):
        ours = {k: tuple(v.shape) for k, v in LTXVideoVAE(cfg).state_dict().items()}
        ref = {k: tuple(v.shape) for k, v in AutoencoderKLLTXVideo(**cfg.to_diffusers()).state_dict().items()}
    assert ours == ref
    assert (cfg.spatial_ratio, cfg.temporal_ratio, cfg.latent_channels) == (32, 8, 128)


def test_single_file_version_from_its_tensors():
    keys = json.load(gzip.open(FIXTURES / "official_keys.json.gz", "rt"))["vae_0.9"]
    with torch.device("meta"):
        sd = {f"vae.{k}": torch.empty(shape) for k, shape in keys.items()}
    assert match_vae_config(sd)[0] == "ltxv-0.9"
    golden = load_file(FIXTURES / "vae_golden.safetensors")
    tiny = {k[len("v090."):]: v for k, v in golden.items() if k.startswith("v090.vae.")}
    assert match_vae_config(tiny)[0] == "tiny"
    with pytest.raises(ConversionError, match="no LTX VAE version"):
        match_vae_config({k: v for k, v in list(tiny.items())[:-3]})
    assert set(LTX_VAE_PRESETS) >= {"ltxv-0.9", "ltxv-0.9.1", "ltxv-0.9.5", "tiny"}


def test_tiled_decode_blends_tiles():
    vae = LTXVideoVAE(ltx_vae_config("tiny")).eval()
    z = torch.randn(1, 8, 2, 24, 24, generator=torch.Generator().manual_seed(0))
    errors = []
    with torch.no_grad():
        whole = vae.decode(z)
        vae.enable_tiling(32, 4)  # larger than the latents: one tile, the same decode
        assert torch.equal(vae.decode(z), whole)
        for tile, overlap in [(8, 2), (12, 4), (16, 8)]:
            vae.enable_tiling(tile, overlap)
            tiled = vae.decode(z)
            assert tiled.shape == whole.shape == (1, 3, 3, 96, 96) and torch.isfinite(tiled).all()
            errors.append(float((tiled - whole).abs().mean() / whole.abs().mean()))
    # The decoder's receptive field crosses the tile edges: larger tiles and overlaps come closer to the whole.
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.1
    with pytest.raises(Exception, match="overlap < tile"):
        vae.enable_tiling(4, 4)
