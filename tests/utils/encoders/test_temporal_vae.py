"""The temporal-decoder VAE: parity with diffusers' AutoencoderKLTemporalDecoder at two tiny configs, loaded
from a diffusers folder and from the official SVD single-file layout; full-size key coverage on meta."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder as RefVAE
from safetensors.torch import save_file

from utils.encoders import temporal_vae_convert as tvc
from utils.encoders.temporal_vae import AutoencoderKLTemporalDecoder, TemporalVAEConfig
from utils.errors import ConversionError, UserError

TINY = TemporalVAEConfig.preset("tiny")
TINY_3 = TINY.with_(channel_mult=(1, 2, 2))  # three levels, as the release's structure (four) is
OFFICIAL_KEYS = Path(__file__).resolve().parents[2] / "fixtures" / "svd" / "official_keys.json.gz"


def _reference(cfg: TemporalVAEConfig, seed: int = 0) -> RefVAE:
    torch.manual_seed(seed)
    ref = RefVAE(**tvc.config_to_diffusers(cfg)).eval()
    g = torch.Generator().manual_seed(seed)
    ref.load_state_dict({k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in ref.state_dict().items()})
    return ref


def _compare(ref: RefVAE, ours: AutoencoderKLTemporalDecoder, frames: int = 3) -> None:
    down = ours.config.downscale
    g = torch.Generator().manual_seed(3)
    x = torch.rand(frames, 3, 16, 16, generator=g) * 2 - 1
    z = torch.randn(frames, 4, 16 // down, 16 // down, generator=g)
    with torch.no_grad():
        assert (ours.encode(x).mode() - ref.encode(x).latent_dist.mode()).abs().max() <= 1e-4
        assert (ours.decode(z, frames) - ref.decode(z, num_frames=frames).sample).abs().max() <= 1e-4
        # chunks of 2: diffusers' SVD pipeline decodes each chunk as a video of its own length
        chunked = torch.cat([ref.decode(z[i:i + 2], num_frames=len(z[i:i + 2])).sample for i in range(0, frames, 2)])
        assert (ours.decode(z, frames, decode_chunk_size=2) - chunked).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg", [TINY, TINY_3], ids=["two-levels", "three-levels"])
def test_parity_from_a_diffusers_folder(cfg, tmp_path):
    ref = _reference(cfg)
    ref.save_pretrained(tmp_path / "vae")
    ours = AutoencoderKLTemporalDecoder.from_pretrained(tmp_path, device="cpu")
    assert ours.config.channel_mult == cfg.channel_mult and ours.config.scaling_factor == cfg.scaling_factor
    _compare(ref, ours)


@pytest.mark.parametrize("cfg", [TINY, TINY_3], ids=["two-levels", "three-levels"])
def test_parity_from_the_official_single_file_layout(cfg, tmp_path):
    ref = _reference(cfg, seed=1)
    native = tvc.diffusers_to_native(ref.state_dict())
    official = tvc.native_to_official(native)
    assert any(k.startswith("conditioner.embedders.3.encoder.quant_conv.") for k in official)
    assert any(k.startswith("first_stage_model.decoder.up.0.block.0.time_stack.") for k in official)
    save_file({k: v.contiguous() for k, v in official.items()}, str(tmp_path / "svd.safetensors"))
    # the tiny preset's sizes settle the config; another size passes its config explicitly
    ours = AutoencoderKLTemporalDecoder.from_pretrained(tmp_path / "svd.safetensors", device="cpu",
                                                        config=None if cfg == TINY else cfg)
    _compare(ref, ours)


def test_a_size_no_preset_has_is_refused_in_one_line():
    with torch.device("meta"):
        native = AutoencoderKLTemporalDecoder(TINY_3).state_dict()
    with pytest.raises(UserError, match="norm_groups"):
        tvc.infer_config(native)


def test_layouts_round_trip_and_unknown_keys_are_named():
    ref = _reference(TINY)
    native = tvc.diffusers_to_native(ref.state_dict())
    back = tvc.native_to_diffusers(native)
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())
    with pytest.raises(ConversionError, match="decoder.up_blocks.0.resnets.0.spatial_res_block.bogus"):
        tvc.diffusers_to_native({**ref.state_dict(), "decoder.up_blocks.0.resnets.0.spatial_res_block.bogus.weight":
                                 torch.zeros(1)})


def test_full_size_key_coverage_on_meta():
    """The release's VAE (SVD, SVD-XT): the official key list (generative-models on meta, the fixture) and
    diffusers' full-size model both map onto ours with nothing missing or left over."""
    cfg = TemporalVAEConfig.preset("svd")
    with torch.device("meta"):
        ours = AutoencoderKLTemporalDecoder(cfg).state_dict()
        ref = RefVAE(**tvc.config_to_diffusers(cfg)).state_dict()
    shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items()}  # noqa: E731
    assert shapes(tvc.diffusers_to_native(ref)) == shapes(ours)
    assert shapes(tvc.native_to_diffusers(ours)) == shapes(ref)
    lists = json.loads(gzip.open(OFFICIAL_KEYS, "rt").read())
    for name in ("svd", "svd_xt"):
        official = {k: torch.empty(s, device="meta") for k, s in lists[name].items()}
        assert shapes(tvc.official_to_native(official)) == shapes(ours), name
    assert tvc.infer_config(ours) == cfg


def test_bad_inputs_are_one_line_errors():
    vae = AutoencoderKLTemporalDecoder(TINY).eval()
    with pytest.raises(UserError, match="multiple of 2"):
        vae.encode(torch.zeros(1, 3, 33, 32))
    with pytest.raises(UserError, match="do not split"):
        vae.decode(torch.zeros(5, 4, 8, 8), num_frames=2)
    with pytest.raises(UserError, match="decode_chunk_size"):
        vae.decode(torch.zeros(4, 4, 8, 8), num_frames=4, decode_chunk_size=0)
