"""Leftovers of the bad-input audit: refusals that came only after loading or generating, or with two lines."""
from __future__ import annotations

import time

import pytest

from tests.helpers.bad_files import make_bad_files


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    return make_bad_files(tmp_path_factory.mktemp("bad"))


def _refused(main, argv, capsys, fragment, seconds=5.0):
    t0 = time.perf_counter()
    from utils.errors import cli_errors

    with pytest.raises(SystemExit) as exc, cli_errors("prog"):  # the boundary `python script.py` runs main in
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and fragment in err, err
    assert time.perf_counter() - t0 < seconds, "refused only after loading"  # before any weights load
    return err


def test_3d_diffusion_steps_are_capped(tmp_path, monkeypatch, capsys):
    """(Before: point_e --steps 10000000 ran for hours.)"""
    from inference.generate_3d import main

    monkeypatch.chdir(tmp_path)
    _refused(main, ["--model", "point_e", "--preset", "tiny", "--prompt", "a", "--steps", "10000000"], capsys,
             "--max-steps 10000000")
    _refused(main, ["--model", "point_e", "--preset", "tiny", "--prompt", "a", "--upsample-steps", "5000"], capsys,
             "cap of 1024")
    assert not list(tmp_path.rglob("*"))


def test_shap_e_refuses_a_mismatched_condition_and_a_bad_image_before_loading(tmp_path, bad, monkeypatch, capsys):
    from inference.generate_3d import main

    monkeypatch.chdir(tmp_path)
    _refused(main, ["--model", "shap_e", "--preset", "tiny", "--image", str(bad["ok_image"])], capsys,
             "is text-conditioned")
    _refused(main, ["--model", "shap_e", "--preset", "tiny-image", "--prompt", "a"], capsys, "is image-conditioned")
    _refused(main, ["--model", "shap_e", "--preset", "tiny-image", "--image", str(bad["text_as_image"])], capsys,
             "notes.png is not a readable image", seconds=30)
    _refused(main, ["--model", "shap_e", "--preset", "tiny", "--prompt", "a", "--turntable",
                    f"{bad['file_in_the_way']}/t.gif"], capsys, "--turntable")
    assert not list(tmp_path.rglob("*"))  # (before: the mesh was written, then the turntable failed)


def test_generate_video_checks_the_image_model_before_svd_loads(tmp_path, monkeypatch, capsys):
    from inference.generate_video import main

    monkeypatch.chdir(tmp_path)
    _refused(main, ["--model", "svd", "--preset", "tiny", "--prompt", "a", "--image-preset", "no_such"], capsys,
             "no_such")
    _refused(main, ["--model", "svd", "--preset", "tiny", "--prompt", "a", "--image-steps", "0"], capsys,
             "--image-steps")


def test_train_video_refusal_is_one_stderr_line(tmp_path, bad, monkeypatch, capsys):
    """(Before: the start banner on stderr came first: two lines.)"""
    from train.train_video import main

    monkeypatch.chdir(tmp_path)
    _refused(main, ["--model", "svd", "--steps", "1", "--weights", str(bad["random_bytes"]), "--out", "run"], capsys,
             "random.pt", seconds=60)
