"""cv-generative: one facade over every model of the zoo.

    from models import generate
    generate("gan", "dcgan", seed=0).save("digits.png")
    generate("image", "flux", prompt="a red fox in snow")

Model modules are imported on first use, so `import models` is fast.
"""
from __future__ import annotations

import threading
from typing import Any

from models.registry import MODALITIES, MODELS, ModelSpec, WeightsSource, find_spec, get_spec, specs

__all__ = ["MODALITIES", "MODELS", "ModelSpec", "WeightsSource", "available", "generate", "load", "check_call",
           "get_spec", "find_spec", "clear_cache", "ImageOutput", "VideoOutput", "Output3D"]

_OUTPUTS = ("ImageOutput", "VideoOutput", "Output3D")


def __getattr__(name: str) -> Any:
    """The typed outputs (utils/outputs.py), imported on first use so `import models` stays light."""
    if name in _OUTPUTS:
        import utils.outputs

        return getattr(utils.outputs, name)
    raise AttributeError(f"module 'models' has no attribute '{name}'")

_cache: dict[tuple, Any] = {}
_lock = threading.Lock()
_building: dict[tuple, threading.Lock] = {}
"""One lock per cache key: the first thread builds the pipeline, the others wait for it."""


def _check_name(value: Any, what: str, example: str) -> None:
    from utils.errors import UserError

    if not isinstance(value, str) or not value:
        raise UserError(f"the {what} must be a name such as '{example}', got {type(value).__name__} {value!r}: "
                        "models.available() lists them")


def _check_source(value: Any, what: str) -> None:
    import os

    from utils.errors import UserError

    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{what} must be a path or a hub repo id (a string), got {type(value).__name__} {value!r}")


def available(modality: str | None = None) -> list[str]:
    """Names of the registered models, of one modality or all ('modality/name')."""
    if modality is None:
        return [f"{s.modality}/{s.name}" for s in MODELS]
    _check_name(modality, "modality", "gan")
    if modality not in MODALITIES:
        from utils.errors import UserError, did_you_mean

        raise UserError(f"unknown modality '{modality}': {did_you_mean(modality, MODALITIES)}")
    return [s.name for s in specs(modality)]


def load(modality: str, model: str, weights: str | None = None, preset: str | None = None,
         device: str | None = None, dtype: str | None = None, cache: bool = True) -> Any:
    """Build (and cache) the pipeline of a registered model.

    `weights` is a local file or folder or a hub repo id; `None` takes the registered source of
    the preset (or random weights for `preset='tiny'`). Each pipeline is built once: threads asking
    for the same one meanwhile wait for it. Every failure a caller can cause is a `UserError`.
    """
    from utils.errors import user_errors

    _check_name(modality, "modality", "gan")
    _check_name(model, "model", "dcgan")
    if preset is not None:
        _check_name(preset, "preset", "tiny")
    _check_source(weights, "weights")
    for value, what in ((device, "device"), (dtype, "dtype")):
        if value is not None and not isinstance(value, str) and type(value).__name__ not in ("device", "dtype"):
            from utils.errors import UserError

            raise UserError(f"{what} must be a name such as 'cpu' or 'fp32', got {type(value).__name__} {value!r}")
    spec = get_spec(modality, model)
    spec.check_preset(preset)
    key = (spec.modality, spec.name, None if weights is None else str(weights), preset, str(device), str(dtype))

    def build() -> Any:
        with user_errors():
            return spec.pipeline_class().from_pretrained(weights, preset=preset, device=device, dtype=dtype)

    if not cache:
        return build()
    with _lock:
        if key in _cache:
            return _cache[key]
        key_lock = _building.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _cache:  # built by the thread this one waited for
                return _cache[key]
        pipe = build()
        with _lock:
            _cache[key] = pipe
            _building.pop(key, None)
    return pipe


def check_call(pipe: Any, kwargs: dict[str, Any]) -> None:
    """Refuse, before any work, a call argument the pipeline does not name or a value its name forbids
    (`utils.cli.check_value`: seeds, sizes, counts, guidance, strength)."""
    import inspect

    from utils.cli import check_value
    from utils.errors import UserError, did_you_mean

    call = getattr(pipe, "__call__", None)
    try:
        params = inspect.signature(call).parameters
    except (TypeError, ValueError):
        params = {}
    if params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        named = [n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL,)]
        for name in kwargs:
            if name not in named:
                raise UserError(f"{type(pipe).__name__} takes no argument '{name}': {did_you_mean(name, named)}")
    for name, value in kwargs.items():
        check_value(name, value)


def generate(modality: str, model: str, *, weights: str | None = None, preset: str | None = None,
             device: str | None = None, dtype: str | None = None, **kwargs: Any) -> Any:
    """Load `model` of `modality` (cached) and call it; returns an output with `.save(path)`.

    Bad arguments (names, types, ranges), unreadable files and out-of-memory raise `UserError`."""
    from utils.cli import check_value
    from utils.errors import user_errors

    for name, value in kwargs.items():  # values checked by their names before anything loads
        check_value(name, value)
    pipe = load(modality, model, weights=weights, preset=preset, device=device, dtype=dtype)
    check_call(pipe, kwargs)
    with user_errors():
        return pipe(**kwargs)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
