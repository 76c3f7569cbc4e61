"""ESRGAN / Real-ESRGAN / SRGAN: parity with spandrel's RRDBNet through our converters, full-size key
coverage on meta, tiled vs whole-image upscaling, the pipeline's loading and its errors."""
from __future__ import annotations

import re

import pytest
import torch
from PIL import Image
from spandrel import ModelLoader
from spandrel.architectures.ESRGAN import ESRGAN as SpandrelRRDB

from models.gan.esrgan import ESRGANPipeline, SRGANPipeline
from models.gan.esrgan.config import RRDB_PRESETS, RRDBNetConfig
from models.gan.esrgan.convert import convert_rrdbnet, infer_rrdbnet_config, to_old_arch
from models.gan.esrgan.model import RRDBNet
from models.gan.esrgan.pipeline import architecture
from utils.errors import UserError

# spandrel's old-arch RRDBNet fixes the growth channels at 32; the width and the block count are free
CONFIGS = {
    "x4": RRDBNetConfig(num_feat=8, num_block=2),
    "x2-unshuffle": RRDBNetConfig(scale=2, unshuffle=2, num_feat=8, num_block=2),
    "x1-unshuffle": RRDBNetConfig(scale=1, unshuffle=4, num_feat=8, num_block=1),
    "x8": RRDBNetConfig(scale=8, num_feat=8, num_block=1, upsample_factors=(2, 2, 2)),
}


def random_rrdbnet(config: RRDBNetConfig, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    net = RRDBNet(config).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    return net


def esrgan_2019_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The native names as xinntao/ESRGAN's 2019 release spells them (RRDB_trunk, trunk_conv, upconv, HRconv)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^body\.(\d+)\.rdb(\d)\.", r"RRDB_trunk.\1.RDB\2.", k)
        k = re.sub(r"^conv_up(\d)\.", r"upconv\1.", k)
        out[k.replace("conv_body.", "trunk_conv.").replace("conv_hr.", "HRconv.")] = v
    return out


CASES = [(layout, name) for name in CONFIGS for layout in ("native", "old")] + [
    ("esrgan-2019", "x4"), ("basicsr-params_ema", "x4"), ("basicsr-params_ema", "x2-unshuffle")]


@pytest.mark.parametrize("layout,name", CASES)
def test_rrdbnet_matches_spandrel_through_our_converter(name, layout):
    config = CONFIGS[name]
    reference = random_rrdbnet(config).state_dict()
    files = {"native": reference, "old": to_old_arch(reference, config),
             "esrgan-2019": esrgan_2019_names(reference),
             "basicsr-params_ema": {**{f"params_ema.{k}": v for k, v in reference.items()},
                                    **{f"params.{k}": torch.zeros_like(v) for k, v in reference.items()}}}
    sd = files[layout]
    spandrel_sd = sd if layout != "basicsr-params_ema" else {"params_ema": reference}
    theirs = ModelLoader().load_from_state_dict(spandrel_sd)
    assert theirs.scale == config.scale

    converted = convert_rrdbnet(sd)
    inferred = infer_rrdbnet_config(converted)
    assert architecture(inferred) == architecture(config)
    ours = RRDBNet(inferred).eval()
    ours.load_state_dict(converted, strict=True)

    x = torch.rand(2, 3, 12, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = theirs.model.eval()(x), ours(x)
    assert got.shape == (2, 3, 12 * config.scale, 16 * config.scale)
    assert (got - want).abs().max().item() <= 1e-4


def test_old_arch_round_trip_reaches_spandrels_own_layout():
    config = CONFIGS["x4"]
    net = random_rrdbnet(config)
    old = to_old_arch(net.state_dict(), config)
    theirs = SpandrelRRDB(in_nc=3, out_nc=3, num_filters=8, num_blocks=2, scale=4)
    assert set(old) == set(theirs.state_dict())
    assert all(old[k].shape == v.shape for k, v in theirs.state_dict().items())


@pytest.mark.parametrize("preset,blocks", [("realesrgan-x4plus", 23), ("realesrgan-x4plus-anime-6b", 6),
                                           ("esrgan", 23), ("realesrgan-x2plus", 23)])
def test_full_size_release_key_coverage_on_meta(preset, blocks):
    """Every tensor of the full-size release, in spandrel's layout of it, lands on one of ours with its shape."""
    config = RRDB_PRESETS[preset]
    with torch.device("meta"):
        ours = RRDBNet(config).state_dict()
        theirs = SpandrelRRDB(in_nc=3 * config.unshuffle ** 2, out_nc=3, num_filters=64, num_blocks=blocks,
                              scale=config.scale * config.unshuffle,  # spandrel counts the unshuffle in
                              shuffle_factor=config.unshuffle if config.unshuffle > 1 else None).state_dict()
    converted = convert_rrdbnet(theirs)
    assert set(converted) == set(ours)
    assert all(converted[k].shape == ours[k].shape for k in ours)
    assert architecture(infer_rrdbnet_config(converted)) == architecture(config)
    # the BasicSR release names (RealESRGAN_x4plus.pth is {'params_ema': native names}) are ours as they are
    assert set(convert_rrdbnet({f"params_ema.{k}": v for k, v in ours.items()})) == set(ours)
    assert len(ours) == 2 * (15 * blocks + 1 + 1 + 1 + 1 + len(config.upsample_factors))


@pytest.mark.parametrize("scale", [4, 2])
def test_tiled_upscaling_agrees_with_the_whole_image(scale):
    from utils.nn.tiling import seam_mask

    config = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=8, scale=scale, unshuffle=1 if scale == 4 else 2)
    pipe = ESRGANPipeline(random_rrdbnet(config), config, torch.device("cpu"), torch.float32)
    x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(3))
    whole = pipe.upscale_tensor(x)
    tile, pad = 16, 10
    tiled = pipe.upscale_tensor(x, tile=tile, tile_pad=pad)
    assert tiled.shape == whole.shape == (1, 3, 36 * scale, 44 * scale)
    diff = (tiled - whole).abs()[0].amax(0)
    seams = seam_mask(36, 44, tile, scale, width=2 * scale)
    assert seams.any() and (~seams).any()
    assert diff[~seams].max().item() <= 1e-3
    assert diff[seams].max().item() <= 1e-2


