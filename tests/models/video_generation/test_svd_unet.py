"""SVD UNet: parity with diffusers' UNetSpatioTemporalConditionModel at two tiny configs (from a diffusers folder
and from the official single-file layout), the release's own code on a golden output, and full-size key and
shape coverage of svd.safetensors / svd_xt.safetensors on the meta device."""
from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file, save_file
from transformers import CLIPVisionModelWithProjection

from models.video_generation.svd import convert as cv
from models.video_generation.svd.conditioning import svd_vector
from models.video_generation.svd.config import SVDUNetConfig
from models.video_generation.svd.convert_unet import (infer_unet_config, unet_config_from_diffusers,
                                                      unet_config_to_diffusers, unet_diffusers_to_native,
                                                      unet_native_to_diffusers)
from models.video_generation.svd.model import SVDUNet
from utils.encoders import clip_vision_convert as cvc
from utils.encoders import temporal_vae_convert as tvc
from utils.encoders.clip_vision import CLIPVisionConfig
from utils.encoders.temporal_vae import TemporalVAEConfig
from utils.errors import ConversionError, UserError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "svd"
TINY = SVDUNetConfig.preset("tiny").with_(resnet_eps="diffusers")  # diffusers' GroupNorm eps, to compare with it
# The release's shape at tiny width: three levels, the last without attention, two res blocks, a deeper middle.
TINY_RELEASE_SHAPED = TINY.with_(channel_mult=(1, 2, 2), num_res_blocks=2, transformer_depth=(1, 1, 0),
                                 transformer_depth_middle=2)
SVD_DIFFUSERS = dict(  # the published unet/config.json of stabilityai/stable-video-diffusion-img2vid-xt
    sample_size=96, in_channels=8, out_channels=4, down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 +
    ("DownBlockSpatioTemporal",), up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280), addition_time_embed_dim=256, projection_class_embeddings_input_dim=768,
    layers_per_block=2, cross_attention_dim=1024, transformer_layers_per_block=1, num_attention_heads=(5, 10, 20, 20),
    num_frames=25)


def _reference(cfg: SVDUNetConfig, seed: int = 0) -> UNetSpatioTemporalConditionModel:
    torch.manual_seed(seed)
    ref = UNetSpatioTemporalConditionModel(**unet_config_to_diffusers(cfg)).eval()
    g = torch.Generator().manual_seed(seed)  # perturb every tensor, zero-initialised ones included
    ref.load_state_dict({k: v + 0.02 * torch.randn(v.shape, generator=g) for k, v in ref.state_dict().items()})
    return ref


def _inputs(cfg: SVDUNetConfig, frames: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, frames, cfg.in_channels, 8, 8, generator=g)
    t = torch.tensor([-1.2, 0.9])  # c_noise = log(sigma) / 4
    context = torch.randn(2, 1, cfg.context_dim, generator=g)
    ids = torch.tensor([[6.0, 127.0, 0.02], [3.0, 40.0, 0.3]])  # fps - 1, motion bucket, noise augmentation
    return x, t, context, ids


def _check(ref, ours, cfg) -> None:
    x, t, context, ids = _inputs(cfg)
    with torch.no_grad():
        expected = ref(x, t, context, ids).sample
        got = ours(x, t, context, svd_vector(ids, cfg.addition_time_embed_dim))
    assert (expected - got).abs().max() <= 1e-4


@pytest.mark.parametrize("cfg", [TINY, TINY_RELEASE_SHAPED], ids=["tiny", "release-shaped"])
def test_parity_from_a_diffusers_folder(cfg, tmp_path):
    ref = _reference(cfg)
    ref.save_pretrained(tmp_path / "unet")
    loaded = cv.unet_from_diffusers(tmp_path / "unet", torch.float32)
    assert loaded.config == cfg.with_(resnet_eps="sgm")  # the folder's config, read back (the release's maths)
    ours = SVDUNet(cfg).eval()  # the loaded weights, normalised with diffusers' GroupNorm eps to compare
    ours.load_state_dict(loaded.state_dict())
    _check(ref, ours, cfg)


@pytest.mark.parametrize("cfg", [TINY, TINY_RELEASE_SHAPED], ids=["tiny", "release-shaped"])
def test_parity_from_the_official_single_file_layout(cfg, tmp_path):
    ref = _reference(cfg, seed=2)
    official = {cv.UNET_PREFIX + k: v for k, v in unet_diffusers_to_native(ref.state_dict(), cfg).items()}
    save_file(official, str(tmp_path / "unet.safetensors"))
    native = {k[len(cv.UNET_PREFIX):]: v for k, v in load_file(str(tmp_path / "unet.safetensors")).items()}
    if cfg == TINY:  # the preset's sizes settle the config (with the release's eps)
        assert cv.unet_from_state(native, preset="tiny").config == SVDUNetConfig.preset("tiny")
    _check(ref, cv.unet_from_state(native, config=cfg), cfg)  # an explicit config, checked against the shapes


