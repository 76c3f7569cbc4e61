"""A prompt filter: a configurable blocklist matched on a normalised form of the prompt.

Normalisation (`normalize_prompt`), in order: Unicode compatibility folding (NFKD: full-width and
styled letters become plain ones) with the accents dropped; case folding; the common look-alike
characters read as letters (0 o, 1 i, 3 e, 4 a, 5 s, 7 t next to a letter; @ a, $ s, ! i, | i
before one); every other
non-alphanumeric character a word break, except that letters spelled out inside one word ("n.u.d.e",
"n_u_d_e") are joined; one-letter words in a row ("n u d e") also match a term they spell. A blocked term, normalised the same way, matches whole words (a phrase: consecutive
words), with an optional plural "s"/"es". So "NUDE", "Nüde", "n_u_d_e" and "nud3s" all match "nude",
while "denude" and "prudence" do not.

The default list (`DEFAULT_BLOCKLIST`) is short and deliberately conservative: it exists so the
refusal path is exercised, not to be a content policy. Give your own terms (`PromptFilter(terms)`),
add to or allow out of the default (`extra=`, `allow=`), or read a file of one term per line
(`PromptFilter.from_file`, '#' starts a comment).
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from utils.errors import SafetyRefusal, UserError

DEFAULT_BLOCKLIST: tuple[str, ...] = (
    "nude", "naked", "nudity", "nsfw", "porn", "porno", "pornographic", "pornography", "explicit sex",
    "sexual intercourse", "genitals", "child abuse", "gore", "gory", "beheading", "decapitated", "dismembered",
    "mutilated corpse",
)
"""The default blocked terms: explicit sexual content, sexual content involving minors, graphic gore."""

_DIGITS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t"}
_SYMBOLS = {"@": "a", "$": "s", "!": "i", "|": "i"}


def _read_lookalikes(chunk: str) -> str:
    """Digits read as letters next to a letter ("nud3s", "p0rn"), symbols before one ("$ex"); a
    trailing "!" stays punctuation."""
    out = []
    for i, c in enumerate(chunk):
        left = chunk[i - 1].isalpha() if i else False
        right = chunk[i + 1].isalpha() if i + 1 < len(chunk) else False
        if c in _DIGITS and (left or right):
            c = _DIGITS[c]
        elif c in _SYMBOLS and right:
            c = _SYMBOLS[c]
        out.append(c)
    return "".join(out)


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", str(text))
    folded = "".join(c for c in folded if not unicodedata.combining(c)).casefold()
    words: list[str] = []
    for chunk in map(_read_lookalikes, folded.split()):
        pieces = "".join(c if c.isalnum() else " " for c in chunk).split()
        if len(pieces) > 1 and all(len(p) == 1 for p in pieces):  # "n.u.d.e" spelled out in one chunk
            words.append("".join(pieces))
        else:
            words.extend(pieces)
    return words


def normalize_prompt(text: str) -> str:
    """The form prompts and blocked terms are compared in (see the module docstring)."""
    return " ".join(_words(text))


@dataclass(frozen=True)
class FilterResult:
    """What the filter found in one prompt."""

    blocked: bool
    """True when a blocked term occurs."""
    term: str | None
    """The blocked term found (as configured), or None."""
    normalized: str
    """The prompt in the normalised form it was matched in."""


class PromptFilter:
    """A blocklist of words and phrases, matched on normalised prompts (see the module docstring)."""

    def __init__(self, terms: Iterable[str] | None = None, extra: Iterable[str] = (), allow: Iterable[str] = ()):
        chosen = list(DEFAULT_BLOCKLIST if terms is None else terms) + list(extra)
        allowed = {normalize_prompt(a) for a in allow}
        self._terms: list[tuple[str, tuple[str, ...]]] = []
        for term in chosen:
            words = tuple(_words(term))
            if not words:
                raise UserError(f"the blocklist term {term!r} has no letters or digits: remove it")
            if " ".join(words) not in allowed:
                self._terms.append((str(term), words))

    @classmethod
    def from_file(cls, path: str | os.PathLike, **kw) -> "PromptFilter":
        """One term per line; blank lines and '#' comments are skipped."""
        p = Path(path)
        if not p.is_file():
            raise UserError(f"blocklist file not found: {p}")
        lines = [ln.split("#", 1)[0].strip() for ln in p.read_text(encoding="utf-8").splitlines()]
        return cls([ln for ln in lines if ln], **kw)

    @property
    def terms(self) -> list[str]:
        return [t for t, _ in self._terms]

    @staticmethod
    def _matches(words: Sequence[str], term: tuple[str, ...]) -> bool:
        if len(term) == 1 and PromptFilter._spelled_out(words, term[0]):
            return True
        n = len(term)
        for i in range(len(words) - n + 1):
            window = words[i:i + n]
            if tuple(window[:-1]) != term[:-1]:
                continue
            last, want = window[-1], term[-1]
            if last in (want, want + "s", want + "es"):
                return True
        return False

    @staticmethod
    def _spelled_out(words: Sequence[str], want: str) -> bool:
        """"n u d e": consecutive one-letter words that spell the term."""
        forms = (want, want + "s", want + "es")
        for i in range(len(words)):
            spelled = ""
            for w in words[i:]:
                if len(w) != 1:
                    break
                spelled += w
                if spelled in forms:
                    return True
        return False

    def check(self, prompt: str) -> FilterResult:
        words = _words(prompt)
        for term, tw in self._terms:
            if self._matches(words, tw):
                return FilterResult(True, term, " ".join(words))
        return FilterResult(False, None, " ".join(words))

    def refuse_blocked(self, prompts: str | Sequence[str], what: str = "prompt") -> None:
        """Raise SafetyRefusal (exit code 3 in the CLIs) when any prompt holds a blocked term."""
        for i, prompt in enumerate([prompts] if isinstance(prompts, str) else list(prompts)):
            if prompt is None:
                continue
            found = self.check(prompt)
            if found.blocked:
                which = what if isinstance(prompts, str) else f"{what} {i}"
                raise SafetyRefusal(f"the {which} was refused by the safety filter: it contains the blocked term "
                                    f"'{found.term}'; rephrase it (nothing was generated)")


__all__ = ["DEFAULT_BLOCKLIST", "FilterResult", "PromptFilter", "normalize_prompt"]
