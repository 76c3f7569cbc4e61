"""Training checkpoints: atomic writes, safe reads, the folder's latest and its pruning."""
from __future__ import annotations

import json
import os

import pytest
import torch

from utils.errors import UserError
from utils.training.checkpoints import (checkpoint_path, latest_checkpoint, load_checkpoint, prune_checkpoints,
                                        save_checkpoint, write_json)


def test_round_trip_of_a_training_state(tmp_path):
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"step": 7, "settings": json.dumps({"seed": 1}), "generator": net.state_dict(), "opt": opt.state_dict(),
             "rng": torch.get_rng_state()}
    path = save_checkpoint(checkpoint_path(tmp_path / "ckpt", 7), state)
    assert path.name == "step_0000007.pt"
    back = load_checkpoint(path)
    assert back["step"] == 7 and json.loads(back["settings"]) == {"seed": 1}
    assert all(torch.equal(back["generator"][k], v) for k, v in net.state_dict().items())
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_debris(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "step_0000001.pt", {"step": 1})

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_0000001.pt"]  # no temporary file left


def test_load_refuses_missing_corrupt_and_code_carrying_files(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    # a pickle that would run code on load: weights_only refuses it, nothing runs
    torch.save({"hook": os.system}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "evil.pt")


def test_latest_is_the_highest_step_not_the_newest_file(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for step in (20, 100, 3):  # written out of order; names sort as numbers, not as strings
        save_checkpoint(checkpoint_path(tmp_path, step), {"step": step})
    (tmp_path / ".step_0000500.abc.tmp.pt").write_bytes(b"")  # an interrupted write
    (tmp_path / "step_999.pt.bak").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 100)
    assert checkpoint_path(tmp_path, 12345678).name == "step_12345678.pt"
    save_checkpoint(checkpoint_path(tmp_path, 12345678), {"step": 12345678})
    assert latest_checkpoint(tmp_path).name == "step_12345678.pt"  # wider than the padding


def test_prune_keeps_the_newest_steps_and_only_checkpoints(tmp_path):
    for step in range(1, 7):
        save_checkpoint(checkpoint_path(tmp_path, step * 10), {"step": step})
    (tmp_path / "notes.txt").write_text("kept")
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "step_0000050.pt", "step_0000060.pt"]
    prune_checkpoints(tmp_path, keep=0)  # 0 keeps everything
    assert len(list(tmp_path.glob("step_*.pt"))) == 2


def test_write_json_is_sorted_and_atomic(tmp_path):
    path = write_json(tmp_path / "sub" / "settings.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.read_text().index('"a"') < path.read_text().index('"b"')
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]
