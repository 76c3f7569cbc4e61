"""A run's folder: one run per folder, pruning touches only the run's own checkpoints, resumed logs do
not repeat steps, killed writes leave nothing behind."""
from __future__ import annotations

import json

import pytest

from utils.errors import UserError
from utils.training.checkpoints import checkpoint_path, prune_checkpoints, save_checkpoint
from utils.training.runs import prepare_run_dir, summary_writer, trim_jsonl

ARTEFACTS = ("checkpoints", "log.jsonl", "generator.safetensors")


def test_a_fresh_run_refuses_a_folder_holding_another_run(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "log.jsonl").write_text('{"step": 1}\n')
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"already holds another run \(checkpoints/, log.jsonl\).*--resume auto.*"
                                        r"--overwrite"):
        prepare_run_dir(out, ARTEFACTS, resume=False)
    assert (out / "log.jsonl").exists()
    prepare_run_dir(out, ARTEFACTS, resume=True)  # continuing it is fine
    prepare_run_dir(out, ARTEFACTS, resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only the run's own files went
    prepare_run_dir(tmp_path / "new", ARTEFACTS, resume=False)  # an empty or missing folder is fine
    assert not (tmp_path / "new").exists()


def test_start_removes_stale_temporaries(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    stale = tmp_path / "checkpoints" / ".step_0000004.k2j3h4g5.tmp.pt"
    stale.write_bytes(b"half")
    assert prepare_run_dir(tmp_path, ARTEFACTS, resume=True) == [stale]
    assert not stale.exists()


def test_a_file_in_the_way_of_the_run_folder_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(UserError, match="is a file, not a folder"):
        prepare_run_dir(tmp_path / "run", ARTEFACTS, resume=False)


def test_pruning_never_deletes_a_later_step_of_another_run(tmp_path):
    for step in (100, 200, 300):  # an older run's checkpoints
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    for step in (1, 2, 3):
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
        prune_checkpoints(tmp_path, keep=2, newest=step)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step_0000002.pt", "step_0000003.pt", "step_0000100.pt", "step_0000200.pt",
                     "step_0000300.pt"], names
    prune_checkpoints(tmp_path, keep=2)  # without newest: the folder's two highest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0000200.pt", "step_0000300.pt"]


def test_trim_jsonl_drops_steps_past_the_checkpoint_and_cut_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
    assert trim_jsonl(log, 4) == 4  # 5, 6, 7 and the line a kill cut short
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    assert trim_jsonl(tmp_path / "missing.jsonl", 3) == 0


def test_summary_writer_purges_the_stopped_runs_later_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = summary_writer(tmp_path / "tb")
    for step in range(1, 7):
        first.add_scalar("loss", float(step), step)
    first.close()
    resumed = summary_writer(tmp_path / "tb", resume_step=4)  # the checkpoint was at step 4
    for step in (5, 6):
        resumed.add_scalar("loss", 100.0 + step, step)
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    events = acc.Scalars("loss")
    assert [e.step for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in events][-2:] == [105.0, 106.0]
