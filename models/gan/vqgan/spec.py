"""VQGAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="gan", name="vqgan", package=__package__,
    summary="VQGAN (Esser et al. 2021): vector-quantised autoencoder; reconstructs images and decodes code indices.",
    pipeline="models.gan.vqgan.pipeline:VQGANPipeline",
    presets=("imagenet-f16-1024", "imagenet-f16-16384", "tiny"), default_preset="imagenet-f16-1024",
    aliases=("taming", "vq-gan"),
    paper="https://arxiv.org/abs/2012.09841", trainer="models.gan.vqgan.training:recipe",
)
