"""WGAN-GP: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="gan", name="wgan_gp", package=__package__,
    summary="WGAN-GP (Gulrajani et al. 2017): Wasserstein GAN with a gradient penalty, DCGAN-like networks.",
    pipeline="models.gan.wgan_gp.pipeline:WGANGPPipeline",
    presets=("digits", "cifar-32", "tiny"), default_preset="tiny",
    aliases=("wgan-gp", "wgangp"),
    paper="https://arxiv.org/abs/1704.00028", trainer="models.gan.wgan_gp.training:recipe",
)
