"""BigGAN-deep: parity with pytorch-pretrained-biggan through our converter, full-size key coverage,
strict loading, the pipeline, and the properties of the discriminator and regularisers."""
from __future__ import annotations

import json

import pytest
import torch

import pytorch_pretrained_biggan  # noqa: F401 - a hard dependency: a broken install fails here
from pytorch_pretrained_biggan import BigGAN as RefBigGAN  # noqa: E402
from pytorch_pretrained_biggan import BigGANConfig as RefConfig  # noqa: E402

from models.gan.biggan import (PRESETS, BigGANDiscriminator, BigGANDiscriminatorConfig, BigGANGenerator,  # noqa: E402
                               BigGANPipeline, convert_state_dict, orthogonal_regularization, reference_key_map,
                               truncated_noise)
from models.gan.biggan.convert import to_pretrained_biggan  # noqa: E402
from utils.errors import ConversionError, UserError, WeightsError  # noqa: E402
from utils.weights import load_into  # noqa: E402
from tests.helpers.images import signed

TINY = PRESETS["tiny"]


def reference_model(config=TINY, seed=0) -> RefBigGAN:
    """A reference generator with every tensor random (stats, gains, gamma included) and
    spectral-norm vectors advanced by one training step, in eval mode."""
    torch.manual_seed(seed)
    ref = RefBigGAN(RefConfig.from_dict(config.to_reference_dict()))
    with torch.no_grad():
        for name, t in ref.state_dict().items():
            if name.endswith("running_vars"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif name.endswith("running_means"):
                t.normal_(0, 0.3)
            elif name.endswith("gamma"):
                t.fill_(0.7)
            elif name in ("generator.bn.weight", "generator.bn.bias"):
                t.normal_(1.0, 0.2)
            elif name.endswith("weight_orig") or name.endswith("bias") or name == "embeddings.weight":
                t.normal_(0, 0.3)
        ref.train()
        ref(torch.zeros(2, config.z_dim), torch.eye(config.num_classes)[:2], 0.5)  # moves u and v
    return ref.eval()


def ours_from(ref: RefBigGAN, config=TINY) -> BigGANGenerator:
    gen = BigGANGenerator(config).eval()
    load_into(gen, convert_state_dict(ref.state_dict(), config))
    return gen


@pytest.mark.parametrize("truncation", [0.4, 0.37, 0.5, 1.0])
def test_parity_with_pytorch_pretrained_biggan(truncation):
    ref = reference_model()
    ours = ours_from(ref)
    gen = torch.Generator().manual_seed(1)
    z = truncated_noise((4, TINY.z_dim), truncation, gen)
    labels = torch.tensor([0, 3, 7, 9])
    one_hot = torch.eye(TINY.num_classes)[labels]
    with torch.no_grad():
        expected = ref(z, one_hot, truncation)
        by_vector = ours(z, one_hot, truncation)
        by_label = ours(z, labels, truncation)
    assert expected.abs().max() > 0.05  # not a degenerate all-zero comparison
    assert (expected - by_vector).abs().max() <= 1e-4
    assert (expected - by_label).abs().max() <= 1e-4


def test_parity_with_mixed_class_vector():
    ref = reference_model(seed=3)
    ours = ours_from(ref)
    z = torch.randn(2, TINY.z_dim) * 0.4
    y = torch.softmax(torch.randn(2, TINY.num_classes), dim=1)
    with torch.no_grad():
        assert (ref(z, y, 0.4) - ours(z, y, 0.4)).abs().max() <= 1e-4


def test_roundtrip_to_reference_layout():
    ref = reference_model()
    native = convert_state_dict(ref.state_dict(), TINY)
    back = to_pretrained_biggan(native, TINY)
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())


@pytest.mark.parametrize("name", ["biggan-deep-128", "biggan-deep-256", "biggan-deep-512"])
def test_full_size_key_and_shape_coverage_on_meta(name):
    config = PRESETS[name]
    with torch.device("meta"):
        ref = RefBigGAN(RefConfig.from_dict(config.to_reference_dict()))
        ours = BigGANGenerator(config)
    ref_sd = ref.state_dict()
    assert set(reference_key_map(config)) == set(ref_sd)  # nothing left over
    converted = convert_state_dict(ref_sd, config)
    ours_sd = ours.state_dict()
    assert set(converted) == set(ours_sd)  # nothing missing
    assert all(converted[k].shape == ours_sd[k].shape for k in ours_sd)
    # the reference makes some parameters with the legacy torch.Tensor(n), which ignores the meta device and
    # holds uninitialised CPU memory (NaN at random): move all to meta, where no values are checked
    load_into(ours, {k: v.to('meta') for k, v in converted.items()})  # the loader's own key and shape checks


