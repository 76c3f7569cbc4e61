"""Running the evaluate/ command lines: as a fresh process from a scratch folder (what a user types), or
in this process through runpy (fast, for the error cases). Neither imports a script as a module."""
from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_script(tmp_path):
    """`run_script("clip_score", *args)`: `python evaluate/clip_score.py ...` from an unrelated folder."""
    def run(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        cwd = tmp_path / "cwd"
        cwd.mkdir(exist_ok=True)
        return subprocess.run([sys.executable, str(ROOT / "evaluate" / f"{name}.py"), *map(str, args)],
                              capture_output=True, text=True, cwd=cwd, timeout=timeout)
    return run


@pytest.fixture
def call_script(monkeypatch, capsys):
    """`call_script("clip_score", *args)` -> (exit code, stdout, stderr), the script run as __main__ in-process."""
    def call(name: str, *args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, args)])
        monkeypatch.setattr(sys, "path", list(sys.path))
        capsys.readouterr()
        try:
            runpy.run_path(str(ROOT / "evaluate" / f"{name}.py"), run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        out, err = capsys.readouterr()
        return code, out, err
    return call


@pytest.fixture
def one_line_error():
    """`one_line_error(code, err, *fragments)`: exit 2 and a single 'prog: error: ...' line holding every
    fragment, no traceback."""
    def check(code: int, err: str, *fragments: str) -> None:
        assert code == 2, err
        assert err.count("\n") == 1 and "Traceback" not in err and ": error: " in err, err
        for fragment in fragments:
            assert fragment in err, (fragment, err)
    return check
