"""generate_video.py --model luma_dream --camera and train_video.py --model luma_dream --camera on the tiny
preset: a short adapter training run from the command line (--camera names what luma_dream trains), a clip generated with its adapter, and the bad
inputs of issue 13 (unknown camera preset, malformed camera JSON, no adapter): one line, exit 2, nothing
written."""
from __future__ import annotations

import pytest

from utils.errors import cli_errors


def _gen(argv):
    from inference.generate_video import main

    return main(["--model", "luma_dream", "--preset", "tiny", "--steps", "2", "--no-progress", *argv])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from train.train_video import main

    out = tmp_path_factory.mktemp("camera_run")
    assert main(["--model", "luma_dream", "--camera", "--steps", "2", "--num-clips", "2", "--num-frames", "5",
                 "--height", "16", "--width", "16", "--batch-size", "2", "--out", str(out), "--no-progress"]) == 0
    assert (out / "camera_adapter.safetensors").is_file() and (out / "log.jsonl").is_file()
    return out / "camera_adapter.safetensors"


def test_generate_with_a_camera_preset_and_a_json_path(adapter, tmp_path, monkeypatch, capsys):
    from models.video_generation.luma_dream.camera import preset_cameras, save_camera_path

    monkeypatch.chdir(tmp_path)
    assert _gen(["--prompt", "a scene", "--camera", "orbit", "--camera-adapter", str(adapter), "--num-frames", "5",
                 "--height", "16", "--width", "16", "--camera-scale", "4", "--out", "orbit.gif"]) == 0
    assert (tmp_path / "orbit.gif").is_file()
    save_camera_path(tmp_path / "path.json", preset_cameras("dolly-in", 3, 16, 16))
    assert _gen(["--prompt", "a scene", "--camera", "path.json", "--camera-adapter", str(adapter), "--num-frames", "5",
                 "--height", "16", "--width", "16", "--out", "dolly.gif"]) == 0
    assert (tmp_path / "dolly.gif").is_file()
    assert "5 frames" in capsys.readouterr().out


def test_bad_camera_inputs_are_one_line_exit_2_nothing_written(adapter, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text('{"frames": [{"camera_to_world": [[1, 0, 0, 0]]}]}')
    (tmp_path / "notjson.json").write_text("{frames: ")
    cases = [
        (["--camera", "sideways", "--camera-adapter", str(adapter)], "unknown camera preset 'sideways'"),
        (["--camera", "broken.json", "--camera-adapter", str(adapter)], "broken.json: frames[0].camera_to_world"),
        (["--camera", "notjson.json", "--camera-adapter", str(adapter)], "notjson.json is not valid JSON"),
        (["--camera", "orbit", "--camera-adapter", "none.safetensors"], "needs a camera adapter"),
        (["--camera-adapter", str(adapter)], "give --camera too"),
        (["--camera", "orbit", "--camera-adapter", str(adapter), "--camera-scale", "-2"], "--camera-scale must be >= 0"),
    ]
    for argv, message in cases:
        before = set(tmp_path.iterdir())
        with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
            _gen(["--prompt", "a scene", "--num-frames", "5", "--height", "16", "--width", "16", *argv,
                  "--out", "bad.mp4"])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, (argv, err)
        assert set(tmp_path.iterdir()) == before
    from inference.generate_video import main

    with pytest.raises(SystemExit) as exc, cli_errors("generate_video.py"):
        main(["--model", "sora", "--preset", "tiny", "--prompt", "x", "--camera", "orbit"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "luma_dream's" in err


def test_train_bad_sizes_are_one_line(tmp_path, capsys):
    from train.train_video import main

    for argv, message in ((["--num-frames", "4"], "1 + 2k frames"), (["--height", "18"], "multiples of 4")):
        with pytest.raises(SystemExit) as exc, cli_errors("train_video.py"):
            main(["--model", "luma_dream", "--camera", *argv, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err
        assert not (tmp_path / "x").exists()
