"""CycleGAN: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec

SPEC = ModelSpec(
    modality="gan", name="cyclegan", package=__package__,
    summary="CycleGAN (Zhu et al. 2017): unpaired image-to-image translation with cycle consistency.",
    pipeline="models.gan.cyclegan.pipeline:CycleGANPipeline",
    presets=("resnet-9blocks", "resnet-6blocks", "digits", "tiny"), default_preset="resnet-9blocks",
    aliases=("cycle_gan", "cycle-gan"),
    paper="https://arxiv.org/abs/1703.10593", trainer="models.gan.cyclegan.training:recipe",
)
