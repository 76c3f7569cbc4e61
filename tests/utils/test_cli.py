"""The shared parser (utils.cli): values checked by name before anything loads, caps, seeds, outputs."""
from __future__ import annotations

import argparse

import pytest

from utils.cli import CAPS, SEED_MAX, ArgumentParser, check_limits, check_value
from utils.errors import UserError, debug_enabled, set_debug


def _parser(**kwargs) -> ArgumentParser:
    p = ArgumentParser(prog="prog", **kwargs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--num-images", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--lr-g", type=float, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--radius", type=float, default=None)
    p.add_argument("--window", type=int, default=None)  # no rule by name: only 64-bit
    p.add_argument("--vis-every", type=int, default=0, help="(0: none)")
    return p


def _refused(argv, capsys, parser=None) -> str:
    with pytest.raises(SystemExit) as exc:
        (parser or _parser()).parse_args(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("prog: error: "), err
    return err


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "99999999999999999999"], "--seed: must be a seed in 0..2**63-1"),
    (["--seed", str(2**63)], "--seed"),
    (["--seed", "-2"], "--seed"),
    (["--height", "0"], "--height: must be at least 1, got 0"),
    (["--height", "-64"], "--height"),
    (["--num-images", "0"], "--num-images"),
    (["--steps", "0"], "--steps"),
    (["--guidance", "-5"], "--guidance: must be a guidance scale in [0, 100]"),
    (["--guidance", "inf"], "--guidance"),
    (["--strength", "0"], "--strength: must be a strength in (0, 1]"),
    (["--strength", "1.5"], "--strength"),
    (["--lr-g", "-1"], "--lr-g: must be more than 0"),
    (["--workers", "-1"], "--workers: must be 0 or more"),
    (["--radius", "nan"], "--radius: must be a finite number"),
    (["--window", "99999999999999999999"], "--window"),
    (["--height", "abc"], "invalid int value: 'abc'"),
])
def test_values_are_refused_by_the_rule_of_their_name(argv, fragment, capsys):
    assert fragment in _refused(argv, capsys)


def test_good_values_pass_and_an_own_type_opts_out():
    args = _parser().parse_args(["--seed", str(SEED_MAX - 1), "--guidance", "0", "--strength", "1", "--workers", "0",
                                 "--window", "-3"])
    assert args.seed == SEED_MAX - 1 and args.guidance == 0 and args.strength == 1 and args.window == -3
    p = ArgumentParser(prog="prog")
    p.add_argument("--height", type=lambda s: int(s), default=None)  # a script's own type wins
    assert p.parse_args(["--height", "0"]).height == 0


def test_seed_minus_one_draws_a_seed_and_prints_it(capsys):
    args = _parser().parse_args(["--seed", "-1"])
    err = capsys.readouterr().err
    assert 0 <= args.seed < SEED_MAX
    assert f"drew seed {args.seed}" in err and f"--seed {args.seed}" in err and err.count("\n") == 1


def test_debug_flag_everywhere():
    set_debug(False)
    p = _parser()
    assert "--debug" in p.format_help()
    p.parse_args(["--debug"])
    assert debug_enabled()
    set_debug(False)


def test_subcommands_are_checked_too(capsys):
    p = ArgumentParser(prog="prog")
    sub = p.add_subparsers(dest="cmd", required=True).add_parser("run", prog="prog")
    sub.add_argument("--steps", type=int, default=1)
    assert "--steps" in _refused(["run", "--steps", "0"], capsys, p)


def test_caps_per_modality_lifted_by_force_or_max(capsys):
    p = _parser().add_limits()
    assert {"--force", "--max-images", "--max-size", "--max-steps"} <= set(p._option_string_actions)
    huge = p.parse_args(["--num-images", "100000"])
    with pytest.raises(UserError, match=r"--num-images 100000 is above the cap of 1024 for gan models.*--max-images "
                                         r"100000 \(or --force\)"):
        check_limits(huge, "gan")
    with pytest.raises(UserError, match="above the cap of 16 for image models"):
        check_limits(p.parse_args(["--num-images", "17"]), "image")
    check_limits(p.parse_args(["--num-images", "100000", "--force"]), "gan")
    check_limits(p.parse_args(["--num-images", "2000", "--max-images", "2000"]), "gan")
    with pytest.raises(UserError, match="--max-images 2001"):
        check_limits(p.parse_args(["--num-images", "2001", "--max-images", "2000"]), "gan")
    check_limits(p.parse_args(["--num-images", str(CAPS["gan"]["num_images"])]), "gan")  # the cap itself passes


def test_a_parser_with_its_modality_checks_caps_at_parse_time(capsys):
    p = ArgumentParser(prog="prog")
    p.add_argument("--frames", type=int, default=60)
    p.add_limits("3d")
    assert "--max-frames 100000 (or --force)" in _refused(["--frames", "100000"], capsys, p)
    assert p.parse_args(["--frames", "100000", "--force"]).frames == 100000


def test_output_options_are_checked_at_parse_time(tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    p = ArgumentParser(prog="prog")
    p.add_argument("--out", default=None)
    err = _refused(["--out", str(tmp_path / "a_file" / "run")], capsys, p)
    assert "is a file, not a folder" in err
    assert p.parse_args(["--out", str(tmp_path / "new" / "deeper" / "x.png")]).out
    assert not (tmp_path / "new").exists()  # the check creates nothing


@pytest.mark.parametrize("name, value, fragment", [
    ("seed", 2**64, "seed must be"), ("seed", -1, "random.randrange"), ("seed", "3", "got str '3'"),
    ("seed", [1, -4], "seed must be"), ("num_images", 0, "at least 1"), ("num_images", 2.5, "got float 2.5"),
    ("height", True, "got bool"), ("guidance", -5.0, "guidance scale"), ("strength", 2, "strength in (0, 1]"),
    ("steps", float("nan"), "steps must be"),
])
def test_check_value_is_the_facades_rule(name, value, fragment):
    with pytest.raises(UserError) as exc:
        check_value(name, value)
    assert fragment in str(exc.value), str(exc.value)


def test_check_value_passes_good_values_and_unknown_names():
    assert check_value("seed", [0, 5]) == [0, 5]
    assert check_value("prompt", 5) == 5 and check_value("height", None) is None
    import numpy as np

    assert check_value("num_images", np.int64(4)) == 4


def test_usage_errors_are_one_line(capsys):
    assert "unrecognized arguments: --nope" in _refused(["--nope"], capsys)
    assert isinstance(_parser(), argparse.ArgumentParser)
