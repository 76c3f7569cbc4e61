"""The only list of models in the zoo: the spec modules of the packages, each with its `ModelSpec`s.

Nothing here imports torch or a model module: a package's spec.py is torch-free and names its
pipeline as "module:Class", which is imported on first use, so `import models` stays fast.
"""
from __future__ import annotations

import importlib
from models.spec import ModelSpec, WeightsSource  # noqa: F401 - re-exported
from utils.errors import UserError, did_you_mean

MODALITIES = ("image", "gan", "video", "3d")


# The spec modules of the zoo, in the order of the README's table. A new model adds its package's
# spec module here (and nowhere else).
SPEC_MODULES: tuple[str, ...] = (
    "models.gan.vanilla_gan.spec",
    "models.gan.dcgan.spec",
    "models.image_generation.flux.spec",
    "models.image_generation.stable_diffusion.spec",
    "models.image_generation.imagen.spec",
    "models.image_generation.dalle3.spec",
    "models.video_generation.svd.spec",
    "models.video_generation.sora.spec",
    "models.video_generation.luma_dream.spec",
    "models.video_generation.runway_gen3.spec",
    "models.generation_3d.gaussian_splatting.spec",
    "models.generation_3d.nerf.spec",
    "models.generation_3d.voxel_vae_gan.spec",
    "models.generation_3d.shap_e.spec",
    "models.generation_3d.point_e.spec",
    "models.generation_3d.get3d.spec",
    "models.gan.wgan_gp.spec",
    "models.gan.progressive_gan.spec",
    "models.gan.cyclegan.spec",
    "models.gan.biggan.spec",
    "models.gan.vqgan.spec",
    "models.gan.stylegan3.spec",
    "models.gan.aetherist.spec",
    "models.gan.esrgan.spec",
)


def _collect() -> tuple[ModelSpec, ...]:
    found: list[ModelSpec] = []
    for name in SPEC_MODULES:
        module = importlib.import_module(name)
        found += list(getattr(module, "SPECS", None) or (module.SPEC,))
    return tuple(found)


MODELS: tuple[ModelSpec, ...] = _collect()


def _index() -> dict[tuple[str, str], ModelSpec]:
    idx = {}
    for spec in MODELS:
        for name in (spec.name, *spec.aliases):
            idx[(spec.modality, name)] = spec
    return idx


def get_spec(modality: str, name: str) -> ModelSpec:
    """The spec of `name` in `modality`; an unknown name fails with the close matches."""
    if modality not in MODALITIES:
        raise UserError(f"unknown modality '{modality}': {did_you_mean(modality, MODALITIES)}")
    idx = _index()
    key = name.lower().replace("-", "_") if (modality, name) not in idx else name
    if (modality, key) in idx:
        return idx[(modality, key)]
    if (modality, name) in idx:
        return idx[(modality, name)]
    elsewhere = [m for (m, n) in idx if n == name]
    if elsewhere:
        raise UserError(f"'{name}' is a {elsewhere[0]} model, not a {modality} model: "
                        f"use modality '{elsewhere[0]}'")
    names = [s.name for s in MODELS if s.modality == modality]
    hint = did_you_mean(name, names + [n for (m, n) in idx if m == modality and n not in names])
    if not hint.startswith("did"):
        hint = did_you_mean(name, names)
    raise UserError(f"unknown {modality} model '{name}': {hint} "
                    f"(python -m models list shows every model)")


def find_spec(name: str, modalities: tuple[str, ...] = MODALITIES) -> ModelSpec:
    """Look `name` up across several modalities (the image CLI serves both 'image' and 'gan')."""
    idx = _index()
    for modality in modalities:
        for key in (name, name.lower().replace("-", "_")):
            if (modality, key) in idx:
                return idx[(modality, key)]
    names = [s.name for s in MODELS if s.modality in modalities]
    aliases = [n for (m, n) in idx if m in modalities and n not in names]
    hint = did_you_mean(name, names + aliases)
    if not hint.startswith("did"):
        hint = did_you_mean(name, names)
    raise UserError(f"unknown model '{name}': {hint} "
                    f"(python -m models list shows every model)")


def specs(modality: str | None = None) -> list[ModelSpec]:
    return [s for s in MODELS if modality is None or s.modality == modality]