def test_meta_preset_matches_published_config_files():
    # The three released config.json files are these dicts (pytorch-pretrained-biggan's BigGAN128/256/512).
    from pytorch_pretrained_biggan.convert_tf_to_pytorch import BigGAN128, BigGAN256, BigGAN512

    for ours, theirs in ((PRESETS["biggan-deep-128"], BigGAN128), (PRESETS["biggan-deep-256"], BigGAN256),
                         (PRESETS["biggan-deep-512"], BigGAN512)):
        d = ours.to_reference_dict()
        assert [tuple(x) for x in d.pop("layers")] == [tuple(x) for x in theirs.layers]
        for k, v in d.items():
            assert getattr(theirs, k) == v, k


def test_wrong_and_missing_keys_raise_naming_them():
    sd = reference_model().state_dict()
    extra = dict(sd, **{"generator.layers.0.bn_0.bogus": torch.zeros(1)})
    with pytest.raises(ConversionError, match="bogus"):
        convert_state_dict(extra, TINY)
    missing = {k: v for k, v in sd.items() if k != "generator.conv_to_rgb.weight_u"}
    with pytest.raises(ConversionError, match="conv_to_rgb.weight_u"):
        convert_state_dict(missing, TINY)
    with pytest.raises(ConversionError):
        convert_state_dict({"foo.weight": torch.zeros(1)}, TINY)
    wrong_shape = dict(sd, **{"generator.gen_z.bias": torch.zeros(3)})
    gen = BigGANGenerator(TINY)
    with pytest.raises(ConversionError, match="stem.bias"):
        load_into(gen, convert_state_dict(wrong_shape, TINY))


def _save_release_folder(tmp_path, ref: RefBigGAN, config=TINY):
    torch.save(ref.state_dict(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(config.to_reference_dict()))
    return tmp_path


def test_pipeline_loads_release_folder_and_matches_reference(tmp_path):
    ref = reference_model()
    folder = _save_release_folder(tmp_path, ref)
    pipe = BigGANPipeline.from_pretrained(str(folder), device="cpu")
    out = pipe(num_images=3, class_labels=[2, 5, 8], truncation=0.4, seed=7)
    with torch.no_grad():
        expected = ref(out.latents, torch.eye(10)[[2, 5, 8]], 0.4)
    assert (signed(out) - expected).abs().max() <= 1e-4
    # the file itself, with config.json beside it, loads the same
    pipe2 = BigGANPipeline.from_pretrained(str(folder / "pytorch_model.bin"), device="cpu")
    out2 = pipe2(num_images=3, class_labels=[2, 5, 8], truncation=0.4, seed=7)
    assert torch.equal(signed(out), signed(out2))
    assert len(out.images) == 3 and out.images[0].size == (16, 16)


def test_pipeline_rejects_bad_checkpoint(tmp_path):
    sd = reference_model().state_dict()
    sd["generator.extra.weight"] = torch.zeros(2)
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(TINY.to_reference_dict()))
    with pytest.raises(ConversionError, match="generator.extra.weight"):
        BigGANPipeline.from_pretrained(str(tmp_path), device="cpu")


def test_pipeline_offline_hub_id_is_a_clear_error():
    with pytest.raises(WeightsError, match="huggingface/biggan-deep-128"):
        BigGANPipeline.from_pretrained(preset="biggan-deep-128", device="cpu")


def test_pipeline_inputs():
    pipe = BigGANPipeline.from_pretrained(preset="tiny", device="cpu")
    a = pipe(num_images=2, seed=3)
    b = pipe(num_images=2, seed=3)
    assert torch.equal(signed(a), signed(b))
    assert a.latents.abs().max() <= 2 * 0.4 + 1e-6
    lat = torch.zeros(2, TINY.z_dim)
    c = pipe(latents=lat, class_labels=1, truncation=1.0)
    assert len(c) == 2 and c.labels.tolist() == [1, 1]
    with pytest.raises(UserError, match="truncation"):
        pipe(truncation=0.0)
    with pytest.raises(UserError, match="out of range"):
        pipe(class_labels=[10])
    with pytest.raises(UserError, match="ImageNet"):
        pipe(class_labels="goldfish")  # tiny has 10 classes
    with pytest.raises(UserError, match="no preset"):
        BigGANPipeline.from_pretrained(preset="biggan-deep-64")


