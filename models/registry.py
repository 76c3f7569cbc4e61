"""The only list of models in the zoo: one `ModelSpec` per model.

Nothing here imports torch or a model module: a spec names its pipeline as "module:Class" and
the class is imported on first use, so `import models` stays fast.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field

from utils.errors import UserError, did_you_mean

MODALITIES = ("image", "gan", "video", "3d")


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
    name: str
    summary: str
    pipeline: str
    """'module.path:ClassName' of a class with `from_pretrained(source, preset, device, dtype)`."""
    presets: tuple[str, ...]
    default_preset: str
    weights: tuple[WeightsSource, ...] = ()
    aliases: tuple[str, ...] = ()
    paper: str = ""
    trainer: str = ""
    """'module.path:function' returning the training recipe of a preset, for models that train."""

    def pipeline_class(self) -> type:
        module_name, _, cls_name = self.pipeline.partition(":")
        return getattr(importlib.import_module(module_name), cls_name)

    def training_recipe(self, preset: str):
        if not self.trainer:
            raise UserError(f"{self.name} has no training recipe in this zoo")
        module_name, _, fn = self.trainer.partition(":")
        return getattr(importlib.import_module(module_name), fn)(preset)

    def weights_for(self, preset: str) -> WeightsSource | None:
        return next((w for w in self.weights if w.preset == preset), None)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("pipeline")
        d.pop("trainer")
        d["trainable"] = bool(self.trainer)
        d["presets"] = list(self.presets)
        d["aliases"] = list(self.aliases)
        d["weights"] = [asdict(w) for w in self.weights]
        return d


MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        modality="gan", name="vanilla_gan",
        summary="MLP generator and discriminator, the original GAN (Goodfellow et al. 2014).",
        pipeline="models.gan.vanilla_gan.pipeline:VanillaGANPipeline",
        presets=("digits", "mnist", "tiny"), default_preset="digits",
        weights=(WeightsSource("digits", "package:models/gan/vanilla_gan/weights/digits.safetensors",
                               "Apache-2.0 (trained in this repo)", layout="native"),),
        paper="https://arxiv.org/abs/1406.2661", trainer="models.gan.vanilla_gan.training:recipe",
    ),
    ModelSpec(
        modality="gan", name="dcgan",
        summary="Deep convolutional GAN (Radford et al. 2015), unconditional or class-conditional.",
        pipeline="models.gan.dcgan.pipeline:DCGANPipeline",
        presets=("digits", "celeba-64", "tiny"), default_preset="digits",
        weights=(WeightsSource("digits", "package:models/gan/dcgan/weights/digits.safetensors",
                               "Apache-2.0 (trained in this repo)", layout="native"),),
        paper="https://arxiv.org/abs/1511.06434", trainer="models.gan.dcgan.training:recipe",
    ),
    # -- new models go below this line, one ModelSpec each --
    ModelSpec(
        modality="image", name="flux",
        summary="FLUX.1 (Black Forest Labs 2024): 12B rectified-flow transformer; schnell, dev, Fill inpainting, "
                "Canny and Depth control.",
        pipeline="models.image_generation.flux.pipeline:FluxPipeline",
        presets=("schnell", "dev", "fill", "canny", "depth", "tiny"), default_preset="schnell",
        weights=(WeightsSource("schnell", "black-forest-labs/FLUX.1-schnell", "Apache-2.0",
                               file="flux1-schnell.safetensors"),
                 WeightsSource("dev", "black-forest-labs/FLUX.1-dev", "FLUX.1 [dev] Non-Commercial License",
                               file="flux1-dev.safetensors", gated=True),
                 WeightsSource("fill", "black-forest-labs/FLUX.1-Fill-dev", "FLUX.1 [dev] Non-Commercial License",
                               file="flux1-fill-dev.safetensors", gated=True),
                 WeightsSource("canny", "black-forest-labs/FLUX.1-Canny-dev", "FLUX.1 [dev] Non-Commercial License",
                               file="flux1-canny-dev.safetensors", gated=True),
                 WeightsSource("depth", "black-forest-labs/FLUX.1-Depth-dev", "FLUX.1 [dev] Non-Commercial License",
                               file="flux1-depth-dev.safetensors", gated=True)),
        aliases=("flux1", "flux.1", "flux-1"),
        paper="https://github.com/black-forest-labs/flux",
    ),
    ModelSpec(
        modality="image", name="sdxl",
        summary="Stable Diffusion XL (Podell et al. 2023): base + refiner UNets, text-to-image, img2img, inpainting.",
        pipeline="models.image_generation.stable_diffusion.pipeline:SDXLPipeline",
        presets=("sdxl-base", "sdxl-refiner", "tiny"), default_preset="sdxl-base",
        weights=(WeightsSource("sdxl-base", "stabilityai/stable-diffusion-xl-base-1.0", "CreativeML Open RAIL++-M",
                               file="sd_xl_base_1.0.safetensors"),
                 WeightsSource("sdxl-refiner", "stabilityai/stable-diffusion-xl-refiner-1.0",
                               "CreativeML Open RAIL++-M", file="sd_xl_refiner_1.0.safetensors")),
        aliases=("stable-diffusion-xl", "sd-xl"),
        paper="https://arxiv.org/abs/2307.01952",
    ),
    ModelSpec(
        modality="image", name="sd3",
        summary="Stable Diffusion 3 / 3.5 (Esser et al. 2024): MMDiT rectified-flow transformer, CLIP-L + CLIP-G + T5.",
        pipeline="models.image_generation.stable_diffusion.pipeline:SD3Pipeline",
        presets=("sd3-medium", "sd3.5-medium", "sd3.5-large", "tiny"), default_preset="sd3.5-medium",
        weights=(WeightsSource("sd3-medium", "stabilityai/stable-diffusion-3-medium-diffusers",
                               "Stability AI Community License", gated=True, layout="diffusers"),
                 WeightsSource("sd3.5-medium", "stabilityai/stable-diffusion-3.5-medium",
                               "Stability AI Community License", file="sd3.5_medium.safetensors", gated=True),
                 WeightsSource("sd3.5-large", "stabilityai/stable-diffusion-3.5-large",
                               "Stability AI Community License", file="sd3.5_large.safetensors", gated=True)),
        aliases=("stable-diffusion-3", "sd3.5", "sd35"),
        paper="https://arxiv.org/abs/2403.03206",
    ),
    ModelSpec(
        modality="3d", name="gaussian_splatting",
        summary="3D Gaussian splatting (Kerbl et al. 2023): train on posed images, render and export .ply splats.",
        pipeline="models.generation_3d.gaussian_splatting.pipeline:GaussianSplattingPipeline",
        presets=("default", "tiny"), default_preset="default", aliases=("3dgs", "gsplat"),
        paper="https://arxiv.org/abs/2308.04079",
    ),
    ModelSpec(
        modality="gan", name="wgan_gp",
        summary="WGAN-GP (Gulrajani et al. 2017): Wasserstein GAN with a gradient penalty, DCGAN-like networks.",
        pipeline="models.gan.wgan_gp.pipeline:WGANGPPipeline",
        presets=("digits", "cifar-32", "tiny"), default_preset="tiny",
        aliases=("wgan-gp", "wgangp"),
        paper="https://arxiv.org/abs/1704.00028", trainer="models.gan.wgan_gp.training:recipe",
    ),
    ModelSpec(
        modality="gan", name="progressive_gan",
        summary="Progressive GAN (Karras et al. 2017): grown from 4x4, equalized lr, pixel norm, minibatch std.",
        pipeline="models.gan.progressive_gan.pipeline:ProgressiveGANPipeline",
        presets=("celebahq-1024", "celebahq-512", "celebahq-256", "digits-32", "tiny"), default_preset="tiny",
        aliases=("progan", "pgan", "progressive-gan"),
        paper="https://arxiv.org/abs/1710.10196", trainer="models.gan.progressive_gan.training:recipe",
    ),
    ModelSpec(
        modality="gan", name="cyclegan",
        summary="CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with cycle consistency.",
        pipeline="models.gan.cyclegan.pipeline:CycleGANPipeline",
        presets=("resnet-9blocks", "resnet-6blocks", "digits", "tiny"), default_preset="resnet-9blocks",
        aliases=("cycle_gan", "cycle-gan"),
        paper="https://arxiv.org/abs/1703.10593", trainer="models.gan.cyclegan.training:recipe",
    ),
    ModelSpec(
        modality="gan", name="biggan",
        summary="BigGAN-deep (Brock et al. 2018): class-conditional ImageNet generator at 128, 256 or 512 px.",
        pipeline="models.gan.biggan.pipeline:BigGANPipeline",
        presets=("biggan-deep-128", "biggan-deep-256", "biggan-deep-512", "tiny"), default_preset="biggan-deep-128",
        weights=tuple(WeightsSource(f"biggan-deep-{r}", f"huggingface/biggan-deep-{r}", "Apache-2.0",
                                    layout="official") for r in (128, 256, 512)),
        aliases=("biggan-deep", "biggan_deep"),
        paper="https://arxiv.org/abs/1809.11096", trainer="models.gan.biggan.training:recipe",
    ),
    ModelSpec(
        modality="gan", name="vqgan",
        summary="VQGAN (Esser et al. 2021): vector-quantised autoencoder; reconstructs images and decodes code indices.",
        pipeline="models.gan.vqgan.pipeline:VQGANPipeline",
        presets=("imagenet-f16-1024", "imagenet-f16-16384", "tiny"), default_preset="imagenet-f16-1024",
        aliases=("taming", "vq-gan"),
        paper="https://arxiv.org/abs/2012.09841", trainer="models.gan.vqgan.training:recipe",
    ),
)


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
