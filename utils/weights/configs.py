"""A model config for a single file, settled from what its tensor shapes say.

A single file (an official release, a fine-tune, a community export) carries tensors but no config.
Its shapes fix some fields (widths, depths, how many levels); others leave no trace in the weights
(GroupNorm's group count, the attention head size when nothing is normalised per head, the width of
the micro-conditioning features). A loader therefore works in three steps:

1. an explicit config from the user wins, after a check that it agrees with every field the shapes fix;
2. otherwise a known preset whose shape-fixed fields all agree is taken whole (the official releases
   load with no config: their shapes together with the known release values are unambiguous);
3. otherwise the loader refuses, naming the fields the weights cannot tell and the config to pass.

`settle_config` does the three steps for any frozen dataclass config; the "facts" are the fields
(or properties) read off the shapes, as a {name: value} dict.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Iterable, Mapping, TypeVar

from utils.errors import UserError

C = TypeVar("C")


def config_contradictions(config: Any, facts: Mapping[str, Any]) -> list[str]:
    """'field is X but the weights have Y' for every fact the config disagrees with."""
    return [f"{name} is {getattr(config, name)!r} but the weights have {value!r}"
            for name, value in facts.items() if getattr(config, name) != value]


def check_config(config: Any, facts: Mapping[str, Any], what: str) -> None:
    """Raise a one-line UserError when an explicit config contradicts the shapes of the weights."""
    bad = config_contradictions(config, facts)
    if bad:
        raise UserError(f"the config passed for {what} does not match its weights ({'; '.join(bad)}): "
                        "fix those fields of the config, or leave the config out to read them off the file")


def matching_presets(facts: Mapping[str, Any], presets: Mapping[str, C]) -> list[str]:
    """Names of the presets whose shape-fixed fields all equal the facts."""
    return [name for name, cfg in presets.items() if not config_contradictions(cfg, facts)]


def config_call(cls: type, facts: Mapping[str, Any], unknown: Iterable[str]) -> str:
    """'Cls(a=1, b=(1, 2), head_dim=...)': the config to pass, facts filled in, unknown fields to choose."""
    names = {f.name for f in fields(cls)}
    known = [f"{k}={v!r}" for k, v in facts.items() if k in names]
    return f"{cls.__name__}({', '.join(known + [f'{u}=...' for u in unknown])})"


def settle_config(facts: Mapping[str, Any], presets: Mapping[str, C], cls: type, undetermined: Iterable[str],
                  what: str, config: C | None = None, prefer: str | C | None = None,
                  suggest: Mapping[str, Any] | None = None, hint: str = "",
                  fallback: C | None = None) -> tuple[C, str | None]:
    """(config, preset name or None) for weights whose shapes give `facts`; see the module docstring.

    `undetermined`: the fields that change outputs and that the weights do not store. `prefer`: a
    preset name (or config) to take among several that match (e.g. the one the user asked for).
    Fields that neither the shapes nor a preset fix are a one-line UserError naming them, with the
    config call to pass: `suggest` (default: the facts that are fields) filled in, the unknown fields
    left to choose, and `hint` after it. `fallback`: the config built from the facts alone, taken
    when no preset matches and nothing is undetermined (the shapes fix every field).
    """
    undetermined = list(undetermined)
    if config is not None:
        check_config(config, facts, what)
        return config, None
    if prefer is not None and not isinstance(prefer, str) and not config_contradictions(prefer, facts):
        return prefer, None
    found = matching_presets(facts, presets)
    if isinstance(prefer, str) and prefer in found:
        return presets[prefer], prefer
    if found:
        first = presets[found[0]]
        split = [u for u in undetermined if any(getattr(presets[n], u) != getattr(first, u) for n in found)]
        if not split:
            return first, found[0]
        raise UserError(f"{what} matches the presets {', '.join(found)}, which differ in {', '.join(split)} (not "
                        f"stored in the weights): pass preset= one of them, or config=")
    if not undetermined and fallback is not None:
        return fallback, None
    listed = " and ".join(undetermined) if len(undetermined) < 3 else ", ".join(undetermined)
    verb = "is" if len(undetermined) == 1 else "are"
    raise UserError(f"{what} has sizes no preset has, and its {listed} {verb} not stored in the weights: "
                    f"pass config={config_call(cls, facts if suggest is None else suggest, undetermined)} with the "
                    f"value{'s' if len(undetermined) > 1 else ''} it was built with{hint}")


__all__ = ["check_config", "config_call", "config_contradictions", "matching_presets", "settle_config"]
