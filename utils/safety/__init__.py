"""Safety filters every pipeline may use: a prompt blocklist and the CLIP-based image safety checker.

    from utils.safety import PromptFilter, SafetyChecker

A refusal is a `utils.errors.SafetyRefusal` (a UserError whose CLI exit code is 3). Names are
imported on first use, so `import utils.safety` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PromptFilter": "utils.safety.prompt_filter", "FilterResult": "utils.safety.prompt_filter",
    "normalize_prompt": "utils.safety.prompt_filter", "DEFAULT_BLOCKLIST": "utils.safety.prompt_filter",
    "SafetyChecker": "utils.safety.safety_checker", "SafetyCheckerConfig": "utils.safety.safety_checker",
    "SafetyResult": "utils.safety.safety_checker", "clip_preprocess": "utils.safety.safety_checker",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'utils.safety' has no attribute '{name}'")


__all__ = sorted(_EXPORTS)
