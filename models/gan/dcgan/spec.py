"""DCGAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

SPEC = ModelSpec(
    modality="gan", name="dcgan", package=__package__,
    summary="Deep convolutional GAN (Radford et al. 2015), unconditional or class-conditional.",
    pipeline="models.gan.dcgan.pipeline:DCGANPipeline",
    presets=("digits", "celeba-64", "tiny"), default_preset="digits",
    weights=(WeightsSource("digits", "package:models/gan/dcgan/weights/digits.safetensors",
                           "Apache-2.0 (trained in this repo)", layout="native"),),
    paper="https://arxiv.org/abs/1511.06434", trainer="models.gan.dcgan.training:recipe",
)
