"""CycleGAN: the original release's layouts, 30x30 PatchGAN, image pool, loading and translating folders."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.gan.cyclegan import PRESETS, CycleGANPipeline, ImagePool, PatchDiscriminator, ResnetGenerator
from models.gan.cyclegan.config import CycleGANConfig
from models.gan.cyclegan.convert import infer_generator_config
from models.gan.cyclegan.data import digits_domains, unpaired_dataset
from utils.errors import ConversionError, UserError
from tests.helpers.images import signed

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "cyclegan_keys.json").read_text())


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("preset, key", [("resnet-9blocks", "G_resnet_9blocks"), ("resnet-6blocks", "G_resnet_6blocks")])
def test_original_generator_layout_at_full_size(preset, key):
    official = FIXTURE[key]
    with torch.device("meta"):
        g = ResnetGenerator(PRESETS[preset])
    assert _shapes(g) == official
    config = infer_generator_config({k: torch.empty(s, device="meta") for k, s in official.items()})
    assert (config.n_blocks, config.ngf, config.in_channels, config.out_channels) == (PRESETS[preset].n_blocks, 64, 3, 3)


def test_original_patchgan_layout_and_30x30_output_at_256():
    with torch.device("meta"):
        d = PatchDiscriminator(PRESETS["resnet-9blocks"])
    assert _shapes(d) == FIXTURE["D_basic"]
    small = PatchDiscriminator(CycleGANConfig(ndf=4))  # the map's size does not depend on the width
    with torch.no_grad():
        assert small(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)


def test_patchgan_receptive_field_is_70():
    """An output pixel depends on a 70x70 input window: the gradient of one logit is zero outside it.

    (Instance norm's statistics span the whole image, so it is switched off to see the convolutions' window.)
    """
    d = PatchDiscriminator(CycleGANConfig(ndf=4))
    for i, m in enumerate(d.model):
        if isinstance(m, torch.nn.InstanceNorm2d):
            d.model[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 256, 256, requires_grad=True)
    d(x)[0, 0, 15, 15].backward()
    ys, xs = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    assert ys.max() - ys.min() + 1 == 70 and xs.max() - xs.min() + 1 == 70


def test_image_pool_statistics():
    pool = ImagePool(50, (1, 1, 1))
    gen = torch.Generator().manual_seed(0)
    first = torch.arange(50, dtype=torch.float32).reshape(50, 1, 1, 1)
    torch.testing.assert_close(pool.query(first, gen), first)  # filling: every image comes back as is
    assert int(pool.count) == 50 and pool.images.shape == (50, 1, 1, 1)
    current, stored = 0, set(range(50))
    n = 4000
    for i in range(n):
        img = torch.full((1, 1, 1, 1), 1000.0 + i)
        out = float(pool.query(img, gen))
        if out == 1000.0 + i:
            current += 1
        else:  # an older image came back and the new one took its place
            assert out in stored
            stored.remove(out)
            stored.add(1000.0 + i)
        assert int(pool.count) == 50 and set(pool.images.flatten().tolist()) == stored
    assert abs(current / n - 0.5) < 0.03  # the current image with probability 1/2
    assert torch.equal(ImagePool(0, (1, 1, 1)).query(first), first)  # pool_size 0 disables it


def _save_original(tmp_path: Path, config: CycleGANConfig) -> ResnetGenerator:
    """A latest_net_G_A.pth as an old release wrote it: DataParallel prefix and InstanceNorm statistics."""
    torch.manual_seed(0)
    ref = ResnetGenerator(config).eval()
    for p in ref.parameters():
        p.data.normal_(0, 0.1)
    sd = {f"module.{k}": v for k, v in ref.state_dict().items()}
    sd["module.model.2.running_mean"] = torch.zeros(config.ngf)
    sd["module.model.2.running_var"] = torch.ones(config.ngf)
    torch.save(sd, tmp_path / "latest_net_G_A.pth")
    return ref


def test_original_checkpoint_loads_and_translates(tmp_path):
    config = PRESETS["tiny"]
    ref = _save_original(tmp_path, config)
    pipe = CycleGANPipeline.from_pretrained(str(tmp_path / "latest_net_G_A.pth"), device="cpu")
    assert pipe.config.n_blocks == 1 and pipe.config.ngf == 4
    img = Image.fromarray((np.random.default_rng(0).random((24, 20, 3)) * 255).astype(np.uint8))
    out = pipe(image=img)
    assert out.images[0].size == (20, 24)
    from utils.data.augmentations import to_tensor

    with torch.no_grad():
        torch.testing.assert_close(signed(out)[0], ref(to_tensor(img)[None])[0], rtol=0, atol=1e-6)
    assert pipe(image=img, size=32).images[0].size == (32, 32)
    with pytest.raises(UserError, match="multiple of 4"):
        pipe(image=img, size=30)
    with pytest.raises(UserError, match="pass image="):
        pipe()
    torch.save({"model.0.weight": torch.zeros(3)}, tmp_path / "bad.pth")
    with pytest.raises(ConversionError, match="no CycleGAN ResNet generator"):
        CycleGANPipeline.from_pretrained(str(tmp_path / "bad.pth"))


def test_translate_folder_cli_and_facade(tmp_path):
    _save_original(tmp_path, PRESETS["tiny"])
    src = tmp_path / "testA"
    src.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(src / f"img{i}.jpg")
    from inference.translate_image import main

    main(["--model", "cyclegan", "--weights", str(tmp_path / "latest_net_G_A.pth"), "--input", str(src),
          "--out", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png", "img2.png"]
    res = subprocess.run([sys.executable, str(ROOT / "inference" / "translate_image.py"), "--input", "/no/such"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and "--input not found" in res.stderr and "Traceback" not in res.stderr

    import models

    out = models.generate("gan", "cyclegan", weights=str(tmp_path / "latest_net_G_A.pth"), image=str(src), seed=0)
    written = Image.open(tmp_path / "out" / "img1.png")
    assert len(out.images) == 3 and np.array_equal(np.asarray(out.images[1]), np.asarray(written))
    assert len(models.generate("gan", "cyclegan", preset="tiny", image=str(src / "img0.jpg"))) == 1


def test_native_training_file_runs_both_directions(tmp_path):
    from models.gan.cyclegan import CycleGenerators
    from utils.weights import save_native

    config = PRESETS["tiny"]
    torch.manual_seed(0)
    both = CycleGenerators(config).eval()
    save_native(tmp_path / "generator.safetensors", both.state_dict(), config)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for direction, net in (("AtoB", both.G_A), ("BtoA", both.G_B)):
        pipe = CycleGANPipeline.from_pretrained(str(tmp_path / "generator.safetensors"), direction=direction)
        with torch.no_grad():
            torch.testing.assert_close(signed(pipe(image=x))[0], net(x)[0])


def test_builtin_unpaired_digits_and_folder_layout(tmp_path):
    a, b = digits_domains(32)
    assert a.shape[1:] == (3, 32, 32) and b.shape[1:] == (3, 32, 32)
    assert a[:, 0].equal(a[:, 1])  # A is grey: white strokes on black
    assert b.mean() > a.mean() and (b[:, 2] - b[:, 0]).abs().mean() > 0.05  # B: coloured ink on light paper
    ds = unpaired_dataset("digits-ink", 32)
    item = ds[0]
    assert set(item) == {"image", "image_b"} and len(ds) == max(len(ds.a), len(ds.b))
    with pytest.raises(UserError, match="trainB"):
        (tmp_path / "trainA").mkdir()
        unpaired_dataset(str(tmp_path), 32)
    (tmp_path / "trainB").mkdir()
    for d, n in (("trainA", 3), ("trainB", 2)):
        for i in range(n):
            Image.fromarray(np.full((40, 50, 3), 30 * i, np.uint8)).save(tmp_path / d / f"{i}.png")
    ds = unpaired_dataset(str(tmp_path), 32)
    assert len(ds) == 3 and ds[2]["image"].shape == (3, 32, 32) and ds[2]["image_b"].shape == (3, 32, 32)
