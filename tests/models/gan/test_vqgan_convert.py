"""VQGAN conversion: parity with diffusers' VQModel through a saved folder, taming-layout and
diffusers-layout key coverage at full size (meta device), strict failures."""
from __future__ import annotations

import warnings

import pytest
import torch

from models.gan.vqgan import PRESETS, VQGAN, PatchDiscriminator, VQGANPipeline, config_from_diffusers, convert_state_dict
from models.gan.vqgan.convert import infer_config, to_diffusers
from utils.errors import ConversionError
from utils.weights import load_into
from tests.helpers.images import signed

import diffusers

TINY_DIFFUSERS = dict(block_out_channels=(32, 64), down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                      up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
                      latent_channels=8, vq_embed_dim=4, num_vq_embeddings=16, norm_num_groups=8, sample_size=32)


def random_vqmodel(seed: int = 0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = diffusers.VQModel(**TINY_DIFFUSERS).eval()
    with torch.no_grad():  # move norms and biases off their constant initialisation
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0, 0.05)
        model.quantize.embedding.weight.normal_()
    return model


def test_parity_with_diffusers_vqmodel_through_saved_folder(tmp_path):
    ref = random_vqmodel()
    ref.save_pretrained(tmp_path / "vq")
    pipe = VQGANPipeline.from_pretrained(str(tmp_path / "vq"), device="cpu")
    ours = pipe.model
    assert ours.config.attn_resolutions == (16,) and ours.config.ch_mult == (1, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        h_ref = ref.encode(x).latents
        zq_ref, loss_ref, (_, _, idx_ref) = ref.quantize(h_ref)
        dec_ref = ref.decode(h_ref).sample
        h = ours.encode_latents(x)
        enc = ours.encode(x)
        dec = ours.decode(enc.quantized)
        from_idx = ours.decode_indices(enc.indices)
    assert (h - h_ref).abs().max() <= 1e-4
    assert torch.equal(enc.indices.flatten(), idx_ref.flatten())
    assert (enc.quantized - zq_ref).abs().max() <= 1e-4
    assert abs(enc.loss.item() - loss_ref.item()) <= 1e-5  # both legacy by default
    assert dec_ref.abs().max() > 0.1
    assert (dec - dec_ref).abs().max() <= 1e-4
    assert (from_idx - dec_ref).abs().max() <= 1e-4
    # the pipeline's reconstruction is the same computation
    out = pipe(image=x)
    assert (signed(out) - dec_ref.clamp(-1, 1)).abs().max() <= 1e-4  # pixels are clipped to [0, 1]


def test_corrected_quantizer_loss_matches_diffusers_non_legacy():
    ref = random_vqmodel()
    ref.quantize.legacy = False
    cfg = config_from_diffusers(dict(ref.config))
    from dataclasses import replace

    ours = VQGAN(replace(cfg, legacy=False)).eval()
    load_into(ours, convert_state_dict(ref.state_dict(), cfg)[0])
    h = torch.randn(2, 4, 8, 8)
    assert abs(ours.quantize(h)[1].item() - ref.quantize(h)[1].item()) <= 1e-6


def test_diffusers_round_trip():
    ref = random_vqmodel()
    cfg = config_from_diffusers(dict(ref.config))
    native, disc = convert_state_dict(ref.state_dict(), cfg)
    assert disc == {}
    back = to_diffusers(native, cfg)
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())


