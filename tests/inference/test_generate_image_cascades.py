"""generate_image.py with the Imagen and DALL-E 3 stand-ins (tiny presets, in process): --stages, --fast and
--decoder reach the pipelines; a blocklisted prompt exits 3 with one line and writes nothing."""
from __future__ import annotations

import pytest
from PIL import Image

from inference.generate_image import main


def test_blocklisted_prompt_exits_3_with_one_line_and_no_file(tmp_path, capsys):
    out = tmp_path / "refused.png"
    with pytest.raises(SystemExit) as ended:
        main(["--model", "dalle3", "--preset", "tiny", "--prompt", "a n.u.d.e figure", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert ended.value.code == 3
    assert len(err.splitlines()) == 1 and "blocked" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_dalle3_fast_mode_writes_the_image_and_prints_the_rewritten_prompt(tmp_path, capsys):
    out = tmp_path / "fox.png"
    main(["--model", "dalle3", "--preset", "tiny", "--prompt", "a red fox", "--fast", "--decoder", "consistency",
          "--out", str(out)])
    printed = capsys.readouterr().out
    assert Image.open(out).size == (32, 32)
    assert "prompt as rewritten: A red fox. A detailed" in printed


def test_imagen_stages_flag_picks_the_last_stage(tmp_path):
    out = tmp_path / "stage1.png"
    main(["--model", "imagen", "--preset", "tiny", "--prompt", "a red fox", "--stages", "1", "--steps", "2",
          "--out", str(out)])
    assert Image.open(out).size == (16, 16)  # the tiny stage I's 16 px (64 px at full size)
    with pytest.raises(SystemExit) as ended:
        main(["--model", "sdxl", "--preset", "tiny", "--stages", "2", "--out", str(tmp_path / "x.png")])
    assert ended.value.code == 2 and not (tmp_path / "x.png").exists()
