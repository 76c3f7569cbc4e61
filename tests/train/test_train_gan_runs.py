"""Runs never destroy runs (train_gan.py): a fresh run into a used --out is refused and leaves it as it was;
--overwrite replaces it; a run killed (SIGKILL) in the middle of a checkpoint write resumes to the
uninterrupted run's generator, bit for bit, with each step logged once and no temporary left."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from safetensors.torch import load_file

from train.train_gan import main

ROOT = Path(__file__).resolve().parents[2]


def _argv(out: Path, steps: int, *extra: str) -> list[str]:
    return ["--model", "dcgan", "--preset", "tiny", "--dataset", "digits", "--steps", str(steps), "--batch-size", "8",
            "--out", str(out), "--ckpt-every", "2", "--sample-every", "2", "--log-every", "1", "--keep", "10",
            "--no-progress", "--cpu", *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]


def test_a_fresh_run_into_a_used_out_is_refused_and_leaves_it_byte_identical(tmp_path, capsys):
    out = tmp_path / "run"
    main(_argv(out, 2))
    before = _files(out)
    assert "generator.safetensors" in before and "log.jsonl" in before
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(_argv(out, 2, "--seed", "1"))
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "already holds another run" in err, err
    assert "--resume auto" in err and "--overwrite" in err
    assert _files(out) == before  # nothing of the first run touched (before: overwritten and mixed)


@pytest.mark.slow
def test_overwrite_replaces_only_the_runs_own_files(tmp_path):
    out = tmp_path / "run"
    main(_argv(out, 2))
    before = _files(out)
    (out / "notes.txt").write_text("mine")
    main(_argv(out, 2, "--seed", "1", "--overwrite"))
    assert _steps(out) == [1, 2] and (out / "notes.txt").read_text() == "mine"  # only the run's own files replaced
    assert _files(out)["generator.safetensors"] != before["generator.safetensors"]


KILLER = textwrap.dedent("""
    import os, signal, sys
    import torch
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == int(os.environ["KILL_AT_STEP"]):
            with open(f, "wb") as half:
                half.write(b"PK half a checkpoint")
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, f, *args, **kwargs)

    torch.save = save
    from train.train_gan import main
    main(sys.argv[1:])
""")


def _process(tmp_path: Path, argv: list[str], kill_at: int = -1) -> subprocess.CompletedProcess:
    """train_gan.py in a fresh process, as a user runs it (a process that trained before may differ in the
    last bits: CPU kernels pick their paths per process)."""
    env = {**os.environ, "KILL_AT_STEP": str(kill_at), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", KILLER, *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_exact(tmp_path):
    full = tmp_path / "full"
    assert _process(tmp_path, _argv(full, 6)).returncode == 0
    part = tmp_path / "part"
    res = _process(tmp_path, _argv(part, 6), kill_at=4)
    assert res.returncode == -9, res.stderr[-2000:]
    ckpts = part / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("step_*.pt")) == ["step_0000002.pt"]
    assert [p for p in ckpts.iterdir() if ".tmp" in p.name], "the kill left no temporary: it missed the write"
    assert 4 in _steps(part)  # the killed run logged steps past its last checkpoint
    res = _process(tmp_path, _argv(part, 6, "--resume", "auto"))
    assert res.returncode == 0, res.stderr[-2000:]
    assert not [p for p in part.rglob("*") if ".tmp" in p.name]  # the stale temporary removed on start
    assert _steps(part) == [1, 2, 3, 4, 5, 6]  # steps 3 and 4 logged once, by the resumed run
    a, b = load_file(full / "generator.safetensors"), load_file(part / "generator.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() and a[k].dtype == b[k].dtype for k in a)
    from safetensors import safe_open

    with safe_open(str(full / "generator.safetensors"), "pt") as f, safe_open(str(part / "generator.safetensors"),
                                                                              "pt") as g:
        assert f.metadata() == g.metadata()  # (not the raw bytes: safetensors orders metadata keys per process)
