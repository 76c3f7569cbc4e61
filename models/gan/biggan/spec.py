"""BigGAN-deep: presets, weights and their licences, per-preset defaults (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

SPEC = ModelSpec(
    modality="gan", name="biggan", package=__package__,
    summary="BigGAN-deep (Brock et al. 2018): class-conditional ImageNet generator at 128, 256 or 512 px.",
    pipeline="models.gan.biggan.pipeline:BigGANPipeline",
    presets=("biggan-deep-128", "biggan-deep-256", "biggan-deep-512", "tiny"), default_preset="biggan-deep-128",
    weights=tuple(WeightsSource(f"biggan-deep-{r}", f"huggingface/biggan-deep-{r}", "Apache-2.0", layout="official")
                  for r in (128, 256, 512)),
    aliases=("biggan-deep", "biggan_deep"),
    paper="https://arxiv.org/abs/1809.11096", trainer="models.gan.biggan.training:recipe",
)
