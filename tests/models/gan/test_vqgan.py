"""VQGAN: quantiser losses on known inputs (corrected vs legacy), the adaptive weight against a hand
computation, the training step, the PatchGAN, and the pipeline."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from models.gan.vqgan import (PRESETS, VQGAN, PatchDiscriminator, VQGANLossConfig, VQGANPipeline, VectorQuantizer,
                              adaptive_weight, adopt_weight, hinge_d_loss, training)
from utils.errors import UserError, WeightsError
from tests.helpers.images import signed

TINY = PRESETS["tiny"]


def known_quantizer(legacy: bool) -> tuple[VectorQuantizer, torch.Tensor]:
    q = VectorQuantizer(2, 2, beta=0.25, legacy=legacy)
    with torch.no_grad():
        q.embedding.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    # two vectors (0.2, 0.1) -> code 0 and (0.9, 1.3) -> code 1, as a (1, 2, 1, 2) map
    z = torch.tensor([[0.2, 0.1], [0.9, 1.3]]).t().reshape(1, 2, 1, 2).clone().requires_grad_(True)
    return q, z


@pytest.mark.parametrize("legacy", [True, False])
def test_quantizer_loss_on_known_inputs(legacy):
    q, z = known_quantizer(legacy)
    z_q, loss, idx = q(z)
    assert idx.tolist() == [[[0, 1]]]
    assert torch.allclose(z_q, torch.tensor([[0.0, 1.0], [0.0, 1.0]]).reshape(1, 2, 1, 2))
    # ||z - e||^2 averaged over the 4 entries: (0.04 + 0.01 + 0.01 + 0.09) / 4 = 0.0375; both terms
    # have this value, so the loss is 1.25 * 0.0375 either way: the variants differ in their gradients.
    assert loss.item() == pytest.approx(1.25 * 0.0375, abs=1e-7)
    loss.backward()
    diff = torch.tensor([[0.2, 0.1], [-0.1, 0.3]])  # z - e, one row per vector
    encoder_w, codebook_w = (1.0, 0.25) if legacy else (0.25, 1.0)
    # d/dz of w * mean((z - sg e)^2) = w * 2 (z - e) / 4
    assert torch.allclose(z.grad.reshape(2, 2).t(), encoder_w * 2 * diff / 4, atol=1e-6)
    assert torch.allclose(q.embedding.weight.grad, -codebook_w * 2 * diff / 4, atol=1e-6)


def test_straight_through_gradient_and_lookup():
    q, z = known_quantizer(True)
    z_q, _, idx = q(z)
    z_q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # identity gradient through the quantiser
    assert torch.equal(q.lookup(idx), z_q.detach())


def test_adaptive_weight_matches_hand_computation():
    last = torch.randn(4, 3, requires_grad=True)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    rec = (last * a).sum() + 0.5 * (last ** 2).sum()  # grad: a + last
    g = (last * b).sum()  # grad: b
    w = adaptive_weight(rec, g, last, disc_weight=0.8)
    hand = (a + last.detach()).norm() / (b.norm() + 1e-4) * 0.8
    assert torch.allclose(w, hand)
    assert not w.requires_grad
    tiny_g = (last * 1e-9).sum()
    assert adaptive_weight(rec, tiny_g, last).item() == pytest.approx(1e4)  # clamped
    assert adaptive_weight((last * 0).sum(), g, last).item() == 0.0


def test_adopt_weight_and_hinge():
    assert adopt_weight(1.0, 9, threshold=10) == 0.0
    assert adopt_weight(1.0, 10, threshold=10) == 1.0
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) = 0.5 * (0.25 + 0.5)
    assert hinge_d_loss(real, fake).item() == pytest.approx(0.375)


def test_patch_discriminator_layout_and_output():
    d = PatchDiscriminator(3, 64, 3)
    keys = [k for k in d.state_dict() if k.endswith("weight")]
    assert keys == ["main.0.weight", "main.2.weight", "main.3.weight", "main.5.weight", "main.6.weight",
                    "main.8.weight", "main.9.weight", "main.11.weight"]
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # the 70x70 PatchGAN map


def _lpips_vgg():
    from utils.metrics.lpips import LPIPS
    torch.manual_seed(0)
    return LPIPS(net="vgg").requires_grad_(False).eval()  # random backbone: no download


def _pooled_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A cheap stand-in with LPIPS's interface ((B,) distances), for the fast test."""
    return (torch.nn.functional.avg_pool2d(x - y, 4) ** 2).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("perceptual_kind", ["stand-in", pytest.param("lpips-vgg", marks=pytest.mark.slow)])
