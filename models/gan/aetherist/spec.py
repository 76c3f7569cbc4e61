"""Aetherist and EG3D: presets, NVlabs' EG3D weights and their licence (torch-free; the registry reads it)."""
from models.gan.aetherist.config import PRESETS
from models.spec import ModelSpec, WeightsSource

NGC = "https://api.ngc.nvidia.com/v2/models/nvidia/research/eg3d/versions/1/files/{file}"
LICENCE = "NVIDIA Source Code License (non-commercial)"
RELEASES = {"eg3d-ffhq-512": "ffhq512-128.pkl", "eg3d-afhqcats-512": "afhqcats512-128.pkl",
            "eg3d-shapenet-cars-128": "shapenet128.pkl"}
"""Preset -> NVlabs' release file (NGC catalog nvidia/research/eg3d)."""

SPEC = ModelSpec(
    modality="gan", name="aetherist", package=__package__,
    summary="Aetherist, a 3D-aware GAN (ViT backbone, triplanes, neural renderer, super-resolution) with camera "
            "control, and EG3D (Chan et al. 2022) with NVlabs' FFHQ, AFHQ-cats and ShapeNet-cars networks.",
    pipeline="models.gan.aetherist.pipeline:AetheristPipeline",
    presets=tuple(PRESETS), default_preset="eg3d-ffhq-512",
    weights=tuple(WeightsSource(p, NGC.format(file=f), LICENCE, file=f, layout="official")
                  for p, f in RELEASES.items()),
    aliases=("eg3d",),
    paper="https://arxiv.org/abs/2112.07945", trainer="models.gan.aetherist.training:recipe",
    defaults={"*": {"truncation": 1.0, "noise_mode": "const"}, "eg3d-ffhq-512": {"truncation": 0.7},
              "eg3d-afhqcats-512": {"truncation": 0.7}},
)
