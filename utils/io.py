"""Writing files safely: atomic writes, output paths checked before any work, stale temporaries removed.

- `atomic_path(path)` yields a temporary path next to `path` and renames it over `path` on success, so
  a reader (or a killed run) never sees a half-written file; on failure the temporary is deleted. A
  process killed outright (SIGKILL, power loss) cannot delete it: `remove_stale_tmp(folder)` does, at
  the start of the next run in that folder.
- `check_output_path(path, kind)` refuses, before a model loads, an output that cannot be written: a
  file in the way of a folder (or a folder where a file goes), a device, a read-only or full disk, no
  permission. It creates nothing.
- `atomic_write_text`, `atomic_write_bytes`: the one-call forms.
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Literal

from utils.errors import UserError, as_user_error

TMP_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")
"""The names `atomic_path` gives its temporaries: `.<stem>.<8 random chars>.tmp<suffix>`."""

MIN_FREE_BYTES = 1 << 20
"""`check_output_path` refuses a disk with less free space than this."""


def ensure_folder(folder: str | os.PathLike) -> Path:
    """`mkdir -p folder`, with a one-line error when a file sits where a folder is needed."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise UserError(f"cannot create the folder {folder}: {blocker} is a file, not a folder: remove or rename "
                        "it, or choose another path") from None
    return folder


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it over `path`, else delete it.

    The temporary file keeps the suffix of `path` so that writers that infer the format from
    the name (PIL, imageio) behave the same.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write the file {path}: a folder of that name is in the way: remove or rename it, "
                        "or choose another name")
    ensure_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def remove_stale_tmp(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the temporaries that killed `atomic_path` writes left in `folder` (and its subfolders).

    Call it where one run owns the folder (a training run's output, at its start): a temporary of a
    write still in progress elsewhere would be deleted too.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*")
    removed = []
    for p in sorted(found):
        if p.is_file() and TMP_PATTERN.match(p.name):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(".")


def check_output_path(path: str | os.PathLike, kind: Literal["file", "folder", "any"] = "any",
                      flag: str = "--out") -> Path:
    """Refuse, before any work, an output `path` that cannot be written (see the module docstring).

    `kind` "file" refuses an existing folder, "folder" an existing file; "any" takes either (a path with
    a suffix is then a file). Nothing is created; the writability probe removes its own file.
    """
    path = Path(os.path.expanduser(str(path)))
    if kind == "any":
        kind = "file" if path.suffix and not path.is_dir() else "folder"
    if path.exists():
        if kind == "file" and path.is_dir():
            raise UserError(f"{flag} {path} is a folder, not a file: give a file name, or remove the folder")
        if kind == "folder" and not path.is_dir():
            raise UserError(f"{flag} {path} is a file, not a folder: remove or rename it, or choose another "
                            f"{flag}")
        if kind == "file" and not path.is_file():
            raise UserError(f"{flag} {path} is not a regular file (a device or a pipe): choose a file name")
    anchor = _nearest_existing(path)
    if not anchor.is_dir():
        if anchor == path:  # an existing file to be replaced: its folder must take the new one
            anchor = path.parent
        else:
            raise UserError(f"{flag} {path}: {anchor} is a file, not a folder, so nothing can be written under it: "
                            f"remove or rename {anchor}, or choose another {flag}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".cvgen-probe-", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        translated = as_user_error(err)
        if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            why = "is on a read-only file system" if err.errno == errno.EROFS else "is not writable (permission denied)"
            raise UserError(f"{flag} {path} cannot be written: {anchor} {why}: choose another {flag}") from None
        raise (translated or UserError(f"{flag} {path} cannot be written ({err}): choose another {flag}")) from None
    try:
        free = shutil.disk_usage(anchor).free
    except OSError:
        free = None
    if free is not None and free < MIN_FREE_BYTES:
        raise UserError(f"{flag} {path}: the disk of {anchor} is full ({free} bytes free): free some space or "
                        f"choose another {flag}")
    return path


__all__ = ["TMP_PATTERN", "atomic_path", "atomic_write_bytes", "atomic_write_text", "check_output_path",
           "ensure_folder", "remove_stale_tmp"]
