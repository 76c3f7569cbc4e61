"""The temporal blocks of utils/nn/temporal.py against diffusers' (the same maths under other names), and
the causal convolution's defining property."""
from __future__ import annotations

import pytest
import torch
from diffusers.models.attention import TemporalBasicTransformerBlock
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import AlphaBlender as RefBlender
from diffusers.models.resnet import TemporalResnetBlock

from utils.errors import UserError
from utils.nn.temporal import (AlphaBlender, CausalConv3d, FramePositionEmbedding, TemporalConv3d, TemporalResBlock,
                               TemporalTransformerBlock, frame_embedding, to_frames, to_volume)


def _perturbed(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in module.state_dict().items()}
    module.load_state_dict(sd)
    return sd


def test_layouts_round_trip():
    x = torch.randn(6, 3, 4, 5)
    v = to_volume(x, 3)
    assert v.shape == (2, 3, 3, 4, 5) and torch.equal(v[1, :, 2], x[5])
    assert torch.equal(to_frames(v), x)
    with pytest.raises(UserError, match="do not split"):
        to_volume(x, 4)


@pytest.mark.parametrize("strategy,switch", [("learned", False), ("learned_with_images", False), ("fixed", False),
                                             ("learned", True)], ids=["unet", "unet-images", "fixed", "vae"])
def test_alpha_blender_matches_diffusers(strategy, switch):
    """The UNet's mix (alpha weighs the spatial branch, still-image frames flagged) and the VAE's (switched)."""
    ref = RefBlender(alpha=0.3, merge_strategy=strategy, switch_spatial_to_temporal_mix=switch)
    ours = AlphaBlender(0.3, strategy, alpha_weighs="temporal" if switch else "spatial")
    ours.load_state_dict(ref.state_dict())
    spatial, temporal = torch.randn(2, 3, 4, 5, 5), torch.randn(2, 3, 4, 5, 5)  # diffusers' (B, C, T, H, W)
    image_only = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    expected = ref(spatial, temporal, image_only_indicator=image_only)
    got = ours(to_frames(spatial), to_frames(temporal), image_only)  # ours is frame-batched: (B*T, C, H, W)
    assert (to_volume(got, 4) - expected).abs().max() <= 1e-6


def test_image_frames_take_the_spatial_branch_only():
    blender = AlphaBlender(2.0, "learned_with_images")
    spatial, temporal = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    out = blender(spatial, temporal, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.equal(out[0], spatial[0]) and torch.equal(out[3], spatial[3])
    a = torch.sigmoid(torch.tensor(2.0))
    assert torch.allclose(out[1], a * spatial[1] + (1 - a) * temporal[1], atol=1e-6)


def test_temporal_conv_is_a_3d_convolution():
    conv = TemporalConv3d(5, 7, 3)
    ref = torch.nn.Conv3d(5, 7, (3, 1, 1), padding=(1, 0, 0))
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(2, 5, 6, 4, 3)
    assert (conv(x) - ref(x)).abs().max() <= 1e-5
    with pytest.raises(UserError, match="odd"):
        TemporalConv3d(2, 2, 2)


def test_temporal_resblock_matches_diffusers():
    ref = TemporalResnetBlock(32, 32, temb_channels=16, eps=1e-5).eval()
    sd = _perturbed(ref)
    ours = TemporalResBlock(32, 16, 32, groups=32, eps=1e-5).eval()
    names = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
             "out_layers.0": "norm2", "out_layers.3": "conv2"}
    ours.load_state_dict({f"{n}.{p}": sd[f"{d}.{p}"] for n, d in names.items() for p in ("weight", "bias")})
    x, emb = torch.randn(2, 32, 5, 4, 4), torch.randn(2, 5, 16)
    with torch.no_grad():
        assert (ours(x, emb) - ref(x, emb)).abs().max() <= 1e-5


def test_temporal_transformer_block_matches_diffusers():
    dim, heads, ctx_dim, frames = 32, 4, 24, 5
    ref = TemporalBasicTransformerBlock(dim, dim, heads, dim // heads, cross_attention_dim=ctx_dim).eval()
    sd = _perturbed(ref)
    ours = TemporalTransformerBlock(dim, heads, dim // heads, ctx_dim).eval()
    ours.load_state_dict(sd)  # the release's names are diffusers' here
    x = torch.randn(2 * frames, 9, dim)
    context = torch.randn(2 * 9, 3, ctx_dim)
    with torch.no_grad():
        expected = ref(x, frames, encoder_hidden_states=context)
        for grad in (False, True):  # the in-place (inference) path and the autograd path agree
            with torch.set_grad_enabled(grad):
                assert (ours(x, frames, context) - expected).abs().max() <= 1e-5


def test_frame_position_embedding_matches_diffusers():
    dim = 16
    proj, mlp = Timesteps(dim, True, 0), TimestepEmbedding(dim, 4 * dim, out_dim=dim)
    sd = _perturbed(mlp)
    ours = FramePositionEmbedding(dim)
    ours.load_state_dict({"0.weight": sd["linear_1.weight"], "0.bias": sd["linear_1.bias"],
                          "2.weight": sd["linear_2.weight"], "2.bias": sd["linear_2.bias"]})
    frames = torch.arange(6).repeat(2)
    with torch.no_grad():
        assert (ours.embed(6, batch=2) - mlp(proj(frames))).abs().max() <= 1e-5
    assert torch.allclose(frame_embedding(6, dim, 2), proj(frames), atol=1e-6)


@pytest.mark.parametrize("pad_mode", ["replicate", "zeros"])
def test_causal_conv_never_sees_the_future(pad_mode):
    conv = CausalConv3d(3, 4, (3, 3, 3), pad_mode=pad_mode)
    x = torch.randn(1, 3, 6, 5, 5)
    y = conv(x)
    assert y.shape == (1, 4, 6, 5, 5)
    later = x.clone()
    later[:, :, 4:] = torch.randn(1, 3, 2, 5, 5)
    y2 = conv(later)
    assert torch.equal(y[:, :, :4], y2[:, :, :4])  # frames 0..3 are unaffected by frames 4 and 5
    assert not torch.allclose(y[:, :, 4:], y2[:, :, 4:])
    first = x.clone()
    first[:, :, 0] += 1.0
    assert not torch.allclose(conv(first)[:, :, 0], y[:, :, 0])


def test_causal_conv_replicates_the_first_frame():
    conv = CausalConv3d(2, 2, (3, 1, 1), pad_mode="replicate")
    x = torch.randn(1, 2, 4, 3, 3)
    padded = torch.cat([x[:, :, :1], x[:, :, :1], x], dim=2)
    assert torch.allclose(conv(x), torch.nn.functional.conv3d(padded, conv.conv.weight, conv.conv.bias), atol=1e-6)
