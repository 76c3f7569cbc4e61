"""The models the server offers, read from the registry, and what each one's call takes.

Nothing here names a model: a package registered in `models/registry.py` appears in the demo and
the API on the next start, with the controls its pipeline's `__call__` accepts.
"""
from __future__ import annotations

import inspect
import sys
import threading
from dataclasses import dataclass
from typing import Any

import models
from models.registry import MODALITIES, find_spec, get_spec, specs
from models.spec import ModelSpec
from utils.errors import UserError, short_reason


class UnknownModel(UserError):
    """A model name that is not registered, or not served by this server (answered 404)."""


@dataclass(frozen=True)
class ModelInfo:
    """One served model: its spec and the keyword arguments of its pipeline call."""

    spec: ModelSpec
    """The registry entry."""
    params: frozenset[str]
    """Names the pipeline's `__call__` accepts."""
    latent: bool
    """A latent GAN: `sample_latents` and a `latents=` input, so interpolation and latent files apply."""

    @property
    def key(self) -> str:
        return f"{self.spec.modality}/{self.spec.name}"

    @property
    def camera(self) -> bool:
        """Renders views from camera settings (3D models and 3D-aware GANs)."""
        return "elevation" in self.params or "azimuth" in self.params or "cameras" in self.params

    def takes(self, name: str) -> bool:
        return name in self.params

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"modality": s.modality, "name": s.name, "summary": s.summary, "presets": list(s.presets),
                "default_preset": s.default_preset, "aliases": list(s.aliases), "paper": s.paper,
                "options": sorted(self.params), "latent_tools": self.latent, "camera": self.camera}


def _call_params(cls: type) -> frozenset[str]:
    params = inspect.signature(cls.__call__).parameters
    return frozenset(n for n, p in params.items()
                     if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))


def describe(spec: ModelSpec) -> ModelInfo:
    """What the server needs to know about a registered model (imports its pipeline module)."""
    cls = spec.pipeline_class()
    params = _call_params(cls)
    return ModelInfo(spec, params, latent=callable(getattr(cls, "sample_latents", None)) and "latents" in params)


class Catalog:
    """The served models (all registered ones, or those named), and their loaded pipelines."""

    def __init__(self, names: tuple[str, ...] = (), default: str = "gan/dcgan", device: str | None = None,
                 dtype: str | None = None):
        chosen = [_lookup(n) for n in names] if names else specs()
        self.infos: dict[str, ModelInfo] = {}
        self.skipped: dict[str, str] = {}
        """'modality/name' -> why a registered model could not be offered (its pipeline does not import)."""
        for spec in chosen:
            try:
                info = describe(spec)
            except Exception as err:  # noqa: BLE001 - one broken package must not take the demo down
                if names:
                    raise UserError(f"{spec.name} cannot be served: its pipeline does not import "
                                    f"({short_reason(err)})") from None
                self.skipped[f"{spec.modality}/{spec.name}"] = short_reason(err)
                print(f"warning: not serving {spec.modality}/{spec.name}: its pipeline does not import "
                      f"({short_reason(err)})", file=sys.stderr)
                continue
            self.infos[info.key] = info
        if not self.infos:
            raise UserError("no models to serve: name registered models with --models (python -m models list)")
        wanted = _lookup(default) if default else None
        default_key = f"{wanted.modality}/{wanted.name}" if wanted else ""
        self.default = default_key if default_key in self.infos else next(iter(self.infos))
        """The model selected when a page opens."""
        self.device, self.dtype = device, dtype
        self._locks: dict[tuple, threading.Lock] = {}
        self._guard = threading.Lock()
        self._loaded: set[str] = set()

    def of(self, modality: str | None = None, *, latent: bool | None = None, camera: bool | None = None) -> list[ModelInfo]:
        """The served models of a modality (or all), optionally only latent GANs or camera models."""
        return [i for i in self.infos.values() if (modality is None or i.spec.modality == modality)
                and (latent is None or i.latent == latent) and (camera is None or i.camera == camera)]

    def info(self, model: str, modality: str | None = None) -> ModelInfo:
        """The served model called `model` ('name' or 'modality/name'), or UnknownModel."""
        if modality is None and "/" in model:
            modality, model = model.split("/", 1)
        if modality is not None and modality not in MODALITIES:
            raise UnknownModel(f"unknown modality '{modality}': use one of {', '.join(MODALITIES)}")
        try:
            spec = get_spec(modality, model) if modality else find_spec(model)
        except UserError as err:
            raise UnknownModel(str(err)) from None
        key = f"{spec.modality}/{spec.name}"
        if key not in self.infos:
            raise UnknownModel(f"{key} is registered but not served here: this server serves "
                               f"{', '.join(self.infos)} (start it with --models {spec.name})")
        return self.infos[key]

    def pipeline(self, info: ModelInfo, preset: str | None) -> Any:
        """The loaded pipeline of a served model and preset (loaded once, then shared by every request)."""
        preset = info.spec.check_preset(preset)
        key = (info.key, preset)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # two first requests of one model load it once
            pipe = models.load(info.spec.modality, info.spec.name, preset=preset, device=self.device,
                               dtype=self.dtype)
        self._loaded.add(f"{info.key}:{preset}")
        return pipe

    def loaded(self) -> list[str]:
        """'modality/name:preset' of every pipeline loaded so far."""
        return sorted(self._loaded)


def _lookup(name: str) -> ModelSpec:
    if "/" in name:
        modality, model = name.split("/", 1)
        return get_spec(modality, model)
    return find_spec(name)