def test_tiles_without_context_show_at_the_seams():
    """The seam test can fail: with no context pixels the seams differ clearly from the whole image."""
    config = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=8)
    pipe = ESRGANPipeline(random_rrdbnet(config), config, torch.device("cpu"), torch.float32)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert (pipe.upscale_tensor(x, tile=16, tile_pad=0) - pipe.upscale_tensor(x)).abs().max() > 1e-2


def test_pipeline_loads_a_release_layout_file_and_upscales(tmp_path):
    config = CONFIGS["x4"]
    net = random_rrdbnet(config, seed=5)
    file = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(to_old_arch(net.state_dict(), config), file)
    pipe = ESRGANPipeline.from_pretrained(file)
    assert pipe.config.num_block == 2 and pipe.scale == 4
    image = Image.new("RGB", (10, 7), (200, 40, 90))
    out = pipe(image=image)
    assert out.images[0].size == (40, 28)
    x = torch.tensor(list(image.getdata()), dtype=torch.float32).view(7, 10, 3).permute(2, 0, 1)[None] / 255
    with torch.no_grad():
        want = net(x).clamp(0, 1)
    got = torch.tensor(list(out.images[0].getdata()), dtype=torch.float32).view(28, 40, 3).permute(2, 0, 1) / 255
    assert (got - want[0]).abs().max() <= 1 / 255 + 1e-6
    assert pipe(image=image, outscale=2).images[0].size == (20, 14)
    assert list(pipe.enhance_image(image).getdata()) == list(out.images[0].getdata())  # the seed's name


def test_pipeline_refuses_weights_of_another_preset(tmp_path):
    config = CONFIGS["x4"]
    file = tmp_path / "small.pth"
    torch.save({"params_ema": random_rrdbnet(config).state_dict()}, file)
    with pytest.raises(UserError, match="realesrgan-x4plus.*num_feat 8 \\(preset: 64\\)"):
        ESRGANPipeline.from_pretrained(file, preset="realesrgan-x4plus")


def test_pipeline_refuses_a_file_that_is_no_rrdbnet(tmp_path):
    file = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1, 1, 3, 3)}, file)
    with pytest.raises(UserError, match="no RRDBNet"):
        ESRGANPipeline.from_pretrained(file)


