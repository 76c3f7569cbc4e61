"""fid_score / inception_score with --resize none on images under Inception's 75 px: one line, exit 2, before
the network loads (before: a traceback from the stem's convolutions)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from utils.errors import UserError
from utils.metrics.inception import MIN_SIDE, FIDInceptionV3


@pytest.mark.parametrize("script", ["fid_score", "inception_score"])
def test_small_images_with_resize_none_are_one_line(script, tmp_path, capsys):
    import importlib

    folder = tmp_path / "small"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (32, 40), (i * 90, 10, 10)).save(folder / f"{i}.png")
    paths = [str(folder), str(folder)] if script == "fid_score" else [str(folder)]
    main = importlib.import_module(f"evaluate.{script}").main
    with pytest.raises(SystemExit) as exc:
        main([*paths, "--resize", "none", "--weights", str(tmp_path / "never_read.pth")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "smaller than the 75x75" in err and "0.png" in err, err
    assert "40x32" in err  # height x width


def test_the_network_refuses_small_tensors_in_one_line():
    with torch.device("meta"):
        net = FIDInceptionV3(resize="none")
    with pytest.raises(UserError, match=f"smaller than the {MIN_SIDE}x{MIN_SIDE}"):
        net(torch.zeros(1, 3, 64, 80, device="meta"))
