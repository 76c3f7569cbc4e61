"""CycleGAN's released presets (junyanz's pretrained generators) and the batch mode of translate_image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from models.gan.cyclegan import CycleGANPipeline
from models.gan.cyclegan.config import PRESETS
from models.gan.cyclegan.model import ResnetGenerator
from models.registry import get_spec


def save_release(path, seed: int = 0) -> ResnetGenerator:
    """A <name>.pth as download_cyclegan_model.sh fetches it: a bare generator state dict (tiny widths here)."""
    torch.manual_seed(seed)
    net = ResnetGenerator(PRESETS["tiny"]).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net


def test_released_presets_are_registered_with_their_urls():
    spec = get_spec("gan", "cyclegan")
    for name in ("horse2zebra", "monet2photo", "summer2winter_yosemite", "style_vangogh"):
        assert spec.check_preset(name) == name
        w = spec.weights_for(name)
        assert w.source == f"http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
        assert PRESETS[name] == PRESETS["resnet-9blocks"]


def test_a_released_preset_loads_from_the_torch_hub_cache(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    net = save_release(Path(torch.hub.get_dir()) / "checkpoints" / "monet2photo.pth")
    pipe = CycleGANPipeline.from_pretrained(preset="monet2photo")
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(pipe.generator(x), net(x), atol=1e-6)


def test_a_released_preset_offline_and_uncached_says_where_it_comes_from(tmp_path, monkeypatch, capsys):
    from inference.translate_image import main

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as err:
        main(["--preset", "horse2zebra", "--input", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "horse2zebra.pth" in message and len(message.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_batch_mode_equals_one_image_at_a_time(tmp_path):
    from inference.translate_image import main

    net = save_release(tmp_path / "g.pth", seed=3)
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i, size in enumerate([(16, 16), (16, 16), (20, 12), (16, 16), (20, 12)]):
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(src / f"p{i}.png")
    pipe = CycleGANPipeline.from_pretrained(tmp_path / "g.pth")
    batched = pipe(image=str(src), batch_size=3)
    single = pipe(image=str(src), batch_size=1)
    assert [im.size for im in batched.images] == [(16, 16), (16, 16), (20, 12), (16, 16), (20, 12)]
    for a, b in zip(batched.images, single.images):
        assert np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1
    main(["--weights", str(tmp_path / "g.pth"), "--input", str(src), "--out", str(tmp_path / "out"),
          "--batch-size", "2"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"p{i}.png" for i in range(5)]
    written = np.asarray(Image.open(tmp_path / "out" / "p2.png"), np.int16)
    assert np.abs(written - np.asarray(single.images[2], np.int16)).max() <= 1
    assert net is not None