def test_srgan_native_checkpoint_round_trip(tmp_path):
    from models.gan.esrgan.config import SRRESNET_PRESETS
    from utils.weights import save_native

    pipe = SRGANPipeline.from_pretrained(preset="tiny")
    file = save_native(tmp_path / "generator.safetensors", pipe.generator.state_dict(), SRRESNET_PRESETS["tiny"])
    again = SRGANPipeline.from_pretrained(file)
    image = Image.new("RGB", (8, 6), (10, 120, 240))
    a, b = pipe(image=image), again(image=image)
    assert a.images[0].size == (32, 24)
    assert list(a.images[0].getdata()) == list(b.images[0].getdata())


def test_degradations_shapes_range_and_seed():
    from utils.data.degradations import degrade

    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for order in (0, 1, 2):
        a = degrade(hr, 4, torch.Generator().manual_seed(7), order)
        b = degrade(hr, 4, torch.Generator().manual_seed(7), order)
        assert a.shape == (2, 3, 8, 8) and torch.equal(a, b)
        assert a.min() >= 0 and a.max() <= 1
    second = degrade(hr, 4, torch.Generator().manual_seed(7), 2)
    bicubic = degrade(hr, 4, torch.Generator().manual_seed(7), 0)
    assert (second - bicubic).abs().mean() > 1e-3  # blur, noise and JPEG changed the input


@pytest.mark.parametrize("model", ["srgan", "esrgan"])
def test_one_sr_training_step_updates_both_networks(model):
    """The recipe's step on its own: LR made from the HR batch, G and D both take a step, the terms are logged."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from models.gan.esrgan.training import esrgan_recipe, srgan_recipe
    from utils.gan.recipe import StepContext

    torch.manual_seed(0)
    recipe = (srgan_recipe if model == "srgan" else esrgan_recipe)("tiny")
    G, D = recipe.generator, recipe.discriminator
    before_g = [p.detach().clone() for p in G.parameters()]
    before_d = [p.detach().clone() for p in D.parameters()]
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    log = recipe.train_step(StepContext(step=0, generator=torch.Generator().manual_seed(1), G=G, D=D, opt_g=opt_g,
                                        opt_d=opt_d, accelerator=Accelerator(cpu=True),
                                        settings=SimpleNamespace(loss=recipe.loss), next_batch=lambda: {"image": hr},
                                        device=torch.device("cpu")))
    assert {"loss_d", "loss_g", "pixel", "perceptual", "adversarial"} <= set(log)
    assert all(torch.isfinite(torch.tensor(v)) for v in log.values())
    assert any(not torch.equal(a, b) for a, b in zip(before_g, G.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, D.parameters()))
    grid = recipe.sampler(G)
    assert grid.shape == (6, 3, 32, 32) and grid.min() >= -1 and grid.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["srgan", "esrgan"])
def test_train_gan_trains_a_super_resolution_model(model, tmp_path):
    from train.train_gan import main

    out = tmp_path / model
    main(["--model", model, "--preset", "tiny", "--dataset", "digits", "--steps", "2", "--batch-size", "2",
          "--out", str(out), "--no-progress", "--cpu", "--sample-every", "2", "--ckpt-every", "2"])
    pipe = (SRGANPipeline if model == "srgan" else ESRGANPipeline).from_pretrained(out / "generator.safetensors")
    assert pipe.scale == 4
    assert (out / "samples" / "step_0000002.png").is_file()
    assert "perceptual" in (out / "log.jsonl").read_text()


def test_recipes_use_the_official_losses():
    """ESRGAN: bicubic pairs, relativistic average GAN 5e-3, L1 1e-2; Real-ESRGAN: second order, vanilla GAN 0.1."""
    from models.gan.esrgan.training import ESRGAN_WEIGHTS, REAL_ESRGAN_WEIGHTS
    from utils.gan.losses import get_loss

    assert (ESRGAN_WEIGHTS.pixel, ESRGAN_WEIGHTS.perceptual, ESRGAN_WEIGHTS.adversarial) == (1e-2, 1.0, 5e-3)
    assert ESRGAN_WEIGHTS.gan_loss == "ragan" and get_loss("ragan").relativistic and ESRGAN_WEIGHTS.degradation_order == 0
    assert (REAL_ESRGAN_WEIGHTS.pixel, REAL_ESRGAN_WEIGHTS.perceptual, REAL_ESRGAN_WEIGHTS.adversarial) == (1.0, 1.0, 0.1)
    assert REAL_ESRGAN_WEIGHTS.gan_loss == "non_saturating" and REAL_ESRGAN_WEIGHTS.degradation_order == 2
    assert REAL_ESRGAN_WEIGHTS.usm_target


def test_realesrnet_psnr_stage_trains_the_generator_alone_for_a_few_steps():
    """Real-ESRNet: L1 only against the USM crop, Adam 2e-4, the discriminator never steps."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from models.gan.esrgan.training import REAL_ESRNET_WEIGHTS, esrgan_recipe
    from utils.gan.recipe import StepContext

    assert (REAL_ESRNET_WEIGHTS.perceptual, REAL_ESRNET_WEIGHTS.adversarial) == (0.0, 0.0)
    torch.manual_seed(0)
    recipe = esrgan_recipe("tiny", psnr=True)
    assert recipe.lr_g == 2e-4 and recipe.steps == 200
    G, D = recipe.generator, recipe.discriminator
    before_d = [p.detach().clone() for p in D.parameters()]
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 2e-3), torch.optim.Adam(D.parameters(), 2e-3)
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    pixel = []
    for step in range(4):
        log = recipe.train_step(StepContext(step=step, generator=torch.Generator().manual_seed(1), G=G, D=D,
                                            opt_g=opt_g, opt_d=opt_d, accelerator=Accelerator(cpu=True),
                                            settings=SimpleNamespace(loss=recipe.loss),
                                            next_batch=lambda: {"image": hr}, device=torch.device("cpu")))
        assert set(log) == {"loss_d", "loss_g", "pixel"} and log["loss_g"] == log["pixel"]
        pixel.append(log["pixel"])
    assert pixel[-1] < pixel[0]                       # the same pair each step: L1 goes down
    assert all(torch.equal(a, b) for a, b in zip(before_d, D.parameters()))


