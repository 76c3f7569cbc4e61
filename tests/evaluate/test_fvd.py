"""FVD: our I3D against piergiaj/pytorch-i3d's on a golden output, identical sets give ~0 and a time-shuffled copy
more, evaluate/fvd.py end to end on folders of videos with a tiny random I3D from a local file, one-line errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from utils.data.moving_shapes import MovingShapes
from utils.metrics.fvd import fvd, shuffle_time
from utils.metrics.i3d import I3DConfig, InceptionI3d, load_i3d

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "i3d"
sys.path.insert(0, str(FIXTURES))
from seeded_i3d import seeded_input, seeded_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def tiny_i3d_file(tmp_path_factory) -> Path:
    """A random I3D at 1/16 of the release's width, saved in the piergiaj layout (a plain .pt state dict)."""
    model = InceptionI3d(I3DConfig(width_div=16))
    sd = seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()})
    path = tmp_path_factory.mktemp("i3d") / "i3d_pretrained_400.pt"
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, path)
    return path


def _clips(n: int = 6, frames: int = 16, size: int = 32) -> torch.Tensor:
    shapes = MovingShapes(num_clips=n, num_frames=frames, size=(size, size), seed=5)
    return torch.stack([(shapes[i]["video"] + 1) / 2 for i in range(n)])


@pytest.mark.slow  # the full-size I3D on a 16 x 224 x 224 clip
def test_the_release_network_on_a_golden_output():
    model = InceptionI3d().eval()
    model.load_state_dict(seeded_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}))
    with torch.no_grad():
        got = model(seeded_input())
    assert (got - load_file(str(FIXTURES / "golden.safetensors"))["logits"]).abs().max() <= 1e-4


def test_identical_sets_give_zero_and_a_time_shuffled_copy_more(tiny_i3d_file):
    model = load_i3d(tiny_i3d_file)
    assert model.config.width_div == 16  # read from the file's shapes
    videos = _clips()
    same = fvd(videos, videos.clone(), model, size=32)
    shuffled = fvd(videos, shuffle_time(videos, torch.Generator().manual_seed(0)), model, size=32)
    assert abs(same) < 1e-3
    assert shuffled > 100 * max(abs(same), 1e-6)


def _write_set(folder: Path, videos: torch.Tensor) -> Path:
    from utils.visualization.video import write_video
    from utils.visualization.grid import to_pil

    folder.mkdir(parents=True)
    for i, v in enumerate(videos):
        write_video(to_pil(v, value_range=(0.0, 1.0)), folder / f"clip{i}.gif", fps=8)
    return folder


@pytest.mark.slow  # three passes of the tiny I3D at the 224-pixel input of the command line
def test_the_command_line_on_folders_and_statistics(tiny_i3d_file, tmp_path, capsys):
    from evaluate.fvd import main

    videos = _clips(n=4, frames=16, size=24)
    real = _write_set(tmp_path / "real", videos)
    fake = _write_set(tmp_path / "fake", shuffle_time(videos, torch.Generator().manual_seed(1)))
    assert main([str(real), "--save-stats", str(tmp_path / "real.npz"), "--i3d", str(tiny_i3d_file)]) == 0
    stats = np.load(tmp_path / "real.npz")
    assert stats["mu"].shape == (400,) and stats["sigma"].shape == (400, 400)
    capsys.readouterr()
    assert main([str(tmp_path / "real.npz"), str(real), "--i3d", str(tiny_i3d_file)]) == 0
    same = float(capsys.readouterr().out.split("FVD:")[1])
    assert main([str(tmp_path / "real.npz"), str(fake), "--i3d", str(tiny_i3d_file)]) == 0
    other = float(capsys.readouterr().out.split("FVD:")[1])
    assert abs(same) < 1e-2 < other


def test_user_mistakes_are_one_line_errors(tmp_path, capsys):
    from evaluate.fvd import main

    for argv, fragment in (([str(tmp_path / "none"), str(tmp_path)], "not found"),
                           ([str(tmp_path)], "two sets"),
                           ([str(tmp_path), str(tmp_path), "--i3d", str(tmp_path / "missing.pt")], "I3D weights")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and fragment in err, err
