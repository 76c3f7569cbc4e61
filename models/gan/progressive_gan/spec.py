"""Progressive GAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="gan", name="progressive_gan", package=__package__,
    summary="Progressive GAN (Karras et al. 2017): grown from 4x4, equalized lr, pixel norm, minibatch std.",
    pipeline="models.gan.progressive_gan.pipeline:ProgressiveGANPipeline",
    presets=("celebahq-1024", "celebahq-512", "celebahq-256", "digits-32", "tiny"), default_preset="tiny",
    aliases=("progan", "pgan", "progressive-gan"),
    paper="https://arxiv.org/abs/1710.10196", trainer="models.gan.progressive_gan.training:recipe",
)
