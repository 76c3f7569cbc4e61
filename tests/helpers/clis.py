"""Every command line of the repository, found rather than listed, and the parser each one builds.

`discover()` lists the scripts under train/, inference/, evaluate/ and benchmarks/ that define
`main(argv)`; a dispatcher (a `TRAINERS` or `RUNNERS` table, e.g. train_3d.py) counts once per
model it dispatches to. `captured_parser(cli)` runs the script's `main` until it parses its
arguments and returns the parser, without running anything else, so tests can read every option
and its type. A new script is covered by the bad-input matrix without being named anywhere.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_FOLDERS = ("train", "inference", "evaluate", "benchmarks")


@dataclass(frozen=True)
class Cli:
    """One command line: a script, and for a dispatcher the model it runs."""

    module: str
    """Import name, e.g. 'inference.generate_image'."""
    base: tuple[str, ...] = ()
    """Arguments that select it (e.g. ('--model', 'nerf')), given before every case's own."""
    model: str | None = None
    qualified: bool = False
    """Whether the name says the folder (two folders hold a script of that name, e.g. upscale.py)."""

    @property
    def name(self) -> str:
        folder, stem = self.module.split(".", 1)
        stem = f"{folder}/{stem}" if self.qualified else stem
        return f"{stem}[{self.model}]" if self.model else stem

    @property
    def path(self) -> Path:
        return ROOT / (self.module.replace(".", "/") + ".py")

    def main(self):
        return importlib.import_module(self.module).main


def discover() -> list[Cli]:
    from collections import Counter

    stems = Counter(p.stem for folder in SCRIPT_FOLDERS for p in (ROOT / folder).glob("*.py"))
    found = []
    for folder in SCRIPT_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            text = path.read_text(encoding="utf-8")
            if path.name.startswith("_") or not re.search(r"^def main\(", text, re.M):
                continue
            module = f"{folder}.{path.stem}"
            table = re.search(r"^(TRAINERS|RUNNERS)\s*=", text, re.M)
            if table:
                models = getattr(importlib.import_module(module), table.group(1))
                found += [Cli(module, ("--model", m), m, stems[path.stem] > 1) for m in models]
            else:
                found.append(Cli(module, qualified=stems[path.stem] > 1))
    return found


class _NotShared(Exception):
    pass


class _Parsed(Exception):
    def __init__(self, parser: Any):
        self.parser = parser


@dataclass
class ParserInfo:
    """The options of a captured parser: flag -> action (subcommands flattened with their name)."""

    parser: Any
    actions: dict[str, Any] = field(default_factory=dict)
    subcommand: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """flag -> the subcommand words that reach it (empty for the top level)."""


def captured_parser(cli: Cli, monkeypatch, extra: tuple[str, ...] = ("--help",)) -> ParserInfo:
    """The full parser `cli`'s main builds (a peek at --model is let through), and its options."""
    import argparse

    from utils.cli import ArgumentParser

    original = ArgumentParser.parse_known_args

    def capture(self, args=None, namespace=None):
        if self.add_help:
            raise _Parsed(self)
        return original(self, args, namespace)

    plain = argparse.ArgumentParser.parse_known_args

    def refuse(self, args=None, namespace=None):
        if not isinstance(self, ArgumentParser):
            raise _NotShared(type(self).__name__)
        return plain(self, args, namespace)

    monkeypatch.setattr(ArgumentParser, "parse_known_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", refuse)
    try:
        cli.main()([*cli.base])
    except _Parsed as got:
        parser = got.parser
    except _NotShared:
        raise AssertionError(f"{cli.name} parses its arguments with a plain argparse parser: build it with "
                             "utils.cli.ArgumentParser (docs/CONVENTIONS.md, 'Bad input')") from None
    else:  # pragma: no cover - the script parsed nothing through the shared parser
        raise AssertionError(f"{cli.name} does not parse its arguments with utils.cli.ArgumentParser")
    finally:
        monkeypatch.setattr(ArgumentParser, "parse_known_args", original)
        monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", plain)
    info = ParserInfo(parser)

    def walk(p, words: tuple[str, ...]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
            for flag in action.option_strings:
                if flag.startswith("--"):
                    info.actions.setdefault(flag, action)
                    info.subcommand.setdefault(flag, words)
    walk(parser, ())
    return info