def test_the_release_code_on_a_golden_output():
    """generative-models' VideoUNet (tests/fixtures/svd/make_golden_unet.py) and ours with the release's eps
    agree; diffusers' eps would not (its port normalises with 1e-6 where the release uses 1e-5)."""
    sys.path.insert(0, str(FIXTURES))
    from seeded import seeded_inputs, seeded_state_dict

    golden = load_file(str(FIXTURES / "golden_unet.safetensors"))["output"]
    inp = seeded_inputs()
    outs = {}
    for eps in ("sgm", "diffusers"):
        ours = SVDUNet(SVDUNetConfig.preset("tiny").with_(resnet_eps=eps)).eval()
        ours.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in ours.state_dict().items()}))
        with torch.no_grad():
            outs[eps] = ours(inp["x"].reshape(2, 3, 8, 8, 8), inp["timesteps"][::3], inp["context"][::3],
                             inp["y"][::3]).reshape(golden.shape)
    assert (outs["sgm"] - golden).abs().max() <= 1e-4
    assert (outs["diffusers"] - golden).abs().max() > (outs["sgm"] - golden).abs().max()


def test_configs_round_trip():
    for cfg in (TINY, TINY_RELEASE_SHAPED, SVDUNetConfig.preset("svd")):
        assert unet_config_from_diffusers(unet_config_to_diffusers(cfg)) == cfg.with_(resnet_eps="sgm")
    assert unet_config_from_diffusers(SVD_DIFFUSERS) == SVDUNetConfig.preset("svd")


def _shapes(sd) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("release", ["svd", "svd_xt"])
def test_full_size_official_file_coverage(release):
    """The official key list of the release (built by generative-models on meta, the fixture) splits into the
    UNet, VAE and CLIP image encoder with nothing missing or left over, and each matches both our model and
    diffusers' full-size one (also on meta) converted."""
    listed = json.loads(gzip.open(FIXTURES / "official_keys.json.gz", "rt").read())[release]
    official = {k: torch.empty(s, device="meta") for k, s in listed.items()}
    parts = cv.split_official(official)
    with torch.device("meta"):
        unet = SVDUNet("svd").state_dict()
        ref_unet = UNetSpatioTemporalConditionModel(**SVD_DIFFUSERS).state_dict()
        ref_vae = AutoencoderKLTemporalDecoder(**tvc.config_to_diffusers(TemporalVAEConfig.preset("svd"))).state_dict()
        ref_clip = CLIPVisionModelWithProjection(CLIPVisionConfig.preset("vit-h-14").to_transformers()).state_dict()
    cfg = SVDUNetConfig.preset("svd")
    assert _shapes(parts.unet) == _shapes(unet) == _shapes(unet_diffusers_to_native(ref_unet, cfg))
    assert _shapes(unet_native_to_diffusers(parts.unet, cfg)) == _shapes(ref_unet)
    assert _shapes(parts.vae) == _shapes(tvc.diffusers_to_native(ref_vae))
    native_clip, clip_cfg = cvc.vision_to_native(parts.image_encoder)
    assert clip_cfg == CLIPVisionConfig.preset("vit-h-14")
    assert _shapes(native_clip) == _shapes(cvc.hf_vision_from_checkpoint(ref_clip))
    used = len(parts.unet) + len(parts.vae) + len(parts.image_encoder)
    assert used + len(parts.unused) == len(official)
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in parts.unused} == {"first_stage_model.encoder",
                                                                               "conditioner.embedders"}
    assert infer_unet_config(parts.unet) == cfg
    assert sum(v.numel() for v in parts.unet.values()) == sum(v.numel() for v in ref_unet.values())


def test_unknown_keys_and_unknown_sizes_are_one_line_errors(tmp_path):
    with torch.device("meta"):
        native = SVDUNet(TINY_RELEASE_SHAPED).state_dict()
    with pytest.raises(UserError, match="head_dim and norm_groups"):
        infer_unet_config(native)

    from models.video_generation.svd.pipeline import SVDPipeline

    pipe = SVDPipeline.tiny()
    official = load_file(str(cv.export_official(tmp_path / "tiny.safetensors", pipe.unet, pipe.vae,
                                                pipe.image_encoder)))
    assert len(cv.split_official(official).unused) == 0  # a whole tiny file: every key is used
    with pytest.raises(ConversionError, match="conditioner.embedders.9.extra"):
        cv.split_official({**official, "conditioner.embedders.9.extra": torch.zeros(1)})
    parts = cv.split_official({**official, "model.diffusion_model.extra.weight": torch.zeros(1)})
    with pytest.raises(ConversionError, match="extra.weight"):
        cv.unet_from_state(parts.unet, preset="tiny")
    with pytest.raises(ConversionError, match="does not know"):
        unet_diffusers_to_native({"down_blocks.0.resnets.0.spatial_res_block.bogus.weight": torch.zeros(1)}, TINY)


def test_gradient_checkpointing_gives_the_same_gradients():
    cfg = SVDUNetConfig.preset("tiny")
    unet = SVDUNet(cfg)
    x, t, context, ids = _inputs(cfg, frames=2)
    y = svd_vector(ids, cfg.addition_time_embed_dim)
    grads = []
    for on in (False, True):
        unet.zero_grad()
        unet.enable_gradient_checkpointing(on)
        unet(x, t, context, y).square().mean().backward()
        grads.append(unet.input_blocks[1][0].time_stack.in_layers[2].weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_bad_inputs_are_one_line_errors():
    unet = SVDUNet("tiny")
    with pytest.raises(UserError, match="multiple of 2"):
        unet(torch.zeros(1, 2, 8, 7, 8), torch.zeros(1), torch.zeros(1, 1, 32), torch.zeros(1, 24))
    with pytest.raises(UserError, match="videos"):
        unet(torch.zeros(2, 8, 8, 8), torch.zeros(1), torch.zeros(1, 1, 32), torch.zeros(1, 24))
