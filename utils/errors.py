"""User-facing errors: one line that says what went wrong, why, and what to do.

Every script runs its `main` inside `cli_errors` (the one error boundary). It turns a `UserError`,
and the exceptions a user's input or machine causes (file-system errors, files that do not decode,
numbers out of range, out of memory: see `as_user_error`), into one line on stderr and exit code 2,
with no traceback unless `--debug` (or CVGEN_DEBUG=1) is given. Warnings raised meanwhile by
third-party code are collected: on an error they are dropped (the error line is the whole story);
on success each distinct one is printed once, on one line. An exception that none of this covers
is a bug: it keeps its traceback.

The Python facade (`models.generate`, `models.load`) uses `user_errors()`, the same translation
without the exit, so a caller catches `UserError` alone.
"""
from __future__ import annotations

import difflib
import errno as errnos
import functools
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator


class UserError(Exception):
    """A mistake the user can fix (bad name, bad path, bad size, missing weights...)."""

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class WeightsError(UserError):
    """Weights cannot be found, fetched or read."""


class ConversionError(UserError):
    """A checkpoint does not match the model: lists the missing and unexpected keys."""


class SafetyRefusal(UserError):
    """A prompt or a generated image was refused by a safety filter; the CLIs exit with code 3, write nothing."""

    exit_code = 3


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices closest to `name`, for 'did you mean' messages."""
    choices = [str(c) for c in choices]
    name = str(name)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name.lower() in c.lower() or c.lower() in name.lower()][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """'did you mean: a, b?' or 'choose from: ...' when nothing is close."""
    choices = sorted(set(map(str, choices)))
    matches = close_matches(name, choices)
    if matches:
        return f"did you mean: {', '.join(matches)}?"
    return f"choose from: {', '.join(choices)}"


def short_reason(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, at most `limit` characters, cut at a word (for the '(why)')."""
    text = " ".join(str(err).split()) or type(err).__name__
    if text.startswith(("'", '"')) and text.endswith(text[0]) and len(text) > 1:  # a KeyError's repr
        text = text[1:-1]
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:(")
    return f"{cut}..."


def warn_user(message: str, prog: str | None = None) -> None:
    """A one-line note on stderr that does not stop the run (e.g. 'skipped 2 unreadable images')."""
    print(f"{prog + ': ' if prog else ''}warning: {' '.join(str(message).split())}", file=sys.stderr)


# -- debug mode --------------------------------------------------------------------------------------

_debug = False


def set_debug(on: bool = True) -> None:
    """Show tracebacks and warnings as they are (the CLIs' --debug)."""
    global _debug
    _debug = bool(on)


def debug_enabled() -> bool:
    return _debug or os.environ.get("CVGEN_DEBUG", "") not in ("", "0")


# -- translating the exceptions of bad input into user errors ------------------------------------------

_OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
                  "defaultcpuallocator")
_OOM_ADVICE = ("lower --num-images, --height/--width, --batch-size or --frames, use --dtype fp16/bf16 or a "
               "smaller preset, or run on a device with more memory")


def _where(err: OSError) -> str:
    name = err.filename if err.filename is not None else err.filename2
    return f"'{name}'" if name is not None else "a file"


def _in_the_way(name: Any) -> Path | None:
    """The existing file that sits where `name` needs a folder, if any."""
    if name is None:
        return None
    for parent in Path(os.fspath(name)).parents:
        if parent.exists():
            return parent if not parent.is_dir() else None
    return None


