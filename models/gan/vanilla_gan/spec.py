"""The vanilla GAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

SPEC = ModelSpec(
    modality="gan", name="vanilla_gan", package=__package__,
    summary="MLP generator and discriminator, the original GAN (Goodfellow et al. 2014).",
    pipeline="models.gan.vanilla_gan.pipeline:VanillaGANPipeline",
    presets=("digits", "mnist", "tiny"), default_preset="digits",
    weights=(WeightsSource("digits", "package:models/gan/vanilla_gan/weights/digits.safetensors",
                           "Apache-2.0 (trained in this repo)", layout="native"),),
    paper="https://arxiv.org/abs/1406.2661", trainer="models.gan.vanilla_gan.training:recipe",
)