def test_esrgan_weights_train_a_step_with_the_relativistic_loss():
    """ESRGAN's recipe (ragan, bicubic pairs) on a tiny RRDBNet with the VGG-style D: both networks step."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from models.gan.esrgan.config import RRDBNetConfig
    from models.gan.esrgan.training import ESRGAN_WEIGHTS, sr_recipe
    from utils.gan.recipe import StepContext

    torch.manual_seed(0)
    cfg = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=4, d_features=8, hr_size=32, discriminator="vgg")
    recipe = sr_recipe(cfg, ESRGAN_WEIGHTS, tiny=True, batch_size=2, steps=2)
    assert recipe.loss == "ragan"
    G, D = recipe.generator, recipe.discriminator
    before_d = [p.detach().clone() for p in D.parameters()]
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3)
    hr = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    log = recipe.train_step(StepContext(step=0, generator=torch.Generator().manual_seed(1), G=G, D=D, opt_g=opt_g,
                                        opt_d=opt_d, accelerator=Accelerator(cpu=True),
                                        settings=SimpleNamespace(loss=recipe.loss), next_batch=lambda: {"image": hr},
                                        device=torch.device("cpu")))
    assert all(torch.isfinite(torch.tensor(v)) for v in log.values()) and log["adversarial"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before_d, D.parameters()))


def test_multi_layer_perceptual_loss_is_the_weighted_sum_of_its_taps():
    """Real-ESRGAN's VGG loss: 0.1 conv1_2 + 0.1 conv2_2 + conv3_4 + conv4_4 + conv5_4 (pre-ReLU, L1)."""
    import torch.nn.functional as F

    from models.gan.esrgan.training import REAL_ESRGAN_LAYERS
    from utils.gan.perceptual import LAYER_INDEX, VGGPerceptualLoss

    torch.manual_seed(0)
    multi = VGGPerceptualLoss(pretrained=False, width=0.125, layer_weights=dict(REAL_ESRGAN_LAYERS))
    sr, hr = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    want = 0.0
    for name, w in REAL_ESRGAN_LAYERS:
        single = VGGPerceptualLoss(layer=name, pretrained=False, width=0.125)
        single.features.load_state_dict({k: v for k, v in multi.features.state_dict().items()
                                         if int(k.split(".")[0]) <= LAYER_INDEX[name]})
        assert isinstance(single.features[-1], torch.nn.Conv2d)           # before ReLU
        want += w * single(sr, hr).item()
    assert abs(multi(sr, hr).item() - want) < 1e-5 * max(1.0, want)
    assert len(multi.features) == LAYER_INDEX["conv5_4"] + 1
