"""Frame consistency: open_clip's own embeddings give the score, a still video scores 100 and a shuffled one less;
evaluate/frame_consistency.py on a folder of videos with a random-weight open_clip folder; one-line errors."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip.model import CLIP
from safetensors.torch import save_file

CONFIG = {"model_cfg": {"embed_dim": 16,
                        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
                        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}},
          "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    (folder / "open_clip_config.json").write_text(json.dumps(CONFIG))
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in CLIP(**CONFIG["model_cfg"]).state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return folder


def _frames(seed: int, n: int = 5):
    from utils.data.moving_shapes import moving_shapes
    from utils.visualization.grid import to_pil

    frames, _ = moving_shapes(seed, n, (32, 32))
    return to_pil(frames, value_range=(0.0, 1.0))


def test_scores_match_open_clip_and_order_matters(clip_folder):
    from utils.metrics.clip_score import CLIPScorer
    from utils.metrics.frame_consistency import frame_consistency

    scorer = CLIPScorer(clip_folder, None, "cpu")
    frames = _frames(0)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_folder}")
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.eval().encode_image(torch.stack([preprocess(f) for f in frames])), dim=-1)
    expected = float(100 * (e[1:] * e[:-1]).sum(-1).mean())
    mean, per = frame_consistency([frames, [frames[0]] * 5], scorer)
    assert abs(per[0] - expected) < 1e-4
    assert abs(per[1] - 100) < 1e-3 and per[0] < per[1] and abs(mean - (per[0] + per[1]) / 2) < 1e-6


def test_the_command_line(clip_folder, tmp_path, capsys):
    from evaluate.frame_consistency import main
    from utils.visualization.video import write_video

    clips = tmp_path / "clips"
    clips.mkdir()
    for i in range(2):
        write_video(_frames(i), clips / f"c{i}.gif", fps=8)
    assert main([str(clips), "--model", str(clip_folder), "--per-video", str(tmp_path / "s.csv")]) == 0
    assert "frame consistency (2 video(s)" in capsys.readouterr().out
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "file,score" and len(rows) == 3
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path / "nothing.mp4"), "--model", str(clip_folder)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "not found" in err
