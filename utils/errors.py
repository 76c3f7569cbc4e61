"""User-facing errors: one line that says what went wrong, why, and what to do.

CLIs catch `UserError` (and its subclasses), print its message on one line to stderr and exit
with code 2, so a user mistake never shows a traceback.
"""
from __future__ import annotations

import difflib
import sys
from contextlib import contextmanager
from typing import Iterable, Iterator


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
    choices = list(choices)
    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not found:
        found = [c for c in choices if name.lower() in c.lower() or c.lower() in name.lower()][:n]
    return found


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' or ' (choose from: ...)' when nothing is close."""
    choices = sorted(set(choices))
    matches = close_matches(name, choices)
    if matches:
        return f"did you mean: {', '.join(matches)}?"
    return f"choose from: {', '.join(choices)}"


@contextmanager
def cli_errors(prog: str | None = None) -> Iterator[None]:
    """Turn a `UserError` (or Ctrl-C) inside a CLI into one line on stderr and exit code 2 (130)."""
    try:
        yield
    except UserError as err:
        prefix = f"{prog}: " if prog else ""
        print(f"{prefix}error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def short_reason(err: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, cut to `limit` characters (for the '(why)' of a user error)."""
    return " ".join(str(err).split())[:limit] or type(err).__name__
