"""inference/upscale.py: files and folders, release-layout weights, tiling, and one-line errors."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from inference.upscale import main


def test_tiny_preset_upscales_one_file_and_a_folder(tmp_path, capsys):
    Image.new("RGB", (12, 10), (200, 30, 60)).save(tmp_path / "in.png")
    main(["--model", "esrgan", "--preset", "tiny", "--image", str(tmp_path / "in.png"), "--out", str(tmp_path / "o.png")])
    assert Image.open(tmp_path / "o.png").size == (48, 40)
    assert "upscaled 1 image(s) x4" in capsys.readouterr().out

    folder = tmp_path / "photos"
    folder.mkdir()
    for name, size in (("a.png", (8, 8)), ("b.jpg", (6, 9))):
        Image.new("RGB", size, (10, 90, 20)).save(folder / name)
    main(["--model", "srgan", "--preset", "tiny", "--image", str(folder), "--out", str(tmp_path / "big"),
          "--tile", "4", "--outscale", "2"])
    assert Image.open(tmp_path / "big" / "a.png").size == (16, 16)
    assert Image.open(tmp_path / "big" / "b.png").size == (12, 18)


def test_release_layout_weights_and_tiles_match_the_whole_image(tmp_path):
    from models.gan.esrgan.config import RRDBNetConfig
    from models.gan.esrgan.convert import to_old_arch
    from models.gan.esrgan.model import RRDBNet

    config = RRDBNetConfig(num_feat=8, num_block=1, num_grow_ch=8)
    torch.manual_seed(0)
    torch.save(to_old_arch(RRDBNet(config).state_dict(), config), tmp_path / "community.pth")
    Image.effect_noise((40, 40), 60).convert("RGB").save(tmp_path / "in.png")
    args = ["--weights", str(tmp_path / "community.pth"), "--image", str(tmp_path / "in.png")]
    main(args + ["--out", str(tmp_path / "whole.png")])
    main(args + ["--out", str(tmp_path / "tiled.png"), "--tile", "16", "--tile-pad", "24"])
    whole = torch.tensor(list(Image.open(tmp_path / "whole.png").getdata()), dtype=torch.float32)
    tiled = torch.tensor(list(Image.open(tmp_path / "tiled.png").getdata()), dtype=torch.float32)
    assert whole.shape == (160 * 160, 3)
    assert (whole - tiled).abs().max() <= 1  # context wider than the receptive field: only rounding differs


@pytest.mark.parametrize("extra,message", [
    (["--tile", "-1"], "--tile must be 0 or more"),
    (["--outscale", "0"], "--outscale must be in (0, 16]"),
    (["--model", "dcgan"], "dcgan does not upscale images"),
    (["--preset", "realesrgan-x8"], "realesrgan-x8"),
])
def test_mistakes_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    Image.new("RGB", (8, 8)).save(tmp_path / "in.png")
    with pytest.raises(SystemExit) as err:
        main(["--model", "esrgan", "--preset", "tiny", "--image", str(tmp_path / "in.png"),
              "--out", str(tmp_path / "o.png"), *extra])
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "o.png").exists()


def test_a_folder_input_needs_a_folder_out(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "a.png")
    with pytest.raises(SystemExit):
        main(["--preset", "tiny", "--image", str(tmp_path / "imgs"), "--out", str(tmp_path / "o.png")])
    assert "--out must be a folder" in capsys.readouterr().err
