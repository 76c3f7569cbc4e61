"""generate_image.py as a user runs it: the bare command, seeds, and one-line errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "inference" / "generate_image.py"


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True, cwd=cwd)


def test_bare_command_writes_a_digit_grid_offline(tmp_path):
    res = _run(cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "outputs" / "images" / "dcgan_digits_seed0.png"
    grid = Image.open(out)
    assert grid.size == (4 * 32 + 5 * 2,) * 2  # 16 digits of 32x32 in a 4x4 grid


def test_same_seed_same_image(tmp_path):
    for name, seed in (("a.png", "5"), ("b.png", "5"), ("c.png", "6")):
        assert _run("--seed", seed, "--prompt", "3", "--num-images", "4", "--out", name, cwd=tmp_path).returncode == 0
    a, b, c = ((tmp_path / n).read_bytes() for n in ("a.png", "b.png", "c.png"))
    assert a == b and a != c


@pytest.mark.parametrize("argv, message", [
    (["--model", "no_such_model"], "unknown model 'no_such_model'"),
    (["--model", "dcgn"], "did you mean: dcgan"),
    (["--preset", "huge"], "no preset 'huge'"),
    (["--weights", "missing/file.safetensors"], "weights not found"),
    (["--weights", "./nope.pt"], "weights not found"),
    (["--prompt", "cat"], "'cat' is not a class"),
    (["--height", "100"], "generates 32x32 images"),
    (["--out", "x.txt"], "--out must end in"),
    (["--num-images", "0"], "at least 1"),
    (["--device", "cuda:7"], "no CUDA GPU"),
    (["--dtype", "fp12"], "unknown dtype"),
    (["--image", "nope.png"], "--image file not found"),
])
def test_user_errors_are_one_line_exit_2_no_output(tmp_path, monkeypatch, capsys, argv, message):
    """In-process (the same main() the script runs), so the many cases stay fast."""
    from inference.generate_image import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([*argv] if "--out" in argv else [*argv, "--out", "out.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and message in err, err
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "no partial output on error"


def test_unknown_model_as_a_user_runs_it(tmp_path):
    res = _run("--model", "no_such_model", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert "unknown model 'no_such_model'" in res.stderr and "dcgan" in res.stderr


def test_options_a_model_does_not_take_are_refused_before_loading(tmp_path, monkeypatch, capsys):
    from inference.generate_image import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--model", "biggan", "--guidance", "3", "--out", "x.png"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "biggan does not take --guidance" in err
    assert not (tmp_path / "x.png").exists()


def test_biggan_prompt_is_a_class_name(tmp_path, monkeypatch):
    from inference.generate_image import main

    monkeypatch.chdir(tmp_path)
    main(["--model", "biggan", "--preset", "tiny", "--prompt", "3", "--num-images", "2", "--out", "b.png"])
    assert Image.open(tmp_path / "b.png").size[0] > 0
