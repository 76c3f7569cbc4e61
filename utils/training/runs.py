"""The folder of a training run: one run per folder, resumed runs continue their own history.

- `prepare_run_dir(out, artefacts, resume=..., overwrite=...)` at the start of a run: removes the
  temporaries that killed writes left (`utils.io.remove_stale_tmp`), and refuses a fresh run in a folder
  that holds another run's files unless `--resume` (continue it) or `--overwrite` (delete those files
  first) is given, so a run never mixes with, or destroys, another one.
- `trim_jsonl(path, step)`: a resumed run drops the log lines past the step it resumes from (the run
  that was stopped wrote them after its last checkpoint), so no step is logged twice.
- `summary_writer(log_dir, resume_step)`: TensorBoard that hides the events past the resumed step
  (`purge_step`), for the same reason.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from utils.errors import UserError
from utils.io import atomic_path, check_output_path, remove_stale_tmp


def run_artefacts(out: str | os.PathLike, artefacts: Iterable[str]) -> list[Path]:
    """The `artefacts` (names relative to `out`) that exist."""
    out = Path(out)
    return [out / a for a in artefacts if (out / a).exists()]


def prepare_run_dir(out: str | os.PathLike, artefacts: Iterable[str], *, resume: bool, overwrite: bool = False,
                    resume_flag: str = "--resume auto", out_flag: str = "--out") -> list[Path]:
    """Make `out` ready for a run; returns the stale temporaries it removed. See the module docstring.

    `artefacts` names what a run of this trainer writes there (checkpoints/, log.jsonl, tb/, ...);
    with `overwrite` exactly those are deleted, nothing else in the folder.
    """
    out = Path(out)
    check_output_path(out, "folder", flag=out_flag)
    artefacts = tuple(artefacts)
    removed = remove_stale_tmp(out)
    found = run_artefacts(out, artefacts)
    if resume or not found:
        return removed
    if not overwrite:
        names = ", ".join(p.name + ("/" if p.is_dir() else "") for p in found[:4])
        raise UserError(f"{out} already holds another run ({names}): pass {resume_flag} to continue it, "
                        f"--overwrite to replace it, or another {out_flag} to start afresh")
    for p in found:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
    return removed


def trim_jsonl(path: str | os.PathLike, step: int, key: str = "step") -> int:
    """Keep the lines of a JSON-lines log whose `key` is at most `step` (atomically); returns lines dropped.

    A line that is not JSON (a write cut short by a kill) is dropped too.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and isinstance(row.get(key), (int, float)) and row[key] <= step:
            kept.append(line)
        elif line.strip():
            dropped += 1
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return dropped


def summary_writer(log_dir: str | os.PathLike, resume_step: int = 0, **kwargs: Any):
    """A TensorBoard `SummaryWriter`; on a run resumed from a checkpoint of `resume_step` steps (> 0), the
    events that the stopped run wrote past that step are purged, so each step shows once."""
    from torch.utils.tensorboard import SummaryWriter

    if resume_step > 0:
        kwargs.setdefault("purge_step", resume_step + 1)
    return SummaryWriter(str(log_dir), **kwargs)


__all__ = ["prepare_run_dir", "run_artefacts", "summary_writer", "trim_jsonl"]