def _os_error(err: OSError) -> UserError | None:
    where = _where(err)
    code = err.errno
    if isinstance(err, BrokenPipeError):
        return None
    if code in (errnos.ENOSPC, getattr(errnos, "EDQUOT", -1)):
        return UserError(f"no space left on the disk while writing {where}: free some space or write "
                         "elsewhere (another --out)")
    if code == errnos.EROFS:
        return UserError(f"{where} is on a read-only file system: write elsewhere (another --out on a "
                         "writable disk)")
    if code in (errnos.EACCES, errnos.EPERM):
        return UserError(f"permission denied for {where}: choose a path you may read and write, or change "
                         "its permissions")
    if code == errnos.ENOTDIR:
        blocker = _in_the_way(err.filename)
        what = f"'{blocker}' is a file, not a folder" if blocker else "a part of the path is a file, not a folder"
        return UserError(f"a file is in the way of {where}: {what}: remove or rename it, or choose another path")
    if code == errnos.EEXIST:
        return UserError(f"{where} already exists and is not a folder: remove or rename it, or choose another "
                         "path")
    if code == errnos.EISDIR:
        return UserError(f"{where} is a folder, not a file: give a file name")
    if code == errnos.ENOENT:
        return UserError(f"{where} not found: check the path")
    if code == errnos.ENAMETOOLONG:
        return UserError(f"the path {where} is too long: choose a shorter one")
    if code in (errnos.EMFILE, errnos.ENFILE):
        return UserError("too many open files: lower --workers, or raise the limit with `ulimit -n`")
    if code == errnos.EIO:
        return UserError(f"input/output error on {where}: the disk or the network share may be failing; "
                         "check it, or use another path")
    text = str(err).lower()
    if "truncated" in text:
        return UserError(f"a file is truncated ({short_reason(err)}): it was cut short when written or "
                         "downloaded; replace it")
    if "cannot identify image file" in text:
        return UserError(f"{where} is not an image that can be read ({short_reason(err)}): give a PNG, "
                         "JPEG, WebP or BMP file")
    if code is not None and err.strerror:
        return UserError(f"{err.strerror.lower()}: {where}: check the path and the disk")
    return None


def _runtime_error(err: BaseException) -> UserError | None:
    text = str(err).lower()
    if any(m in text for m in _OUT_OF_MEMORY):
        return UserError(f"out of memory ({short_reason(err, 120)}): {_OOM_ADVICE}")
    if "overflow when unpacking long" in text or "value cannot be converted to type" in text:
        return UserError(f"a number is out of range ({short_reason(err, 80)}): seeds lie in 0..2**63-1 and "
                         "sizes and counts must be reasonable; pass smaller values")
    return None


def as_user_error(err: BaseException) -> UserError | None:
    """The `UserError` a bad input or a machine limit raised as another exception stands for, or None.

    Covered: file-system errors (read-only, full disk, permission, not a directory, a file in the
    way, not found), files that do not decode (not an image, truncated, corrupt archives, JSON and
    text), numbers out of range, out of memory. Anything else (a bug) gives None.
    """
    if isinstance(err, UserError):
        return err
    try:
        from PIL import Image, UnidentifiedImageError

        if isinstance(err, UnidentifiedImageError):
            name = getattr(err, "filename", None) or str(err).split("image file", 1)[-1].strip(" '\"")
            return UserError(f"'{name}' is not an image that can be read: give a PNG, JPEG, WebP or BMP file")
        if isinstance(err, Image.DecompressionBombError):
            return UserError(f"an image is too large to decode safely ({short_reason(err, 100)}): shrink it first")
    except ImportError:  # pragma: no cover - PIL is a hard dependency
        pass
    import json
    import pickle
    import tarfile
    import zipfile

    if isinstance(err, MemoryError):
        return UserError(f"out of memory: {_OOM_ADVICE}")
    if isinstance(err, OSError):
        return _os_error(err)
    if isinstance(err, (zipfile.BadZipFile, tarfile.ReadError, EOFError, pickle.UnpicklingError)):
        return UserError(f"a file is truncated or corrupt ({short_reason(err, 100)}): replace it (download "
                         "it again)")
    if isinstance(err, json.JSONDecodeError):
        return UserError(f"a JSON file is malformed ({err.msg} at line {err.lineno} column {err.colno}): fix it")
    if isinstance(err, UnicodeDecodeError):
        return UserError(f"a text file is not UTF-8 text ({short_reason(err, 100)}): save it as UTF-8, or "
                         "check that you passed the right file")
    if isinstance(err, OverflowError):
        return UserError(f"a number is out of range ({short_reason(err, 80)}): pass smaller values")
    if type(err).__name__ == "SafetensorError":
        return WeightsError(f"a safetensors file is truncated or corrupt ({short_reason(err, 100)}): download "
                            "it again")
    if isinstance(err, (RuntimeError, ValueError)):
        return _runtime_error(err)
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise the exceptions that `as_user_error` covers as `UserError`s (the facade's boundary)."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - only translated ones are replaced; the rest propagate
        translated = as_user_error(err)
        if translated is None:
            raise
        raise translated from err


# -- the error boundary of every script -------------------------------------------------------------

_DEV_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, FutureWarning, ImportWarning, ResourceWarning)


