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

__all__ = ["MODALITIES", "MODELS", "ModelSpec", "WeightsSource", "available", "generate", "load",
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


def available(modality: str | None = None) -> list[str]:
    """Names of the registered models, of one modality or all ('modality/name')."""
    if modality is None:
        return [f"{s.modality}/{s.name}" for s in MODELS]
    if modality not in MODALITIES:
        from utils.errors import UserError, did_you_mean

        raise UserError(f"unknown modality '{modality}': {did_you_mean(modality, MODALITIES)}")
    return [s.name for s in specs(modality)]


def load(modality: str, model: str, weights: str | None = None, preset: str | None = None,
         device: str | None = None, dtype: str | None = None, cache: bool = True) -> Any:
    """Build (and cache) the pipeline of a registered model.

    `weights` is a local file or folder or a hub repo id; `None` takes the registered source of
    the preset (or random weights for `preset='tiny'`).
    """
    spec = get_spec(modality, model)
    spec.check_preset(preset)
    key = (spec.modality, spec.name, weights, preset, str(device), str(dtype))
    with _lock:
        if cache and key in _cache:
            return _cache[key]
    pipe = spec.pipeline_class().from_pretrained(weights, preset=preset, device=device, dtype=dtype)
    if cache:
        with _lock:
            _cache[key] = pipe
    return pipe


def generate(modality: str, model: str, *, weights: str | None = None, preset: str | None = None,
             device: str | None = None, dtype: str | None = None, **kwargs: Any) -> Any:
    """Load `model` of `modality` (cached) and call it; returns an output with `.save(path)`."""
    return load(modality, model, weights=weights, preset=preset, device=device, dtype=dtype)(**kwargs)


def clear_cache() -> None:
    with _lock:
        _cache.clear()
