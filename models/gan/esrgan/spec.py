"""SRGAN, ESRGAN and Real-ESRGAN: presets, weights and their licences (torch-free; the registry reads it)."""
from models.spec import ModelSpec, WeightsSource

REAL_ESRGAN = "https://github.com/xinntao/Real-ESRGAN/releases/download"
RELEASES = {
    "realesrgan-x4plus": f"{REAL_ESRGAN}/v0.1.0/RealESRGAN_x4plus.pth",
    "realesrgan-x4plus-anime-6b": f"{REAL_ESRGAN}/v0.2.2.4/RealESRGAN_x4plus_anime_6B.pth",
    "realesrgan-x2plus": f"{REAL_ESRGAN}/v0.2.1/RealESRGAN_x2plus.pth",
    "realesrnet-x4plus": f"{REAL_ESRGAN}/v0.1.1/RealESRNet_x4plus.pth",
}
"""The release files of xinntao/Real-ESRGAN (BSD-3-Clause), downloaded once into the torch hub cache."""

SPECS = (
    ModelSpec(
        modality="gan", name="esrgan", package=__package__,
        summary="ESRGAN (Wang et al. 2018) and Real-ESRGAN (Wang et al. 2021): RRDB super-resolution x2/x4, "
                "the released RealESRGAN_x4plus / anime_6B / x2plus weights, tiled upscaling of large images.",
        pipeline="models.gan.esrgan.pipeline:ESRGANPipeline",
        presets=("realesrgan-x4plus", "realesrgan-x4plus-anime-6b", "realesrgan-x2plus", "realesrnet-x4plus", "esrgan",
                 "tiny"),
        default_preset="realesrgan-x4plus",
        weights=tuple(WeightsSource(p, url, "BSD-3-Clause", file=url.rsplit("/", 1)[-1], layout="official")
                      for p, url in RELEASES.items()),
        aliases=("real_esrgan", "realesrgan", "real-esrgan", "rrdbnet"),
        paper="https://arxiv.org/abs/2107.10833", trainer="models.gan.esrgan.training:esrgan_recipe",
        defaults={"*": {"tile": 0, "tile_pad": 10}},
    ),
    ModelSpec(
        modality="gan", name="srgan", package=__package__,
        summary="SRGAN (Ledig et al. 2017): SRResNet generator (residual blocks, sub-pixel x4 upsampling) trained "
                "with a VGG perceptual and an adversarial loss on degraded high-resolution images.",
        pipeline="models.gan.esrgan.pipeline:SRGANPipeline",
        presets=("srgan", "tiny"), default_preset="srgan",
        aliases=("srresnet",),
        paper="https://arxiv.org/abs/1609.04802", trainer="models.gan.esrgan.training:srgan_recipe",
        defaults={"*": {"tile": 0, "tile_pad": 10}},
    ),
)
