"""What a model package tells the zoo about itself: `ModelSpec` and `WeightsSource`.

Every package holds a torch-free `spec.py` with its `SPEC` (or `SPECS`, for a package that serves
several registry names): presets, the default, weights sources with licence and gating, and
per-preset call defaults. `models/registry.py` imports those modules; pipelines, converters and
the command lines read them. Nothing here imports torch.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from utils.errors import UserError, did_you_mean

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class WeightsSource:
    """One place a model's weights come from."""

    preset: str
    """The preset these weights fit."""
    source: str
    """A hub repo id ('owner/name'), or 'package:<path inside the repo>' for weights shipped here."""
    licence: str
    """The licence of the weights (not of this code)."""
    file: str | None = None
    """The file inside the repo, for single-file releases."""
    gated: bool = False
    """True when the hub asks users to accept terms and log in before downloading."""
    layout: str = "official"
    """'official' (the authors' release), 'diffusers', or 'native' (this zoo's own)."""


@dataclass(frozen=True)
class ModelSpec:
    """What the facade needs to know about one model."""

    modality: str
    """'image', 'gan', 'video' or '3d'."""
    name: str
    """The registry name users type (`--model NAME`)."""
    summary: str
    """One line: the paper or release and what it generates."""
    package: str
    """The dotted package that holds the model (its README.md lives in that folder)."""
    pipeline: str
    """'module.path:ClassName' of a class with `from_pretrained(source, preset, device, dtype)`."""
    presets: tuple[str, ...]
    """Preset names, 'tiny' (small random weights, for tests) among them."""
    default_preset: str
    """The preset used when none is given."""
    weights: tuple[WeightsSource, ...] = ()
    """Where each preset's weights come from; a preset without an entry runs on random weights only."""
    aliases: tuple[str, ...] = ()
    """Other names that find this model."""
    paper: str = ""
    """Link to the paper or release."""
    trainer: str = ""
    """'module.path:function' returning the training recipe of a preset, for models that train."""
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per-preset call defaults (steps, guidance, ...); '*' holds the ones every preset shares."""

    def pipeline_class(self) -> type:
        module_name, _, cls_name = self.pipeline.partition(":")
        return getattr(importlib.import_module(module_name), cls_name)

    def training_recipe(self, preset: str, **options: Any):
        """The recipe of `preset`; `options` (e.g. StyleGAN's cfg) go to recipes that take them."""
        if not self.trainer:
            raise UserError(f"{self.name} has no training recipe in this zoo")
        module_name, _, fn = self.trainer.partition(":")
        return getattr(importlib.import_module(module_name), fn)(preset, **options)

    def check_preset(self, preset: str | None) -> str:
        """`preset`, or the default when it is None; an unknown name fails with the close matches."""
        if preset is None:
            return self.default_preset
        if preset not in self.presets:
            raise UserError(f"{self.name} has no preset '{preset}': {did_you_mean(preset, self.presets)}")
        return preset

    def weights_for(self, preset: str) -> WeightsSource | None:
        return next((w for w in self.weights if w.preset == preset), None)

    def default(self, preset: str, key: str, fallback: Any = None) -> Any:
        """The call default `key` of `preset` (its own value, else the shared '*' one, else `fallback`)."""
        for scope in (preset, "*"):
            if key in self.defaults.get(scope, {}):
                return self.defaults[scope][key]
        return fallback

    @property
    def folder(self) -> Path:
        """The package folder, relative to the repository root."""
        return Path(*self.package.split("."))

    @property
    def readme(self) -> Path:
        """The model card, relative to the repository root."""
        return self.folder / "README.md"

    def to_dict(self) -> dict:
        d = asdict(self)
        for key in ("pipeline", "trainer", "package"):
            d.pop(key)
        d["trainable"] = bool(self.trainer)
        d["presets"] = list(self.presets)
        d["aliases"] = list(self.aliases)
        d["weights"] = [asdict(w) for w in self.weights]
        d["defaults"] = {k: dict(v) for k, v in self.defaults.items()}
        d["readme"] = str(self.readme)
        return d