def test_imagenet_class_names():
    from models.gan.biggan.pipeline import class_index

    assert class_index("golden retriever", 1000) == 207
    assert class_index("Tench", 1000) == 0
    with pytest.raises(UserError, match="not an ImageNet class"):
        class_index("spaceship zebra", 1000)


def test_truncated_noise():
    gen = torch.Generator().manual_seed(0)
    z = truncated_noise((64, 128), 0.5, gen)
    assert z.abs().max() <= 1.0 and z.std() > 0.2
    assert torch.equal(z, truncated_noise((64, 128), 0.5, torch.Generator().manual_seed(0)))


def test_facade_generates_tiny():
    from models import generate

    out = generate("gan", "biggan", preset="tiny", device="cpu", num_images=2, seed=0)
    assert len(out) == 2


# -- discriminator and regularisers (no reference package: properties) ---------------------------


def tiny_discriminator() -> BigGANDiscriminator:
    torch.manual_seed(0)
    return BigGANDiscriminator(BigGANDiscriminatorConfig.mirror(TINY))


def test_discriminator_mirrors_generator_and_scores_images():
    d = tiny_discriminator()
    assert [(b.downsample) for b in d.blocks] == [up for up, _, _ in reversed(TINY.layers)]
    x = torch.randn(3, 3, 16, 16)
    y = torch.tensor([0, 4, 9])
    out = d(x, y)
    assert out.shape == (3,)
    # projection: the logit is linear(phi) + <embed(y), phi>
    d.eval()
    with torch.no_grad():
        phi = d.features(x)
        manual = d.linear(phi)[:, 0] + (d.class_embed(y) * phi).sum(1)
        assert torch.allclose(d(x, y), manual, atol=1e-5)
        assert not torch.allclose(d(x, y), d(x, torch.tensor([1, 1, 1])))


def test_spectral_norm_gives_unit_sigma():
    d = tiny_discriminator().train()
    x = torch.randn(2, 3, 16, 16)
    y = torch.tensor([1, 2])
    for _ in range(30):  # power iteration converges
        d(x, y)
    for conv in (d.stem, d.blocks[0].conv1, d.linear):
        w = conv.sn_weight().detach().flatten(1)
        assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 2e-2


def test_discriminator_trains_with_two_forwards_before_backward():
    d = tiny_discriminator().train()
    x = torch.randn(2, 3, 16, 16)
    y = torch.tensor([1, 2])
    from models.gan.biggan import hinge_d_loss

    loss = hinge_d_loss(d(x, y), d(-x, y))  # buffers move twice before backward
    loss.backward()
    assert d.stem.weight.grad is not None and torch.isfinite(d.stem.weight.grad).all()


def test_orthogonal_regularization():
    w = torch.randn(5, 7, requires_grad=True)
    loss = orthogonal_regularization([w], strength=0.1)
    gram = w @ w.t()
    expected = 0.1 * (gram * (1 - torch.eye(5))).pow(2).sum()
    assert torch.allclose(loss, expected)
    loss.backward()
    # the gradient of ||W W^T (.) (1 - I)||^2 is 4 (W W^T (.) (1 - I)) W
    hand = 0.1 * 4 * ((gram * (1 - torch.eye(5))) @ w)
    assert torch.allclose(w.grad, hand.detach(), atol=1e-5)
    q, _ = torch.linalg.qr(torch.randn(6, 6))
    scaled = q * torch.tensor([1.0, 2, 3, 4, 5, 6])[:, None]  # orthogonal rows of any norms: no penalty
    assert orthogonal_regularization([scaled]).item() < 1e-9
    conv = torch.randn(4, 3, 3, 3)
    assert orthogonal_regularization([conv]) > 0


def test_generator_trains_with_batch_statistics():
    g = BigGANGenerator(TINY).train()
    z = torch.randn(4, TINY.z_dim)
    out = g(z, torch.tensor([0, 1, 2, 3]))
    out.mean().backward()
    assert out.shape == (4, 3, 16, 16)
    assert g.stem.weight.grad is not None