def _fold(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    """Each distinct warning once, on one line; developer-facing categories dropped."""
    seen: list[str] = []
    for w in caught:
        if issubclass(w.category, _DEV_WARNINGS):
            continue
        text = " ".join(str(w.message).split())
        if text and text not in seen:
            seen.append(text)
    return seen


class cli_errors:
    """The error boundary of a script: `with cli_errors("prog"):` around main's body, or `@cli_errors("prog")`
    on main. A `UserError` (or an exception `as_user_error` translates) prints one line on stderr,
    `prog: error: what: why: what to do`, and exits 2; Ctrl-C exits 130. See the module docstring."""

    def __init__(self, prog: str | None = None):
        self.prog = prog or Path(sys.argv[0]).name
        self._depth = 0

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with cli_errors(self.prog):
                return func(*args, **kwargs)
        return wrapper

    def __enter__(self) -> "cli_errors":
        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        self._caught: dict[tuple, warnings.WarningMessage] = {}
        if not debug_enabled():
            warnings.simplefilter("always")
            warnings.showwarning = self._collect
        return self

    def _collect(self, message, category, filename, lineno, file=None, line=None) -> None:
        key = (category, str(message))
        if key not in self._caught and len(self._caught) < 100:
            self._caught[key] = warnings.WarningMessage(message, category, filename, lineno, file, line)

    def __exit__(self, kind, err, tb) -> bool:
        caught = list(self._caught.values())
        self._catcher.__exit__(None, None, None)
        if err is None or kind is SystemExit:
            if err is None or getattr(err, "code", 0) in (0, None):
                for text in _fold(caught):
                    warn_user(text, self.prog)
            return False
        if kind is KeyboardInterrupt:
            print(f"{self.prog}: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        translated = as_user_error(err) if isinstance(err, Exception) else None
        if isinstance(err, BrokenPipeError):
            raise SystemExit(0) from None
        if translated is None or debug_enabled():
            for w in caught:  # shown as they were raised, for the traceback that follows
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)
            return False
        print(f"{self.prog}: error: {translated}", file=sys.stderr)
        raise SystemExit(translated.exit_code) from None


@contextmanager
def parsing(path: str | os.PathLike, what: str, fields: str | None = None) -> Iterator[None]:
    """Reading a scene, config or metadata file: a malformed one is a UserError naming the file, the
    missing field or the bad value, and (`fields`) what the file should hold."""
    try:
        yield
    except UserError:
        raise
    except KeyError as err:
        key = err.args[0] if err.args else "?"
        hint = f" (expected: {fields})" if fields else ""
        raise UserError(f"{path} is not a valid {what}: it has no field '{key}'{hint}: fix or re-export the "
                        "file") from None
    except (ValueError, TypeError, IndexError, AttributeError, OverflowError) as err:
        import json

        reason = (f"{err.msg} at line {err.lineno} column {err.colno}" if isinstance(err, json.JSONDecodeError)
                  else short_reason(err, 100))
        hint = f" (expected: {fields})" if fields else ""
        raise UserError(f"{path} is not a valid {what} ({reason}){hint}: fix or re-export the file") from None
    except Exception as err:  # noqa: BLE001 - struct errors, truncated binaries
        import struct

        if isinstance(err, (struct.error, EOFError, UnicodeDecodeError)):
            raise UserError(f"{path} is not a valid {what} ({short_reason(err, 100)}): it is truncated or "
                            "corrupt; re-export it") from None
        raise