def taming_vqmodel_shapes(ch, ch_mult, num_res_blocks, attn_levels, z_channels, embed_dim, n_embed):
    """The state dict shapes of taming's VQModel (taming/models/vqgan.py + diffusionmodules/model.py),
    enumerated from its constructor independently of our modules."""
    s = {}

    def conv(name, cin, cout, k):
        s[f"{name}.weight"] = (cout, cin, k, k)
        s[f"{name}.bias"] = (cout,)

    def norm(name, c):
        s[f"{name}.weight"] = (c,)
        s[f"{name}.bias"] = (c,)

    def resblock(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def attn(name, c):
        norm(f"{name}.norm", c)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.{p}", c, c, 1)

    conv("encoder.conv_in", 3, ch, 3)
    in_mult = (1,) + tuple(ch_mult)
    for i, m in enumerate(ch_mult):
        cin, cout = ch * in_mult[i], ch * m
        for j in range(num_res_blocks):
            resblock(f"encoder.down.{i}.block.{j}", cin if j == 0 else cout, cout)
            if i in attn_levels:
                attn(f"encoder.down.{i}.attn.{j}", cout)
        if i != len(ch_mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", cout, cout, 3)
    top = ch * ch_mult[-1]
    for part in ("encoder", "decoder"):
        resblock(f"{part}.mid.block_1", top, top), attn(f"{part}.mid.attn_1", top), resblock(f"{part}.mid.block_2", top, top)
    norm("encoder.norm_out", top), conv("encoder.conv_out", top, z_channels, 3)
    conv("decoder.conv_in", z_channels, top, 3)
    cin = top
    for i in reversed(range(len(ch_mult))):
        cout = ch * ch_mult[i]
        for j in range(num_res_blocks + 1):
            resblock(f"decoder.up.{i}.block.{j}", cin, cout)
            cin = cout
            if i in attn_levels:
                attn(f"decoder.up.{i}.attn.{j}", cout)
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", cout, cout, 3)
    norm("decoder.norm_out", ch * ch_mult[0]), conv("decoder.conv_out", ch * ch_mult[0], 3, 3)
    conv("quant_conv", z_channels, embed_dim, 1)
    conv("post_quant_conv", embed_dim, z_channels, 1)
    s["quantize.embedding.weight"] = (n_embed, embed_dim)
    return s


def taming_disc_shapes(n_layers=3, ndf=64):
    """loss.discriminator.* of taming's NLayerDiscriminator (BatchNorm, no ActNorm)."""
    s = {"main.0.weight": (ndf, 3, 4, 4), "main.0.bias": (ndf,)}
    idx, mult = 2, 1
    for n in list(range(1, n_layers)) + [n_layers]:
        prev, mult = mult, min(2 ** n, 8)
        s[f"main.{idx}.weight"] = (ndf * mult, ndf * prev, 4, 4)
        for b in ("weight", "bias", "running_mean", "running_var"):
            s[f"main.{idx + 1}.{b}"] = (ndf * mult,)
        s[f"main.{idx + 1}.num_batches_tracked"] = ()
        idx += 3
    s[f"main.{idx}.weight"] = (1, ndf * mult, 4, 4)
    s[f"main.{idx}.bias"] = (1,)
    return {f"loss.discriminator.{k}": v for k, v in s.items()}


@pytest.mark.parametrize("name", ["imagenet-f16-1024", "imagenet-f16-16384"])
def test_taming_checkpoint_key_coverage_full_size(name):
    cfg = PRESETS[name]
    shapes = taming_vqmodel_shapes(128, (1, 1, 2, 2, 4), 2, (4,), 256, 256, cfg.n_embed)
    shapes.update(taming_disc_shapes(cfg.loss.disc_num_layers))
    shapes.update({"loss.perceptual_loss.scaling_layer.shift": (1, 3, 1, 1),
                   "loss.perceptual_loss.net.slice1.0.weight": (64, 3, 3, 3),
                   "loss.perceptual_loss.lin0.model.1.weight": (1, 64, 1, 1)})
    sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    assert infer_config(sd, cfg) == cfg  # the architecture reads back off the shapes
    ae, disc = convert_state_dict(sd, cfg)
    with torch.device("meta"):
        model = VQGAN(cfg)
        d = PatchDiscriminator(3, 64, cfg.loss.disc_num_layers)
    ours = model.state_dict()
    assert set(ae) == set(ours), (set(ae) ^ set(ours))
    assert all(tuple(ae[k].shape) == tuple(ours[k].shape) for k in ours)
    load_into(model, ae)
    load_into(d, disc)


def test_full_size_diffusers_layout_coverage():
    cfg = PRESETS["imagenet-f16-16384"]
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = diffusers.VQModel(block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2,
                                down_block_types=("DownEncoderBlock2D",) * 4 + ("AttnDownEncoderBlock2D",),
                                up_block_types=("AttnUpDecoderBlock2D",) + ("UpDecoderBlock2D",) * 4,
                                latent_channels=256, vq_embed_dim=256, num_vq_embeddings=16384, sample_size=256)
        ours = VQGAN(cfg)
    got = config_from_diffusers(dict(ref.config), cfg)
    assert got == cfg
    native, _ = convert_state_dict(ref.state_dict(), cfg)
    load_into(ours, native)


def test_wrong_or_missing_keys_raise(tmp_path):
    ref = random_vqmodel()
    cfg = config_from_diffusers(dict(ref.config))
    sd = dict(ref.state_dict())
    sd["encoder.down_blocks.0.resnets.0.bogus.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="bogus"):
        load_into(VQGAN(cfg), convert_state_dict(sd, cfg)[0])
    sd = dict(ref.state_dict())
    del sd["decoder.up_blocks.1.resnets.1.conv2.bias"]
    with pytest.raises(ConversionError, match="decoder.up.0.block.1.conv2.bias"):
        load_into(VQGAN(cfg), convert_state_dict(sd, cfg)[0])
    with pytest.raises(ConversionError):
        convert_state_dict({"foo": torch.zeros(1)}, cfg)


def test_taming_ckpt_file_loads_through_pipeline(tmp_path):
    cfg = PRESETS["tiny"]
    torch.manual_seed(1)
    model = VQGAN(cfg)
    disc = PatchDiscriminator(3, 8, 2)
    sd = dict(model.state_dict())
    sd.update({f"loss.discriminator.{k}": v for k, v in disc.state_dict().items()})
    sd["loss.perceptual_loss.lin0.model.1.weight"] = torch.zeros(1, 64, 1, 1)
    torch.save({"state_dict": sd, "global_step": 10}, tmp_path / "last.ckpt")
    pipe = VQGANPipeline.from_pretrained(str(tmp_path / "last.ckpt"), preset="tiny", device="cpu")
    assert pipe.config.n_embed == cfg.n_embed and pipe.config.attn_levels == cfg.attn_levels
    assert set(pipe.discriminator_state) == set(disc.state_dict())
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(pipe.model(x)[0], model.eval()(x)[0], atol=1e-5)
    sd["encoder.unknown.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "bad.ckpt")
    with pytest.raises(ConversionError, match="encoder.unknown.weight"):
        VQGANPipeline.from_pretrained(str(tmp_path / "bad.ckpt"), preset="tiny", device="cpu")


# -- single files of sizes no preset has ------------------------------------------------------------

# No VQGAN preset has these sizes: 24/48 channels, attention at level 1, 4 GroupNorm groups (not in the weights).
ODD_DIFFUSERS = dict(block_out_channels=(24, 48), down_block_types=("DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
                     up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D"), layers_per_block=1,
                     latent_channels=6, vq_embed_dim=5, num_vq_embeddings=12, norm_num_groups=4, sample_size=32)


def _odd_vqmodel():
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = diffusers.VQModel(**ODD_DIFFUSERS).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.1)
            elif name.endswith("bias"):
                p.normal_(0, 0.05)
        model.quantize.embedding.weight.normal_()
    return model


def _max_diff(ref, ours, x) -> float:
    with torch.no_grad():
        h_ref = ref.encode(x).latents
        dec_ref = ref.decode(h_ref).sample
        h = ours.encode_latents(x)
        dec = ours.decode(ours.encode(x).quantized)
    return float(max((h - h_ref).abs().max(), (dec - dec_ref).abs().max()))


def test_non_release_taming_ckpt_refuses_then_loads_with_explicit_config(tmp_path):
    from models.gan.vqgan.convert import load_vqgan_checkpoint, read_sizes
    from utils.errors import UserError
    from utils.weights.configs import matching_presets

    ref = _odd_vqmodel()
    cfg = config_from_diffusers(dict(ref.config))  # what the reference was built with
    native = convert_state_dict(ref.state_dict(), cfg)[0]
    # the taming layout, enumerated independently of our modules
    assert {k: tuple(v.shape) for k, v in native.items()} == taming_vqmodel_shapes(24, (1, 2), 1, (1,), 6, 5, 12)
    assert matching_presets(read_sizes(native), PRESETS) == []
    sd = {k: v.contiguous() for k, v in native.items()}
    sd.update({f"loss.discriminator.{k}": v for k, v in PatchDiscriminator(3, 8, 2).state_dict().items()})
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": sd, "global_step": 7}, path)
    for preset in (None, "tiny"):
        with pytest.raises(UserError) as err:
            load_vqgan_checkpoint(path, preset=preset)
        msg = str(err.value)
        assert "norm_groups" in msg and "config=VQGANConfig(" in msg and "attn_resolutions=(16,)" in msg
        assert "\n" not in msg
    got, ae, disc = load_vqgan_checkpoint(path, config=cfg)
    assert got == cfg and set(disc) == set(PatchDiscriminator(3, 8, 2).state_dict())
    ours = VQGAN(got).eval()
    load_into(ours, ae)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert _max_diff(ref, ours, x) <= 1e-4
    # the guess the refusal avoids would be wrong: 8 groups instead of 4 change the outputs
    from dataclasses import replace

    wrong = VQGAN(replace(cfg, norm_groups=8)).eval()
    load_into(wrong, ae)
    assert _max_diff(ref, wrong, x) > 1e-2
    # an explicit config must agree with the shapes, and its groups must divide the widths
    with pytest.raises(UserError, match=r"n_embed is 16 but the weights have 12"):
        load_vqgan_checkpoint(path, config=replace(cfg, n_embed=16))
    with pytest.raises(UserError, match="norm_groups 32 does not divide"):
        VQGAN(replace(cfg, norm_groups=32))


def test_release_sizes_need_no_config():
    for name in ("imagenet-f16-1024", "imagenet-f16-16384"):
        with torch.device("meta"):
            native = VQGAN(PRESETS[name]).state_dict()
        assert infer_config(native) == PRESETS[name]