def test_training_step_before_and_after_disc_start(perceptual_kind):
    torch.manual_seed(0)
    model = VQGAN(TINY)
    disc = PatchDiscriminator(3, 8, 2)
    perceptual = _lpips_vgg() if perceptual_kind == "lpips-vgg" else _pooled_distance
    cfg = replace(TINY.loss, disc_start=2, disc_weight=0.8)
    opt_ae, opt_d = training.make_optimizers(model, disc, lr=1e-4)
    x = torch.rand(2, 3, 16, 16) * 2 - 1  # small images keep this fast; the PatchGAN still sees 2x2 patches
    d_before = [p.detach().clone() for p in disc.parameters()]
    w_before = model.decoder.conv_out.weight.detach().clone()
    logs = training.train_step(model, disc, perceptual, {"image": x}, opt_ae, opt_d, 0, cfg)
    assert logs["ae/d_weight"] == 0.0 and logs["ae/disc_factor"] == 0.0 and logs["d/loss"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))  # D waits for disc_start
    assert not torch.equal(w_before, model.decoder.conv_out.weight)  # the autoencoder trained
    if perceptual is not None:
        assert logs["ae/perceptual"] > 0
    logs = training.train_step(model, disc, perceptual, x, opt_ae, opt_d, 2, cfg)
    assert logs["ae/d_weight"] > 0 and logs["ae/disc_factor"] == 1.0 and logs["d/loss"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(d_before, disc.parameters()))


def test_autoencoder_loss_composition():
    torch.manual_seed(0)
    model = VQGAN(TINY)
    disc = PatchDiscriminator(3, 8, 2)
    cfg = VQGANLossConfig(disc_start=0, disc_weight=0.5, codebook_weight=2.0, perceptual_weight=0.0)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    xrec, cb, _ = model(x)
    total, logs = training.autoencoder_loss(model, disc, None, x, xrec, cb, 5, cfg)
    rec = (x - xrec).abs().mean()
    g = -disc(xrec).mean()
    w = adaptive_weight(rec, g, model.last_layer, 0.5)
    assert total.item() == pytest.approx((rec + w * g + 2.0 * cb).item(), rel=1e-5)


def test_encode_decode_indices_roundtrip():
    torch.manual_seed(0)
    model = VQGAN(TINY).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        rec, _, idx = model(x)
        assert idx.shape == (2, 16, 16)
        assert torch.allclose(model.decode_indices(idx), rec, atol=1e-4)
    with pytest.raises(ValueError):
        model.decode_indices(torch.full((1, 2, 2), TINY.n_embed))


def test_pipeline_reconstructs_and_decodes(tmp_path):
    pipe = VQGANPipeline.from_pretrained(preset="tiny", device="cpu")
    from PIL import Image

    img = Image.new("RGB", (40, 48), (200, 30, 60))
    with pytest.raises(UserError, match="multiple of 2"):
        pipe(image=torch.zeros(1, 3, 31, 32))
    out = pipe(image=img, size=32)
    assert out.images[0].size == (32, 32) and out.indices.shape == (1, 16, 16)
    path = tmp_path / "in.png"
    img.resize((32, 32)).save(path)
    assert pipe(image=str(path)).indices.shape == (1, 16, 16)
    idx = pipe.encode([img, img], size=32)
    dec = pipe(indices=idx)
    assert len(dec) == 2
    with pytest.raises(UserError, match="code indices"):
        pipe(indices=torch.full((1, 4, 4), 99))
    a = signed(pipe(seed=1))
    assert torch.equal(a, signed(pipe(seed=1)))
    with pytest.raises(WeightsError, match="heibox"):
        VQGANPipeline.from_pretrained(preset="imagenet-f16-16384")


def test_presets_are_the_published_configs():
    for name, n in (("imagenet-f16-1024", 1024), ("imagenet-f16-16384", 16384)):
        c = PRESETS[name]
        assert (c.ch, c.ch_mult, c.num_res_blocks, c.attn_resolutions, c.z_channels, c.embed_dim, c.n_embed) == (
            128, (1, 1, 2, 2, 4), 2, (16,), 256, 256, n)
        assert c.downsample_factor == 16 and c.attn_levels == (4,)
    assert PRESETS["imagenet-f16-1024"].loss.disc_start == 250001
    assert PRESETS["imagenet-f16-16384"].loss.disc_num_layers == 2
