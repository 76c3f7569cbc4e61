"""The conv autoencoder trunk shared by the KL VAE and VQGAN, and its one diffusers <-> native key map."""
from __future__ import annotations

import warnings

import pytest
import torch

import diffusers
from models.gan.vqgan import PRESETS, VQGAN
from utils.encoders.vae import AutoencoderKL
from utils.errors import ConversionError, UserError
from utils.nn import conv_autoencoder_keys as keys
from utils.nn.conv_autoencoder import Decoder, Encoder, TrunkConfig


def test_the_kl_vae_and_vqgan_run_the_same_trunk():
    vae, vq = AutoencoderKL("tiny"), VQGAN(PRESETS["tiny"])
    for model in (vae, vq):
        assert type(model.encoder) is Encoder and type(model.decoder) is Decoder
    # the heads differ: the KL encoder writes mean and log-variance, VQGAN's the latent itself
    assert vae.encoder.conv_out.out_channels == 2 * vae.config.latent_channels
    assert vq.encoder.conv_out.out_channels == vq.config.z_channels
    assert len(vq.encoder.down[1].attn) == 1 and len(vae.encoder.down[1].attn) == 0


def _vqmodel(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.VQModel(**kw)


@pytest.mark.parametrize("attn", [(), (0,), (0, 1, 2)], ids=["no-level-attention", "full-res", "every-level"])
def test_key_map_round_trips_diffusers_exactly(attn):
    """diffusers -> native names the trunk's own modules, and native -> diffusers gives every tensor back."""
    n = 3
    torch.manual_seed(0)
    ref = _vqmodel(block_out_channels=(8, 16, 16), layers_per_block=1, latent_channels=4, vq_embed_dim=3,
                   num_vq_embeddings=5, norm_num_groups=4, sample_size=16,
                   down_block_types=tuple("AttnDownEncoderBlock2D" if i in attn else "DownEncoderBlock2D"
                                          for i in range(n)),
                   up_block_types=tuple("AttnUpDecoderBlock2D" if n - 1 - i in attn else "UpDecoderBlock2D"
                                        for i in range(n)))
    sd = ref.state_dict()
    native = keys.diffusers_to_native(sd)
    trunk = TrunkConfig(base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, z_channels=4, double_z=False,
                        attn_levels=attn, norm_groups=4)
    ours = {f"encoder.{k}": v for k, v in Encoder(trunk).state_dict().items()}
    ours.update({f"decoder.{k}": v for k, v in Decoder(trunk).state_dict().items()})
    trunk_keys = {k: tuple(v.shape) for k, v in native.items() if k.startswith(("encoder.", "decoder."))}
    assert trunk_keys == {k: tuple(v.shape) for k, v in ours.items()}
    back = keys.native_to_diffusers(native)
    assert set(back) == set(sd) and all(torch.equal(back[k], v) for k, v in sd.items())
    sizes = keys.read_trunk_sizes(native)
    assert (sizes["channel_mult"], sizes["attn_levels"], sizes["z_channels"]) == ((1, 2, 2), attn, 4)


def test_old_diffusers_attention_names_and_linear_ldm_exports():
    sd = {"encoder.down_blocks.0.resnets.0.conv1.weight": torch.zeros(2, 2, 3, 3),
          "encoder.mid_block.attentions.0.query.weight": torch.ones(2, 2),
          "decoder.mid_block.attentions.0.proj_attn.bias": torch.ones(2)}
    native = keys.diffusers_to_native(sd)
    assert native["encoder.mid.attn_1.q.weight"].shape == (2, 2, 1, 1)
    assert "decoder.mid.attn_1.proj_out.bias" in native
    flat = keys.attention_as_conv({"decoder.up.1.attn.0.v.weight": torch.ones(3, 3),
                                   "decoder.mid.attn_1.k.weight": torch.ones(3, 3, 1)})
    assert all(v.shape == (3, 3, 1, 1) for v in flat.values())


def test_unknown_keys_are_named():
    sd = {"encoder.down_blocks.0.resnets.0.conv1.weight": torch.zeros(1),
          "encoder.down_blocks.0.resnets.0.bogus.weight": torch.zeros(1), "quantize.embedding.weight": torch.zeros(1)}
    with pytest.raises(ConversionError, match="bogus"):
        keys.diffusers_to_native(sd)
    # a KL VAE has no codebook: its converter does not pass `quantize.` through
    with pytest.raises(ConversionError, match="quantize.embedding.weight"):
        keys.diffusers_to_native({k: v for k, v in sd.items() if "bogus" not in k}, heads=keys.KL_HEADS)


def test_sizes_no_trunk_can_have_are_user_errors_not_torch_errors():
    with pytest.raises(UserError, match="norm_groups 32 does not divide the 24 channels"):
        Encoder(TrunkConfig(base_channels=24, channel_mult=(1, 2), norm_groups=32))
    with pytest.raises(UserError, match=r"attention at level\(s\) \[2\]"):
        Decoder(TrunkConfig(base_channels=8, channel_mult=(1, 2), norm_groups=4, attn_levels=(2,)))


def test_full_size_taming_trunk_sizes_read_on_meta():
    with torch.device("meta"):
        native = VQGAN(PRESETS["imagenet-f16-16384"]).state_dict()
    sizes = keys.read_trunk_sizes(native)
    assert sizes == dict(in_channels=3, out_channels=3, base_channels=128, num_res_blocks=2, encoder_out=256,
                         z_channels=256, attn_levels=(4,), channel_mult=(1, 1, 2, 2, 4))
