"""Unpack a downloaded dataset archive where its reader looks, and check the layout.

    python -m utils.data.prepare cifar10 --from cifar-10-python.tar.gz --data-dir data/cifar10
    python -m utils.data.prepare mnist --from train-images-idx3-ubyte.gz --data-dir data/mnist
    python -m utils.data.prepare celeba --from img_align_celeba.zip --data-dir data/celeba

Reads .zip, .tar, .tar.gz / .tgz and single .gz files (kept gzipped for MNIST, whose reader reads them);
a member that would land outside --data-dir (an absolute path, '..') is refused before anything is written.
An FFHQ dataset_tool zip needs no unpacking: pass it as --data-dir directly.
"""
from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from utils.cli import ArgumentParser
from utils.data.named import NAMED
from utils.errors import UserError, cli_errors


def _check_members(names: list[str], archive: Path) -> None:
    for name in names:
        p = PurePosixPath(name.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise UserError(f"refusing {archive.name}: its member '{name}' would be written outside --data-dir")


def unpack(archive: Path, target: Path) -> list[str]:
    """Extract `archive` into `target`; returns the member names."""
    if not archive.is_file():
        raise UserError(f"archive not found: {archive}")
    target.mkdir(parents=True, exist_ok=True)
    name = archive.name.lower()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            _check_members(names, archive)
            zf.extractall(target)
        return names
    if name.endswith((".tar", ".tar.gz", ".tgz")) or tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            _check_members([m.name for m in members], archive)
            bad = [m.name for m in members if not (m.isfile() or m.isdir())]
            if bad:
                raise UserError(f"refusing {archive.name}: '{bad[0]}' is a link or device, not a file")
            tf.extractall(target, filter="data")
        return [m.name for m in members]
    if name.endswith(".gz"):
        shutil.copy2(archive, target / archive.name)
        return [archive.name]
    raise UserError(f"{archive.name} is not a .zip, .tar, .tar.gz or .gz archive")


def parse_args(argv: list[str] | None = None):
    p = ArgumentParser(prog="python -m utils.data.prepare", description="Unpack a downloaded dataset archive.")
    p.add_argument("name", choices=NAMED, help="the dataset")
    p.add_argument("--from", dest="archives", nargs="+", required=True, help="the downloaded archive(s)")
    p.add_argument("--data-dir", default=None, help="where to unpack (default: data/<name>)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    with cli_errors("prepare"):
        args = parse_args(argv)
        target = Path(args.data_dir or f"data/{args.name}")
        for archive in args.archives:
            unpack(Path(archive), target)
        from utils.data.named import named_dataset

        options = {"split": "all"} if args.name == "celeba" else {}
        try:
            dataset = named_dataset(args.name, data_dir=target, **options)
        except UserError as err:
            print(f"unpacked into {target}, but the {args.name} layout is not complete yet: {err}")
            return 1
        print(f"{args.name}: {len(dataset)} images ready in {target} (pass --data-dir {target})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
