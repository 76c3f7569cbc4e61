"""evaluate/lpips_score.py end to end against the `lpips` package: its random AlexNet backbone, written as a
torchvision-layout checkpoint and passed by path, and the calibrated heads it ships; one-line errors."""
from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import lpips

from utils.metrics.lpips import convert_lpips_state_dict


@pytest.fixture
def reference(tmp_path):
    """(the lpips package's LPIPS-alex with a random backbone, that backbone as a torchvision checkpoint)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        ref = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    features = {k: v for k, v in convert_lpips_state_dict(ref.state_dict()).items() if k.startswith("features.")}
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(features, path)  # torchvision's key names (features.{i}.weight), its classifier left out
    return ref, path


def _pair_folders(tmp_path, names=("a.png", "b.png", "sub/c.png"), sizes=None):
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        h, w = (sizes or {}).get(name, (40, 48))
        for side, suffix in (("x", ".png"), ("y", ".jpg" if name == "b.png" else ".png")):  # b pairs across formats
            path = (tmp_path / side / name).with_suffix(suffix)
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=100)
    return tmp_path / "x", tmp_path / "y"


def _tensor(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def test_matches_the_lpips_package(tmp_path, reference, call_script):
    ref, backbone = reference
    x, y = _pair_folders(tmp_path, sizes={"sub/c.png": (36, 36)})  # mixed sizes batch separately
    code, out, err = call_script("lpips_score", x, y, "--backbone-weights", backbone, "--device", "cpu", "--quiet",
                                 "--batch-size", "2", "--per-image", tmp_path / "lpips.csv")
    assert code == 0, err
    with open(tmp_path / "lpips.csv", newline="") as f:
        rows = {r["file"]: float(r["lpips"]) for r in csv.DictReader(f)}
    assert sorted(rows) == ["a.png", "b.png", "sub/c.png"]
    with torch.no_grad():
        expected = {"a.png": ref(_tensor(x / "a.png"), _tensor(y / "a.png")).item(),
                    "b.png": ref(_tensor(x / "b.png"), _tensor(y / "b.jpg")).item(),
                    "sub/c.png": ref(_tensor(x / "sub/c.png"), _tensor(y / "sub/c.png")).item()}
    for name, value in rows.items():
        assert abs(value - expected[name]) < 1e-5, name
    assert out.strip() == f"LPIPS (alex): {np.mean([rows[n] for n in sorted(rows)]):.4f} (mean over 3 pairs)"


def test_bad_inputs_are_one_line(tmp_path, reference, call_script, one_line_error):
    _, backbone = reference
    x, y = _pair_folders(tmp_path)
    w = ["--backbone-weights", backbone, "--device", "cpu", "--quiet"]
    Image.new("RGB", (8, 8)).save(y / "extra.png")
    one_line_error(*call_script("lpips_score", x, y, *w)[::2], "do not pair up", "0 images only in", "1 only in",
                   "extra.png")
    (y / "extra.png").unlink()
    Image.new("RGB", (8, 8)).save(y / "a.png")  # now y has a.png twice over (a.png) and the size differs
    Image.new("RGB", (8, 8)).save(x / "a.jpg")
    one_line_error(*call_script("lpips_score", x, y, *w)[::2], "share a name", "a.jpg", "a.png")
    (x / "a.jpg").unlink()
    one_line_error(*call_script("lpips_score", x, y, *w)[::2], "a.png is 48x40", "is 8x8", "same size")
    for args, fragments in [
        ((tmp_path / "nowhere", y, *w), ["folder not found", "nowhere"]),
        ((x, backbone, *w), ["is a file, not a folder"]),
        ((x, tmp_path / "empty", *w), ["folder not found"]),
        ((x, y, "--backbone-weights", tmp_path / "no.pth"), ["backbone weights not found", "no.pth"]),
        ((x, y, "--device", "cpu"), ["not in", "offline", "alexnet-owt-7be5be79.pth", "--backbone-weights PATH"]),
        ((x, y, *w, "--batch-size", "0"), ["--batch-size: must be at least 1"]),
        ((x, y, *w, "--per-image", tmp_path / "o.json"), ["--per-image needs a .csv"]),
    ]:
        one_line_error(*call_script("lpips_score", *args)[::2], *fragments)
    (tmp_path / "empty").mkdir()
    one_line_error(*call_script("lpips_score", x, tmp_path / "empty", *w)[::2], "no images in")
    assert not list(tmp_path.glob("*.csv"))


def test_help_is_complete_and_the_file_runs_from_anywhere(run_script):
    res = run_script("lpips_score", "--help")
    text = " ".join(res.stdout.split())
    assert res.returncode == 0, res.stderr
    assert all(k in text for k in ("folder_a", "folder_b", "--net", "--backbone-weights", "--heads", "--device",
                                   "--batch-size", "--per-image", "same size"))
