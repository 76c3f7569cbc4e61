"""utils.io: output paths checked before work, atomic writes leave nothing partial, stale temporaries go."""
from __future__ import annotations

import errno
import os
import shutil
import tempfile

import pytest

from utils.errors import UserError, cli_errors
from utils.io import (TMP_PATTERN, atomic_path, atomic_write_text, check_output_path, ensure_folder,
                      remove_stale_tmp)


def test_check_output_path_refuses_what_cannot_be_written_and_creates_nothing(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(UserError, match="a_file is a file, not a folder, so nothing can be written under it"):
        check_output_path(tmp_path / "a_file" / "deeper" / "x.png")
    with pytest.raises(UserError, match="is a folder, not a file"):
        check_output_path(tmp_path / "a_dir", "file")
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output_path(tmp_path / "a_file", "folder")
    with pytest.raises(UserError, match="not a regular file"):
        check_output_path("/dev/null", "file")
    assert check_output_path(tmp_path / "new" / "x.png") == tmp_path / "new" / "x.png"
    assert check_output_path(tmp_path / "a_file", "file")  # an existing file may be replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_dir", "a_file"]  # nothing created, no probe left

    real = tempfile.mkstemp
    monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: (_ for _ in ()).throw(
        OSError(errno.EROFS, "Read-only file system", k.get("dir"))) if str(k.get("dir")).startswith(str(tmp_path))
        else real(*a, **k))
    with pytest.raises(UserError, match="read-only file system"):
        check_output_path(tmp_path / "new" / "x.png", flag="--out")
    monkeypatch.setattr(tempfile, "mkstemp", real)
    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(p)._replace(free=100))
    with pytest.raises(UserError, match="the disk of .* is full"):
        check_output_path(tmp_path / "x.png")


def test_ensure_folder_names_the_file_in_the_way(tmp_path):
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(UserError, match="blocker is a file, not a folder"):
        ensure_folder(tmp_path / "blocker" / "a" / "b")
    assert ensure_folder(tmp_path / "a" / "b").is_dir()


def test_a_full_disk_during_a_write_is_one_line_and_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "out" / "metrics.json"

    def main():
        with cli_errors("prog"):
            with atomic_path(target) as tmp:
                tmp.write_text("{\"half\": ")
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "no space left" in err, err
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_path_refuses_a_folder_in_the_way(tmp_path):
    (tmp_path / "x.png").mkdir()
    with pytest.raises(UserError, match="a folder of that name is in the way"):
        with atomic_path(tmp_path / "x.png"):
            pass


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    atomic_write_text(tmp_path / "keep.json", "{}")
    killed = tmp_path / "ckpts" / ".step_0000004.abcd_123.tmp.pt"  # the name atomic_path gives
    killed.parent.mkdir()
    killed.write_bytes(b"half a checkpoint")
    also = tmp_path / ".log.zz9abc12.tmp"
    also.write_text("x")
    lookalikes = [tmp_path / ".hidden", tmp_path / "notes.tmp", tmp_path / ".config.tmp.yaml"]
    for p in lookalikes:
        p.write_text("x")
    assert TMP_PATTERN.match(killed.name) and not any(TMP_PATTERN.match(p.name) for p in lookalikes)
    assert sorted(remove_stale_tmp(tmp_path)) == sorted([killed, also])
    assert all(p.exists() for p in lookalikes) and (tmp_path / "keep.json").read_text() == "{}"
    assert remove_stale_tmp(tmp_path / "missing") == []


def test_atomic_temporaries_match_the_stale_pattern(tmp_path):
    with atomic_path(tmp_path / "step_0000001.pt") as tmp:
        assert TMP_PATTERN.match(tmp.name), tmp.name
        tmp.write_bytes(b"x")
    assert os.listdir(tmp_path) == ["step_0000001.pt"]
