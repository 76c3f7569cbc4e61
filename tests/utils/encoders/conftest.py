"""Make the shared test helpers (tests/helpers) importable as `helpers` from these tests.

A stray `tests` package in site-packages shadows this repo's `tests` namespace, so the helpers
are imported by their folder instead (`from helpers.tokenizers import write_clip_tokenizer`).
"""
from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parents[2])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
