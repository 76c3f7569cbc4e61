"""StyleGAN3 / StyleGAN2: presets, NVlabs' weights and their licence (torch-free; the registry reads it)."""
from models.gan.stylegan3.config import OFFICIAL, SMALL
from models.spec import ModelSpec, WeightsSource

NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/{family}/versions/1/files/{file}"
LICENCE = "NVIDIA Source Code License (non-commercial)"


def release_file(preset: str) -> str:
    """The release's file name of an official preset: stylegan3-t-ffhq-1024 -> stylegan3-t-ffhq-1024x1024.pkl."""
    head, _, size = preset.rpartition("-")
    return f"{head}-{size}x{size}.pkl"


def release_url(preset: str) -> str:
    family = "stylegan2" if preset.startswith("stylegan2-") else "stylegan3"
    return NGC.format(family=family, file=release_file(preset))


SPEC = ModelSpec(
    modality="gan", name="stylegan3", package=__package__,
    summary="StyleGAN3-T/-R (Karras et al. 2021, alias-free) and StyleGAN2: NVlabs' FFHQ, AFHQv2, MetFaces "
            "networks read from their .pkl without running its code; ADA training, projection, latent editing.",
    pipeline="models.gan.stylegan3.pipeline:StyleGANPipeline",
    presets=(*OFFICIAL, *SMALL), default_preset="stylegan3-t-ffhq-1024",
    weights=tuple(WeightsSource(p, release_url(p), LICENCE, file=release_file(p), layout="official")
                  for p in OFFICIAL),
    aliases=("stylegan2", "stylegan", "sg3"),
    paper="https://arxiv.org/abs/2106.12423", trainer="models.gan.stylegan3.training:recipe",
    defaults={"*": {"truncation": 1.0, "noise_mode": "const"}},
)
