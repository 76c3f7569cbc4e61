"""The error boundary (utils.errors): what each raw exception of bad input becomes, warnings, --debug."""
from __future__ import annotations

import errno
import json
import warnings
import zipfile

import pytest

from utils.errors import UserError, as_user_error, cli_errors, parsing, set_debug, short_reason, user_errors


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("CVGEN_DEBUG", raising=False)
    set_debug(False)
    yield
    set_debug(False)


def _one_line(fn, capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        fn()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("prog: error: "), err
    return err


@pytest.mark.parametrize("raised, fragments", [
    (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x.png"), ["'/mnt/ro/x.png'", "read-only", "--out"]),
    (OSError(errno.ENOSPC, "No space left on device", "/data/x.pt"), ["no space left", "/data/x.pt"]),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), ["permission denied", "/root/x"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b/c"), ["a file is in the way", "a/b/c"]),
    (FileExistsError(errno.EEXIST, "File exists", "out"), ["already exists", "out"]),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "folder"), ["is a folder, not a file"]),
    (FileNotFoundError(errno.ENOENT, "No such file", "x.json"), ["not found", "x.json"]),
    (OSError(errno.EMFILE, "Too many open files"), ["too many open files", "--workers"]),
    (OSError("image file is truncated (3 bytes not processed)"), ["truncated", "replace it"]),
    (MemoryError(), ["out of memory", "--num-images"]),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), ["out of memory", "20.00 GiB"]),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 1234 bytes"), ["out of memory"]),
    (RuntimeError("Overflow when unpacking long"), ["out of range", "2**63"]),
    (OverflowError("Python int too large to convert to C long"), ["out of range"]),
    (zipfile.BadZipFile("File is not a zip file"), ["truncated or corrupt"]),
    (EOFError("Ran out of input"), ["truncated or corrupt"]),
    (json.JSONDecodeError("Expecting value", "{", 1), ["JSON", "line 1 column 2"]),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), ["not UTF-8"]),
])
def test_raw_exceptions_of_bad_input_become_one_line(raised, fragments, capsys):
    def main():
        with cli_errors("prog"):
            raise raised

    err = _one_line(main, capsys)
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_pil_decoding_errors_name_the_file(tmp_path, capsys):
    from PIL import Image

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")

    def main():
        with cli_errors("prog"):
            Image.open(bad)

    assert str(bad) in _one_line(main, capsys)


def test_a_bug_keeps_its_traceback():
    """Exceptions no bad input explains are not hidden behind a user message."""
    assert as_user_error(KeyError("x")) is None and as_user_error(ValueError("shape mismatch")) is None
    with pytest.raises(ZeroDivisionError):
        with cli_errors("prog"):
            1 / 0


def test_debug_shows_the_traceback_and_the_original_exception(monkeypatch):
    monkeypatch.setenv("CVGEN_DEBUG", "1")
    with pytest.raises(OSError):
        with cli_errors("prog"):
            raise OSError(errno.ENOSPC, "No space left on device", "x")
    monkeypatch.delenv("CVGEN_DEBUG")
    set_debug(True)  # what the shared parser's --debug does
    with pytest.raises(UserError):
        with cli_errors("prog"):
            raise UserError("what: why: do this")


def test_warnings_are_dropped_on_error_and_folded_on_success(capsys):
    def failing():
        with cli_errors("prog"):
            warnings.warn("You are using `torch.load` with `weights_only=False`\nsecond line of the warning")
            raise UserError("x.pt contains Python objects that a safe load refuses")

    err = _one_line(failing, capsys)
    assert "weights_only" not in err
    with cli_errors("prog"):
        for _ in range(5):
            warnings.warn("the same thing,\n  on two lines")
        warnings.warn("deprecated", DeprecationWarning)  # for developers: dropped
    err = capsys.readouterr().err
    assert err == "prog: warning: the same thing, on two lines\n", err


def test_ctrl_c_exits_130(capsys):
    with pytest.raises(SystemExit) as exc:
        with cli_errors("prog"):
            raise KeyboardInterrupt
    assert exc.value.code == 130 and capsys.readouterr().err == "prog: interrupted\n"


def test_the_boundary_is_also_a_decorator(capsys):
    @cli_errors("prog")
    def main(argv):
        raise UserError(f"bad {argv}")

    assert "bad [1]" in _one_line(lambda: main([1]), capsys)


def test_user_errors_translates_for_the_facade_and_keeps_the_cause():
    with pytest.raises(UserError, match="read-only") as exc:
        with user_errors():
            raise OSError(errno.EROFS, "Read-only file system", "/x")
    assert isinstance(exc.value.__cause__, OSError)
    with pytest.raises(TypeError):  # a bug stays a bug
        with user_errors():
            raise TypeError("unsupported operand")


def test_parsing_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "transforms.json"
    with pytest.raises(UserError, match=r"transforms.json is not a valid scene file: it has no field 'frames' "
                                        r"\(expected: frames\)"):
        with parsing(path, "scene file", "frames"):
            {}["frames"]
    with pytest.raises(UserError, match="line 1 column 1"):
        with parsing(path, "scene file"):
            json.loads("")
    with pytest.raises(UserError, match="truncated or corrupt"):
        with parsing(path, "model file"):
            import struct

            struct.unpack("<Q", b"\x00")


def test_short_reason_cuts_at_a_word_and_stays_one_line():
    text = short_reason(ValueError("word " * 100 + "\nnext line"), limit=40)
    assert "\n" not in text and text.endswith("...") and len(text) <= 43 and "wor..." not in text
    assert short_reason(KeyError("frames")) == "frames"
